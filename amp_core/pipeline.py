"""The pipeline runner: load - chunk - fingerprint - merge - reshape - distribute - reduce.

Each stage is a function of its own so tests can run them one at a time; the
:class:`~amp_core.loss.LossFunction` wires them together for training and evaluation.
Fingerprinting and reshaping run in the backend's workers, chunk by chunk
(:mod:`amp_core.chunks`); the parent only merges finished store entries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from amp_core.chunks import ChunkHandle, balanced_split, make_chunks
from amp_core.data import Dataset, ImageFingerprints
from amp_core.errors import DataError, RunError
from amp_core.reshape import build_arrays, save_arrays
from amp_core.store import FingerprintStore, read_entry, write_entry

Log = Callable[[str], None]


def _quiet(message: str) -> None:
    """Discard a log line."""


def use_compiled(plugin: Any, backend: Any, log: Log) -> Any:
    """Return the plugin's compiled implementation when the backend asks for one and it has one."""
    if not getattr(backend, "compiled", False):
        return plugin
    if "compiled" in plugin.implemented:
        return plugin.compiled()
    log(f"notice: {plugin.name!r} has no compiled kernel; it runs its Python code under backend {backend.name!r}")
    return plugin


@dataclass(frozen=True)
class FingerprintTask:
    """One batch of images for one worker: fingerprint, write to the store's tmp folder."""

    descriptor: Any
    images: list[Any]
    hashes: list[str]
    derivatives: bool
    folder: str
    origins: list[str] | None = None

    def __call__(self) -> list[str]:
        """Fingerprint every image, write ``<hash>[.v].npz`` atomically; return the file names.

        A :class:`DataError` from the descriptor is re-raised naming the image it came from.
        """
        names = []
        for k, (atoms, image_hash) in enumerate(zip(self.images, self.hashes)):
            try:
                fingerprints = self.descriptor.compute(atoms, derivatives=self.derivatives)
            except DataError as exc:
                origin = self.origins[k] if self.origins else f"image {k} of this batch"
                raise DataError(f"{origin}: {exc}") from exc
            name = f"{image_hash}.npz" if self.derivatives else f"{image_hash}.v.npz"
            write_entry(fingerprints, Path(self.folder) / name)
            names.append(name)
        return names


def run_task(task: Callable[[], Any]) -> Any:
    """Call a task object (module-level, so every backend can pickle it)."""
    return task()


@dataclass(frozen=True)
class CostTask:
    """One batch of images for one worker: the descriptor's work estimate of each."""

    descriptor: Any
    images: list[Any]
    origins: list[str]

    def __call__(self) -> list[float]:
        """Return ``descriptor.cost`` of every image; a :class:`DataError` names the image."""
        costs = []
        for atoms, origin in zip(self.images, self.origins):
            try:
                costs.append(float(self.descriptor.cost(atoms)))
            except DataError as exc:
                raise DataError(f"{origin}: {exc}") from exc
        return costs


def image_costs(dataset: Dataset, descriptor: Any, backend: Any = None) -> list[float]:
    """Return the descriptor's work estimate of every image; a :class:`DataError` names the image.

    With a backend the estimates are computed in its workers (a neighbour search per image
    is a few percent of the fingerprinting work: done in the parent alone, it would keep
    two workers well below twice the speed of one).
    """
    if backend is None:
        return CostTask(descriptor, list(dataset.images), list(dataset.origins))()
    batches = balanced_split([float(len(a)) for a in dataset.images], 4 * backend.cores)
    tasks = [
        CostTask(descriptor, [dataset.images[k] for k in batch], [dataset.origins[k] for k in batch])
        for batch in batches
    ]
    return [c for part in backend.map(run_task, tasks, stage="fingerprint") for c in part]


def compute_fingerprints(
    dataset: Dataset, descriptor: Any, backend: Any, store: FingerprintStore, derivatives: bool,
    chunks: Sequence[Sequence[int]] | None = None, progress: Callable[[int], None] | None = None,
) -> int:
    """Fingerprint the images the store lacks, chunk by chunk in the backend's workers; return how many.

    ``chunks`` (image indices per chunk) defaults to :func:`~amp_core.chunks.make_chunks` by
    atom count. Finished tasks are merged into the store even when a later one fails.
    """
    if chunks is None:
        sizes = [len(a) for a in dataset.images]
        chunks = make_chunks([float(n) for n in sizes], sizes)
    tasks, counts = [], []
    for chunk in chunks:
        missing = sorted({dataset.hashes[k]: k for k in chunk if not store.has(dataset.hashes[k], derivatives)}.values())
        if missing:
            tasks.append(FingerprintTask(descriptor, [dataset.images[k] for k in missing],
                                         [dataset.hashes[k] for k in missing], derivatives, str(store.tmp),
                                         [dataset.origins[k] for k in missing]))
            counts.append(len(missing))
    if not tasks:
        return 0
    done = np.cumsum(counts)
    report = (lambda k: progress(int(done[k - 1]))) if progress else None
    try:
        backend.map(run_task, tasks, stage="fingerprint", progress=report)
    finally:
        store.merge()
    return int(done[-1])


@dataclass(frozen=True)
class ReshapeTask:
    """One chunk for one worker: read its fingerprints from the store, write its rectangular arrays."""

    index: int
    images: list[Any]
    targets: list[tuple[float, Any]]
    hashes: list[str]
    origins: list[str]
    store: str | None
    derivatives: bool
    folder: str
    cost: float

    def __call__(self) -> ChunkHandle:
        """Build the chunk's arrays unless its folder is complete; return its handle."""
        path = Path(self.folder)
        if not (path / "ok").exists():
            fingerprints = None
            if self.store is not None:
                fingerprints = [_stored(Path(self.store), h, o, self.derivatives)
                                for h, o in zip(self.hashes, self.origins)]
            save_arrays(build_arrays(self.images, self.targets, fingerprints), path)
        return ChunkHandle(self.index, str(path), len(self.images), sum(len(a) for a in self.images), self.cost)


def _stored(folder: Path, image_hash: str, origin: str, derivatives: bool) -> ImageFingerprints:
    """Read one image's store entry (with derivatives when asked; a values-only entry otherwise)."""
    names = [f"{image_hash}.npz"] + ([] if derivatives else [f"{image_hash}.v.npz"])
    for name in names:
        if (folder / name).exists():
            try:
                return read_entry(folder / name)
            except ValueError as exc:
                raise RunError(f"{origin}: {exc}; run again to recompute it") from exc
    raise RunError(f"{origin}: fingerprints missing from the store {folder} after computing them "
                   "(was the run directory changed during the run?)")


def chunk_key(*parts: Any) -> str:
    """Hash anything printable into a short folder name."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:20]


def build_chunks(
    dataset: Dataset, chunks: Sequence[Sequence[int]], costs: Sequence[float], folder: Path,
    store: FingerprintStore | None, derivatives: bool, backend: Any,
    progress: Callable[[int], None] | None = None,
) -> list[ChunkHandle]:
    """Reshape every chunk into rectangular arrays on disk, in the backend's workers; return their handles.

    A chunk's folder is keyed by its images, targets, derivative setting and store, so a
    re-run reuses complete folders.
    """
    tasks = []
    for k, chunk in enumerate(chunks):
        targets = [dataset.targets[i] for i in chunk]
        target_digest = hashlib.sha256(b"".join(
            np.float64(e).tobytes() + (b"" if f is None else np.ascontiguousarray(f).tobytes()) for e, f in targets
        )).hexdigest()
        key = chunk_key([dataset.hashes[i] for i in chunk], target_digest, derivatives,
                        None if store is None else store.folder.name)
        tasks.append(ReshapeTask(k, [dataset.images[i] for i in chunk], targets, [dataset.hashes[i] for i in chunk],
                                 [dataset.origins[i] for i in chunk], None if store is None else str(store.folder),
                                 derivatives, str(folder / key), float(sum(costs[i] for i in chunk))))
    handles: list[ChunkHandle] = backend.map(run_task, tasks, stage="reshape", progress=progress)
    return handles
