"""Importable helpers for tests/test_multiprocessing.py.

Spawned worker processes unpickle functions and classes by module name; test
files run under ``--import-mode=importlib`` are not importable by name, so
everything a worker must import lives here. The test puts this folder on
``sys.path`` before any worker starts; ``spawn`` hands the parent's ``sys.path``
to every worker.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from amp_core.data import LossParts, LossSettings
from amp_core.errors import DataError


def delayed_square(task: tuple[float, float]) -> tuple[float, int]:
    """Sleep ``task[1]`` seconds; return ``(task[0] ** 2, pid)``."""
    time.sleep(task[1])
    return task[0] ** 2, os.getpid()


def fail_on_negative(x: float) -> float:
    """Return ``x``; raise ValueError for negative ``x``."""
    if x < 0:
        raise ValueError(f"negative task {x}")
    return x


def data_error(x: int) -> int:
    """Raise a deliberate amp-core error."""
    raise DataError(f"image {x} has no energy")


def kill_self_on(x: int) -> int:
    """Return ``x``; kill the current process with SIGKILL when ``x == 13``."""
    if x == 13:
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)
    return x


def stop_self_on(x: int) -> int:
    """Return ``x``; stop the current process with SIGSTOP when ``x == 13`` (as ``kill -STOP`` would)."""
    if x == 13:
        os.kill(os.getpid(), signal.SIGSTOP)
    return x


def length(data: bytes) -> int:
    """Return ``len(data)`` (tasks with a large payload)."""
    return len(data)


@dataclass(frozen=True)
class FlakyDescriptor:
    """A descriptor wrapper that fails on structures of ``bad`` atoms and computes the others.

    Attributes:
        inner: the descriptor that computes the good structures.
        bad: atom count of the structures to fail on.
        how: ``"memory"`` raises MemoryError; ``"stop"`` stops the worker with SIGSTOP.
    """

    inner: Any
    bad: int
    how: str = "memory"

    def compute(self, atoms: Any, derivatives: bool) -> Any:
        if len(atoms) == self.bad:
            if self.how == "stop":
                os.kill(os.getpid(), signal.SIGSTOP)
            raise MemoryError(f"cannot allocate {len(atoms) * 10**12} bytes")
        return self.inner.compute(atoms, derivatives=derivatives)


@dataclass(frozen=True)
class ToyModel:
    """A linear toy model: E(image) = sum over atoms of w . (1, x, y, z, Z/10).

    Attributes:
        fail_images: a shard with this many images raises ValueError in evaluate.
        die_images: a shard with this many images kills its worker in evaluate.
        bad_load_images: a shard with this many images raises in loss_evaluator.
        stop_images: a shard with this many images stops its worker (SIGSTOP) in evaluate.
        slow_images: a shard with this many images sleeps ``sleep`` seconds in evaluate.
    """

    fail_images: int = -1
    die_images: int = -1
    bad_load_images: int = -1
    stop_images: int = -1
    slow_images: int = -1
    sleep: float = 0.0

    def loss_evaluator(self, arrays: Mapping[str, NDArray[Any]], settings: LossSettings) -> ToyEvaluator:
        """Prepare one shard."""
        if len(arrays["natoms"]) == self.bad_load_images:
            raise ValueError("cannot prepare this shard")
        return ToyEvaluator(self, arrays, settings)


class ToyEvaluator:
    """``evaluator(vector) -> LossParts`` of :class:`ToyModel` over one shard."""

    def __init__(self, model: ToyModel, arrays: Mapping[str, NDArray[Any]], settings: LossSettings) -> None:
        self.model = model
        self.settings = settings
        self.natoms = np.asarray(arrays["natoms"])
        self.image = np.asarray(arrays["atom_image"])
        self.energy = np.asarray(arrays["energy"])
        pos = np.asarray(arrays["positions"])
        self.phi = np.column_stack([np.ones(len(pos)), pos, np.asarray(arrays["numbers"]) / 10.0])
        self.pid = os.getpid()

    def __call__(self, vector: NDArray[np.float64]) -> LossParts:
        n_images = len(self.natoms)
        if n_images == self.model.fail_images:
            raise ValueError("toy evaluator failed on purpose")
        if n_images == self.model.die_images:
            os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(10)
        if n_images == self.model.stop_images:
            os.kill(os.getpid(), signal.SIGSTOP)
        if n_images == self.model.slow_images:
            time.sleep(self.model.sleep)
        phi_image = np.zeros((n_images, self.phi.shape[1]))
        np.add.at(phi_image, self.image, self.phi)
        resid = (phi_image @ vector - self.energy) / self.natoms
        gradient = self.settings.energy_coefficient * 2 * (resid / self.natoms) @ phi_image
        return LossParts(
            loss=self.settings.objective(float(resid @ resid), 0.0),
            energy_loss=float(resid @ resid),
            force_loss=0.0,
            energy_maxresid=float(np.abs(resid).max()),
            force_maxresid=0.0,
            n_images=n_images,
            gradient=gradient,
        )


@dataclass(frozen=True)
class ShortStructureCost:
    """A descriptor stand-in whose ``cost`` is the atom count; it refuses structures of ``bad`` atoms."""

    bad: int

    def cost(self, atoms: Any) -> float:
        if len(atoms) == self.bad:
            raise DataError(f"{self.bad} atoms are too few")
        return float(len(atoms))
