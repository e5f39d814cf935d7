"""Benchmark: neuralnetwork loss + gradient on a 36-atom Pt/Cu slab, steady state, one core.

Builds 50 rattled slabs (fcc111 Cu 3x3x4, vacuum 7, every other top-layer atom Pt), their
real neighbour pairs within Rc = 6.5 A, and fingerprints with 20 features per element: the
Gaussian descriptor when it is available (``--descriptor gaussian``), otherwise random
values on exactly the pair pattern a descriptor would produce (``--descriptor random``,
the default). Prints images/s for energy-only and force training.

Run: ``python benchmarks/bench_loss.py [--images 50] [--repeat 200] [--descriptor random]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from ase.build import fcc111
from ase.neighborlist import neighbor_list

from amp_core.data import ImageFingerprints, LossSettings
from amp_core.reshape import build_arrays
from amp_plugins.models.neuralnetwork import NeuralNetwork, NeuralNetworkParams

FEATURES = 20
CUTOFF = 6.5


def slab(seed: int):
    """Return a rattled 36-atom Cu slab with every other top-layer atom Pt."""
    atoms = fcc111("Cu", size=(3, 3, 4), vacuum=7.0)
    top = np.flatnonzero(atoms.positions[:, 2] > atoms.positions[:, 2].max() - 0.1)
    atoms.numbers[top[::2]] = 78
    atoms.rattle(0.05, seed=seed)
    return atoms


def random_fingerprints(atoms, rng: np.random.Generator) -> ImageFingerprints:
    """Random values on the real (centre, moved atom) pair pattern within the cutoff."""
    i, j = neighbor_list("ij", atoms, CUTOFF)
    n = len(atoms)
    pairs = np.unique(np.concatenate([np.stack([i, j], 1), np.stack([np.arange(n)] * 2, 1)]), axis=0)
    return ImageFingerprints(
        numbers=atoms.numbers.astype(np.int64),
        values=rng.random((n, FEATURES)),
        lengths=np.full(n, FEATURES, dtype=np.int64),
        pairs=pairs.astype(np.int64),
        derivatives=rng.normal(size=(len(pairs), 3, FEATURES)),
    )


def fingerprints(images, kind: str, rng: np.random.Generator) -> list[ImageFingerprints]:
    """Fingerprint every image with the chosen descriptor."""
    if kind == "gaussian":
        import amp_core

        descriptor = amp_core.create_descriptor("gaussian", elements=["Cu", "Pt"], preset="amp")
        return [descriptor.compute(a, derivatives=True) for a in images]
    return [random_fingerprints(a, rng) for a in images]


def rate(evaluator, vector: np.ndarray, n_images: int, repeat: int) -> float:
    """Return images per second of ``evaluator(vector)`` over ``repeat`` calls (after a warm-up)."""
    for _ in range(5):
        evaluator(vector)
    start = time.perf_counter()
    for _ in range(repeat):
        evaluator(vector)
    return n_images * repeat / (time.perf_counter() - start)


def main() -> None:
    """Build the data set, then time energy-only and force-training loss evaluations."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--descriptor", choices=("random", "gaussian"), default="random")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = [slab(k) for k in range(args.images)]
    fps = fingerprints(images, args.descriptor, rng)
    targets = [(float(rng.normal() - 3.5 * len(a)), rng.normal(size=(len(a), 3))) for a in images]
    arrays = build_arrays(images, targets, fps)
    pairs = sum(len(f.pairs) for f in fps) / sum(len(f) for f in fps)
    model = NeuralNetwork(NeuralNetworkParams(hiddenlayers=(10, 10), activation="tanh"))
    model.initialize([arrays])
    vector = model.vector()
    print(
        f"{args.images} images x 36 atoms, {FEATURES} features, {pairs:.1f} (centre, atom) pairs per centre, "
        f"descriptor {args.descriptor}, NN (10, 10) tanh, {len(vector)} parameters"
    )
    energy = rate(model.loss_evaluator(arrays, LossSettings(1.0, None)), vector, args.images, args.repeat * 5)
    forces = rate(model.loss_evaluator(arrays, LossSettings(1.0, 0.04)), vector, args.images, args.repeat)
    print(f"energy only:    {energy:10.0f} images/s  (target >= 80,000; reference numpy ~164,000)")
    print(f"force training: {forces:10.0f} images/s  (target >= 10,000; reference numpy ~22,000)")


if __name__ == "__main__":
    main()
