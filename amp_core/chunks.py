"""Chunks: the unit of work and of reduction, their handles and their placement on workers.

A *chunk* is a run of consecutive images. Chunk boundaries depend only on the data
(the number of atoms and the descriptor's cost per image), never on the number of
workers or ranks. Every stage works chunk by chunk: workers fingerprint the images of
their chunks, build each chunk's rectangular arrays (:mod:`amp_core.reshape`) and
keep one loss evaluator per chunk; at each optimiser step the parent adds the chunk
records in chunk order. The same kernel therefore gives bitwise identical losses,
gradients and training trajectories for any backend and worker count.
"""

from __future__ import annotations

import heapq
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from amp_core.reshape import load_arrays

CHUNK_ATOMS = 256
"""Target atoms per chunk. Larger chunks cost less per optimiser step (one kernel call
each); smaller ones balance better across workers."""
MIN_CHUNKS = 8
"""Chunks of a small data set, so that up to this many workers share even a few images."""


@dataclass(frozen=True)
class ChunkHandle:
    """Where one chunk's arrays are, and what a backend needs to place it.

    Attributes:
        index: position of the chunk in the data set (the reduction order).
        folder: the folder :meth:`load` maps the arrays from.
        n_images: images in the chunk.
        n_atoms: atoms in the chunk.
        cost: the descriptor's work estimate of the chunk (relative units).
    """

    index: int
    folder: str
    n_images: int
    n_atoms: int
    cost: float

    def load(self, mmap: bool = True) -> dict[str, NDArray[Any]]:
        """Return the chunk's arrays (layout of :mod:`amp_core.reshape`), memory-mapped by default."""
        return load_arrays(self.folder, mmap=mmap)


def balanced_split(costs: Sequence[float], parts: int) -> list[list[int]]:
    """Split indices 0..n-1 into at most ``parts`` contiguous runs of similar total cost."""
    n = len(costs)
    parts = max(1, min(parts, n))
    cumulative = np.cumsum(np.asarray(costs, dtype=np.float64))
    total = cumulative[-1] if n else 0.0
    bounds = [0]
    for k in range(1, parts):
        cut = int(np.searchsorted(cumulative, total * k / parts, side="left")) + 1
        bounds.append(min(max(cut, bounds[-1] + 1), n - (parts - k)))
    bounds.append(n)
    return [list(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def make_chunks(costs: Sequence[float], atoms: Sequence[int]) -> list[list[int]]:
    """Cut images into ``min(images, max(MIN_CHUNKS, ceil(atoms / CHUNK_ATOMS)))`` runs of similar cost.

    Args:
        costs: work estimate per image (descriptor units).
        atoms: number of atoms per image.

    Returns:
        Image indices of each chunk, in order; a function of the data alone.
    """
    count = max(MIN_CHUNKS, math.ceil(sum(int(a) for a in atoms) / CHUNK_ATOMS))
    return balanced_split(costs, count)


def assign(costs: Sequence[float], workers: int) -> list[list[int]]:
    """Give each of ``workers`` a set of chunk indices of similar total cost (largest first, greedy).

    Deterministic (ties go to the lower worker index). Returns, per worker, its chunk
    indices sorted; workers that get nothing get an empty list. Placement decides only
    where a chunk runs: the reduction is always in chunk order.
    """
    loads = [(0.0, w) for w in range(max(1, workers))]
    out: list[list[int]] = [[] for _ in loads]
    for k in sorted(range(len(costs)), key=lambda i: (-float(costs[i]), i)):
        load, w = heapq.heappop(loads)
        out[w].append(k)
        heapq.heappush(loads, (load + float(costs[k]), w))
    return [sorted(ks) for ks in out]


def detect_cores() -> int:
    """Return the number of cores this process may run on (``os.sched_getaffinity``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
