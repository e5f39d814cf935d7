"""Loss + gradient rate of the compiled neural-network kernel vs the numpy model (steady state, one core).

Data: 36-atom Pt/Cu slabs from ``examples/data`` (the 40 training images, then the
validation images, then rattled copies up to ``--images``), fingerprinted with the real
Gaussian descriptor (20 features per element, about 32 derivative blocks per centre);
network (10, 10) tanh. The kernel is built into a temporary folder twice, as the
package build does: portable ``-O3 -funroll-loops`` and ``-march=x86-64-v3`` (AVX2 + FMA,
timed only where the processor runs it). Every figure is measured in the same run as
the numpy model's own loss evaluator.

Run: ``python benchmarks/bench_loss_fortran.py [--images 50] [--seconds 3]``.
Measured 2026-11 (2-core AMD EPYC VM, shared): the atom-by-atom kernel gave forces 17,700
(generic) / 20,900 (x86-64-v3) images/s vs numpy 19,500, energy only 77,000 / 71,000 vs
186,000; batched over atoms with packed derivative blocks: forces 26,000 / 32,000,
energy only 103,000 / 116,000. Activations in plain loops (gfortran then calls libmvec's vector
tanh/exp) and force sums only over the (pattern, neighbour) slots occurring per image: forces
28,600-29,700 / 35,600-40,200, energy only 155,000 / 232,000-251,000 (numpy 19,000 / 178,000-184,000).
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

import ase.io  # noqa: E402
import numpy as np  # noqa: E402

import amp_core  # noqa: E402
from amp_core.compiled import load_library, wide_vectors  # noqa: E402
from amp_core.data import LossSettings  # noqa: E402
from amp_core.reshape import build_arrays  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "plugins" / "models" / "neuralnetwork" / "neuralnetwork_kernels.f90"
DATA = ROOT / "examples" / "data"
HIDDEN = (10, 10)
VARIANTS = {"generic": [], "x86-64-v3": ["-march=x86-64-v3"]}


def slab_shard(n_images: int) -> dict[str, Any]:
    """Reshaped arrays (with Gaussian fingerprints and derivatives) of ``n_images`` Pt/Cu slabs."""
    sources = ase.io.read(DATA / "ptcu-train.xyz", ":") + ase.io.read(DATA / "ptcu-validation.xyz", ":")
    rng = np.random.default_rng(0)
    images, targets = [], []
    for k in range(n_images):
        source = sources[k % len(sources)]
        atoms = source.copy()
        if k >= len(sources):  # rattled copies keep the real neighbour structure (targets: the source's)
            atoms.positions += rng.normal(scale=0.02, size=atoms.positions.shape)
        images.append(atoms)
        targets.append((float(source.get_potential_energy()), np.array(source.get_forces())))
    descriptor = amp_core.create_descriptor("gaussian", elements=["Cu", "Pt"], preset="amp")
    prints = [descriptor.compute(atoms, derivatives=True) for atoms in images]
    return build_arrays(images, targets, prints)


def build_kernel(folder: Path, extra: list[str]) -> None:
    """Compile the kernel as the package build does (``-O3 -funroll-loops`` + extra) and load it from there."""
    compiler = shutil.which("gfortran")
    if compiler is None:
        raise SystemExit("gfortran is not installed: cannot build the kernel to benchmark")
    folder.mkdir()
    flags = ["-shared", "-fPIC", "-O3", "-funroll-loops", *extra]
    target = folder / "neuralnetwork_kernels.so"
    subprocess.run([compiler, *flags, str(SOURCE), "-o", str(target)], check=True)
    os.environ["AMP_KERNEL_DIR"] = str(folder)
    os.environ["AMP_KERNEL_GENERIC"] = "1"  # the override folder holds this variant under the plain name
    load_library.cache_clear()


def rate(evaluator: Callable[[np.ndarray], Any], vector: np.ndarray, n_images: int, seconds: float) -> float:
    """Images per CPU second of this thread: the best 0.2 s window over ``seconds``, after warm-up.

    CPU time of the calling thread (every library runs single-threaded here) and the best
    window, so that other processes on a shared machine count less.
    """
    evaluator(vector)
    evaluator(vector)
    best = 0.0
    for _ in range(max(1, round(seconds / 0.2))):
        calls, start = 0, time.thread_time()
        while (elapsed := time.thread_time() - start) < 0.2:
            evaluator(vector)
            calls += 1
        best = max(best, calls * n_images / elapsed)
    return best


def compare(arrays: dict[str, Any], model: Any, vector: np.ndarray, args: argparse.Namespace) -> None:
    """Print kernel and numpy rates (forces and energy only) for the variant loaded now."""
    twin = model.compiled()  # loads the build that build_kernel pointed at
    for label, c_f in (("forces", 0.04), ("energy only", None)):
        settings = LossSettings(energy_coefficient=1.0, force_coefficient=c_f)
        kernel = twin.loss_evaluator(arrays, settings)
        reference = model.loss_evaluator(arrays, settings)
        fast = rate(kernel, vector, args.images, args.seconds)
        slow = rate(reference, vector, args.images, args.seconds)
        got, expected = kernel(vector), reference(vector)
        diff = np.abs(got.gradient - expected.gradient).max() / np.abs(expected.gradient).max()
        loss = abs(got.force_loss + got.energy_loss - expected.force_loss - expected.energy_loss)
        print(
            f"  {label:12s} kernel {fast:9.0f} images/s   numpy {slow:9.0f} images/s   "
            f"ratio {fast / slow:5.2f}   |grad diff|/max|grad| {diff:.1e}   |loss diff| {loss:.1e}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window per measurement")
    args = parser.parse_args()
    arrays = slab_shard(args.images)
    blocks = sum(len(arrays[k]) for k in arrays if k.startswith("dcentre_")) / len(arrays["numbers"])
    megabytes = sum(a.nbytes for k, a in arrays.items() if k.startswith("dfp_")) / 1e6
    print(
        f"{args.images} images x 36 atoms, Gaussian descriptor, {blocks:.1f} blocks per centre, "
        f"derivative data {megabytes:.1f} MB"
    )
    model = amp_core.create_model("neuralnetwork", hiddenlayers=HIDDEN, activation="tanh")
    model.initialize([arrays])
    vector = model.vector()
    wide = wide_vectors()
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in VARIANTS.items():
            if extra and not wide:
                print(f"{name}: this processor lacks AVX2/FMA; skipped")
                continue
            build_kernel(Path(tmp) / name, extra)
            print(f"{name} build (-O3 -funroll-loops {' '.join(extra)}):")
            compare(arrays, model, vector, args)


if __name__ == "__main__":
    main()
