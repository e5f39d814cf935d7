"""The ``multiprocessing`` backend: every stage in a pool of worker processes.

Workers are started with ``spawn`` on first use and reused by every later
:meth:`~Multiprocessing.map` and :meth:`~Multiprocessing.start` until
:meth:`~Multiprocessing.close`. Fingerprinting and reshaping hand task ``k`` to the
next free worker; training keeps each chunk's memory-mapped arrays and loss
evaluator resident in one worker (chunks placed by cost with
:func:`amp_core.chunks.assign`) and sends only the parameter vector per optimiser
step. Results always come back in task or chunk order, and chunk boundaries do not
depend on the worker count, so every core count gives the numbers of ``serial``
bit for bit.

Scripts that use this backend must guard their entry point with
``if __name__ == "__main__":`` (spawned workers import the main module).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from amp_core import BackendEntry, ChunkHandle, detect_cores, hookimpl
from amp_core.chunks import assign
from amp_core.data import LossParts, LossSettings
from amp_core.errors import BackendError
from amp_plugins.backends.multiprocessing._workers import DEFAULT_TIMEOUT, Worker, WorkerPool, dumps

T = TypeVar("T")
R = TypeVar("R")

OVERSUBSCRIPTION = 4
"""Workers per detected core allowed without ``oversubscribe = true``."""


@dataclass(frozen=True)
class MultiprocessingParams:
    """Settings of the process backends.

    Attributes:
        cores: number of worker processes; ``None`` uses every core this process
            may run on (``os.sched_getaffinity``). More than :data:`OVERSUBSCRIPTION`
            (4) workers per such core is refused unless ``oversubscribe`` is true: each
            worker is a process with its own memory, and they would only share the cores.
        pin: bind worker ``k`` to the ``k``-th core this process may run on (Linux).
            ``None`` (default) pins when the workers fill every such core, the usual
            case on a cluster node or inside a batch job's CPU set; without pinning
            the scheduler sometimes queues two workers on one core for a whole step.
            Set ``False`` when other jobs share these cores.
        compiled: run the plugins' compiled kernels in the workers.
        timeout: seconds a busy worker may stay silent before the run ends with a
            :class:`~amp_core.errors.BackendError` saying it stopped answering (a worker
            stopped with SIGSTOP, frozen or swapped out). A busy worker is not silent: it
            shows it is alive every second (every ``timeout / 10`` s for a timeout below
            10 s), however long its task takes. ``None`` (default): 30 s. At least 1;
            ``inf`` waits forever. A worker that is still starting gets at least 120 s.
        oversubscribe: allow more than 4 workers per core (see ``cores``).
    """

    cores: int | None = None
    pin: bool | None = None
    compiled: bool = False
    timeout: float | None = None
    oversubscribe: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.compiled, bool):
            raise ValueError(f"compiled must be true or false, got {self.compiled!r}")
        if self.pin is not None and not isinstance(self.pin, bool):
            raise ValueError(f"pin must be true, false or left out (automatic); got {self.pin!r}")
        if not isinstance(self.oversubscribe, bool):
            raise ValueError(f"oversubscribe must be true or false, got {self.oversubscribe!r}")
        if self.timeout is not None and (
            isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float))
            or not self.timeout >= 1  # also refuses NaN
        ):
            raise ValueError(
                f"timeout must be a number of seconds >= 1 (inf: never), or left out for "
                f"{DEFAULT_TIMEOUT:g} s; got {self.timeout!r}"
            )
        if self.cores is None:
            return
        if isinstance(self.cores, bool) or not isinstance(self.cores, int):
            raise ValueError(
                f"cores must be a whole number >= 1, or left out to use all cores; got {self.cores!r}"
            )
        if self.cores < 1:
            raise ValueError(
                f"cores must be >= 1 (or left out to use all {detect_cores()} cores); got {self.cores}"
            )
        detected = detect_cores()
        if self.cores > OVERSUBSCRIPTION * detected and not self.oversubscribe:
            raise ValueError(
                f"cores = {self.cores} is more than {OVERSUBSCRIPTION} workers per core: this process may "
                f"run on {detected} core(s). Every worker is a process with its own memory, and they would "
                f"only share those cores. Use cores = {OVERSUBSCRIPTION * detected} or fewer (leave cores "
                f"out to use all {detected}), or set oversubscribe = true to start {self.cores} workers anyway"
            )

    @property
    def timeout_seconds(self) -> float:
        """The silence (seconds) after which a busy worker counts as stopped (``timeout`` resolved)."""
        return DEFAULT_TIMEOUT if self.timeout is None else float(self.timeout)


def worker_cpus(cores: int, pin: bool | None) -> list[int | None]:
    """Return the core each of ``cores`` workers is bound to (``None``: not bound).

    See ``MultiprocessingParams.pin``; cores are those this process may run on, in order.
    """
    if not hasattr(os, "sched_setaffinity"):
        return [None] * cores
    allowed = sorted(os.sched_getaffinity(0))
    if pin is None:
        pin = cores == len(allowed)
    return [allowed[k % len(allowed)] for k in range(cores)] if pin else [None] * cores


def _pickled(value: Any, stage: str, index: int, what: str) -> bytes:
    try:
        return dumps(value)
    except Exception as exc:  # noqa: BLE001 - pickle raises many types
        raise BackendError(
            f"stage {stage!r}, shard {index}: cannot send the {what} to a worker process "
            f"({type(exc).__name__}: {exc}). Functions, tasks and models must pickle: use "
            "module-level functions and classes, not lambdas or local definitions.",
            stage=stage,
            shard=index,
        ) from exc


def _label(chunks: Sequence[int]) -> str:
    return ("chunk " if len(chunks) == 1 else "chunks ") + ", ".join(map(str, chunks))


def _task_label(index: int, task: Any) -> str:
    """Name task ``index`` in messages: ``task 3``, plus the task's own ``label`` when it has one."""
    label = getattr(task, "label", None)
    return f"task {index} ({label})" if isinstance(label, str) and label else f"task {index}"


class PoolSession:
    """Resident chunk evaluators inside the pool's workers (a ``TrainingSession``)."""

    def __init__(
        self, pool: WorkerPool, session: int, plan: list[tuple[Worker, list[int]]], n_chunks: int
    ) -> None:
        self._pool = pool
        self._generation = pool.generation
        self._session = session
        self._plan = plan
        self._n_chunks = n_chunks
        self._closed = False

    subsets = True
    """:meth:`evaluate` takes ``chunks``: only the workers holding them work."""

    def evaluate(self, vector: NDArray[np.float64], chunks: Sequence[int] | None = None) -> list[LossParts]:
        """Send ``vector`` (n_parameters,) to the workers; return the chunks' parts in chunk order.

        Args:
            vector: the parameters.
            chunks: indices of the chunks to evaluate (``None``: all).

        Raises:
            BackendError: a worker raised or died, or the session is closed.
        """
        self._check_open()
        pool = self._pool
        job = pool.new_job()
        parts: list[Any] = [None] * self._n_chunks
        wanted = sorted(set(chunks)) if chunks is not None else None
        plan = self._plan if wanted is None else [(w, s) for w, s in self._plan if set(s) & set(wanted)]
        with pool.guard():
            pool.drain([w for w, _ in self._plan], "loss")
            request = (self._session, np.asarray(vector, dtype=np.float64))
            payload = dumps(request if wanted is None else (*request, wanted))
            for worker, shards in plan:
                header = ("evaluate", job, -1, payload)
                pool.send(worker, header, stage="loss", index=shards[0], label=_label(shards))
            waiting = len(plan)
            while waiting:
                answers = pool.replies(job, "loss")
                for _, pairs in answers:
                    for k, part in pairs:
                        parts[k] = part
                waiting -= len(answers)
        return parts if wanted is None else [parts[k] for k in wanted]

    def residuals(self, vector: NDArray[np.float64], requests: Mapping[int, Any]) -> list[Any]:
        """Return each asked chunk's ``evaluator.residuals(vector, request)`` (``RESIDUAL_JACOBIAN``), in chunk order.

        Only the workers holding those chunks work; each answers for all of its chunks at once.

        Raises:
            BackendError: a worker raised or died, or the session is closed.
        """
        self._check_open()
        pool = self._pool
        job = pool.new_job()
        answers: dict[int, Any] = {}
        plan = [(w, [k for k in s if k in requests]) for w, s in self._plan]
        plan = [(w, s) for w, s in plan if s]
        with pool.guard():
            pool.drain([w for w, _ in self._plan], "residuals")
            for worker, shards in plan:
                payload = dumps((self._session, np.asarray(vector, dtype=np.float64), {k: requests[k] for k in shards}))
                pool.send(worker, ("residuals", job, -1, payload), stage="residuals", index=shards[0],
                          label=_label(shards))
            waiting = len(plan)
            while waiting:
                replies = pool.replies(job, "residuals")
                for _, pairs in replies:
                    answers.update(pairs)
                waiting -= len(replies)
        return [answers[k] for k in sorted(requests)]

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError(
                "this training session is closed; start a new one with backend.start()", stage="loss"
            )
        if self._pool.generation != self._generation:
            raise BackendError(
                "the workers of this training session were stopped (the backend was closed or a worker "
                "failed earlier); start a new session with backend.start()",
                stage="loss",
            )

    def close(self) -> None:
        """Let the workers drop this session's arrays and evaluators (idempotent)."""
        if not self._closed and self._pool.generation == self._generation:
            self._pool.send_quietly(("drop", 0, -1, self._session))
        self._closed = True

    def __enter__(self) -> PoolSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Multiprocessing:
    """Run stages in ``cores`` worker processes (started once, reused, stopped by :meth:`close`).

    Other process backends subclass this and change class attributes only: ``name``,
    ``compiled`` (read by the pipeline, which hands the workers the plugins' compiled
    implementations) and ``start_method`` (``"spawn"`` or ``"forkserver"``).
    """

    name = "multiprocessing"
    start_method = "spawn"

    def __init__(self, params: MultiprocessingParams | None = None) -> None:
        self.params = params or MultiprocessingParams()
        self.compiled = self.params.compiled
        self.cores = self.params.cores or detect_cores()
        self._pool = WorkerPool(
            self.cores, self.start_method, worker_cpus(self.cores, self.params.pin), self.params.timeout_seconds
        )
        self._sessions = itertools.count()

    def __reduce__(self) -> tuple[Any, ...]:
        # A pickled backend is a fresh, unstarted one with the same settings.
        return (type(self), (self.params,))

    @property
    def pids(self) -> list[int]:
        """Process ids of the running workers (empty until first use and after :meth:`close`)."""
        return self._pool.pids

    def map(
        self,
        function: Callable[[T], R],
        tasks: Sequence[T],
        *,
        stage: str,
        progress: Callable[[int], None] | None = None,
    ) -> list[R]:
        """Run ``function(task)`` in the workers, task ``k`` on the next free one; return results in task order.

        Failures name the task by index, followed by the task's ``label`` attribute when it
        has a string one (the pipeline's tasks name their images or chunk).

        Raises:
            BackendError: a task raised (the pool stays usable) or a worker died
                (the pool is stopped and restarted on next use).
        """
        if not tasks:
            return []
        pool = self._pool
        pool.ensure_started()
        job = pool.new_job()
        function_bytes = _pickled(function, stage, 0, "function")
        results: list[Any] = [None] * len(tasks)
        primed: set[int] = set()  # workers that already hold this job's function
        sent = done = 0
        with pool.guard():
            while done < len(tasks):
                for worker in pool.idle()[: len(tasks) - sent]:
                    task = _pickled(tasks[sent], stage, sent, "task")
                    header = ("call", job, sent, None if id(worker) in primed else function_bytes, task)
                    pool.send(worker, header, stage=stage, index=sent, label=_task_label(sent, tasks[sent]))
                    primed.add(id(worker))
                    sent += 1
                for k, value in pool.replies(job, stage):
                    results[k] = value
                    done += 1
                    if progress is not None:
                        progress(done)
        return results

    def start(self, model: Any, chunks: Sequence[ChunkHandle], settings: LossSettings) -> PoolSession:
        """Load each chunk (its memory-mapped arrays and loss evaluator) in one worker, once.

        Chunks are placed by cost (:func:`amp_core.chunks.assign`); the reduction order
        is the chunk order whatever the placement.

        Raises:
            BackendError: a chunk failed to load or a worker died.
        """
        pool = self._pool
        pool.ensure_started()
        session = next(self._sessions)
        workers = pool.workers
        placement = assign([c.cost for c in chunks], len(workers))
        plan = [(workers[i], ks) for i, ks in enumerate(placement) if ks]
        job = pool.new_job()
        with pool.guard():
            pool.drain([w for w, _ in plan], "start")
            try:
                for worker, ks in plan:
                    load = [(k, chunks[k]) for k in ks]
                    payload = _pickled((session, load, model, settings), "start", ks[0], "model")
                    pool.send(
                        worker, ("load", job, -1, payload), stage="start", index=ks[0], label=_label(ks)
                    )
                waiting = len(plan)
                while waiting:
                    waiting -= len(pool.replies(job, "start"))
            except Exception:
                pool.send_quietly(("drop", 0, -1, session))
                raise
        return PoolSession(pool, session, plan, len(chunks))

    def close(self) -> None:
        """Stop every worker process (idempotent; the next use starts new ones)."""
        self._pool.close()

    def __enter__(self) -> Multiprocessing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@hookimpl
def amp_backends() -> list[BackendEntry]:
    """Register ``multiprocessing``."""
    return [
        BackendEntry(
            name="multiprocessing",
            params=MultiprocessingParams,
            factory=Multiprocessing,
            summary="Run every stage in worker processes, one per core.",
        )
    ]
