"""Loss + gradient rate of the compiled neural-network kernel (steady state, one core).

36-atom Pt/Cu slab (fcc111 Cu 3x3x4, every other top-layer atom Pt), 20 features per
element, network (10, 10) tanh, 50 images, random fingerprints with ``--blocks``
derivative blocks per centre (default 80, neighbours drawn at random from the image's
atoms, so a neighbour may repeat as a periodic image would; 36 = every pair once).
Builds the kernel with ``-O3 -funroll-loops`` (portable: no -march) into a temporary
folder, and compares with the numpy model's evaluator when that model is registered.

Run: ``python benchmarks/bench_loss_fortran.py [--blocks 80] [--images 50] [--seconds 3]``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from ase.build import fcc111  # noqa: E402

from amp_core.compiled import load_library  # noqa: E402
from amp_core.data import ImageFingerprints, LossSettings  # noqa: E402
from amp_core.reshape import build_arrays  # noqa: E402

SOURCE = Path(__file__).resolve().parent.parent / "plugins" / "models" / "neuralnetwork_kernels.f90"
FEATURES = 20
HIDDEN = (10, 10)


def slab_shard(n_images: int, blocks: int, seed: int = 0) -> dict[str, Any]:
    """Reshaped arrays of ``n_images`` rattled slabs with random fingerprints and derivative blocks."""
    rng = np.random.default_rng(seed)
    base = fcc111("Cu", size=(3, 3, 4), vacuum=7.0)
    top = np.flatnonzero(base.positions[:, 2] > base.positions[:, 2].max() - 0.1)
    base.symbols[top[::2]] = "Pt"
    n = len(base)
    images, targets, prints = [], [], []
    for _ in range(n_images):
        atoms = base.copy()
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        centres = np.repeat(np.arange(n), blocks)
        moved = np.concatenate([np.sort(np.append(rng.choice(n, blocks - 1), i)) for i in range(n)])
        pairs = np.stack([centres, moved], axis=1).astype(np.int64)
        derivatives = rng.normal(scale=0.3, size=(len(pairs), 3, FEATURES))
        values = rng.uniform(0.0, 5.0, size=(n, FEATURES))
        lengths = np.full(n, FEATURES, dtype=np.int64)
        prints.append(ImageFingerprints(atoms.numbers.astype(np.int64), values, lengths, pairs, derivatives))
        images.append(atoms)
        targets.append((float(rng.normal(-100.0, 1.0)), rng.normal(scale=0.5, size=(n, 3))))
    return build_arrays(images, targets, prints)


def build_kernel(folder: Path) -> None:
    """Compile the kernel as the package build does (-O3 -funroll-loops) and point amp at it."""
    compiler = shutil.which("gfortran")
    if compiler is None:
        raise SystemExit("gfortran is not installed: cannot build the kernel to benchmark")
    flags = ["-shared", "-fPIC", "-O3", "-funroll-loops"]
    subprocess.run(
        [compiler, *flags, str(SOURCE), "-o", str(folder / "neuralnetwork_kernels.so")], check=True
    )
    os.environ["AMP_KERNEL_DIR"] = str(folder)
    load_library.cache_clear()


def rate(evaluator: Callable[[np.ndarray], Any], vector: np.ndarray, n_images: int, seconds: float) -> float:
    """Images per second over repeated calls after two warm-up calls."""
    evaluator(vector)
    evaluator(vector)
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        evaluator(vector)
        calls += 1
    return calls * n_images / elapsed


def numpy_model(arrays: dict[str, Any]) -> Any | None:
    """The registered numpy model initialised on the shard, or ``None`` when unavailable."""
    try:
        import amp_core

        model = amp_core.create_model("neuralnetwork", hiddenlayers=HIDDEN, activation="tanh")
        model.initialize([arrays])
        return model
    except Exception as exc:  # written in parallel; the benchmark still reports the kernel alone
        print(f"numpy model not available ({type(exc).__name__}: {exc}); kernel figures only")
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--blocks", type=int, default=80, help="derivative blocks per centre atom")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window per measurement")
    args = parser.parse_args()
    from amp_plugins.models._nn_fortran import compiled_loss_evaluator

    with tempfile.TemporaryDirectory() as tmp:
        build_kernel(Path(tmp))
        arrays = slab_shard(args.images, args.blocks)
        megabytes = sum(a.nbytes for k, a in arrays.items() if k.startswith("dfp_")) / 1e6
        print(
            f"{args.images} images x 36 atoms, {args.blocks} blocks per centre, derivative data {megabytes:.0f} MB"
        )
        model = numpy_model(arrays)
        elements = model.elements if model else ("Cu", "Pt")
        fprange = model.todict()["fprange"] if model else {s: _ranges(arrays, s) for s in elements}
        vector = model.vector() if model else np.random.default_rng(1).normal(size=_length()) * 0.3
        for label, c_f in (("forces", 0.04), ("energy only", None)):
            settings = LossSettings(energy_coefficient=1.0, force_coefficient=c_f)
            kernel = compiled_loss_evaluator(
                arrays,
                settings,
                elements=elements,
                hiddenlayers={s: HIDDEN for s in elements},
                activation="tanh",
                fprange=fprange,
            )
            fast = rate(kernel, vector, args.images, args.seconds)
            line = f"{label:12s} kernel {fast:10.0f} images/s"
            if model is not None:
                reference = model.loss_evaluator(arrays, settings)
                slow = rate(reference, vector, args.images, args.seconds)
                diff = np.abs(kernel(vector).gradient - reference(vector).gradient).max()
                scale = np.abs(reference(vector).gradient).max()
                line += f"   numpy {slow:10.0f} images/s   ratio {fast / slow:5.2f}   max |grad diff|/max|grad| {diff / scale:.1e}"
            print(line)


def _ranges(arrays: dict[str, Any], symbol: str) -> list[list[float]]:
    z = {"Cu": 29, "Pt": 78}[symbol]
    fp = arrays[f"fp_{z}"]
    return np.stack([fp.min(axis=0), fp.max(axis=0)], axis=1).tolist()


def _length() -> int:
    widths = (FEATURES, *HIDDEN, 1)
    return 2 * (sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:])) + 2)


if __name__ == "__main__":
    main()
