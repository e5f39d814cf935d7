"""Benchmark: one training step of an ensemble of M members against one model, same data, same run.

Sets up the loss of the default Gaussian descriptor and (20, 20) network on mlearn Mo
training images (force training), once for one model and once for an ensemble of M members
(``[training] ensemble = M``: one pass over each chunk per step serves every member), and
times full loss + gradient evaluations at vectors that change every step (as an optimiser's
do). Prints seconds per step and the ratio ensemble / single, which is M when members cost
as much together as one by one, for the numpy and (when built) compiled kernels.

Run: ``python benchmarks/bench_ensemble.py [--images 40] [--members 5] [--steps 10]``.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import numpy as np
from ase.io import read

import amp_core
from amp_core.ensemble import Ensemble

DATA = Path(__file__).resolve().parent.parent / "examples" / "data" / "mlearn" / "Mo-training.extxyz"


def _model(seed: int):
    return amp_core.create_model("neuralnetwork", seed=seed)


def step_times(images, models: list, backend: str, steps: int) -> list[float]:
    """Seconds per loss + gradient evaluation (median over ``steps``) of each model, after set-up; the
    models' evaluations alternate, so a drift of the machine's speed affects them alike."""
    descriptor = amp_core.create_descriptor("gaussian", elements=["Mo"])
    with contextlib.ExitStack() as stack:
        functions = []
        for model in models:
            back = stack.enter_context(amp_core.create_backend(backend))
            functions.append(stack.enter_context(amp_core.loss_function(
                images, amp_core.Potential(descriptor, model), back, force_coefficient=0.1, progress=False)))
        vectors = [model.vector() for model in models]
        rng = np.random.default_rng(0)
        times: list[list[float]] = [[] for _ in models]
        for step in range(steps + 1):
            for k, f in enumerate(functions):
                vectors[k] = vectors[k] + 1e-6 * rng.normal(size=vectors[k].shape)
                t0 = time.perf_counter()
                f(vectors[k])
                if step:  # the first is a warm-up
                    times[k].append(time.perf_counter() - t0)
    return [float(np.median(t)) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    images = read(DATA, index=f":{args.images}")
    print(f"mlearn Mo: {len(images)} images, {sum(len(a) for a in images)} atoms; ensemble of {args.members}")
    for backend in ("serial", "fortran"):
        try:
            single, ensemble = step_times(images, [_model(0), Ensemble([_model(k) for k in range(args.members)])],
                                          backend, args.steps)
        except amp_core.PropertyNotImplementedError as exc:
            print(f"{backend}: skipped ({exc})")
            continue
        print(f"{backend:8s} one model {single * 1e3:8.1f} ms/step   ensemble {ensemble * 1e3:8.1f} ms/step   "
              f"ratio {ensemble / single:5.2f} (members: {args.members})")


if __name__ == "__main__":
    main()
