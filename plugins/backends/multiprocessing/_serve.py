"""The worker side of the process pool: what runs in each worker process.

A worker serves requests from the parent over its duplex pipe until told to stop
or the parent goes away (:func:`worker_main`). While a request is in progress, a
thread of the worker shows it is alive (:class:`_Heartbeat`), so the parent can
tell a busy worker from a stopped one.

Messages are pickled bytes: a header of built-in types plus the payload pickled
separately, so a payload that does not unpickle in the worker is reported
against its task index instead of killing the worker.

Worker requests (``(kind, job, index, *payload)``):

* ``("call", job, k, function_bytes | None, task_bytes)``: run ``function(task)``;
  the function is sent once per worker and job, then cached.
* ``("load", job, -1, payload_bytes)``: payload ``(session, [(k, chunk handle)], model,
  settings)``; map each chunk's arrays once (``handle.load()``) and build its loss evaluator.
* ``("evaluate", job, -1, payload_bytes)``: payload ``(session, vector)``; evaluate
  every chunk this worker holds for that session, in chunk order.
* ``("drop", 0, -1, session)``: forget a session's chunks (no reply).
* ``("stop", 0, -1)``: exit (no reply).

Replies: ``("ok", job, k, value)`` or ``("error", job, k, summary, traceback,
exception_bytes | None)``. Signs of life (no reply; may come at any time):
``("alive", job, k)``, and ``("alive", 0, -1)`` once when the worker is ready.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

Message = tuple[Any, ...]


def dumps(value: Any) -> bytes:
    """Pickle ``value`` with the highest protocol (raises whatever pickle raises)."""
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


class _WorkerState:
    """What one worker process holds between requests."""

    def __init__(self) -> None:
        self.function: tuple[int, Callable[[Any], Any]] | None = None
        self.sessions: dict[int, list[tuple[int, Callable[[Any], Any]]]] = {}

    def call(self, job: int, function_bytes: bytes | None, task_bytes: bytes) -> Any:
        if function_bytes is not None:
            self.function = (job, pickle.loads(function_bytes))
        if self.function is None or self.function[0] != job:
            raise RuntimeError(f"worker {os.getpid()} has no function for job {job} (internal error)")
        return self.function[1](pickle.loads(task_bytes))

    def load(self, payload: tuple[int, list[tuple[int, Any]], Any, Any]) -> Message:
        session, chunks, model, settings = payload
        built = self.sessions.setdefault(session, [])
        for k, handle in chunks:
            try:
                built.append((k, model.loss_evaluator(handle.load(), settings)))
            except Exception as exc:  # noqa: BLE001 - reported to the parent with the shard index
                return _error_reply(0, k, exc)
        return ("ok", 0, -1, None)

    def evaluate(self, session: int, vector: Any, chunks: Any = None) -> Message:
        results = []
        wanted = None if chunks is None else set(chunks)
        for k, evaluator in self.sessions.get(session, []):
            if wanted is not None and k not in wanted:
                continue
            try:
                results.append((k, evaluator(vector)))
            except Exception as exc:  # noqa: BLE001
                return _error_reply(0, k, exc)
        return ("ok", 0, -1, results)


    def residuals(self, session: int, vector: Any, requests: Any) -> Message:
        results = []
        for k, evaluator in self.sessions.get(session, []):
            if k not in requests:
                continue
            try:
                results.append((k, evaluator.residuals(vector, requests[k])))
            except Exception as exc:  # noqa: BLE001
                return _error_reply(0, k, exc)
        return ("ok", 0, -1, results)


def _error_reply(job: int, index: int, exc: BaseException) -> Message:
    """Describe ``exc`` for the parent; include the exception itself if it survives pickling."""
    summary = f"{type(exc).__name__}: {exc}"
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    raw: bytes | None = None
    try:
        pickled = dumps(exc)
        pickle.loads(pickled)
        raw = pickled
    except Exception:  # noqa: BLE001 - exceptions with keyword-only constructors do not round-trip
        pass
    return ("error", job, index, summary, text, raw)


def _handle(state: _WorkerState, header: Message) -> Message | None:
    kind, job, index = header[:3]
    try:
        if kind == "call":
            return ("ok", job, index, state.call(job, header[3], header[4]))
        if kind == "load":
            reply = state.load(pickle.loads(header[3]))
        elif kind == "evaluate":
            reply = state.evaluate(*pickle.loads(header[3]))
        elif kind == "residuals":
            reply = state.residuals(*pickle.loads(header[3]))
        elif kind == "drop":
            state.sessions.pop(header[3], None)
            return None
        else:
            raise RuntimeError(f"unknown request {kind!r} (internal error)")
    except Exception as exc:  # noqa: BLE001
        return _error_reply(job, index, exc)
    return (reply[0], job, *reply[2:])


class _Heartbeat:
    """Send ``("alive", job, index)`` every ``interval`` seconds while a request is in progress.

    A thread of its own does it, so a worker deep in a long task still shows that it is
    alive, while a stopped or frozen process shows nothing. Every pipe write of the worker
    goes through this object's lock; :meth:`reply` ends the beats and sends the reply
    under that lock, so no beat follows a reply.
    """

    def __init__(self, conn: Connection, interval: float) -> None:
        self._conn = conn
        self._interval = interval
        self._lock = threading.Lock()
        self._beat: bytes | None = None
        self._send(dumps(("alive", 0, -1)))  # ready
        threading.Thread(target=self._run, name="amp-heartbeat", daemon=True).start()

    def begin(self, job: int, index: int) -> None:
        """Start beating for request ``(job, index)``."""
        with self._lock:
            self._beat = dumps(("alive", job, index))

    def reply(self, raw: bytes | None) -> None:
        """Stop beating; send ``raw`` (a pickled reply) unless ``None``."""
        with self._lock:
            self._beat = None
            if raw is not None:
                self._conn.send_bytes(raw)

    def _send(self, raw: bytes) -> None:
        with self._lock:
            self._conn.send_bytes(raw)

    def _run(self) -> None:
        while True:
            time.sleep(self._interval)
            with self._lock:
                if self._beat is None:
                    continue
                try:
                    self._conn.send_bytes(self._beat)
                except (EOFError, OSError):  # the parent went away: the main thread ends the process
                    return


def worker_main(conn: Connection, cpu: int | None = None, interval: float = 1.0) -> None:
    """Serve requests from the parent until told to stop or the parent goes away.

    SIGINT is ignored: Ctrl-C reaches the whole process group, and the parent
    alone decides to stop the workers. ``cpu``: the core to bind to (``None``: any).
    ``interval``: seconds between signs of life while a request is in progress.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if cpu is not None:
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:  # the core went away (CPU hotplug, a changed cgroup): run unbound
            pass
    state = _WorkerState()
    try:
        heartbeat = _Heartbeat(conn, interval)
    except (EOFError, OSError):
        return
    while True:
        try:
            header = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        if header[0] == "stop":
            return
        heartbeat.begin(header[1], header[2])
        reply = _handle(state, header)
        raw = None
        if reply is not None:
            try:
                raw = dumps(reply)
            except Exception as exc:  # noqa: BLE001 - an unpicklable result is the task's fault
                raw = dumps(_error_reply(reply[1], reply[2], TypeError(f"cannot send the result back: {exc}")))
        try:
            heartbeat.reply(raw)
        except (EOFError, OSError):
            return
