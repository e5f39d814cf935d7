"""The run directory: one run at a time (a lock naming its holder), and a fresh log per run."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any, TextIO

from amp_core.errors import RunError

LOCK = ".amp-run.lock"
LOG = "train-log.txt"


class RunLock:
    """An exclusive lock on a run directory, held while a run writes into it.

    The lock is an ``flock`` on ``<run dir>/.amp-run.lock``, which holds the owner's PID;
    the kernel releases it when the process ends, however it ends, so a stale lock never
    blocks a later run.

    Raises:
        RunError: another process holds the lock (its PID is named).
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK
        self._handle: TextIO | None = None

    def __enter__(self) -> RunLock:
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunError(
                f"run directory {self.path.parent} is in use by another amp run (process {holder}); wait for it "
                "to finish, stop it, or give this run another [training] directory"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._handle is not None:
            self._handle.close()  # closing releases the flock
            self._handle = None


def rotate_log(run_dir: Path) -> Path | None:
    """Move an earlier run's ``train-log.txt`` to ``train-log.<n>.txt`` (first free n); return the new name.

    A new run starts its own log, so no log (and no convergence plot) joins two runs.
    """
    current = run_dir / LOG
    if not current.exists():
        return None
    n = 1
    while (run_dir / f"train-log.{n}.txt").exists():
        n += 1
    target = run_dir / f"train-log.{n}.txt"
    os.replace(current, target)
    return target


def differences(saved: dict[str, Any] | None, current: dict[str, Any], sections: tuple[str, ...]) -> list[str]:
    """Return ``section.key: saved -> current`` for every key that differs in ``sections`` of two resolved configs."""
    out = []
    for section in sections:
        old = (saved or {}).get(section) or {}
        new = current.get(section) or {}
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                out.append(f"[{section}] {key}: {old.get(key)!r} in the checkpoint, {new.get(key)!r} now")
    return out
