"""Speed of the compiled Gaussian kernel on one core (atoms per second).

Builds ``gaussian_kernels.f90`` with ``-O3 -funroll-loops`` into a temporary folder
(``--installed`` uses the library the package build installed instead) and times
fingerprints with and without derivatives on the 108-atom Cu/Pt bulk with Amp's default
symmetry functions (Rc 6.5 A, 20 features per element), then the time per atom for
cells of 32 to 2,000 atoms. Reference rates: original Amp with Fortran ~3 atoms/s,
a vectorised numpy kernel ~5,000 (derivatives) / ~12,000 (values only).

Run: ``python benchmarks/bench_gaussian_fortran.py [--installed] [--repeat N]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core: no BLAS threads spinning beside us
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import itertools  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from ase import Atoms  # noqa: E402
from ase.build import bulk  # noqa: E402

SOURCE = Path(__file__).resolve().parents[1] / "plugins" / "descriptors" / "gaussian_kernels.f90"


def amp_default_gs(elements: list[str]) -> dict[str, list[dict[str, object]]]:
    """Amp's default set: G2 for 4 etas per element, G4 eta 0.005, zeta (1, 4), gamma (+1, -1)."""
    gs: list[dict[str, object]] = [
        {"type": "G2", "element": e, "eta": float(eta), "offset": 0.0}
        for eta in np.logspace(np.log10(0.05), np.log10(5.0), 4)
        for e in elements
    ]
    for zeta, gamma in itertools.product((1.0, 4.0), (1.0, -1.0)):
        for a, b in itertools.combinations_with_replacement(sorted(elements), 2):
            gs.append({"type": "G4", "elements": [a, b], "eta": 0.005, "zeta": zeta, "gamma": gamma})
    return {e: gs for e in elements}


def cu_pt_bulk(repeat: tuple[int, int, int]) -> Atoms:
    """Rattled fcc Cu (a = 3.61 A) with every 10th atom Pt."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(repeat)
    atoms.symbols[::10] = "Pt"
    atoms.rattle(0.05, seed=0)
    return atoms


def build(folder: Path) -> None:
    """Compile the kernel as the package build does (optimised)."""
    flags = ["-shared", "-fPIC", "-O3", "-funroll-loops", "-Wl,--as-needed"]
    subprocess.run(["gfortran", *flags, str(SOURCE), "-o", str(folder / "gaussian_kernels.so")], check=True)


def rate(descriptor: object, atoms: Atoms, derivatives: bool, repeat: int) -> float:
    """Best-of-3 atoms per second over ``repeat`` calls."""
    descriptor.compute(atoms, derivatives=derivatives)  # type: ignore[attr-defined]
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeat):
            descriptor.compute(atoms, derivatives=derivatives)  # type: ignore[attr-defined]
        best = min(best, (time.perf_counter() - start) / repeat)
    return len(atoms) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--installed", action="store_true", help="time the installed gaussian_kernels.so")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if not args.installed:
            build(Path(folder))
            os.environ["AMP_KERNEL_DIR"] = folder
        from amp_core.compiled import find_library
        from amp_plugins.descriptors._gaussian_fortran import CompiledGaussian

        print(f"library: {find_library('amp_plugins.descriptors', 'gaussian_kernels')}")
        descriptor = CompiledGaussian({"name": "Cosine", "Rc": 6.5}, amp_default_gs(["Cu", "Pt"]))
        atoms = cu_pt_bulk((3, 3, 3))
        with_d = rate(descriptor, atoms, True, args.repeat)
        values = rate(descriptor, atoms, False, args.repeat)
        print(f"Cu/Pt bulk {len(atoms)} atoms, Rc 6.5, 20 features, one core:")
        print(
            f"  with derivatives: {with_d:10.0f} atoms/s  ({with_d / 3:.0f}x Amp+Fortran ~3, "
            f"{with_d / 5000:.1f}x numpy ~5,000; target >= 15,000)"
        )
        print(f"  values only:      {values:10.0f} atoms/s  ({values / 12000:.1f}x numpy ~12,000)")
        print("time per atom (ms), with derivatives / values only:")
        for repeat in [(2, 2, 2), (3, 3, 3), (4, 4, 4), (6, 6, 6), (8, 8, 8)]:
            cell = cu_pt_bulk(repeat)
            calls = max(1, args.repeat * 108 // len(cell))
            d, v = rate(descriptor, cell, True, calls), rate(descriptor, cell, False, calls)
            print(f"  {len(cell):5d} atoms: {1e3 / d:.4f} / {1e3 / v:.4f}")


if __name__ == "__main__":
    main()
