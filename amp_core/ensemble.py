"""Ensembles: N members of one model that differ by their seed, trained together, predicting a spread.

``[training] ensemble = N`` trains N members of the configured model, member k built with
model seed ``s + k`` (``s`` the model's seed, by default ``[training] seed``) on the same
images. Members differ by their random initial parameters, not by resampled data (the
original Amp's ``BootStrap`` resampled images): every member sees every image, so none is
weakened by the third of the data a bootstrap sample leaves out, and the members can share
one evaluation per chunk (below). Deep ensembles (Lakshminarayanan et al., NeurIPS 2017)
found seeds alone give spreads that rank errors as well as resampling.

Trained together: :class:`Ensemble` is a model whose parameter vector is the members'
vectors one after the other; its loss evaluator evaluates each member on the chunk with
one evaluator prepared once for the chunk (the first member's: members share every
data-derived setting, which :func:`check_shared` verifies), in the worker that holds the
chunk, so one pass over a chunk's data and one round trip per step serve every member.
Each member keeps its own optimiser (:mod:`amp_core.lockstep`), so member k trained in an
ensemble is bit for bit the model trained alone with seed ``s + k``.

The calculator returns the members' mean and, in ``results``, ``energy_std`` (eV, the
members' standard deviation of the energy) and ``forces_std`` ((n_atoms,) eV/A: per atom
sqrt(mean over members of |F_k - F_mean|^2), the force deviation DP-GEN uses).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from amp_core.data import LossParts, LossSettings
from amp_core.errors import ConfigError, UsageError
from amp_core.protocols import COMPILED, RESIDUAL_JACOBIAN

MAX_MEMBERS = 64
"""Largest ``[training] ensemble`` accepted."""


class Ensemble:
    """A model made of ``members`` (same model, same hyper-parameters but the seed).

    It is a model like any other to the core and the backends: ``vector`` concatenates the
    members' vectors, ``loss_evaluator`` returns :class:`~amp_core.data.LossParts` whose
    ``members`` hold each member's parts. :meth:`predict` gives the members' mean.
    """

    def __init__(self, members: Sequence[Any]) -> None:
        if not members:
            raise UsageError("an ensemble needs at least one member")
        self.members = list(members)
        first = self.members[0]
        names = {m.name for m in self.members}
        if len(names) != 1:
            raise UsageError(f"ensemble members must be one model; got {', '.join(sorted(names))}")
        self.name = first.name
        self.params = first.params
        self.inputs = first.inputs
        # The members' capabilities, but residual Jacobians: the ensemble's evaluators do not give them per member.
        self.implemented = frozenset.intersection(*(frozenset(m.implemented) for m in self.members)) - {
            RESIDUAL_JACOBIAN}

    def __len__(self) -> int:
        return len(self.members)

    @property
    def elements(self) -> tuple[str, ...] | None:
        return self.members[0].elements  # type: ignore[no-any-return]

    def initialize(self, arrays: Sequence[Mapping[str, NDArray[Any]]]) -> None:
        for member in self.members:
            member.initialize(arrays)

    def sizes(self) -> list[int]:
        """Each member's number of parameters."""
        return [len(m.vector()) for m in self.members]

    def split(self, vector: NDArray[np.float64]) -> list[NDArray[np.float64]]:
        """Cut an ensemble vector into the members' vectors (views)."""
        vector = np.asarray(vector, dtype=np.float64)
        sizes = self.sizes()
        if vector.shape != (sum(sizes),):
            raise UsageError(f"ensemble parameter vector has shape {vector.shape}, expected ({sum(sizes)},) "
                             f"({len(sizes)} members)")
        return np.split(vector, np.cumsum(sizes)[:-1])

    def vector(self) -> NDArray[np.float64]:
        return np.concatenate([m.vector() for m in self.members])

    def set_vector(self, vector: NDArray[np.float64]) -> None:
        for member, part in zip(self.members, self.split(vector)):
            member.set_vector(part)

    def loss_evaluator(self, arrays: Mapping[str, NDArray[Any]], settings: LossSettings) -> EnsembleEvaluator:
        """One evaluator for the chunk (the first member's), evaluated at every member's vector."""
        return EnsembleEvaluator(self.members[0].loss_evaluator(arrays, settings), self.sizes())

    def regularization(self, vector: NDArray[np.float64], overfit: float) -> tuple[float, NDArray[np.float64]]:
        penalties = [m.regularization(v, overfit) for m, v in zip(self.members, self.split(vector))]
        return float(sum(p for p, _ in penalties)), np.concatenate([g for _, g in penalties])

    def predict(self, atoms: Any, fingerprints: Any, forces: bool) -> tuple[float, NDArray[np.float64] | None]:
        """The members' mean energy (and forces)."""
        energies, member_forces = self.predict_members(atoms, fingerprints, forces)
        return float(np.mean(energies)), None if member_forces is None else np.mean(member_forces, axis=0)

    def predict_members(self, atoms: Any, fingerprints: Any,
                        forces: bool) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
        """Every member's energy (M,) and forces (M, n_atoms, 3) (``None`` when not asked)."""
        answers = [m.predict(atoms, fingerprints, forces) for m in self.members]
        energies = np.array([float(e) for e, _ in answers])
        if not forces or any(f is None for _, f in answers):
            return energies, None
        return energies, np.stack([np.asarray(f, dtype=np.float64) for _, f in answers])

    def atomic_gradient(self, numbers: NDArray[np.int64],
                        values: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """The members' mean atomic energies and dE/dG (forces and stress are linear in dE/dG)."""
        answers = [m.atomic_gradient(numbers, values) for m in self.members]
        return np.mean([a for a, _ in answers], axis=0), np.mean([g for _, g in answers], axis=0)

    def compiled(self) -> Ensemble:
        if COMPILED not in self.implemented:
            raise UsageError(f"model {self.name!r} has no compiled kernels")
        return Ensemble([m.compiled() for m in self.members])

    def todict(self) -> dict[str, Any]:
        """The first member's document (the potential file keeps every member's: :func:`member_documents`)."""
        return self.members[0].todict()  # type: ignore[no-any-return]

    def member_documents(self) -> list[dict[str, Any]]:
        return [m.todict() for m in self.members]


class EnsembleEvaluator:
    """Evaluates a chunk at every member's vector with one prepared evaluator.

    An evaluator with a ``many(vectors) -> list[LossParts]`` method (an optional part of the
    model contract: each result bit for bit what a call with that vector gives) evaluates
    every member that moved in one pass over the chunk's data; otherwise one call each.

    A member whose vector is the one it was last evaluated at gets its last parts again
    without work (a member that has finished, or waits on another data set, keeps its
    vector while the others move).
    """

    def __init__(self, base: Any, sizes: Sequence[int]) -> None:
        self.base = base
        self.bounds = np.concatenate([[0], np.cumsum(sizes)])
        self._last: list[tuple[NDArray[np.float64], LossParts] | None] = [None] * len(sizes)

    def __call__(self, vector: NDArray[np.float64]) -> LossParts:
        pieces = [np.array(vector[self.bounds[k]:self.bounds[k + 1]], copy=True) for k in range(len(self._last))]
        moved = [k for k, piece in enumerate(pieces)
                 if self._last[k] is None or not np.array_equal(self._last[k][0], piece)]  # type: ignore[index]
        many = getattr(self.base, "many", None)
        if many is not None and len(moved) > 1:  # the model evaluates several vectors in one pass
            answers = many([pieces[k] for k in moved])
        else:
            answers = [self.base(pieces[k]) for k in moved]
        for k, answer in zip(moved, answers):
            self._last[k] = (pieces[k], answer)
        return LossParts.stack([kept[1] for kept in self._last])  # type: ignore[index]


def members_of(model: Any) -> list[Any] | None:
    """The members of an ensemble model, ``None`` for any other model."""
    return model.members if isinstance(model, Ensemble) else None


def check_shared(ensemble: Ensemble, arrays: Mapping[str, NDArray[Any]], settings: LossSettings) -> None:
    """Check that one evaluator serves every member: each member's own evaluator on ``arrays`` gives,
    at its vector, bit for bit what the shared (first member's) evaluator gives.

    Raises:
        ConfigError: a member's evaluator differs (the model keeps data-derived state that depends
            on the seed, so its members cannot be trained together).
    """
    shared = ensemble.members[0].loss_evaluator(arrays, settings)
    for k, member in enumerate(ensemble.members[1:], start=1):
        vector = member.vector()
        own, common = member.loss_evaluator(arrays, settings)(vector), shared(vector)
        if own.loss != common.loss or not np.array_equal(own.gradient, common.gradient):
            raise ConfigError(
                f"[training] ensemble: member {k} of model {ensemble.name!r} is not evaluated alike by the first "
                "member's evaluator (the model keeps seed-dependent state besides its parameters), so the members "
                "cannot be trained together; train them one by one with different [model] seed values")


def member_models(first: Any, count: int, create: Any, where: str) -> list[Any]:
    """Return ``count`` members: ``first`` and ``create(seed)`` for the seeds after its own.

    Raises:
        ConfigError: the model has no ``seed`` parameter (its members would be identical).
    """
    seed = getattr(first.params, "seed", None)
    if count > 1 and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ConfigError(f"{where}: ensemble = {count} needs a model with a 'seed' parameter (the members differ by "
                          f"their random initial parameters); model {first.name!r} has none; set ensemble = 1")
    return [first] + [create(int(seed) + k) for k in range(1, count)]  # type: ignore[arg-type]
