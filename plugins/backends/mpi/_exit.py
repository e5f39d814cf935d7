"""The end of an ``mpi`` process: rank 0 aborts the job after a failure, so no rank waits forever."""

from __future__ import annotations

import atexit
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from amp_plugins.backends.mpi import Mpi

EXIT_RUN = 3
"""``MPI_Abort`` code after a failure (``amp``'s exit code for run-time failures)."""
_WATCHED: list[Mpi] = []
OUTPUT_DELAY = 1.0
"""Seconds rank 0 waits before ``MPI_Abort``, for ``mpiexec`` to forward the error it printed."""
GRACE = 10.0
"""Seconds rank 0 waits, before aborting, for ranks that failed on their own to finish reporting."""


def watch_exit(backend: Mpi) -> None:
    """Check the backend when the process ends (see :func:`_check_at_exit`)."""
    if not _WATCHED:
        atexit.register(_check_at_exit)
    _WATCHED.append(backend)


def _check_at_exit() -> None:
    """Rank 0: after a failure, or without a clean close, abort the job (other ranks may wait for it),
    once the ranks that failed on their own have printed their errors. Other ranks: tell rank 0
    that this process, which failed, has reported and is ending."""
    for backend in _WATCHED:
        if backend.size == 1:
            continue
        if not backend.drives:
            if backend._exit_notice:
                backend._send(("exited", None), 0)
            continue
        if backend._failed or backend._open:
            waiting, deadline = set(backend._left), time.monotonic() + GRACE
            while waiting and time.monotonic() < deadline:
                status = backend._mpi.Status()
                if backend.comm.Iprobe(source=backend._mpi.ANY_SOURCE, tag=backend._mpi.ANY_TAG, status=status):
                    sender, message = backend._take(status)
                    if message[0] == "exited":
                        waiting.discard(sender)
                else:
                    time.sleep(0.01)
            sys.stdout.flush()
            sys.stderr.flush()
            time.sleep(OUTPUT_DELAY)  # let mpiexec forward this rank's last output: the abort drops what it holds
            backend.comm.Abort(EXIT_RUN)
