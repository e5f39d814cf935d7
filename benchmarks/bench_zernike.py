"""Speed of the ``zernike`` descriptor with derivatives: atoms per second, numpy and compiled, against Amp.

Workload: the 108-atom Cu/Pt bulk (fcc Cu 3x3x3 cubic cells, every 10th atom Pt, rattled
0.05 A, seed 0; ``amp_reference.bulk108``), Cosine cutoff 6.5 A, nmax 5 (12 features),
Amp's default weights (atomic numbers). Ours: best and median of repeated single calls on
one core, fingerprints with derivatives and values only.

The original Amp (``~/.cache/amp-original`` or ``$AMP_VENV``, run as a separate process,
its Fortran path) is timed in the same run: values on the 108-atom bulk, and derivatives
on the 4-atom cubic cell of the same crystal (every atom has the same ~80 neighbour
images as in the 108-atom cell, so its cost per atom is the same; the 108-atom cell with
derivatives takes Amp several minutes; ``--amp-full`` times it too). Amp's times include
its ASE neighbour list.

Run: ``python benchmarks/bench_zernike.py [--repeat N] [--no-amp] [--amp-full]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core: no BLAS threads spinning beside us
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from ase import Atoms  # noqa: E402
from ase.build import bulk  # noqa: E402
from ase.io import write  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from amp_reference import amp_python, bulk108  # noqa: E402

AMP_DRIVER = r"""
import json, os, sys, tempfile, time
from ase.io import read
from amp.descriptor.cutoffs import Cosine
from amp.descriptor.zernike import Zernike
from amp.utilities import hash_images
config = json.load(open(sys.argv[1]))
atoms = read(config["structure"])
os.chdir(tempfile.mkdtemp())
start = time.perf_counter()
z = Zernike(cutoff=Cosine(6.5), nmax=5, elements=["Cu", "Pt"], dblabel="bench")
z.calculate_fingerprints(hash_images([atoms]), calculate_derivatives=config["derivatives"])
print(json.dumps({"seconds": time.perf_counter() - start, "atoms": len(atoms)}))
"""


def rate(descriptor: object, atoms: Atoms, derivatives: bool, repeat: int) -> tuple[float, float, float]:
    """Atoms per second over ``repeat`` single calls after a warm-up: (best call, median call, best CPU time).

    On a shared machine the best call's CPU time (``time.process_time``) is the steadier figure.
    """
    descriptor.compute(atoms, derivatives=derivatives)  # type: ignore[attr-defined]
    times, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        descriptor.compute(atoms, derivatives=derivatives)  # type: ignore[attr-defined]
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return len(atoms) / min(times), len(atoms) / float(np.median(times)), len(atoms) / max(min(cpu), 1e-9)


def amp_rate(python: Path, atoms: Atoms, derivatives: bool) -> float:
    """Atoms per second of the original Amp's Zernike (one call, new database) on ``atoms``."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write(work / "structure.traj", atoms)
        (work / "driver.py").write_text(AMP_DRIVER)
        config = {"structure": str(work / "structure.traj"), "derivatives": derivatives}
        (work / "config.json").write_text(json.dumps(config))
        env = dict(os.environ, PYTHONNOUSERSITE="1")
        env.pop("PYTHONPATH", None)
        done = subprocess.run([str(python), "driver.py", "config.json"], cwd=work, env=env,
                              capture_output=True, text=True)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"the Amp driver failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        record = json.loads(done.stdout.strip().splitlines()[-1])
    return record["atoms"] / record["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--no-amp", action="store_true", help="skip the original Amp")
    parser.add_argument("--amp-full", action="store_true", help="also time Amp with derivatives on all 108 atoms")
    args = parser.parse_args()
    from amp_core import create_descriptor
    from amp_core.errors import PropertyNotImplementedError

    atoms = bulk108()
    numpy_kernel = create_descriptor("zernike", cutoff=6.5, nmax=5, elements=["Cu", "Pt"])
    kernels = {"numpy": numpy_kernel}
    try:
        kernels["compiled"] = numpy_kernel.compiled()  # type: ignore[attr-defined]
    except PropertyNotImplementedError as error:
        print(f"compiled kernel unavailable: {error}")
    print(f"Zernike, Cu/Pt bulk {len(atoms)} atoms, Cosine Rc 6.5, nmax 5 (12 features), one core")
    rates: dict[str, tuple[float, float]] = {}
    for name, descriptor in kernels.items():
        with_d, values = (
            rate(descriptor, atoms, True, args.repeat),
            rate(descriptor, atoms, False, args.repeat),
        )
        rates[name] = (with_d[0], values[0])
        print(f"  {name:8s} with derivatives {with_d[0]:9.0f} atoms/s (median {with_d[1]:.0f}, CPU time {with_d[2]:.0f}); "
              f"values only {values[0]:9.0f} atoms/s (median {values[1]:.0f}, CPU time {values[2]:.0f})")  # fmt: skip
    if "compiled" in rates:
        print(f"  compiled / numpy: {rates['compiled'][0] / rates['numpy'][0]:.1f}x with derivatives, "
              f"{rates['compiled'][1] / rates['numpy'][1]:.1f}x values only")  # fmt: skip
    python = None if args.no_amp else amp_python()
    if python is None:
        print("  original Amp: not measured (--no-amp, or no ~/.cache/amp-original; see AMP_SETUP.md)")
        return
    cell = bulk("Cu", "fcc", a=3.61, cubic=True)
    cell.symbols[0] = "Pt"
    cell.rattle(0.05, seed=0)
    amp_d, amp_v = amp_rate(python, cell, True), amp_rate(python, atoms, False)
    print(f"  original Amp (Fortran path) with derivatives {amp_d:9.2f} atoms/s (4-atom cell of the same crystal); "
          f"values only {amp_v:9.1f} atoms/s (108 atoms)")  # fmt: skip
    if args.amp_full:
        amp_full = amp_rate(python, atoms, True)
        print(f"  original Amp with derivatives on the 108-atom bulk itself: {amp_full:.2f} atoms/s")
    for name, (with_d, values) in rates.items():
        print(f"  {name} / Amp: {with_d / amp_d:,.0f}x with derivatives, {values / amp_v:,.0f}x values only")


if __name__ == "__main__":
    main()
