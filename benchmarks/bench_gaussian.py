"""Speed of the ``gaussian`` descriptor (pure numpy/scipy), one core.

Reference case (DESIGN.md section 5): Cu fcc 108-atom bulk, every 10th atom Pt,
rattled 0.05 A, Amp's default symmetry functions for ['Cu', 'Pt'] (20 per element),
Cosine cutoff 6.5 A. Prints atoms/s for values only and values plus derivatives,
then time per atom for cells of 32 to 2,000 atoms (it should stay flat).

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_gaussian.py [--repeat N]``
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from ase import Atoms  # noqa: E402
from ase.build import bulk  # noqa: E402

from amp_core import create_descriptor  # noqa: E402


def alloy(repeat: tuple[int, int, int]) -> Atoms:
    """Cu fcc cubic cell (a = 3.61 A) repeated, every 10th atom Pt, rattled 0.05 A (seed 0)."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(repeat)
    atoms.symbols[::10] = "Pt"
    atoms.rattle(0.05, seed=0)
    return atoms


def best_time(function, repeat: int) -> float:
    """Return the fastest of ``repeat`` calls, seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions (best is reported)")
    args = parser.parse_args()
    descriptor = create_descriptor("gaussian", elements=["Cu", "Pt"], cutoff=6.5, preset="amp")
    atoms = alloy((3, 3, 3))
    descriptor.compute(atoms, derivatives=True)  # warm up
    values = best_time(lambda: descriptor.compute(atoms), args.repeat)
    both = best_time(lambda: descriptor.compute(atoms, derivatives=True), args.repeat)
    n = len(atoms)
    print(f"gaussian, Cu/Pt fcc bulk {n} atoms, Amp default set (20 features), Rc 6.5, one core")
    print(
        f"  values only:          {n / values:9.0f} atoms/s  ({1e3 * values:7.1f} ms per image; target >= 8,000)"
    )
    print(
        f"  values + derivatives: {n / both:9.0f} atoms/s  ({1e3 * both:7.1f} ms per image; target >= 3,000)"
    )
    print("time per atom versus cell size (should stay flat):")
    print(f"  {'atoms':>6} {'values us/atom':>15} {'+derivs us/atom':>16}")
    for repeat in [(2, 2, 2), (3, 3, 3), (4, 4, 4), (5, 5, 5), (6, 6, 6), (8, 8, 8)]:
        cell = alloy(repeat)
        k = max(1, args.repeat if len(cell) <= 500 else 2)
        t_values = best_time(lambda c=cell: descriptor.compute(c), k)
        t_both = best_time(lambda c=cell: descriptor.compute(c, derivatives=True), k)
        print(f"  {len(cell):6d} {1e6 * t_values / len(cell):15.1f} {1e6 * t_both / len(cell):16.1f}")


if __name__ == "__main__":
    main()
