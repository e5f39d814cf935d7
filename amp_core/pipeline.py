"""The pipeline runner: load - chunk - fingerprint - merge - reshape - distribute - reduce.

Each stage is a function of its own so tests can run them one at a time; the
:class:`~amp_core.loss.LossFunction` wires them together for training and evaluation.
Fingerprinting and reshaping run in the backend's workers, chunk by chunk
(:mod:`amp_core.chunks`); the parent only merges finished store entries.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from amp_core.chunks import ChunkHandle, balanced_split, make_chunks, split_tasks
from amp_core.data import Dataset, ImageFingerprints
from amp_core.errors import AmpError, BackendError, DataError, RunError
from amp_core.protocols import COMPILED
from amp_core.reshape import build_arrays, save_arrays, verify_arrays
from amp_core.store import FingerprintStore, entry_name, write_entry

Log = Callable[[str], None]


def _quiet(message: str) -> None:
    """Discard a log line."""


def span(origins: Sequence[str]) -> str:
    """Name images in messages: ``a.xyz, image 3``, ``a.xyz, images 3 to 6``, ``images 1, 4``, or
    ``4 images, a.xyz, image 3 to b.xyz, image 0``."""
    if len(origins) <= 1:
        return origins[0] if origins else "no images"
    parsed = [re.fullmatch(r"(?:(.*), )?image (\d+)", origin) for origin in origins]
    files = {m.group(1) for m in parsed if m is not None}
    if None in parsed or len(files) != 1:
        return f"{len(origins)} images, {origins[0]} to {origins[-1]}"
    numbers = [int(m.group(2)) for m in parsed if m is not None]
    if numbers == list(range(numbers[0], numbers[0] + len(numbers))):
        images = f"images {numbers[0]} to {numbers[-1]}"
    else:
        images = "images " + ", ".join(map(str, numbers[:8])) + (", ..." if len(numbers) > 8 else "")
    (file,) = files
    return images if file is None else f"{file}, {images}"


def image_failed(origin: str, exc: Exception, doing: str) -> Exception:
    """Return the error to raise when ``doing`` an image raised ``exc``.

    A :class:`DataError` is repeated naming the image; amp-core's other errors pass
    unchanged; anything else (``MemoryError`` too) becomes a :class:`BackendError` naming the
    image and the original exception, so a worker's failure says which image it was.
    """
    if isinstance(exc, DataError):
        return DataError(f"{origin}: {exc}")
    if isinstance(exc, AmpError):
        return exc
    return BackendError(f"{doing} {origin}: {type(exc).__name__}: {exc}", stage="fingerprint")


def use_compiled(plugin: Any, backend: Any, log: Log) -> Any:
    """Return the plugin's compiled implementation when the backend asks for one and it has one."""
    if not getattr(backend, "compiled", False):
        return plugin
    if COMPILED in plugin.implemented:
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

    @property
    def label(self) -> str:
        """The images of this task, for messages."""
        return span(self.origins or [f"image {k} of this batch" for k in range(len(self.images))])

    def __call__(self) -> list[str]:
        """Fingerprint every image, write ``<hash>[.v].npz`` atomically; return the file names.

        A :class:`DataError` from the descriptor is re-raised naming the image it came from;
        any other exception (``MemoryError`` too) becomes a :class:`BackendError` naming it.
        """
        names = []
        for k in range(len(self.images)):
            self.compute_one(k)
            names.append(entry_name(self.hashes[k], self.derivatives))
        return names

    def compute_one(self, k: int) -> ImageFingerprints:
        """Fingerprint image ``k`` of the batch, write its entry; return the fingerprints."""
        try:
            fingerprints: ImageFingerprints = self.descriptor.compute(self.images[k], derivatives=self.derivatives)
        except Exception as exc:
            origin = self.origins[k] if self.origins else f"image {k} of this batch"
            failure = image_failed(origin, exc, "fingerprinting")
            if failure is exc:
                raise
            raise failure from exc
        write_entry(fingerprints, Path(self.folder) / entry_name(self.hashes[k], self.derivatives))
        return fingerprints


def run_task(task: Callable[[], Any]) -> Any:
    """Call a task object (module-level, so every backend can pickle it)."""
    return task()


@dataclass(frozen=True)
class CostTask:
    """One batch of images for one worker: the descriptor's work estimate of each."""

    descriptor: Any
    images: list[Any]
    origins: list[str]

    @property
    def label(self) -> str:
        """The images of this task, for messages."""
        return span(self.origins)

    def __call__(self) -> list[float]:
        """Return ``descriptor.cost`` of every image; an error names the image (see :func:`image_failed`)."""
        costs = []
        for atoms, origin in zip(self.images, self.origins):
            try:
                costs.append(float(self.descriptor.cost(atoms)))
            except Exception as exc:
                failure = image_failed(origin, exc, "estimating the cost of")
                if failure is exc:
                    raise
                raise failure from exc
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
    atom count; a chunk's missing images go to one or more tasks (at least four per worker
    in all: fingerprints do not depend on the grouping). Finished tasks are merged into
    the store even when a later one fails.
    """
    if chunks is None:
        sizes = [len(a) for a in dataset.images]
        chunks = make_chunks([float(n) for n in sizes], sizes)
    lacking = {h: k for k, h in enumerate(dataset.hashes) if not store.has(h, derivatives)}  # one per hash
    wanted = [[k for k in chunk if lacking.get(dataset.hashes[k]) == k] for chunk in chunks]
    costs = [float(len(a)) for a in dataset.images]
    tasks, counts = [], []
    for missing in split_tasks([w for w in wanted if w], costs, 4 * backend.cores):
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
    """One chunk for one worker: read its fingerprints from the store, write its rectangular arrays.

    A store entry that is missing or fails its checksum is recomputed here with
    ``descriptor`` (written to the store's ``tmp/`` for the parent to merge), so one run
    repairs every damaged entry; a damaged array folder is rebuilt.
    """

    index: int
    images: list[Any]
    targets: list[tuple[float, Any]]
    hashes: list[str]
    origins: list[str]
    store: FingerprintStore | None
    derivatives: bool
    folder: str
    cost: float
    descriptor: Any = None

    @property
    def label(self) -> str:
        """The chunk and its images, for messages."""
        return f"chunk {self.index}: {span(self.origins)}"

    def __call__(self) -> tuple[ChunkHandle, list[str]]:
        """Build the chunk's arrays unless its folder is intact; return its handle and what was repaired.

        An unexpected exception (``MemoryError`` too) while building the arrays becomes a
        :class:`BackendError` naming the chunk and its images; amp-core's own errors pass through.
        """
        path = Path(self.folder)
        repaired: list[str] = []
        problem = verify_arrays(path)
        if problem is not None:
            if (path / "ok").exists():
                repaired.append(f"chunk {self.index} arrays in {path}: {problem}; rebuilt")
            fingerprints = None
            if self.store is not None:
                fingerprints = [self._fingerprints(k, repaired) for k in range(len(self.images))]
            try:
                save_arrays(build_arrays(self.images, self.targets, fingerprints), path)
            except (AmpError, OSError):  # OSError: the run folder's problem, reported as such
                raise
            except Exception as exc:
                raise BackendError(f"reshaping {self.label}: {type(exc).__name__}: {exc}",
                                   stage="reshape", chunk=self.index) from exc
        handle = ChunkHandle(self.index, str(path), len(self.images), sum(len(a) for a in self.images), self.cost)
        return handle, repaired

    def _fingerprints(self, k: int, repaired: list[str]) -> ImageFingerprints:
        """Image ``k``'s store entry; recomputed (and written to ``tmp/``) when missing or damaged."""
        assert self.store is not None
        stored, why = self.store.read(self.hashes[k], self.derivatives)
        if stored is not None:
            return stored
        if self.descriptor is None:
            raise RunError(f"{self.origins[k]}: fingerprints {why} in the store {self.store.folder}; run again "
                           "to recompute them")
        fingerprints = FingerprintTask(self.descriptor, [self.images[k]], [self.hashes[k]], self.derivatives,
                                       str(self.store.tmp), [self.origins[k]]).compute_one(0)
        repaired.append(f"{self.origins[k]}: store entry {why}; recomputed")
        return fingerprints


def chunk_key(*parts: Any) -> str:
    """Hash anything printable into a short folder name."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:20]


def build_chunks(
    dataset: Dataset, chunks: Sequence[Sequence[int]], costs: Sequence[float], folder: Path,
    store: FingerprintStore | None, derivatives: bool, backend: Any,
    progress: Callable[[int], None] | None = None, descriptor: Any = None, log: Log = _quiet,
) -> list[ChunkHandle]:
    """Reshape every chunk into rectangular arrays on disk, in the backend's workers; return their handles.

    A chunk's folder is keyed by its images, targets, derivative setting and store, so a
    re-run reuses intact folders (checked by checksum; a damaged one is rebuilt). With
    ``descriptor``, a store entry found missing or damaged is recomputed in the worker
    and merged; each repair is logged as a warning.
    """
    tasks = []
    worker_descriptor = descriptor if store is not None else None
    for k, chunk in enumerate(chunks):
        targets = [dataset.targets[i] for i in chunk]
        target_digest = hashlib.sha256(b"".join(
            np.float64(e).tobytes() + (b"" if f is None else np.ascontiguousarray(f).tobytes()) for e, f in targets
        )).hexdigest()
        key = chunk_key([dataset.hashes[i] for i in chunk], target_digest, derivatives,
                        None if store is None else store.folder.name)
        tasks.append(ReshapeTask(k, [dataset.images[i] for i in chunk], targets, [dataset.hashes[i] for i in chunk],
                                 [dataset.origins[i] for i in chunk], store,
                                 derivatives, str(folder / key), float(sum(costs[i] for i in chunk)),
                                 worker_descriptor))
    try:
        results = backend.map(run_task, tasks, stage="reshape", progress=progress)
    finally:
        if store is not None:
            store.merge()  # entries recomputed in the workers
    for _, repaired in results:
        for line in repaired:
            log(f"warning: {line}")
    return [handle for handle, _ in results]
