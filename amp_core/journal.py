"""The optimiser's journal: every (loss, gradient) it was given, so that ``--resume`` replays it.

An optimiser's state (L-BFGS's curvature pairs, a line search under way, SciPy's internal
variables) cannot in general be saved. But every optimiser here is deterministic: from
the same start and the same answers it asks for the same points. So a run keeps, beside
its checkpoint, an append-only file of the answers; ``--resume`` starts the optimiser
again from the run's first parameters and serves the recorded answers (checking that each
point asked for is bitwise the recorded one) until it reaches the checkpoint, then goes on
evaluating. The resumed run therefore continues the interrupted trajectory bit for bit,
for any optimiser plugin that is deterministic, without knowing its internals.

File layout (native little-endian): ``MAGIC``, n (int64), the start vector (n float64),
then one record per evaluation: a 16-byte BLAKE2b digest of the point (and of the chunks
asked for, for minibatch optimisers), the loss (float64)
and the gradient (n float64). The checkpoint names how many records are valid.
"""

from __future__ import annotations

import collections
import hashlib
import os
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

from amp_core.errors import RunError

MAGIC = b"AMPJRNL1"
JOURNAL = "optimizer-journal.bin"
LIMIT = 2 * 1024**3
"""Bytes: beyond this the journal stops growing and ``--resume`` restarts the optimiser instead."""

Function = Any  # f(vector) -> (loss, gradient)


class ReplayMismatch(RuntimeError):
    """The resumed optimiser asked for a point the interrupted run did not: it cannot be replayed."""


def digest(vector: NDArray[np.float64], chunks: Any = None) -> bytes:
    """Return the 16-byte BLAKE2b digest of a parameter vector's float64 bytes (and of the chunks asked for)."""
    data = np.ascontiguousarray(vector, dtype=np.float64).tobytes()
    if chunks is not None:
        data += b"chunks" + np.asarray(sorted(int(k) for k in chunks), dtype=np.int64).tobytes()
    return hashlib.blake2b(data, digest_size=16).digest()


class Journalled:
    """A loss function whose answers go through a :class:`Journal` (``n_chunks`` and ``chunks=`` pass through)."""

    def __init__(self, journal: Journal, function: Function) -> None:
        self._journal = journal
        self._function = function
        self.n_chunks: int = getattr(function, "n_chunks", 1)

    def __call__(self, vector: NDArray[np.float64], chunks: Any = None) -> tuple[float, NDArray[np.float64]]:
        return self._journal.answer(self._function, vector, chunks)

    def __getattr__(self, name: str) -> Any:
        """Pass the function's residual interface through (``residuals``, ``residual_sizes``, ``check_residuals``).

        Residual Jacobians are not recorded (they are large): a resumed run recomputes them
        while it replays, which gives the same numbers (every backend's sums are in chunk order).
        """
        if name in ("residuals", "residual_sizes", "check_residuals"):
            return getattr(self._function, name)
        raise AttributeError(name)


class Journal:
    """An open journal: records evaluations, and serves recorded ones first when resuming.

    Attributes:
        path: the journal file.
        start: the vector the optimiser started from (the run's first parameters).
        records: evaluations in the file (recorded and replayed).
        complete: false once the file reached :data:`LIMIT` (it then no longer grows).
        base: the iteration ``start`` belongs to (0 unless the journal began at a resume).
    """

    def __init__(self, path: Path, start: NDArray[np.float64], handle: BinaryIO, records: int,
                 pending: collections.deque[tuple[bytes, float, NDArray[np.float64]]]) -> None:
        self.path = path
        self.start = start
        self._handle = handle
        self.records = records
        self.complete = True
        self.base = 0
        self._pending = pending
        self._record = 16 + 8 * (1 + len(start))

    @classmethod
    def create(cls, path: Path, start: NDArray[np.float64]) -> Journal:
        """Start a new journal for an optimiser starting at ``start`` (any old one is replaced)."""
        start = np.array(start, dtype=np.float64, copy=True)
        handle = open(path, "wb")  # noqa: SIM115 - kept open for the run, closed by close()
        handle.write(MAGIC + np.int64(len(start)).tobytes() + start.tobytes())
        return cls(path, start, handle, 0, collections.deque())

    @classmethod
    def reopen(cls, path: Path, records: int) -> Journal:
        """Open ``path`` to replay its first ``records`` evaluations, then record further ones.

        Raises:
            RunError: the file is missing, of another format or shorter than ``records``.
        """
        try:
            handle = open(path, "r+b")  # noqa: SIM115
        except OSError as exc:
            raise RunError(f"--resume: cannot open the optimiser journal {path}: {exc}") from exc
        try:
            head = handle.read(len(MAGIC) + 8)
            if len(head) < len(MAGIC) + 8 or head[: len(MAGIC)] != MAGIC:
                raise RunError(f"--resume: {path} is not an optimiser journal (damaged?)")
            n = int(np.frombuffer(head[len(MAGIC):], dtype=np.int64)[0])
            raw = handle.read(8 * n) if 0 <= n < LIMIT // 8 else b""
            size = 16 + 8 * (1 + n)
            data = handle.read(size * records) if len(raw) == 8 * n else b""
            if n < 0 or len(raw) != 8 * n or len(data) != size * records:
                raise RunError(f"--resume: the optimiser journal {path} is shorter than its checkpoint says "
                               f"({records} evaluations)")
            start = np.frombuffer(raw, dtype=np.float64).copy()
        except BaseException:
            handle.close()
            raise
        pending: collections.deque[tuple[bytes, float, NDArray[np.float64]]] = collections.deque()
        for k in range(records):
            record = data[k * size:(k + 1) * size]
            values = np.frombuffer(record[16:], dtype=np.float64)
            pending.append((record[:16], float(values[0]), values[1:].copy()))
        handle.truncate(len(MAGIC) + 8 + 8 * n + size * records)
        handle.seek(0, os.SEEK_END)
        return cls(path, start, handle, records, pending)

    @property
    def replaying(self) -> bool:
        """Whether recorded evaluations remain to be served."""
        return bool(self._pending)

    def wrap(self, function: Function) -> Journalled:
        """Return ``function`` journalled: recorded answers first (checked), then real ones recorded."""
        return Journalled(self, function)

    def answer(self, function: Function, vector: NDArray[np.float64], chunks: Any) -> tuple[float, NDArray[np.float64]]:
        """Serve the next recorded answer (checking it is for this point and chunks) or evaluate and record."""
        key = digest(vector, chunks)
        if self._pending:
            recorded, loss, gradient = self._pending.popleft()
            if recorded != key:
                self._pending.clear()
                raise ReplayMismatch("the resumed optimiser asked for another point than the interrupted "
                                     "run did (another optimiser version or settings?)")
            return loss, gradient.copy()
        loss, gradient = function(vector) if chunks is None else function(vector, chunks=chunks)
        self._append(key, loss, gradient)
        return loss, gradient

    def _append(self, key: bytes, loss: float, gradient: NDArray[np.float64]) -> None:
        if not self.complete:
            return
        if self._handle.tell() + self._record > LIMIT:
            self.complete = False
            return
        self._handle.write(key + np.float64(loss).tobytes()
                           + np.ascontiguousarray(gradient, dtype=np.float64).tobytes())
        self.records += 1

    def sync(self) -> dict[str, Any] | None:
        """Flush to disk; return what the checkpoint records (``None`` when the journal is incomplete)."""
        if not self.complete:
            return None
        self._handle.flush()
        os.fsync(self._handle.fileno())
        return {"file": self.path.name, "records": self.records}

    def close(self) -> None:
        """Close the file (idempotent)."""
        self._handle.close()
