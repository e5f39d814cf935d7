"""The ``pairpotential`` loss over one shard: energies, forces and the analytic gradient.

Parameter vector layout (E elements sorted by atomic number, T = E (E + 1) / 2 pair types
in the order of :func:`~amp_plugins.models.pairpotential._pairs.pair_type_table`)::

    [D_0, a_0, r0_0, D_1, a_1, r0_1, ..., D_{T-1}, a_{T-1}, r0_{T-1}, e0_0, ..., e0_{E-1}]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from ase.data import chemical_symbols
from numpy.typing import NDArray

from amp_core.data import LossParts, LossSettings
from amp_core.errors import DataError

from ._pairs import FloatArray, IntArray, ShardPairs, pair_forces, pair_terms, shard_pairs


def n_pair_types(n_elements: int) -> int:
    """Return T = E (E + 1) / 2, the number of unordered element pairs."""
    return n_elements * (n_elements + 1) // 2


def element_index(numbers: NDArray[Any], known: tuple[int, ...], where: str) -> IntArray:
    """Map atomic numbers (n,) to model element indices (n,) int64.

    Raises:
        DataError: an atomic number is not one of ``known``; the message names it and the known ones.
    """
    numbers = np.asarray(numbers, dtype=np.int64)
    lookup = np.full(max(max(known, default=0), int(numbers.max(initial=0))) + 1, -1, dtype=np.int64)
    lookup[list(known)] = np.arange(len(known))
    index = lookup[numbers]
    if np.any(index < 0):
        unknown = sorted({chemical_symbols[z] for z in numbers[index < 0]})
        names = ", ".join(chemical_symbols[z] for z in known)
        raise DataError(
            f"{where}: element(s) {', '.join(unknown)} not known to the pairpotential model "
            f"(it has parameters for {names}); train a model that includes them"
        )
    return np.asarray(index, dtype=np.int64)


def split_vector(vector: FloatArray, n_elements: int) -> tuple[FloatArray, FloatArray]:
    """Return (pair parameters (T, 3), e0 (E,)) views of a flat vector."""
    t = n_pair_types(n_elements)
    if vector.shape != (3 * t + n_elements,):
        raise ValueError(f"parameter vector has shape {vector.shape}; expected ({3 * t + n_elements},)")
    return vector[: 3 * t].reshape(t, 3), vector[3 * t :]


class ShardLoss:
    """``evaluator(vector) -> LossParts`` of one shard; neighbour pairs are found once, at build.

    Args:
        arrays: shard arrays in the :mod:`amp_core.reshape` layout.
        numbers: (E,) atomic numbers of the model's elements, sorted.
        cutoff: Angstrom.
        settings: loss coefficients; without ``settings.forces`` all force work is skipped.
    """

    def __init__(
        self,
        arrays: Mapping[str, NDArray[Any]],
        numbers: tuple[int, ...],
        cutoff: float,
        settings: LossSettings,
    ) -> None:
        self.n_elements = len(numbers)
        self.settings = settings
        self.natoms = np.asarray(arrays["natoms"], dtype=np.int64).astype(np.float64)
        self.n_images = len(self.natoms)
        self.atom_image = np.asarray(arrays["atom_image"], dtype=np.int64)
        index = element_index(arrays["numbers"], numbers, "training shard")
        self.pairs: ShardPairs = shard_pairs(arrays, index, self.n_elements, cutoff)
        counts = np.zeros((self.n_images, self.n_elements))
        np.add.at(counts, (self.atom_image, index), 1.0)
        self.counts = counts  # (I, E) atoms of each element per image
        self.energy = np.asarray(arrays["energy"], dtype=np.float64)
        self.forces = np.asarray(arrays["forces"], dtype=np.float64) if settings.forces else None

    def __call__(self, vector: FloatArray) -> LossParts:
        """Return the shard's loss parts and d(c_E energy_loss + c_F force_loss)/d vector."""
        vector = np.asarray(vector, dtype=np.float64)
        pair_params, e0 = split_vector(vector, self.n_elements)
        p = self.pairs
        terms = pair_terms(
            p.r, p.fc, p.dfc, pair_params[p.kind], gradient=True, force_gradient=self.forces is not None
        )
        predicted = np.bincount(p.image, terms.phi, self.n_images) + self.counts @ e0
        per_atom = (predicted - self.energy) / self.natoms
        weight = 2.0 * self.settings.energy_coefficient * per_atom / self.natoms  # d c_E L_E / d E_I
        assert terms.phi_grad is not None
        grad_pairs = _by_type(p.kind, weight[p.image][:, None] * terms.phi_grad, len(pair_params))
        grad_e0 = self.counts.T @ weight
        force_loss = force_maxresid = 0.0
        if self.forces is not None:
            force_loss, force_maxresid, grad_force = self._force_part(
                terms.dphi, terms.dphi_grad, len(pair_params)
            )
            grad_pairs += grad_force
        energy_loss = float(np.sum(per_atom**2))
        return LossParts(
            loss=self.settings.objective(energy_loss, force_loss),
            energy_loss=energy_loss,
            force_loss=force_loss,
            energy_maxresid=float(np.max(np.abs(per_atom), initial=0.0)),
            force_maxresid=force_maxresid,
            n_images=self.n_images,
            gradient=np.concatenate([grad_pairs.ravel(), grad_e0]),
        )

    def _force_part(
        self, dphi: FloatArray, dphi_grad: FloatArray | None, n_types: int
    ) -> tuple[float, float, FloatArray]:
        """Return force_loss, force_maxresid and d(c_F force_loss)/d pair parameters (T, 3)."""
        assert self.forces is not None and dphi_grad is not None
        coefficient = float(self.settings.force_coefficient or 0.0)
        p = self.pairs
        residual = pair_forces(p, dphi, len(self.atom_image)) - self.forces
        scale = 1.0 / (3.0 * self.natoms)  # per image
        loss = float(np.sum(scale[self.atom_image] * np.sum(residual**2, axis=1)))
        # dF_i/dtheta = dphi'/dtheta unit, dF_j/dtheta = -dphi'/dtheta unit (same image, same scale)
        along = np.sum(p.unit * (residual[p.i] - residual[p.j]), axis=1)
        weight = 2.0 * coefficient * scale[p.image] * along
        grad = _by_type(p.kind, weight[:, None] * dphi_grad, n_types)
        return loss, float(np.max(np.abs(residual), initial=0.0)), grad


def _by_type(kind: IntArray, values: FloatArray, n_types: int) -> FloatArray:
    """Sum (P, 3) per-pair values into (T, 3) per pair type."""
    return np.stack([np.bincount(kind, values[:, c], n_types) for c in range(3)], axis=1)
