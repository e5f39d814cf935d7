"""Cold set-up of the public loss_function: fingerprints + store + reshape + workers, then one step.

Run: ``python benchmarks/bench_setup.py [--images 200] [--backend fortran] [--cores 2] [--rounds 3]``.
Prints the median seconds of a cold set-up (a fresh run folder each round) and per image.
It uses only the public API, so the same script measures an older amp-core for a before/after
comparison (run it with that version installed, alternating, on the same machine).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

from make_data import slab_images  # noqa: E402

from amp_core import Potential, create_backend, create_descriptor, create_model, loss_function  # noqa: E402


def cold_setup(images, backend) -> float:
    """Seconds from nothing to a loss function that has answered one step."""
    potential = Potential(create_descriptor("gaussian", elements=["Cu", "Pt"], preset="amp"),
                          create_model("neuralnetwork", hiddenlayers=(10, 10)))
    with tempfile.TemporaryDirectory() as run:
        start = time.perf_counter()
        with loss_function(images, potential, backend, force_coefficient=0.04, run_dir=run) as f:
            f(potential.model.vector())
            return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--backend", default="fortran")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    images = slab_images(args.images)
    options = {} if args.backend == "serial" else {"cores": args.cores}
    with create_backend(args.backend, **options) as backend:
        backend.map(abs, [0] * backend.cores, stage="warm-up")  # worker start-up is not set-up work
        times = [cold_setup(images, backend) for _ in range(args.rounds)]
    median = statistics.median(times)
    print(f"{len(images)} slab images, backend {args.backend} x{backend.cores}: cold set-up {median:.2f} s "
          f"({1e3 * median / len(images):.2f} ms/image; rounds {', '.join(f'{t:.2f}' for t in times)})")


if __name__ == "__main__":
    main()
