"""Speed of the compiled Gaussian kernel on one core (atoms per second).

Builds ``gaussian_kernels.f90`` into a temporary folder in the two variants the package
build makes, generic ``-O3 -funroll-loops`` and ``-O3 -funroll-loops -march=x86-64-v3``
(AVX2 + FMA, timed only where this processor runs it), and times fingerprints with and
without derivatives on the 108-atom Cu/Pt bulk with Amp's default symmetry functions
(Rc 6.5 A, 20 features per element), then the time per atom for cells of 32 to 2,000
atoms. ``--installed`` times the library the package build installed instead (the
variant ``amp_core.compiled.load_library`` picks). Rates are from the best single call
(the kernel's speed on a quiet core) with the median call beside it (other load shows). Reference rates: original Amp with Fortran ~3 atoms/s,
a vectorised numpy kernel ~5,000 (derivatives) / ~12,000 (values only).

Run: ``python benchmarks/bench_gaussian_fortran.py [--installed] [--repeat N]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core: no BLAS threads spinning beside us
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from ase import Atoms  # noqa: E402
from ase.build import bulk  # noqa: E402

SOURCE = Path(__file__).resolve().parents[1] / "plugins" / "descriptors" / "gaussian" / "gaussian_kernels.f90"


def cu_pt_bulk(repeat: tuple[int, int, int]) -> Atoms:
    """Rattled fcc Cu (a = 3.61 A) with every 10th atom Pt."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(repeat)
    atoms.symbols[::10] = "Pt"
    atoms.rattle(0.05, seed=0)
    return atoms


# label: (library name as the package build installs it, extra compiler flags)
VARIANTS = {
    "generic": ("gaussian_kernels", []),
    "x86-64-v3": ("gaussian_kernels_x86_64_v3", ["-march=x86-64-v3"]),
}


def build(folder: Path, stem: str, extra: list[str]) -> None:
    """Compile the kernel as the package build does (optimised, plus ``extra`` flags)."""
    flags = ["-shared", "-fPIC", "-O3", "-funroll-loops", *extra, "-Wl,--as-needed"]
    folder.mkdir()
    subprocess.run(["gfortran", *flags, str(SOURCE), "-o", str(folder / f"{stem}.so")], check=True)


def rate(descriptor: object, atoms: Atoms, derivatives: bool, repeat: int) -> tuple[float, float]:
    """Atoms per second from ``3 * repeat`` single calls: (best call, median call).

    The best call is the kernel's own speed; the median also shows other load on the machine.
    """
    descriptor.compute(atoms, derivatives=derivatives)  # type: ignore[attr-defined]
    times = []
    for _ in range(3 * repeat):
        start = time.perf_counter()
        descriptor.compute(atoms, derivatives=derivatives)  # type: ignore[attr-defined]
        times.append(time.perf_counter() - start)
    return len(atoms) / min(times), len(atoms) / float(np.median(times))


def report(label: str, repeat: int, sizes: bool) -> None:
    """Time the library ``load_library`` finds now; print rates for the 108-atom cell (and sizes)."""
    from amp_core import create_descriptor
    from amp_core.compiled import load_library
    from amp_plugins.descriptors.gaussian._fortran import PACKAGE, STEM

    load_library.cache_clear()
    print(f"[{label}] library: {load_library(PACKAGE, STEM)._name}")
    cutoff = {"name": "Cosine", "Rc": 6.5}
    descriptor = create_descriptor("gaussian", cutoff=cutoff, elements=["Cu", "Pt"], preset="amp").compiled()
    atoms = cu_pt_bulk((3, 3, 3))
    (with_d, with_d_median), (values, values_median) = (
        rate(descriptor, atoms, True, repeat),
        rate(descriptor, atoms, False, repeat),
    )
    print(f"  Cu/Pt bulk {len(atoms)} atoms, Rc 6.5, 20 features, one core (best call; median call):")
    print(
        f"  with derivatives: {with_d:10.0f} atoms/s  ({with_d / 3:.0f}x Amp+Fortran ~3, "
        f"{with_d / 5000:.1f}x numpy ~5,000; target >= 15,000; median {with_d_median:.0f})"
    )
    print(
        f"  values only:      {values:10.0f} atoms/s  ({values / 12000:.1f}x numpy ~12,000; median {values_median:.0f})"
    )
    if not sizes:
        return
    print("  time per atom (ms, best call), with derivatives / values only:")
    for cells in [(2, 2, 2), (3, 3, 3), (4, 4, 4), (6, 6, 6), (8, 8, 8)]:
        cell = cu_pt_bulk(cells)
        calls = max(1, repeat * 108 // len(cell))
        d, v = rate(descriptor, cell, True, calls)[0], rate(descriptor, cell, False, calls)[0]
        print(f"  {len(cell):5d} atoms: {1e3 / d:.4f} / {1e3 / v:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--installed", action="store_true", help="time the installed gaussian_kernels.so")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--no-sizes", action="store_true", help="skip the timings over cell sizes")
    args = parser.parse_args()
    from amp_core.compiled import wide_vectors

    wide = wide_vectors()
    print(f"this processor: the package would load the {'x86-64-v3' if wide else 'generic'} build")
    if args.installed:
        report("installed", args.repeat, not args.no_sizes)
        return
    with tempfile.TemporaryDirectory() as tmp:
        for label, (stem, extra) in VARIANTS.items():
            if extra and not wide:
                print(f"[{label}] skipped: this processor lacks AVX2/FMA")
                continue
            folder = Path(tmp) / label
            build(folder, stem, extra)
            os.environ["AMP_KERNEL_DIR"] = str(folder)
            os.environ["AMP_KERNEL_GENERIC"] = "0" if extra else "1"  # load exactly this build
            report(label, args.repeat, not args.no_sizes)


if __name__ == "__main__":
    main()
