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

CHUNK_ATOMS = 1024
"""Atoms per chunk the chunk count aims at. Each chunk costs one kernel call per optimiser
step: measured on 50 slab images (36 atoms), one more chunk adds ~40 us to a step with the
compiled kernels (energy only; nothing measurable with forces) and 50-200 us with numpy,
against 10-80 us of work per image. So chunks should be large; they must also be many
enough to share among workers (200 slab images: 6 chunks)."""

_DIVISIBLE = (1, 2, 4, 6, 12, 24, 36, 48, 60, 120, 180, 240, 360, 720, 840, 1260, 1680, 2520, 5040)
"""Chunk counts with many divisors (highly composite numbers): equal-cost chunks then
share evenly among 2, 3, 4, 6, ... workers whatever their number."""


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
    """Cut images into contiguous chunks of similar cost; a function of the data alone.

    The count is the largest of :data:`_DIVISIBLE` not above ``ceil(atoms / CHUNK_ATOMS)``
    (at least 2 while there are 2 images; more past 5,040), and never more than the images.

    Args:
        costs: work estimate per image (descriptor units).
        atoms: number of atoms per image.

    Returns:
        Image indices of each chunk, in order.
    """
    ideal = math.ceil(sum(int(a) for a in atoms) / CHUNK_ATOMS)
    count = max(n for n in _DIVISIBLE if n <= max(2, ideal))
    if ideal > _DIVISIBLE[-1]:
        count = _DIVISIBLE[-1] * (ideal // _DIVISIBLE[-1])
    return balanced_split(costs, count)


def split_tasks(chunks: Sequence[Sequence[int]], costs: Sequence[float], tasks: int) -> list[list[int]]:
    """Split chunks into at least ``tasks`` runs (never across a chunk boundary), for work
    whose results do not depend on the grouping (fingerprints), so that workers stay busy."""
    total = sum(float(costs[i]) for chunk in chunks for i in chunk) or 1.0
    out: list[list[int]] = []
    for chunk in chunks:
        share = sum(float(costs[i]) for i in chunk) / total
        parts = max(1, math.ceil(share * tasks))
        out.extend([chunk[i] for i in run] for run in balanced_split([costs[i] for i in chunk], parts))
    return out


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


def oversubscription(workers: int, cores: int | None = None) -> str | None:
    """Return a warning when ``workers`` exceed the cores this process may run on, else ``None``.

    Args:
        workers: the backend's worker count.
        cores: the available cores (default :func:`detect_cores`).
    """
    cores = detect_cores() if cores is None else cores
    if workers <= cores:
        return None
    return (f"warning: {workers} workers on {cores} core(s): workers take turns on the cores, so the run is "
            f"no faster than with {cores} and usually slower; use {cores} worker(s) or fewer "
            "(--cores, or cores in [backend])")

