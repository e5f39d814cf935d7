"""MD speed and energy conservation of the calculator against ASE's EMT, measured in the same run.

Workload (``/work/shared/peers/AMP_SETUP.md``): the 108-atom Cu/Pt fcc bulk (every 10th atom
Pt), Amp's default Gaussian set (Rc 6.5 A, 20 features per element), a (10, 10) tanh
network. Unless ``--potential`` names a saved one, the potential is first trained briefly on
the reference ``bulk`` data (EMT, Velocity Verlet at 600 K, 5 fs, every 5th step kept),
so that the NVE runs stay inside its training range.

It prints, for ASE's EMT and for the calculator with the compiled kernels and with numpy:

* atom-steps per second of NVE Velocity Verlet (1 fs, one core), and the ratio to EMT;
* the per-step time split of the calculator: neighbour list (the reuse check, the amortised
  rebuilds and the per-step filtering of the skin list), fingerprints, network, forces,
  extrapolation check, and ASE (integrator and calculator plumbing: the rest of the step).
  Fingerprints and forces are one pass (the derivatives are contracted as they are
  produced); "fingerprints" is the time of a values-only call on the same structure and
  "forces" the rest of that pass;
* energy conservation: the drift of the total energy per atom over ``--drift-steps`` steps
  (slope of a straight-line fit times the run length) and the largest excursion, for EMT
  and the calculator.

Run: ``python benchmarks/bench_md.py [--steps 200] [--drift-steps 1000] [--potential FILE]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from ase import Atoms, units  # noqa: E402
from ase.build import bulk  # noqa: E402
from ase.calculators.emt import EMT  # noqa: E402
from ase.io import write  # noqa: E402
from ase.md.verlet import VelocityVerlet  # noqa: E402

from amp_core import Potential, load, train  # noqa: E402
from amp_plugins.descriptors.gaussian import make_default_symmetry_functions  # noqa: E402
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


def trained_potential(folder: Path, images: int, maxiter: int) -> Path:
    """Train the reference potential briefly (compiled kernels, in process); return its file."""
    write(folder / "train.xyz", reference_images(images))
    config = {
        "descriptor": {"name": "gaussian", "cutoff": 6.5, "Gs": make_default_symmetry_functions(["Cu", "Pt"])},
        "model": {"name": "neuralnetwork", "hiddenlayers": [10, 10], "activation": "tanh"},
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


def md_rate(calc: Any, steps: int, split: bool = False) -> tuple[float, dict[str, float]]:
    """Run NVE (1 fs) from the bulk at 300 K; return seconds per step and, with ``split``, its parts."""
    atoms = cu_pt_bulk()
    atoms.calc = calc
    thermalise(atoms, 300, 1)
    dyn = VelocityVerlet(atoms, 1 * units.fs)
    dyn.run(5)  # warm-up: libraries loaded, first list built
    totals: dict[str, float] = defaultdict(float)
    if split:
        Timed(calc, "calculate", totals, "calculator")
        Timed(calc, "_reuse", totals, "neighbour list")
        Timed(calc, "_check_range", totals, "extrapolation check")
        Timed(calc.model, "atomic_gradient", totals, "network")
    start = time.perf_counter()
    dyn.run(steps)
    per_step = (time.perf_counter() - start) / steps
    parts = {}
    if split:
        parts = {k: v / steps for k, v in totals.items()}
        descriptor, kept = calc._descriptor(), calc._neighbours[0]
        filtering = best_of(lambda: from_skin_list(atoms, kept))
        values = best_of(lambda: descriptor.compute(atoms, neighbours=kept)) - filtering
        parts["neighbour list"] += filtering
        one_pass = parts["calculator"] - parts["neighbour list"] - parts["network"] - parts["extrapolation check"]
        parts["fingerprints"] = min(values, one_pass)
        parts["forces"] = one_pass - parts["fingerprints"]
        parts["ASE"] = per_step - parts.pop("calculator")
        parts["rebuilds"] = calc.neighbour_builds
    return per_step, parts


def best_of(function: Any, repeat: int = 7) -> float:
    """Seconds of the fastest of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def drift(calc: Any, steps: int) -> tuple[float, float]:
    """NVE at 300 K for ``steps`` 1-fs steps: (fitted drift over the run, largest excursion), eV/atom."""
    atoms = cu_pt_bulk()
    atoms.calc = calc
    thermalise(atoms, 300, 1)
    dyn = VelocityVerlet(atoms, 1 * units.fs)
    energies = []
    for _ in dyn.irun(steps):
        energies.append(atoms.get_total_energy())
    e = np.array(energies) / len(atoms)
    slope = np.polyfit(np.arange(len(e)), e, 1)[0]
    return float(slope * steps), float(np.abs(e - e[0]).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="timed NVE steps per calculator")
    parser.add_argument("--drift-steps", type=int, default=1000, help="NVE steps for the energy drift (0: skip)")
    parser.add_argument("--potential", type=Path, help="a saved potential (default: train one first)")
    parser.add_argument("--images", type=int, default=20, help="training images when training")
    parser.add_argument("--maxiter", type=int, default=300, help="training iterations when training")
    parser.add_argument("--skin", type=float, default=0.5, help="neighbour-list skin, Angstrom")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = args.potential or trained_potential(Path(folder), args.images, args.maxiter)
        saved = load(path)
    calculators = {
        "EMT": EMT(),
        "amp-core compiled": Potential(saved.descriptor, saved.model, compiled=True, skin=args.skin),
        "amp-core numpy": Potential(saved.descriptor, saved.model, compiled=False, skin=args.skin),
    }
    for calc in list(calculators.values())[1:]:
        calc.training_range = saved.training_range
    n = len(cu_pt_bulk())
    print(f"{n}-atom Cu/Pt fcc bulk, NVE Velocity Verlet 1 fs, one core, {args.steps} steps each "
          f"(skin {args.skin} A)")
    rates, splits = {}, {}
    for name, calc in calculators.items():
        per_step, parts = md_rate(calc, args.steps, split=name != "EMT")
        rates[name], splits[name] = n / per_step, parts
    for name, rate in rates.items():
        print(f"  {name:<18} {1e3 * n / rate:7.2f} ms/step  {rate:9.0f} atom-steps/s  "
              f"{rate / rates['EMT']:5.2f} x EMT")
    for name, parts in splits.items():
        if parts:
            rebuilds = parts.pop("rebuilds")
            order = ["neighbour list", "fingerprints", "network", "forces", "extrapolation check", "ASE"]
            print(f"  split, {name} (ms/step; {rebuilds:.0f} list builds in {args.steps + 5} steps): "
                  + ", ".join(f"{k} {1e3 * parts[k]:.2f}" for k in order))
    if args.drift_steps:
        print(f"energy conservation, NVE at 300 K, {args.drift_steps} steps of 1 fs (eV/atom):")
        for name in ("EMT", "amp-core compiled"):
            fitted, excursion = drift(calculators[name], args.drift_steps)
            print(f"  {name:<18} drift {fitted:+.2e}   largest excursion {excursion:.2e}")


if __name__ == "__main__":
    main()
