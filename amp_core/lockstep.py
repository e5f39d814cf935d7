"""Lockstep: each ensemble member runs its own optimiser; their evaluations are served together.

Every member runs the ordinary training loop (its own optimiser, journal, validation
record, checkpoints and log) in a thread of its own, against a :class:`MemberLoss` that
stands for one member's loss. A member's evaluation waits until every member still
running has asked for one (or finished); the driver (:meth:`Lockstep.serve`, in the main
thread) then evaluates the ensemble once per data set asked for (one pass over each
chunk serves all members: :mod:`amp_core.ensemble`) and hands each member its own
result. A member's answers depend only on its own parameters, so its trajectory is the
one it follows trained alone, whatever the others do and however the threads interleave.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from amp_core.data import LossResult

POLL = 0.2
"""Seconds between checks of the driver's waits (so Ctrl-C is noticed promptly)."""


class Lockstep:
    """Collects the members' evaluation requests and answers them with one ensemble evaluation each round.

    Args:
        starts: each member's first parameter vector (what a member that has not asked yet
            is evaluated at: its evaluator's cache makes that free).
    """

    def __init__(self, starts: Sequence[NDArray[np.float64]]) -> None:
        self._cond = threading.Condition()
        self._starts = [np.array(v, copy=True) for v in starts]
        self._pending: dict[int, tuple[Any, NDArray[np.float64], tuple[int, ...] | None]] = {}
        self._answers: dict[int, Any] = {}
        self._waiting: set[int] = set()  # members inside ask(), not yet answered
        self._live = set(range(len(starts)))
        self._last: dict[int, list[NDArray[np.float64]]] = {}  # per target: each member's last vector there
        self._stop: BaseException | None = None
        self.rounds = 0

    def ask(self, member: int, target: Any, vector: NDArray[np.float64],
            chunks: tuple[int, ...] | None) -> LossResult:
        """Member ``member``'s evaluation of ``target`` (a :class:`~amp_core.loss.LossFunction` of the ensemble)."""
        with self._cond:
            if self._stop is not None:
                raise self._stop
            self._pending[member] = (target, np.array(vector, dtype=np.float64, copy=True), chunks)
            self._waiting.add(member)
            self._cond.notify_all()
            while member not in self._answers:
                self._cond.wait()
            self._waiting.discard(member)
            answer = self._answers.pop(member)
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[no-any-return]

    def leave(self, member: int) -> None:
        """Member ``member`` has finished (converged, stopped or failed): stop waiting for it."""
        with self._cond:
            self._live.discard(member)
            self._pending.pop(member, None)
            self._cond.notify_all()

    def stop(self, reason: BaseException) -> None:
        """Answer every waiting member, and every later request, with ``reason`` (raised in its thread;
        each member then saves its checkpoint and stops)."""
        with self._cond:
            if self._stop is None:  # the first reason is the one every member gets
                self._stop = reason
            for member in self._waiting:  # asked, in this round or one being evaluated
                self._answers.setdefault(member, self._stop)
            self._pending.clear()
            self._cond.notify_all()

    def serve(self, alive: Any) -> None:
        """Answer rounds of requests until every member has left; ``alive()`` says whether any thread runs."""
        while True:
            with self._cond:
                while self._live and not self._live <= set(self._pending):
                    self._cond.wait(POLL)
                    if not alive():
                        return
                if not self._live:
                    return
                batch = dict(self._pending)
                self._pending.clear()
            answers = self._round(batch)
            with self._cond:
                self._answers.update(answers)
                self._cond.notify_all()

    def _round(self, batch: dict[int, tuple[Any, NDArray[np.float64], tuple[int, ...] | None]]) -> dict[int, Any]:
        """Evaluate each (data set, chunks) asked for once, at every member's latest vector for that data set."""
        self.rounds += 1
        groups: dict[tuple[int, tuple[int, ...] | None], list[int]] = {}
        for member, (target, _, chunks) in sorted(batch.items()):
            groups.setdefault((id(target), chunks), []).append(member)
        answers: dict[int, Any] = {}
        for (_, chunks), members in groups.items():
            target = batch[members[0]][0]
            last = self._last.setdefault(id(target), [v.copy() for v in self._starts])
            for member in members:
                last[member] = batch[member][1]
            try:
                vector = np.concatenate(last)
                result = target.evaluate(vector) if chunks is None else target.subset(vector, list(chunks))
            except BaseException as exc:  # noqa: BLE001 - every member asking gets it, raised in its thread
                answers.update({member: exc for member in members})
                if not isinstance(exc, Exception):  # Ctrl-C in the driver: stop everyone
                    self.stop(exc)
                    raise
                continue
            answers.update({member: result.members[member] for member in members})
        return answers


class MemberLoss:
    """One member's view of an ensemble's :class:`~amp_core.loss.LossFunction`: what the training loop,
    the validation monitor and the optimiser call, answered through the :class:`Lockstep`."""

    def __init__(self, lockstep: Lockstep, member: int, target: Any) -> None:
        self.lockstep = lockstep
        self.member = member
        self.target = target
        self.manager = target.manager
        self.dataset = target.dataset
        self._last: tuple[NDArray[np.float64], LossResult] | None = None

    @property
    def n_chunks(self) -> int:
        return int(self.target.n_chunks)

    def evaluate(self, vector: NDArray[np.float64]) -> LossResult:
        vector = np.asarray(vector, dtype=np.float64)
        if self._last is not None and np.array_equal(self._last[0], vector):
            return self._last[1]
        result = self.lockstep.ask(self.member, self.target, vector, None)
        self._last = (vector.copy(), result)
        return result

    def __call__(self, vector: NDArray[np.float64], chunks: Sequence[int] | None = None
                 ) -> tuple[float, NDArray[np.float64]]:
        if chunks is None:
            result = self.evaluate(vector)
        else:
            wanted = tuple(self.target.chunk_indices(chunks))
            result = self.lockstep.ask(self.member, self.target, np.asarray(vector, dtype=np.float64), wanted)
        return result.loss, result.gradient
