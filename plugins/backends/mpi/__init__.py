"""The ``mpi`` backend: one rank per core, across nodes, on mpi4py.

Launch the same program on every rank (``mpiexec -n 4 amp train run.toml``, or
``srun amp train run.toml``): the Python API is collective. Every rank calls the same
``train``, ``evaluate_loss`` or ``loss_function`` in the same order; rank 0 drives
(optimiser, log, files, return values) and the others serve it.

Placement: :meth:`Mpi.map` runs task ``k`` on one rank (chunk tasks by cost with
:func:`amp_core.chunks.assign`, so a chunk's arrays are built on the rank that keeps
them; other tasks round robin) and returns every result to every rank in task order.
Results are small (file names, chunk handles): fingerprints travel through the shared
file system (the content-addressed store), never through MPI. :meth:`Mpi.start` keeps
each chunk's evaluator on its rank for the whole run; per optimiser step rank 0 sends
the parameter vector and receives one ``LossParts`` per chunk, which the core adds in
chunk order, so any rank count gives the numbers of ``serial`` bit for bit. Both travel
as raw float64 buffers (uppercase mpi4py calls, no pickling): the vector as
``[session, vector]``, each rank's records as :func:`pack` lays them out; every other
message is a small pickled tuple whose first item is its kind.

Faults: an exception on any rank comes back to rank 0 as an error record and is raised
there as :class:`~amp_core.BackendError` naming rank, stage and chunk; the other ranks
are told to stop, and when rank 0's process ends after such a failure it calls
``MPI_Abort`` so nothing hangs. A rank killed by a signal ends the job through
``mpiexec``. Every wait polls with short sleeps, so ranks oversubscribing cores do not
spin against each other.

mpi4py is imported inside the factory: this module imports without it, and
``amp plugins`` then shows the backend as unavailable.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import socket
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from amp_core import BackendEntry, ChunkHandle, hookimpl, memory
from amp_core.chunks import assign, detect_cores
from amp_core.data import LossParts, LossSettings
from amp_core.errors import AmpError, BackendError, ConfigError
from amp_core.reshape import verify_arrays
from amp_plugins.backends.mpi._exit import watch_exit
from amp_plugins.backends.mpi._wire import LOSS_TAG, RAW_KINDS, TAG, VECTOR_TAG, pack, unpack

T = TypeVar("T")
R = TypeVar("R")

INSTALL = 'mpi4py is not installed: pip install mpi4py mpich (or, in amp-core\'s source folder, pip install ".[mpi]")'
"""The probe's answer without mpi4py. amp-core is installed from its source folder (it is not on a
package index), so the hint names the extra as ``".[mpi]"``, like the ``plot`` hint."""
LAUNCH_VARIABLES = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "HYDRA_CONTROL_FD")


@dataclass(frozen=True)
class MpiParams:
    """Settings of the MPI backend.

    Attributes:
        compiled: run the plugins' compiled kernels inside the ranks.
        scratch: a node-local folder (``/tmp``, ``$TMPDIR``, ``/local/scratch``, ...)
            each rank copies its chunks' arrays to before training, so that the arrays
            mapped at every step are read from a local disk rather than the shared
            file system. ``None``: map them where they were built (the run directory).
    """

    compiled: bool = False
    scratch: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.compiled, bool):
            raise ValueError(f"compiled must be true or false, got {self.compiled!r}")
        if self.scratch is not None and (not isinstance(self.scratch, str) or not self.scratch.strip()):
            raise ValueError(f"scratch must be a folder path or left out, got {self.scratch!r}")


def probe() -> str | None:
    """Return why the backend cannot run here (mpi4py missing), or ``None``; never starts MPI."""
    if importlib.util.find_spec("mpi4py") is None:
        return INSTALL
    return None


@dataclass(frozen=True)
class _Failure:
    """What went wrong on a rank: sent to rank 0 instead of results."""

    rank: int
    host: str
    stage: str
    index: int | None
    text: str
    error: BaseException | None = None  # an AmpError that pickles, re-raised as itself

    def raise_(self) -> None:
        where = f"rank {self.rank} ({self.host}), stage {self.stage!r}" + (
            f", {'chunk' if self.stage in ('start', 'loss', 'reshape') else 'task'} {self.index}"
            if self.index is not None else "")
        if self.error is not None and isinstance(self.error, AmpError) and not isinstance(self.error, BackendError):
            try:
                again = type(self.error)(f"{where}: {self.error}")
            except Exception:  # noqa: BLE001 - an error class with other arguments: report it as text
                again = None
            if again is not None:
                raise again from self.error
        raise BackendError(f"{where} failed: {self.text}", stage=self.stage, chunk=self.index)


class _Stopped(Exception):
    """Rank 0 told this rank to stop (it failed and will abort the job)."""


class Mpi:
    """Run every stage on the ranks of ``MPI_COMM_WORLD``; rank 0 drives.

    Attributes:
        rank, size: this process's rank and the number of ranks.
        drives: ``True`` on rank 0 only (the core skips the optimiser, logs and files elsewhere).
        cores: the number of ranks.
        hosts: host name of every rank, in rank order.
    """

    name = "mpi"

    def __init__(self, params: MpiParams | None = None) -> None:
        from mpi4py import MPI

        self.params = params or MpiParams()
        self.compiled = self.params.compiled
        self._mpi = MPI
        self.comm = MPI.COMM_WORLD
        self.rank: int = self.comm.Get_rank()
        self.size: int = self.comm.Get_size()
        self.cores = self.size
        self.drives = self.rank == 0
        self._failed = False
        self._open = False  # a collective call since the last clean close
        self._left: set[int] = set()  # on rank 0: ranks that failed outside the backend
        self._exit_notice = False  # on other ranks: tell rank 0 when this process ends (it failed)
        self._sessions = 0  # sessions started so far (the same count on every rank: start is collective)
        self._pending: dict[int, list[tuple[int, Callable[[NDArray[np.float64]], LossParts]]]] = {}
        self.serve_later = False  # on serving ranks: start returns at once; serve() serves every open session
        host = socket.gethostname()
        self.hosts: list[str] = self.comm.allgather(host)
        self._affinity: list[list[int]] = self.comm.allgather(_affinity())
        watch_exit(self)

    # ------------------------------------------------------------------ messages

    def _send(self, message: Any, dest: int) -> None:
        self.comm.send(message, dest=dest, tag=TAG)

    def _send_raw(self, buffer: NDArray[np.float64], dests: Sequence[int], tag: int) -> None:
        """Send one float64 buffer to every rank in ``dests`` at once (no pickling), and wait until sent."""
        requests = [self.comm.Isend([buffer, self._mpi.DOUBLE], dest=dest, tag=tag) for dest in dests]
        self._mpi.Request.Waitall(requests)

    def _receive(self, source: int) -> tuple[int, Any]:
        """Wait (polling, sleeping between polls) for a message; return (sender, message).

        A raw message (:data:`RAW_KINDS`) comes back as ``(kind, float64 buffer)``."""
        status = self._mpi.Status()
        t0 = time.perf_counter()
        while not self.comm.Iprobe(source=source, tag=self._mpi.ANY_TAG, status=status):
            time.sleep(0.0 if time.perf_counter() - t0 < 2e-3 else 5e-4)
        return self._take(status)

    def _take(self, status: Any) -> tuple[int, Any]:
        """Receive the message ``status`` describes (found by ``Iprobe``); return (sender, message)."""
        sender, tag = status.Get_source(), status.Get_tag()
        if tag not in RAW_KINDS:
            return sender, self.comm.recv(source=sender, tag=tag)
        buffer = np.empty(status.Get_count(self._mpi.DOUBLE), dtype=np.float64)
        self.comm.Recv([buffer, self._mpi.DOUBLE], source=sender, tag=tag)
        return sender, (RAW_KINDS[tag], buffer)

    def _from_root(self, expected: str) -> Any:
        """On a serving rank: the next message of kind ``expected`` from rank 0."""
        _, message = self._receive(0)
        self._check_root(message, expected)
        if message[0] != expected:
            raise BackendError(f"rank {self.rank}: rank 0 sent {message[0]!r} while this rank expected "
                               f"{expected!r}; the ranks do not run the same program", stage=expected)
        return message[1]

    def _check_root(self, message: Any, waiting: str) -> None:
        """On a serving rank: stop when rank 0 failed, or closes while this rank waits for ``waiting``."""
        if message[0] == "close":
            self._send(("away", waiting), 0)
        if message[0] in ("abort", "close"):
            raise _Stopped

    def _gather(self, kind: str, stage: str, stale: tuple[str, ...] = ()) -> dict[int, Any]:
        """On rank 0: one ``kind`` reply from every other rank; raise on an error record.

        Replies of a kind in ``stale`` are dropped (answers to an evaluation rank 0 left, e.g.
        interrupted by Ctrl-C or SIGTERM, which reach every rank)."""
        replies: dict[int, Any] = {}
        while len(replies) < self.size - 1:
            sender, message = self._receive(self._mpi.ANY_SOURCE)
            if message[0] in stale:
                continue
            if message[0] == "failed":
                self._fail()
                message[1].raise_()
            if message[0] != kind:
                self._fail()
                if message[0] == "closed":
                    self._left.add(sender)
                    what = "left the run (it failed outside the backend; see its error output)"
                elif message[0] == "away":
                    what = f"was waiting for {message[1]!r} (rank 0 failed outside the backend)"
                else:
                    what = f"sent {message[0]!r}"
                raise BackendError(f"rank {sender} ({self.hosts[sender]}) {what} while rank 0 was in "
                                   f"stage {stage!r}", stage=stage)
            replies[sender] = message[1]
        return replies

    def _fail(self) -> None:
        """Mark the run failed on rank 0 and tell every other rank to stop (once)."""
        if not self._failed:
            self._failed = True
            for dest in range(1, self.size):
                self._send(("abort", None), dest)

    def _failure(self, stage: str, index: int | None, exc: BaseException) -> _Failure:
        error = exc if isinstance(exc, AmpError) and _pickles(exc) else None
        text = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        return _Failure(self.rank, self.hosts[self.rank], stage, index, text, error)

    def _serving(self, work: Callable[[], Any]) -> Any:
        """Run a serving rank's part; a stop from rank 0 parks the rank until the job is aborted."""
        try:
            return work()
        except _Stopped:
            while True:  # rank 0 failed, reports it and aborts the job when its process ends
                time.sleep(0.1)

    # ------------------------------------------------------------------ the backend contract

    def map(self, function: Callable[[T], R], tasks: Sequence[T], *, stage: str,
            progress: Callable[[int], None] | None = None) -> list[R]:
        """Run the tasks across the ranks (collective); return every result, in task order, on every rank.

        Tasks with a ``cost`` (chunk tasks) are placed like :meth:`start` places chunks.

        Raises:
            BackendError: a task raised on some rank (rank 0 raises; the others stop).
        """
        self._open = True
        costs = [getattr(t, "cost", None) for t in tasks]
        if tasks and all(isinstance(c, float) for c in costs):
            placement = assign([float(c) for c in costs], self.size)  # type: ignore[arg-type]
        else:
            placement = [list(range(r, len(tasks), self.size)) for r in range(self.size)]
        mine: dict[int, Any] = {}
        failure: _Failure | None = None
        for k in placement[self.rank]:
            try:
                mine[k] = function(tasks[k])
            except Exception as exc:  # noqa: BLE001 - reported to rank 0
                failure = self._failure(stage, k, exc)
                break
            if progress is not None and self.drives:
                progress(len(mine))
        if not self.drives:
            self._send(("failed", failure) if failure else ("map", mine), 0)
            return self._serving(lambda: self._from_root("results"))  # type: ignore[no-any-return]
        if failure is not None:
            self._fail()
            failure.raise_()
        results: list[Any] = [None] * len(tasks)
        for k, value in mine.items():
            results[k] = value
        for part in self._gather("map", stage).values():
            for k, value in part.items():
                results[k] = value
        if progress is not None:
            progress(len(tasks))
        for dest in range(1, self.size):
            self._send(("results", results), dest)
        return results

    def gather(self, value: Any, stage: str) -> list[Any]:
        """Return every rank's ``value`` (small, picklable), in rank order, on every rank (collective).

        Raises:
            BackendError: on rank 0, when a rank sent something else (it failed outside the backend).
        """
        self._open = True
        if not self.drives:
            self._send(("gathered", value), 0)
            return self._serving(lambda: self._from_root("gathered"))  # type: ignore[no-any-return]
        values = [value] + [None] * (self.size - 1)
        for sender, other in self._gather("gathered", stage).items():
            values[sender] = other
        for dest in range(1, self.size):
            self._send(("gathered", values), dest)
        return values

    def memory_nodes(self, chunk_costs: Sequence[float]) -> list[tuple[str, list[int], int]]:
        """Per host: its name and ranks, the chunks its ranks hold (placed as :meth:`start` places them)
        and its memory budget (the smallest its ranks report); the same list on every rank (collective).

        Raises:
            ConfigError: a rank's budget setting (``AMP_MAX_MEMORY``) is not a size; every rank raises it.
        """
        try:
            mine: int | str = memory.budget()
        except ConfigError as exc:
            mine = f"rank {self.rank} ({self.hosts[self.rank]}): {exc}"
        budgets = self.gather(mine, "memory")
        for value in budgets:
            if isinstance(value, str):
                raise ConfigError(value)
        placement = assign(list(chunk_costs), self.size)
        nodes = []
        for host in dict.fromkeys(self.hosts):  # hosts in the order of their first rank
            ranks = [r for r, h in enumerate(self.hosts) if h == host]
            held = sorted(k for r in ranks for k in placement[r])
            nodes.append((f"host {host} (rank{'s' if len(ranks) > 1 else ''} {_spans(ranks)})", held,
                          min(int(budgets[r]) for r in ranks)))
        return nodes

    def share(self, value: Any) -> Any:
        """Return rank 0's ``value`` on every rank (collective; small, picklable values)."""
        if self.drives:
            for dest in range(1, self.size):
                self._send(("share", value), dest)
            return value
        return self._serving(lambda: self._from_root("share"))

    def start(self, model: Any, chunks: Sequence[ChunkHandle], settings: LossSettings) -> MpiSession:
        """Load each rank's chunks (placed by cost) and keep their evaluators (collective).

        Rank 0's model and settings are used on every rank. On rank 0 this returns the
        session the optimiser calls; on the others it serves rank 0's evaluations and
        returns a closed session when rank 0 closes its session.

        Raises:
            BackendError: a chunk failed to load on some rank.
        """
        self._open = True
        placement = assign([c.cost for c in chunks], self.size)
        own = placement[self.rank]
        if self.drives:
            for dest in range(1, self.size):
                self._send(("model", (model, settings)), dest)
        else:
            model, settings = self._serving(lambda: self._from_root("model"))
        evaluators: list[tuple[int, Callable[[NDArray[np.float64]], LossParts]]] = []
        failure: _Failure | None = None
        for k in own:
            try:
                evaluators.append((k, model.loss_evaluator(self._local(chunks[k]).load(), settings)))
            except Exception as exc:  # noqa: BLE001 - reported to rank 0
                failure = self._failure("start", k, exc)
                break
        session = self._sessions
        self._sessions += 1
        if not self.drives:
            self._send(("failed", failure) if failure else ("started", None), 0)
            if failure is None:
                self._pending[session] = evaluators
                if not self.serve_later:
                    self.serve()
            return MpiSession(self, [], placement, session, closed=True)
        if failure is not None:
            self._fail()
            failure.raise_()
        self._gather("started", "start")
        return MpiSession(self, evaluators, placement, session)

    def serve(self) -> None:
        """On a serving rank: evaluate every open session's chunks as rank 0 asks, until it closes them all.

        ``start`` calls it unless ``serve_later`` is set, which lets a serving rank start
        several sessions first (training with validation keeps two open), in the order
        rank 0 starts them. On rank 0 it does nothing.
        """
        if not self.drives and self._pending:
            self._serving(self._serve)

    def _local(self, chunk: ChunkHandle) -> ChunkHandle:
        """The chunk's handle, its arrays copied to the scratch folder first when one is set."""
        if self.params.scratch is None:
            return chunk
        target = Path(os.path.expandvars(self.params.scratch)).expanduser() / "amp-arrays" / Path(chunk.folder).name
        if verify_arrays(target) is not None:  # missing, partial or damaged: copy afresh
            partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(chunk.folder, partial)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(partial, target)
        return dataclasses.replace(chunk, folder=str(target))

    def _serve(self) -> None:
        """Evaluate own chunks of the session rank 0 names at each vector it sends, until every session stops."""
        while self._pending:
            _, message = self._receive(0)
            if message[0] == "stop":
                self._pending.pop(message[1], None)
                continue
            self._check_root(message, "vector")
            session, vector = int(message[1][0]), message[1][1:]
            parts: list[LossParts] = []
            for k, evaluator in self._pending.get(session, []):
                try:
                    parts.append(evaluator(vector))
                except Exception as exc:  # noqa: BLE001 - reported to rank 0
                    self._send(("failed", self._failure("loss", k, exc)), 0)
                    break
            else:
                self._send_raw(pack(parts, len(vector)), [0], LOSS_TAG)

    def describe(self) -> list[str]:
        """Lines for the top of ``train-log.txt``: ranks, hosts, ranks per host."""
        per_host = Counter(self.hosts)
        lines = [f"mpi: {self.size} rank(s) on {len(per_host)} host(s); ranks per host: "
                 + ", ".join(f"{h} {n}" for h, n in per_host.items())]
        if self.size == 1 and not any(v in os.environ for v in LAUNCH_VARIABLES):
            lines.append("mpi: not launched by mpiexec or srun: running as one rank "
                         "(start it with 'mpiexec -n N amp train CONFIG' to use N ranks)")
        for host, n in per_host.items():
            cores = len({c for h, cpus in zip(self.hosts, self._affinity) if h == host for c in cpus})
            if n > cores:
                lines.append(f"warning: {n} ranks on host {host}, which gives each {cores} core(s): ranks take "
                             "turns on the cores, so the run is no faster and usually slower")
            elif n > 1 and n * 2 > cores and "OMP_NUM_THREADS" not in os.environ \
                    and "OPENBLAS_NUM_THREADS" not in os.environ:
                lines.append(f"note: {n} ranks share host {host}'s {cores} cores, and OMP_NUM_THREADS is not set, so "
                             "numpy's matrix products may start several threads per rank and oversubscribe the cores; "
                             "run with OMP_NUM_THREADS=1 (e.g. 'OMP_NUM_THREADS=1 mpiexec -n N amp train CONFIG')")
        return lines

    def close(self) -> None:
        """End the backend's use (collective): rank 0 checks that every rank got here too."""
        if self.size == 1:
            return
        if not self.drives:
            self._send(("closed", None), 0)
            while True:
                kind = self._receive(0)[1][0]
                if kind == "close":
                    return
                if kind == "abort":  # rank 0 failed, maybe because this rank left early: say when it ends
                    self._exit_notice = True
                    return
        if self._failed:
            return
        for dest in range(1, self.size):
            self._send(("close", None), dest)
        try:
            self._gather("closed", "close", stale=("loss",))
        except BackendError:
            return  # a rank was elsewhere: rank 0 is failing (this close runs during its error); the exit aborts
        self._open = False

    def __enter__(self) -> Mpi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MpiSession:
    """Rank 0's handle on the chunk evaluators held by every rank (a ``TrainingSession``)."""

    def __init__(self, backend: Mpi, evaluators: list[tuple[int, Callable[[NDArray[np.float64]], LossParts]]],
                 placement: list[list[int]], session: int, *, closed: bool = False) -> None:
        self._backend = backend
        self._session = session
        self._evaluators = evaluators
        self._placement = placement  # chunk indices per rank, in the order each rank packs its records
        self._n_chunks = sum(len(own) for own in placement)
        self._closed = closed

    def evaluate(self, vector: NDArray[np.float64]) -> list[LossParts]:
        """Send ``vector`` (n_parameters,) to every rank; return every chunk's parts in chunk order.

        Raises:
            BackendError: a rank raised, or the session is closed (always on ranks other than 0).
        """
        backend = self._backend
        if self._closed:
            raise BackendError("this MPI training session is closed" + (
                "" if backend.drives else f" (rank {backend.rank} serves rank 0, which evaluates the loss)"),
                stage="loss")
        vector = np.asarray(vector, dtype=np.float64)
        if backend.size > 1:
            backend._send_raw(np.concatenate(([float(self._session)], vector)), range(1, backend.size), VECTOR_TAG)
        parts: list[Any] = [None] * self._n_chunks
        for k, evaluator in self._evaluators:
            try:
                parts[k] = evaluator(vector)
            except Exception as exc:  # noqa: BLE001 - becomes a BackendError naming rank 0 and the chunk
                backend._fail()
                backend._failure("loss", k, exc).raise_()
        for rank, buffer in backend._gather("loss", "loss").items():
            own = self._placement[rank]
            records = unpack(buffer, len(vector), len(own))
            if records is None:
                backend._fail()
                raise BackendError(f"rank {rank} ({backend.hosts[rank]}) sent {buffer.size} numbers instead of "
                                   f"{len(own)} loss record(s) of {len(vector)} parameters; the ranks do not run "
                                   "the same program", stage="loss")
            for k, part in zip(own, records):
                parts[k] = part
        return parts

    def close(self) -> None:
        """Let the serving ranks leave their loop (idempotent)."""
        if not self._closed and self._backend.drives and not self._backend._failed:
            for dest in range(1, self._backend.size):
                self._backend._send(("stop", self._session), dest)
        self._closed = True

    def __enter__(self) -> MpiSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _spans(ranks: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    runs: list[list[int]] = []
    for r in ranks:
        if runs and r == runs[-1][-1] + 1:
            runs[-1].append(r)
        else:
            runs.append([r])
    return ", ".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)


def _affinity() -> list[int]:
    """The cores this process may run on (``0..n-1`` where the platform does not say which)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return list(range(detect_cores()))


def _pickles(value: Any) -> bool:
    import pickle

    try:
        pickle.loads(pickle.dumps(value))
    except Exception:  # noqa: BLE001 - anything that does not round-trip stays text
        return False
    return True


@hookimpl
def amp_backends() -> list[BackendEntry]:
    """Register ``mpi``."""
    return [
        BackendEntry(
            name="mpi",
            params=MpiParams,
            factory=Mpi,
            summary="Run on the ranks of an MPI job (mpiexec, srun); rank 0 drives.",
            probe=probe,
        )
    ]
