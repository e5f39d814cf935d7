"""Two workers against one: fingerprints with derivatives and the steady-state loss loop.

Run: ``python benchmarks/bench_parallel.py [--images 200] [--backend multiprocessing]``.
Prints the speed-up of 2 workers over 1 (target >= 1.8x for both stages, on 200+ slab
images) and the peak resident memory of the parent and of the largest worker.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

from make_data import slab_images  # noqa: E402

from amp_core import Potential, create_backend, create_descriptor, create_model, loss_function  # noqa: E402
from amp_core.images import load_dataset  # noqa: E402
from amp_core.pipeline import compute_fingerprints, use_compiled  # noqa: E402
from amp_core.store import FingerprintStore  # noqa: E402


def fingerprint_time(images, backend_name: str, cores: int) -> float:
    """Seconds to fingerprint (with derivatives) every image into a fresh store."""
    descriptor = create_descriptor("gaussian", elements=["Cu", "Pt"])
    data = load_dataset(images, forces=True)
    with tempfile.TemporaryDirectory() as folder, create_backend(backend_name, cores=cores) as backend:
        backend.map(abs, [0] * cores, stage="warm-up")  # start the workers outside the timing
        store = FingerprintStore(folder, "bench")
        start = time.perf_counter()
        compute_fingerprints(data, use_compiled(descriptor, backend, print), backend, store, True)
        return time.perf_counter() - start


def loss_rate(images, backend_name: str, cores: int, seconds: float) -> float:
    """Steady-state loss + gradient evaluations (with forces) per second over all images."""
    potential = Potential(create_descriptor("gaussian", elements=["Cu", "Pt"]),
                          create_model("neuralnetwork", hiddenlayers=(10, 10)))
    with create_backend(backend_name, cores=cores) as backend, \
            loss_function(images, potential, backend, force_coefficient=0.04) as f:
        vector = potential.model.vector()
        for _ in range(3):
            f(vector + 1e-9)
            vector = vector + 1e-9
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            vector = vector + 1e-9  # a new vector each call: no cached result
            f(vector)
            count += 1
        return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--backend", default="multiprocessing")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    images = slab_images(args.images)
    n = len(images)
    print(f"{n} Pt/Cu slab images (36 atoms), Gaussian default set Rc 6.5, NN (10, 10), backend {args.backend}")
    t1 = fingerprint_time(images, args.backend, 1)
    t2 = fingerprint_time(images, args.backend, 2)
    print(f"fingerprints + derivatives: 1 worker {n * 36 / t1:8.0f} atoms/s, 2 workers {n * 36 / t2:8.0f} atoms/s, "
          f"speed-up {t1 / t2:.2f}x (target >= 1.8x)")
    r1 = loss_rate(images, args.backend, 1, args.seconds)
    r2 = loss_rate(images, args.backend, 2, args.seconds)
    print(f"loss + gradient with forces: 1 worker {r1 * n:8.0f} images/s, 2 workers {r2 * n:8.0f} images/s, "
          f"speed-up {r2 / r1:.2f}x (target >= 1.8x)")
    parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS: parent {parent:.0f} MiB, largest worker {worker:.0f} MiB")


if __name__ == "__main__":
    main()
