"""The ``serial`` backend: every stage in the calling process, chunk after chunk."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from amp_core import BackendEntry, ChunkHandle, hookimpl
from amp_core.data import LossParts, LossSettings
from amp_core.errors import AmpError, BackendError

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class SerialParams:
    """Settings of the serial backend.

    Attributes:
        compiled: run the plugins' compiled kernels (their ``compiled()`` twins) in process.
    """

    compiled: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.compiled, bool):
            raise ValueError(f"compiled must be true or false, got {self.compiled!r}")


class SerialSession:
    """Loss evaluators of every chunk, held in this process."""

    def __init__(self, evaluators: list[Callable[[NDArray[np.float64]], LossParts]]) -> None:
        self._evaluators = evaluators

    subsets = True
    """:meth:`evaluate` takes ``chunks``."""

    def evaluate(self, vector: NDArray[np.float64], chunks: Sequence[int] | None = None) -> list[LossParts]:
        """Return the loss parts of every chunk (or of ``chunks``, indices), in chunk order."""
        order = range(len(self._evaluators)) if chunks is None else sorted(set(chunks))
        return [run_task(self._evaluators[k], vector, stage="loss", index=k) for k in order]

    def residuals(self, vector: NDArray[np.float64], requests: Mapping[int, Any]) -> list[Any]:
        """Return each asked chunk's ``evaluator.residuals(vector, request)``, in chunk order (``RESIDUAL_JACOBIAN``)."""
        return [run_task(lambda v, k=k: self._evaluators[k].residuals(v, requests[k]), vector, stage="residuals",
                         index=k) for k in sorted(requests)]

    def close(self) -> None:
        """Drop the evaluators."""
        self._evaluators = []


def run_task(function: Callable[[T], R], task: T, *, stage: str, index: int, label: str = "") -> R:
    """Call ``function(task)``; wrap an unexpected exception in :class:`BackendError`.

    A :class:`BackendError` the task raised itself (naming its images) is wrapped too, so
    the message names the stage and task as well; other amp-core errors pass through.
    ``label``: how messages name the task (default ``chunk <index>``).
    """
    try:
        return function(task)
    except BackendError as exc:
        raise _failed(stage, index, label, str(exc)) from exc
    except AmpError:
        raise
    except Exception as exc:
        raise _failed(stage, index, label, f"{type(exc).__name__}: {exc}") from exc


def _failed(stage: str, index: int, label: str, summary: str) -> BackendError:
    """Describe the failure of a task (call while handling it: the message ends with its traceback)."""
    return BackendError(
        f"stage {stage!r}, {label or f'chunk {index}'} failed: {summary}\n{traceback.format_exc()}",
        stage=stage,
        chunk=index,
    )


class Serial:
    """Run in process; the reference every other backend must agree with."""

    name = "serial"
    cores = 1

    def __init__(self, params: SerialParams | None = None) -> None:
        self.params = params or SerialParams()
        self.compiled = self.params.compiled

    def map(
        self,
        function: Callable[[T], R],
        tasks: Sequence[T],
        *,
        stage: str,
        progress: Callable[[int], None] | None = None,
    ) -> list[R]:
        """Run each task in order."""
        results = []
        for k, task in enumerate(tasks):
            label = getattr(task, "label", None)
            name = f"task {k} ({label})" if isinstance(label, str) and label else f"task {k}"
            results.append(run_task(function, task, stage=stage, index=k, label=name))
            if progress is not None:
                progress(k + 1)
        return results

    def start(self, model: Any, chunks: Sequence[ChunkHandle], settings: LossSettings) -> SerialSession:
        """Build every chunk's evaluator over its memory-mapped arrays."""
        return SerialSession(
            [
                run_task(lambda c: model.loss_evaluator(c.load(), settings), c, stage="start", index=c.index)
                for c in chunks
            ]
        )

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> Serial:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@hookimpl
def amp_backends() -> list[BackendEntry]:
    """Register ``serial``."""
    return [BackendEntry(name="serial", params=SerialParams, factory=Serial, summary="Run every stage in process.")]
