"""The public loss_function end to end: one-time set-up per image, then steady-state calls.

50 Pt/Cu slab images (36 atoms), Amp's default Gaussian set (Rc 6.5, 20 features per
element), NN (10, 10) tanh, force training, one core: the numpy path (``serial``) and the
compiled kernels (``fortran`` with one worker) measured in the same run.

Run: ``python benchmarks/bench_pipeline.py [--images 50] [--seconds 3]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

from make_data import slab_images  # noqa: E402

from amp_core import Potential, create_backend, create_descriptor, create_model, loss_function  # noqa: E402


def measure(images, backend_name: str, forces: bool, seconds: float) -> tuple[float, float]:
    """Return (set-up seconds per image, steady-state images per second)."""
    potential = Potential(create_descriptor("gaussian", elements=["Cu", "Pt"], preset="amp"),
                          create_model("neuralnetwork", hiddenlayers=(10, 10)))
    options = {"cores": 1} if backend_name != "serial" else {}
    with create_backend(backend_name, **options) as backend, tempfile.TemporaryDirectory() as run:
        backend.map(abs, [0], stage="warm-up")  # worker start-up is not set-up work
        start = time.perf_counter()
        with loss_function(images, potential, backend, force_coefficient=0.04 if forces else None,
                           run_dir=run) as f:
            setup = (time.perf_counter() - start) / len(images)
            vector = potential.model.vector()
            f(vector)
            count, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                vector = vector + 1e-12  # a new vector each call, so no cached result is reused
                f(vector)
                count += 1
            return setup, count * len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    images = slab_images(args.images)
    print(f"{len(images)} slab images x 36 atoms, Gaussian (20 features), NN (10, 10), one core")
    results = {}
    for backend in ("serial", "fortran"):
        for forces in (True, False):
            setup, rate = measure(images, backend, forces, args.seconds)
            results[backend, forces] = rate
            label = "energy + forces" if forces else "energy only"
            print(f"{backend:8s} {label:16s} set-up {setup * 1e3:7.2f} ms/image, "
                  f"loss + gradient {rate:9.0f} images/s")
    for forces in (True, False):
        print(f"fortran / serial ({'forces' if forces else 'energy only'}): "
              f"{results['fortran', forces] / results['serial', forces]:.2f}x")
    print("original Amp on this machine kind (peers notes): ~48 images/s with forces, ~7,700 energy only")


if __name__ == "__main__":
    main()
