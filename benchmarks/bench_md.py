"""MD speed and energy conservation of the calculator against ASE's EMT, measured in the same run.

Workload (``/work/shared/peers/AMP_SETUP.md``): the 108-atom Cu/Pt fcc bulk (every 10th atom
Pt), the Gaussian descriptor at Rc 6.5 A with amp-core's default ``systematic`` set (88
features per element: 8 shifted G2 per neighbour element, 24 G4 per element pair) and a
(20, 20) tanh network, amp-core's defaults; ``--preset amp --hidden 10 10`` gives the
reference workload of Amp's comparisons (Amp's default set, 20 features per element, (10, 10)).
Unless ``--potential`` names a saved one, the potential is first trained briefly on
the reference ``bulk`` data (EMT, Velocity Verlet at 600 K, 5 fs, every 5th step kept),
so that the NVE runs stay inside its training range.

It prints, for ASE's EMT and for the calculator with the compiled kernels and with numpy
(and, as "compiled, blocks", the compiled kernels without the one-pass contraction and
without neighbour-list reuse: the force-call path before this version):

* atom-steps per second of NVE Velocity Verlet (1 fs, one core), and the ratio to EMT: the
  calculators take turns in rounds (this machine's speed drifts from minute to minute), and
  the median round is reported with each round's ratio;
* the per-step time split of the calculator: neighbour list (the reuse check, the amortised
  rebuilds and the per-step filtering of the skin list), fingerprints, network, forces,
  extrapolation check, and ASE (integrator and calculator plumbing: the rest of the step).
  Fingerprints and forces are one pass (the derivatives are contracted as they are
  produced); "fingerprints" is the time of a values-only call on the same structure and
  "forces" the rest of that pass;
* energy conservation: the drift of the total energy per atom over ``--drift-steps`` steps
  (slope of a straight-line fit times the run length) and the largest excursion, for EMT
  and the calculator.

``--angular-cutoff 5.0`` gives the angular functions that shorter cutoff radius (the
descriptor's ``angular_cutoff``): about a quarter of the neighbour triplets.

Run: ``python benchmarks/bench_md.py [--preset systematic|amp] [--hidden 20 20] [--angular-cutoff 5.0]
[--steps 200] [--drift-steps 1000] [--potential FILE]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import copy  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from ase import Atoms, units  # noqa: E402
from ase.build import bulk  # noqa: E402
from ase.calculators.emt import EMT  # noqa: E402
from ase.io import write  # noqa: E402
from ase.md.verlet import VelocityVerlet  # noqa: E402

from amp_core import ExtrapolationWarning, Potential, load, train  # noqa: E402
from amp_plugins.descriptors.gaussian._neighbors import from_skin_list  # noqa: E402


def cu_pt_bulk() -> Atoms:
    """The reference 108-atom bulk: fcc Cu (a = 3.61 A), every 10th atom Pt, rattled 0.05 A (seed 0)."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((3, 3, 3))
    atoms.symbols[::10] = "Pt"
    atoms.rattle(0.05, seed=0)
    return atoms


def thermalise(atoms: Atoms, temperature: float, seed: int) -> None:
    """Maxwell-Boltzmann momenta at ``temperature`` K, zero total momentum."""
    masses = atoms.get_masses()[:, None]
    momenta = masses * np.sqrt(units.kB * temperature / masses) * np.random.default_rng(seed).normal(size=(len(atoms), 3))
    atoms.set_momenta(momenta - masses * momenta.sum(axis=0) / masses.sum())


def reference_images(count: int) -> list[Atoms]:
    """EMT snapshots of the bulk: Velocity Verlet at 600 K, 5 fs, every 5th step kept."""
    atoms = cu_pt_bulk()
    atoms.calc = EMT()
    thermalise(atoms, 600, 0)
    dyn = VelocityVerlet(atoms, 5 * units.fs)
    images = []
    for _ in range(count):
        dyn.run(5)
        image = atoms.copy()
        image.calc = EMT()
        image.get_forces()
        images.append(image)
    return images


def trained_potential(folder: Path, images: int, maxiter: int, preset: str, hidden: list[int],
                      angular_cutoff: float | None = None) -> Path:
    """Train the reference potential briefly (compiled kernels, in process); return its file."""
    write(folder / "train.xyz", reference_images(images))
    descriptor: dict[str, Any] = {"name": "gaussian", "cutoff": 6.5, "elements": ["Cu", "Pt"], "preset": preset}
    if angular_cutoff is not None:
        descriptor["angular_cutoff"] = angular_cutoff
    config = {
        "descriptor": descriptor,
        "model": {"name": "neuralnetwork", "hiddenlayers": hidden, "activation": "tanh"},
        "backend": {"name": "serial", "compiled": True},
        "data": {"train": str(folder / "train.xyz")},
        "training": {"maxiter": maxiter, "force_coefficient": 0.04, "directory": str(folder / "run")},
    }
    started = time.perf_counter()
    potential = train(config, echo=None)
    print(f"trained on {images} bulk images in {time.perf_counter() - started:.0f} s: {potential.training['outcome']}")
    return folder / "run" / "potential.json"


class Timed:
    """Wrap ``owner.name`` so each call's seconds add to ``totals[label]``."""

    def __init__(self, owner: Any, name: str, totals: dict[str, float], label: str) -> None:
        function = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                totals[label] += time.perf_counter() - start

        setattr(owner, name, timed)


class MDRun:
    """An NVE run (1 fs) of one calculator from the bulk at 300 K, advanced round by round."""

    def __init__(self, calc: Any, split: bool) -> None:
        self.calc, self.split = calc, split
        self.atoms = cu_pt_bulk()
        self.atoms.calc = calc
        thermalise(self.atoms, 300, 1)
        self.dyn = VelocityVerlet(self.atoms, 1 * units.fs)
        self.dyn.run(5)  # warm-up: libraries loaded, first list built
        self.totals: dict[str, float] = defaultdict(float)
        self.per_step: list[float] = []
        self.each: list[float] = []
        self.steps = 0
        if split:
            Timed(calc, "calculate", self.totals, "calculator")
            Timed(calc, "_reuse", self.totals, "neighbour list")
            Timed(calc, "_check_range", self.totals, "extrapolation check")
            Timed(calc.model, "atomic_gradient", self.totals, "network")

    def advance(self, steps: int) -> None:
        """Run ``steps`` more steps; record the seconds per step of this round and of each step."""
        start = time.perf_counter()
        for _ in range(steps):
            begin = time.perf_counter()
            self.dyn.run(1)
            self.each.append(time.perf_counter() - begin)
        self.per_step.append((time.perf_counter() - start) / steps)
        self.steps += steps

    def parts(self) -> dict[str, float]:
        """Seconds per step of each part (see the module docstring), over every timed round."""
        if not self.split:
            return {}
        parts = {k: v / self.steps for k, v in self.totals.items()}
        calc, atoms = self.calc, self.atoms
        descriptor, kept = calc._descriptor(), calc._frame.neighbours[1]
        filtering = best_of(lambda: from_skin_list(atoms, kept, compiled=descriptor.kernel == "fortran"))
        values = best_of(lambda: descriptor.compute(atoms, neighbours=kept)) - filtering
        parts["neighbour list"] += filtering
        one_pass = parts["calculator"] - parts["neighbour list"] - parts["network"] - parts["extrapolation check"]
        parts["fingerprints"] = min(values, one_pass)
        parts["forces"] = one_pass - parts["fingerprints"]
        parts["ASE"] = sum(self.per_step) / len(self.per_step) - parts.pop("calculator")
        return parts


def best_of(function: Any, repeat: int = 7) -> float:
    """Seconds of the fastest of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def drift(calc: Any, steps: int) -> tuple[float, float, float]:
    """NVE at 300 K for ``steps`` 1-fs steps: (fitted drift over the run, largest excursion) in eV/atom and
    the fraction of atom-steps flagged as extrapolating (NaN for EMT)."""
    atoms = cu_pt_bulk()
    atoms.calc = calc
    thermalise(atoms, 300, 1)
    dyn = VelocityVerlet(atoms, 1 * units.fs)
    energies, flagged = [], 0
    for _ in dyn.irun(steps):
        energies.append(atoms.get_total_energy())
        flagged += len(getattr(calc, "results", {}).get("extrapolating_atoms", ()))
    e = np.array(energies) / len(atoms)
    slope = np.polyfit(np.arange(len(e)), e, 1)[0]
    fraction = flagged / (len(energies) * len(atoms)) if isinstance(calc, Potential) else float("nan")
    return float(slope * steps), float(np.abs(e - e[0]).max()), fraction


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="timed NVE steps per calculator")
    parser.add_argument("--rounds", type=int, default=20, help="rounds the timed steps are split into")
    parser.add_argument("--drift-steps", type=int, default=1000, help="NVE steps for the energy drift (0: skip)")
    parser.add_argument("--potential", type=Path, help="a saved potential (default: train one first)")
    parser.add_argument("--images", type=int, default=20, help="training images when training")
    parser.add_argument("--maxiter", type=int, default=300, help="training iterations when training")
    parser.add_argument("--skin", type=float, default=0.5, help="neighbour-list skin, Angstrom")
    parser.add_argument("--preset", choices=("systematic", "amp"), default="systematic",
                        help="Gaussian symmetry-function set when training (default: amp-core's default)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[20, 20], help="hidden layers when training")
    parser.add_argument("--angular-cutoff", type=float, help="the descriptor's angular_cutoff when training (A)")
    args = parser.parse_args()
    warnings.simplefilter("ignore", ExtrapolationWarning)  # the drift run reports the flagged fraction
    with tempfile.TemporaryDirectory() as folder:
        path = args.potential or trained_potential(Path(folder), args.images, args.maxiter, args.preset,
                                                   args.hidden, args.angular_cutoff)
        saved = load(path)
    calculators = {  # each its own model object: the split times the model's calls per calculator
        "EMT": EMT(),
        "amp-core compiled": Potential(saved.descriptor, copy.deepcopy(saved.model), compiled=True, skin=args.skin),
        "amp-core numpy": Potential(saved.descriptor, copy.deepcopy(saved.model), compiled=False, skin=args.skin),
        "compiled, blocks": Potential(saved.descriptor, copy.deepcopy(saved.model), compiled=True, skin=0,
                                      one_pass=False),
    }
    for calc in list(calculators.values())[1:]:
        calc.training_range = saved.training_range
    n = len(cu_pt_bulk())
    per_round = max(1, args.steps // args.rounds)
    features = saved.descriptor.n_features("Cu")
    angular = saved.descriptor.params.angular_cutoff
    radii = f"Rc {saved.descriptor.params.cutoff.Rc:g} A" + ("" if angular is None else f", angular {angular:g} A")
    print(f"{n}-atom Cu/Pt fcc bulk, NVE Velocity Verlet 1 fs, one core, {args.rounds} rounds of {per_round} steps "
          f"each, the calculators taking turns (skin {args.skin} A); {features} features per atom ({radii}), network "
          f"{saved.model.todict().get('hiddenlayers')}")
    runs = {name: MDRun(calc, split=name in ("amp-core compiled", "amp-core numpy")) for name, calc in calculators.items()}
    for _ in range(args.rounds):
        for run in runs.values():
            run.advance(per_round)
    emt = float(np.median(runs["EMT"].per_step))
    emt_low = float(np.percentile(runs["EMT"].each, 10))
    for name, run in runs.items():
        median, low = float(np.median(run.per_step)), float(np.percentile(run.each, 10))
        ratios = np.array(runs["EMT"].per_step) / np.array(run.per_step)  # round by round
        print(f"  {name:<18} {1e3 * median:7.2f} ms/step  {n / median:7.0f} atom-steps/s  {emt / median:5.2f} x EMT; "
              f"fastest tenth of steps {1e3 * low:6.2f} ms, {emt_low / low:5.2f} x EMT's; rounds "
              f"{np.min(ratios):.2f} to {np.max(ratios):.2f} x EMT")
    order = ["neighbour list", "fingerprints", "network", "forces", "extrapolation check", "ASE"]
    for name, run in runs.items():
        parts = run.parts()
        if parts:
            print(f"  split, {name} (ms/step; {run.calc.neighbour_builds} list builds in {run.steps + 5} steps): "
                  + ", ".join(f"{k} {1e3 * parts[k]:.2f}" for k in order))
    if args.drift_steps:
        print(f"energy conservation, NVE at 300 K, {args.drift_steps} steps of 1 fs (eV/atom):")
        for name in ("EMT", "amp-core compiled"):
            fitted, excursion, fraction = drift(calculators[name], args.drift_steps)
            flagged = "" if np.isnan(fraction) else f"   extrapolating atom-steps {100 * fraction:.1f}%"
            print(f"  {name:<18} drift {fitted:+.2e}   largest excursion {excursion:.2e}{flagged}")


if __name__ == "__main__":
    main()
