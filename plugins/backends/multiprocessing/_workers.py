"""Process-pool machinery shared by the process backends (``multiprocessing``, ``fortran``).

Parent and workers talk over one duplex pipe per worker. Every request gets
exactly one reply, tagged with the request's job number, so replies of an
abandoned job (another task raised) are recognised and discarded. The parent
waits on every busy worker's pipe *and* process sentinel at once
(:func:`multiprocessing.connection.wait`), so a worker killed by a signal or by
the out-of-memory killer is noticed as soon as the kernel reaps it.

A worker that stops answering (stopped with SIGSTOP or Ctrl-Z, frozen, swapped
out) is told apart from one that is merely busy by a heartbeat: while a request
is in progress, a thread of the worker sends ``("alive", job, index)`` every
``interval`` seconds (the two threads' pipe writes take turns under a lock, and
no beat follows the reply). The parent counts how long each busy worker has been
silent *while the parent was waiting* (a parent suspended itself does not
count); past the pool's ``timeout`` it kills that worker with SIGKILL, stops the
others and raises :class:`~amp_core.errors.BackendError`. A request too large for
the pipe's buffer is written by a helper thread, so a stopped worker cannot
block the parent there either.

The worker side and the message protocol are in :mod:`._serve`.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import pickle
import signal
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from amp_core.errors import AmpError, BackendError
from amp_plugins.backends.multiprocessing._serve import Message, dumps, worker_main

_TICK = 0.5  # seconds between checks for pending signals while waiting for workers
DEFAULT_TIMEOUT = 30.0
"""Seconds a busy worker may stay silent before it counts as stopped (``timeout = None``)."""
STARTUP_TIMEOUT = 120.0
"""Silence allowed, at least, to a worker that has not said it is ready (it imports Python modules)."""
_BUFFERED = 32 * 1024  # requests up to this size fit in an idle worker's pipe buffer: writing never blocks


class _WorkerTraceback(Exception):
    """The traceback of an exception raised in a worker process (attached as ``__cause__``)."""

    def __str__(self) -> str:
        return "\n" + str(self.args[0])


@dataclass(eq=False)
class Worker:
    """One worker process as the parent sees it."""

    process: BaseProcess
    conn: Connection
    busy: int | None = None  # job number of the request in flight
    index: int = -1  # task or first shard index of that request
    label: str = ""  # "task 3" / "shards 1, 3": what a failure names
    answered: bool = False  # sent anything yet (i.e. started up)
    silent: float = 0.0  # seconds the parent has waited on this busy worker without a word from it


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


@contextmanager
def single_threaded_children() -> Iterator[None]:
    """Start workers with one BLAS/OpenMP thread each (one worker per core already fills the
    cores; more threads would oversubscribe them). Variables the user set are kept."""
    added = [name for name in THREAD_VARIABLES if name not in os.environ]
    for name in added:
        os.environ[name] = "1"
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


class WorkerPool:
    """A fixed set of worker processes, started on first use and reused until :meth:`close`.

    Args:
        size: number of worker processes (>= 1).
        method: multiprocessing start method; ``"spawn"`` (default) or ``"forkserver"``.
        cpus: per worker, the core to bind it to (``None``: unbound); default all unbound.
        timeout: seconds a busy worker may stay silent (no reply, no sign of life) before it
            counts as stopped; a worker still starting gets at least :data:`STARTUP_TIMEOUT`.
            ``math.inf``: never.
    """

    def __init__(
        self, size: int, method: str = "spawn", cpus: list[int | None] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.size = size
        self.cpus = cpus or [None] * size
        self.timeout = timeout
        self.interval = min(1.0, timeout / 10)  # heartbeat: several per timeout, at most one a second
        self.generation = 0  # bumped by every shutdown; sessions of older generations are dead
        self._context = multiprocessing.get_context(method)
        self._workers: list[Worker] = []
        self._job = 0
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def pids(self) -> list[int]:
        """Process ids of the running workers (empty before the first use)."""
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    def ensure_started(self) -> None:
        """Start ``size`` worker processes unless they are running."""
        if self._workers:
            return
        try:
            with _sigint_blocked():
                self._start_all()
        except BaseException as exc:
            self.close()
            if isinstance(exc, Exception):
                raise BackendError(
                    f"cannot start {self.size} worker processes: {exc}", stage="spawn"
                ) from exc
            raise
        self._finalizer = weakref.finalize(self, _shutdown, list(self._workers))

    def _start_all(self) -> None:
        with single_threaded_children():
            for i in range(self.size):
                parent, child = self._context.Pipe(duplex=True)
                name = f"amp-worker-{i}"
                process = self._context.Process(  # type: ignore[attr-defined]
                    target=worker_main, args=(child, self.cpus[i], self.interval), name=name
                )
                process.daemon = True
                process.start()
                child.close()
                self._workers.append(Worker(process, parent))

    def close(self) -> None:
        """Stop every worker: idle ones politely, busy ones with SIGTERM (idempotent)."""
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        workers, self._workers = self._workers, []
        if workers:
            self.generation += 1
            _shutdown(workers)

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Shut the pool down if the parent is interrupted (Ctrl-C) while talking to workers."""
        try:
            yield
        except Exception:
            raise
        except BaseException:
            self.close()
            raise

    def new_job(self) -> int:
        """Return a fresh job number."""
        self._job += 1
        return self._job

    def idle(self) -> list[Worker]:
        """Return the workers with no request in flight."""
        return [w for w in self._workers if w.busy is None]

    @property
    def workers(self) -> list[Worker]:
        """The running workers, in start order."""
        return list(self._workers)

    def send(self, worker: Worker, header: Message, *, stage: str, index: int, label: str) -> None:
        """Send one request to an idle worker; it will answer with one reply.

        Raises:
            BackendError: the worker died, or did not take the request within the timeout.
        """
        assert worker.busy is None, "request sent to a busy worker"
        worker.busy, worker.index, worker.label, worker.silent = header[1], index, label, 0.0
        raw = dumps(header)
        if len(raw) <= _BUFFERED:
            try:
                worker.conn.send_bytes(raw)
            except OSError as exc:
                raise self._died(worker, stage) from exc
            return
        failure: list[BaseException] = []

        def write() -> None:
            try:
                worker.conn.send_bytes(raw)
            except BaseException as exc:  # noqa: BLE001 - reported by the waiting thread
                failure.append(exc)

        writer = threading.Thread(target=write, name="amp-send", daemon=True)
        writer.start()
        limit = self._limit(worker)
        writer.join(None if math.isinf(limit) else limit)
        if writer.is_alive():
            raise self._stopped(worker, stage, f"it did not take a request within {limit:g} s", writer)
        if failure:
            raise self._died(worker, stage) from failure[0]

    def send_quietly(self, header: Message) -> None:
        """Send a request that has no reply (``drop``) to every worker; ignore dead pipes."""
        for worker in self._workers:
            try:
                worker.conn.send_bytes(dumps(header))
            except OSError:
                pass

    def replies(self, job: int, stage: str) -> list[tuple[int, Any]]:
        """Wait until some busy worker answers; return the ``(index, value)`` answers of ``job``.

        Answers of older jobs (abandoned after an error) are discarded. An error answer
        raises; a dead worker, or one silent for longer than the timeout, shuts the pool
        down and raises.

        Raises:
            BackendError: a worker raised, died, stopped answering or sent something unreadable.
        """
        out: list[tuple[int, Any]] = []
        while True:
            busy: dict[Any, Worker] = {}
            for worker in self._workers:
                if worker.busy is not None:
                    busy[worker.conn] = worker
                    busy[worker.process.sentinel] = worker
            if not busy:
                return out
            began = time.monotonic()
            # Short slices: a Ctrl-C caught by another thread is raised here, and silences are checked.
            ready = wait(list(busy), timeout=self._next_check(set(busy.values())))
            # Time waited counts towards silences; a parent that was itself suspended (Ctrl-Z)
            # or starved of CPU counts at most a little more than one slice.
            waited = min(time.monotonic() - began, 2 * _TICK)
            answered = False
            heard = {busy[handle] for handle in ready}
            for ready_handle in ready:
                worker = busy[ready_handle]
                if worker.busy is None:  # already handled through its other handle
                    continue
                reply = self._receive(worker, stage, ready_handle is worker.conn)
                if reply is None:  # signs of life only
                    continue
                worker.busy, answered = None, True
                if reply[1] != job:
                    continue
                if reply[0] == "error":
                    raise _task_error(stage, worker, reply)
                out.append((worker.index, reply[3]))
            for worker in set(busy.values()) - heard:
                worker.silent += waited
                if worker.busy is not None and worker.silent > self._limit(worker):
                    raise self._stopped(worker, stage, f"no sign of life for {worker.silent:.1f} s")
            if answered:
                return out

    def _limit(self, worker: Worker) -> float:
        """Return the silence after which busy ``worker`` counts as stopped (seconds)."""
        return self.timeout if worker.answered else max(self.timeout, STARTUP_TIMEOUT)

    def _next_check(self, workers: set[Worker]) -> float:
        """Return how long to wait before silences must be checked again (seconds)."""
        due = min(self._limit(w) - w.silent for w in workers)
        return max(0.01, min(_TICK, due + 0.01))

    def drain(self, workers: list[Worker], stage: str) -> None:
        """Wait until ``workers`` have answered (and discard) whatever they still owe."""
        while any(w.busy is not None for w in workers):
            self.replies(-1, stage)

    def _receive(self, worker: Worker, stage: str, readable: bool = False) -> Message | None:
        """Read what ``worker`` sent: return its reply, or ``None`` when it sent only signs of life.

        ``readable``: :func:`wait` said the pipe has data; otherwise the process ended.

        Raises:
            BackendError: the worker died (nothing left to read) or sent something unreadable.
        """
        try:
            while readable or worker.conn.poll():
                readable = False
                message: Message = pickle.loads(worker.conn.recv_bytes())
                worker.answered, worker.silent = True, 0.0
                if message[0] != "alive":
                    return message
        except (EOFError, OSError):
            pass
        except Exception as exc:  # noqa: BLE001 - a reply that does not unpickle
            raise BackendError(
                f"stage {stage!r}, {worker.label}: the result sent by worker process {worker.process.pid} "
                f"cannot be read: {type(exc).__name__}: {exc}",
                stage=stage,
                shard=worker.index,
            ) from exc
        else:
            if worker.process.exitcode is None:
                return None
        raise self._died(worker, stage)

    def _stopped(self, worker: Worker, stage: str, why: str, writer: threading.Thread | None = None) -> BackendError:
        """Kill ``worker`` (SIGKILL ends even a stopped process), shut the pool down, describe it.

        ``writer``: a thread still writing a request to the worker; its write fails (broken
        pipe) once the worker is dead, and it is waited for before the pipe is closed.
        """
        pid = worker.process.pid
        state = _process_state(pid)
        worker.process.kill()
        worker.process.join(5)
        if writer is not None:
            writer.join(5)
        self.close()
        return BackendError(
            f"stage {stage!r}, {worker.label}: worker process {pid} stopped answering ({why}{state}); "
            f"it was killed and all workers were stopped. A busy worker shows it is alive every "
            f"{self.interval:g} s; if this machine is so overloaded that it cannot, raise the timeout "
            f"of the [backend] table (now {self.timeout:g} s).",
            stage=stage,
            shard=worker.index,
        )

    def _died(self, worker: Worker, stage: str) -> BackendError:
        """Shut the pool down and describe how ``worker`` ended."""
        worker.process.join(timeout=5)
        pid, code = worker.process.pid, worker.process.exitcode
        self.close()
        return BackendError(
            f"stage {stage!r}, {worker.label}: worker process {pid} {_describe_exit(code)}; "
            f"all workers were stopped. {_hint(code, worker.answered)}",
            stage=stage,
            shard=worker.index,
        )


@contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Block SIGINT in this thread while starting workers.

    Started processes inherit the blocked SIGINT, so a Ctrl-C while they import
    cannot kill them with a traceback; the parent gets the signal as soon as the
    mask is restored and then stops them.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _task_error(stage: str, worker: Worker, reply: Message) -> Exception:
    """Turn an error reply into the exception to raise in the parent."""
    _, _, index, summary, text, raw = reply
    index = worker.index if index < 0 else index
    if raw is not None:
        exc = pickle.loads(raw)
        if isinstance(exc, BackendError):  # a task's own account of its failure (names its images)
            summary = str(exc)
        elif isinstance(exc, AmpError):  # deliberate errors (DataError, ...) pass through, as in serial
            exc.__cause__ = _WorkerTraceback(text)
            return exc
    label = worker.label if index == worker.index else f"shard {index}"
    return BackendError(
        f"stage {stage!r}, {label} failed in worker process {worker.process.pid}: {summary}\n"
        f"Worker traceback:\n{text}",
        stage=stage,
        shard=index,
    )


def _process_state(pid: int | None) -> str:
    """Return why process ``pid`` is not running, as ``/proc`` tells (Linux), or ``""``."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""
    return {
        "T": "; the process is stopped, e.g. by SIGSTOP or Ctrl-Z",
        "t": "; the process is stopped by a debugger",
        "D": "; the process waits on a disk or network file system",
    }.get(state, "")


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name} (exit code {code})"
    return f"exited unexpectedly with code {code}"


def _hint(code: int | None, answered: bool) -> str:
    if not answered and code is not None and code > 0:
        return (
            "It died while starting: if you run a script, guard its entry point with "
            "`if __name__ == '__main__':` (workers are started with 'spawn' and import the main module)."
        )
    if code == -signal.SIGKILL:
        return "SIGKILL often means the system ran out of memory: use fewer cores or smaller shards."
    return "Check the worker's output above and the system log."


def _shutdown(workers: list[Worker]) -> None:
    """Stop ``workers`` and reap them; never leaves a process behind."""
    for worker in workers:
        if worker.process.exitcode is None:
            if worker.busy is None:
                try:
                    worker.conn.send_bytes(dumps(("stop", 0, -1)))
                except OSError:
                    _terminate(worker.process)
            else:
                _terminate(worker.process)
        worker.conn.close()
    deadline = time.monotonic() + 2.0
    for worker in workers:
        worker.process.join(max(0.0, deadline - time.monotonic()))
        if worker.process.exitcode is None:
            worker.process.kill()
            worker.process.join(5.0)


def _terminate(process: BaseProcess) -> None:
    """Send SIGTERM, then SIGCONT: a stopped process acts on SIGTERM only once continued."""
    process.terminate()
    try:
        os.kill(process.pid, signal.SIGCONT)  # type: ignore[arg-type]
    except (OSError, TypeError):  # already gone
        pass
