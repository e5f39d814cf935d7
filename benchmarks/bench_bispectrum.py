"""Speed of the bispectrum descriptor on one core (atoms per second), numpy and compiled, beside Amp's.

Workload (the peers' AMP_SETUP notes): ``bulk('Cu', 'fcc', a=3.61, cubic=True).repeat((3,
3, 3))`` with every 10th atom Pt (108 atoms), rattled by 0.05 A (seed 0), then a short
EMT Velocity-Verlet run at 600 K (5 fs steps, every 5th step kept); the first ``--frames``
snapshots are timed. Descriptor: Amp's defaults (jmax 5, 51 features; Cosine cutoff
6.5 A; weights = atomic numbers). Rates are from the best call over the frames (the
kernel's speed on a quiet core), with the median call beside it (other load shows).

The original Amp (``amp-atomistics`` 1.0.1, ``$AMP_VENV``, default
``~/.cache/amp-original``) computes bispectrum values only, in Python. It runs in a
separate process, never imported here: its own ``FingerprintCalculator.get_fingerprint``
atom by atom on the first snapshot, with its own neighbour list, until ``--amp-budget``
seconds are spent (at jmax 5 one atom with ~90 neighbours takes far longer than that, so
it is also timed at jmax 1). Without that environment the Amp lines say so.

Run: ``python benchmarks/bench_bispectrum.py [--frames 3] [--repeat 2] [--amp-budget 120]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core: no BLAS threads beside us
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from ase import Atoms, units  # noqa: E402
from ase.build import bulk  # noqa: E402
from ase.calculators.emt import EMT  # noqa: E402
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution  # noqa: E402
from ase.md.verlet import VelocityVerlet  # noqa: E402

AMP_PYTHON = Path(os.environ.get("AMP_VENV", Path.home() / ".cache" / "amp-original")) / "bin" / "python"

AMP_DRIVER = r"""
import json, sys, time
from ase import Atoms
from amp.descriptor.bispectrum import FingerprintCalculator, NeighborlistCalculator
from amp.descriptor.cutoffs import Cosine
from amp.descriptor.bispectrum import generate_coefficients
case = json.load(open("case.json"))
atoms = Atoms(case["symbols"], positions=case["positions"], cell=case["cell"], pbc=case["pbc"])
start = time.perf_counter()
neighbours = {"key": NeighborlistCalculator(cutoff=6.5).calculate(atoms, "key")}
calc = FingerprintCalculator(neighbours, generate_coefficients(["Cu", "Pt"]), case["jmax"], Cosine(6.5).todict())
calc.atoms = atoms
done = 0
for atom in atoms:
    ns, offsets = neighbours["key"][atom.index]
    rs = [atoms.positions[n] + offset @ atoms.cell for n, offset in zip(ns, offsets)]
    calc.get_fingerprint(atom.index, atom.symbol, [atoms[n].symbol for n in ns], rs)
    done += 1
    print(json.dumps({"atoms": done, "seconds": time.perf_counter() - start}), flush=True)
    if time.perf_counter() - start > case["budget"]:
        break
"""


def frames(count: int) -> list[Atoms]:
    """The first ``count`` kept snapshots of the 600 K EMT run of the 108-atom Cu/Pt bulk."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((3, 3, 3))
    atoms.symbols[::10] = "Pt"
    atoms.rattle(0.05, seed=0)
    atoms.calc = EMT()
    MaxwellBoltzmannDistribution(atoms, temperature_K=600, rng=np.random.default_rng(0))
    dynamics = VelocityVerlet(atoms, timestep=5 * units.fs)
    out = []
    for _ in range(count):
        dynamics.run(5)
        snapshot = atoms.copy()
        snapshot.calc = None
        out.append(snapshot)
    return out


def rate(descriptor: object, images: list[Atoms], derivatives: bool, repeat: int) -> tuple[float, float]:
    """Atoms per second over single calls on each image, ``repeat`` times: (best call, median call)."""
    descriptor.compute(images[0], derivatives=derivatives)  # type: ignore[attr-defined]
    per_atom = []
    for _ in range(repeat):
        for atoms in images:
            start = time.perf_counter()
            descriptor.compute(atoms, derivatives=derivatives)  # type: ignore[attr-defined]
            per_atom.append((time.perf_counter() - start) / len(atoms))
    return 1.0 / min(per_atom), 1.0 / float(np.median(per_atom))


def amp_rate(atoms: Atoms, jmax: float, budget: float) -> str:
    """Time Amp's own per-atom bispectrum (values only) until ``budget`` seconds are spent."""
    if not AMP_PYTHON.exists():
        return f"not measured: Amp's environment is missing ({AMP_PYTHON})"
    case = {
        "symbols": atoms.get_chemical_symbols(), "positions": atoms.positions.tolist(),
        "cell": atoms.cell.array.tolist(), "pbc": atoms.pbc.tolist(), "jmax": jmax, "budget": budget,
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "case.json").write_text(json.dumps(case))
        (Path(folder) / "driver.py").write_text(AMP_DRIVER)
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        try:
            result = subprocess.run([str(AMP_PYTHON), "driver.py"], cwd=folder, capture_output=True, text=True,
                                    timeout=budget + 60, env=env)  # fmt: skip
            lines = result.stdout.splitlines()
        except subprocess.TimeoutExpired as stopped:
            lines = (stopped.stdout or b"").decode().splitlines() if isinstance(stopped.stdout, bytes) else []
    if not lines:
        return f"no atom finished in {budget + 60:.0f} s (< {1 / (budget + 60):.4f} atoms/s)"
    last = json.loads(lines[-1])
    return f"{last['atoms'] / last['seconds']:.4f} atoms/s ({last['atoms']} atoms in {last['seconds']:.1f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--jmax", type=float, default=5)
    parser.add_argument("--amp-budget", type=float, default=120.0, help="seconds for each Amp measurement")
    parser.add_argument("--no-amp", action="store_true")
    args = parser.parse_args()
    from amp_core import create_descriptor
    from amp_core.errors import PropertyNotImplementedError

    images = frames(args.frames)
    numpy_kernel = create_descriptor("bispectrum", cutoff=6.5, jmax=args.jmax, elements=["Cu", "Pt"])
    print(f"bulk Cu/Pt, {len(images[0])} atoms, {len(images)} MD frames, Rc 6.5, jmax {args.jmax:g} "
          f"({numpy_kernel.n_features} features); one core; best call (median call)")  # fmt: skip
    rates = {}
    kernels = {"numpy": numpy_kernel}
    try:
        kernels["compiled"] = numpy_kernel.compiled()
    except PropertyNotImplementedError as why:
        print(f"compiled: not available ({why})")
    for label, descriptor in kernels.items():
        for derivatives in (True, False):
            best, median = rate(descriptor, images, derivatives, args.repeat)
            rates[label, derivatives] = best
            what = "with derivatives" if derivatives else "values only     "
            print(f"  {label:8s} {what}: {best:10.1f} atoms/s  (median {median:.1f})")
    if "compiled" in kernels:
        print(f"  compiled / numpy: with derivatives {rates['compiled', True] / rates['numpy', True]:.1f}x, "
              f"values only {rates['compiled', False] / rates['numpy', False]:.1f}x")  # fmt: skip
    if args.no_amp:
        return
    for jmax in sorted({args.jmax, 1.0}, reverse=True):
        print(f"  Amp 1.0.1 (Python; values only, it has no derivatives), jmax {jmax:g}: "
              f"{amp_rate(images[0], jmax, args.amp_budget)}")  # fmt: skip
        ours = create_descriptor("bispectrum", cutoff=6.5, jmax=jmax, elements=["Cu", "Pt"])
        best = rate(ours, images[:1], False, 1)[0]
        print(f"    ours, numpy, values only, jmax {jmax:g}: {best:.1f} atoms/s")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
