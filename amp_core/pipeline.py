"""The pipeline runner: load - shard - fingerprint - merge - reshape - distribute - reduce.

Each stage is a function of its own so tests can run them one at a time; the
:class:`LossFunction` wires them together for training and evaluation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from amp_core.data import ImageFingerprints
from amp_core.errors import DataError, RunError
from amp_core.images import Dataset
from amp_core.manager import default_manager
from amp_core.reshape import build_arrays, save_arrays
from amp_core.store import FingerprintStore, write_entry

Log = Callable[[str], None]


def _quiet(message: str) -> None:
    """Discard a log line."""


def plugin_version(kind: str, name: str) -> tuple[str, str]:
    """Return (distribution, version) of the registered plugin ``name``, if registered."""
    table = default_manager().registered(kind)
    if name in table:
        return table[name].distribution, table[name].version
    return "(unregistered)", ""


def balanced_split(costs: Sequence[float], parts: int) -> list[list[int]]:
    """Split indices 0..n-1 into at most ``parts`` contiguous runs of similar total cost.

    Contiguous runs keep image order, so the reduction order is reproducible.
    """
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
    progress: Callable[[int], None] | None = None, costs: Sequence[float] | None = None,
) -> int:
    """Fingerprint the images the store lacks, in the backend's workers; return how many.

    ``costs`` (per image, from :func:`image_costs`) is computed here when not given.
    Finished batches are merged into the store even when a later one fails.
    """
    missing = sorted({h: k for k, h in enumerate(dataset.hashes) if not store.has(h, derivatives)}.values())
    if not missing:
        return 0
    costs = image_costs(dataset, descriptor, backend) if costs is None else costs
    batches = balanced_split([costs[k] for k in missing], max(1, len(missing) // 4, 4 * backend.cores))
    tasks = [
        FingerprintTask(descriptor, [dataset.images[missing[j]] for j in batch],
                        [dataset.hashes[missing[j]] for j in batch], derivatives, str(store.tmp),
                        [dataset.origins[missing[j]] for j in batch])
        for batch in batches
    ]
    sizes = np.cumsum([len(b) for b in batches])
    report = (lambda done: progress(int(sizes[done - 1]))) if progress else None
    try:
        backend.map(run_task, tasks, stage="fingerprint", progress=report)
    finally:
        store.merge()
    return len(missing)


def load_fingerprints(dataset: Dataset, store: FingerprintStore, indices: Sequence[int],
                      derivatives: bool) -> list[ImageFingerprints]:
    """Read the stored fingerprints of ``indices``; recompute-worthy entries raise."""
    out = []
    for k in indices:
        fp = store.get(dataset.hashes[k], derivatives)
        if fp is None:
            raise RunError(f"{dataset.origins[k]}: fingerprints missing from the store after computing them")
        out.append(fp)
    return out


def shard_key(*parts: Any) -> str:
    """Hash anything printable into a short folder name."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:20]


def build_shards(
    dataset: Dataset, shards: list[list[int]], folder: Path, store: FingerprintStore | None, derivatives: bool,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Reshape every shard into rectangular arrays on disk (reused when already there)."""
    dirs = []
    for k, shard in enumerate(shards):
        targets = [dataset.targets[i] for i in shard]
        target_digest = hashlib.sha256(b"".join(
            np.float64(e).tobytes() + (b"" if f is None else np.ascontiguousarray(f).tobytes()) for e, f in targets
        )).hexdigest()
        key = shard_key([dataset.hashes[i] for i in shard], target_digest, derivatives,
                        None if store is None else store.folder.name)
        path = folder / key
        if not (path / "ok").exists():
            fps = None if store is None else load_fingerprints(dataset, store, shard, derivatives)
            save_arrays(build_arrays([dataset.images[i] for i in shard], targets, fps), path)
        dirs.append(str(path))
        if progress:
            progress(k + 1)
    return dirs
