"""The ``pairpotential`` model: a trainable Morse pair potential over raw structures.

Used with the descriptor ``none``. For every unordered pair of atoms (periodic images
included) closer than the cutoff rc, of element pair type t,

    phi(r) = D_t (exp(-2 a_t (r - r0_t)) - 2 exp(-a_t (r - r0_t))) fc(r),
    fc(r) = 0.5 (cos(pi r / rc) + 1)   (fc and fc' vanish at rc),

and the energy of a structure is E = sum over pairs phi + sum over atoms e0[element].
The constant e0 per element lets the model fit absolute energies (e.g. EMT's).
Morse, P. M., Phys. Rev. 34, 57 (1929).

Parameter vector order: element pairs (k, l), k <= l, elements sorted by atomic number,
in the order (0, 0), (0, 1), ..., (1, 1), ...; per pair (D eV, a 1/A, r0 A); then e0 (eV)
per element.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from ase.data import atomic_numbers, chemical_symbols
from numpy.typing import NDArray

from amp_core import ModelEntry, hookimpl
from amp_core.data import LossSettings
from amp_core.errors import DataError, ModelFileError, UsageError
from amp_core.protocols import ENERGY, FORCES

from ._loss import ShardLoss, element_index, n_pair_types, split_vector
from ._pairs import FloatArray, make_pairs, pair_forces, pair_terms, structure_pairs
from ._params import PairPotentialParams, pair_key

if TYPE_CHECKING:
    from ase import Atoms

    from amp_core.data import ImageFingerprints

__all__ = ["PairPotential", "PairPotentialParams", "amp_models", "from_dict"]

NAME = "pairpotential"


class PairPotential:
    """Morse pair potential with a smooth cosine cutoff and per-element constant energies.

    Attributes:
        name: ``"pairpotential"``.
        params: the :class:`PairPotentialParams` it was built from.
        implemented: ``{ENERGY, FORCES}``.
        inputs: ``"structures"`` (raw positions, cell, pbc; no fingerprints).
        elements: symbols sorted by atomic number, or ``None`` before :meth:`initialize`.
    """

    name = NAME
    implemented: frozenset[str] = frozenset({ENERGY, FORCES})
    inputs = "structures"

    def __init__(self, params: PairPotentialParams | None = None) -> None:
        self.params = params or PairPotentialParams()
        self.elements: tuple[str, ...] | None = self.params.elements
        self._vector: FloatArray | None = None
        self._e0_set = False
        if self.params.parameters is not None:
            self._vector = _vector_from_parameters(self.params.parameters, self.params.elements or ())
            self._e0_set = True
        elif self.elements is not None:
            self._vector = self._default_vector(len(self.elements))

    # -- parameters ---------------------------------------------------------------------------

    def _default_vector(self, n_elements: int) -> FloatArray:
        pairs = np.tile([self.params.D, self.params.a, self.params.r0], n_pair_types(n_elements))
        return np.concatenate([pairs, np.zeros(n_elements)])

    @property
    def _numbers(self) -> tuple[int, ...]:
        return tuple(atomic_numbers[s] for s in self.elements or ())

    def initialize(self, arrays: Sequence[Mapping[str, NDArray[Any]]]) -> None:
        """Fill elements, default pair parameters and e0 from training shards (idempotent).

        Elements come from the data unless ``params.elements`` names them. e0 is the
        least-squares fit of (E_ref - E_pairs(initial parameters)) against the element
        counts of every image, unless trained parameters were given or set.

        Args:
            arrays: shard arrays in the :mod:`amp_core.reshape` layout.

        Raises:
            DataError: the data hold an element outside ``params.elements``.
        """
        if self.elements is None:
            found = sorted({int(z) for shard in arrays for z in np.asarray(shard["elements"])})
            if not found:
                raise DataError("pairpotential: the training data hold no atoms; cannot choose elements")
            self.elements = tuple(chemical_symbols[z] for z in found)
            self._vector = self._default_vector(len(self.elements))
        for k, shard in enumerate(arrays):
            element_index(shard["numbers"], self._numbers, f"training shard {k}")
        if self._e0_set:
            return
        assert self._vector is not None
        rows, targets = [], []
        for shard in arrays:
            evaluator = ShardLoss(shard, self._numbers, self.params.cutoff, LossSettings())
            vector = self._vector.copy()
            vector[-len(self._numbers) :] = 0.0
            rows.append(evaluator.counts)
            targets.append(evaluator.energy - _pair_energies(evaluator, vector))
        e0 = np.linalg.lstsq(np.concatenate(rows), np.concatenate(targets), rcond=None)[0]
        self._vector[-len(self._numbers) :] = e0
        self._e0_set = True

    def vector(self) -> FloatArray:
        """Return a copy of the flat parameter vector (order in the module docstring)."""
        return self._checked_vector().copy()

    def set_vector(self, vector: NDArray[np.float64]) -> None:
        """Set the parameters from a flat vector (order in the module docstring).

        Raises:
            UsageError: the model has no elements yet (call :meth:`initialize`) or the length is wrong.
        """
        current = self._checked_vector()
        vector = np.asarray(vector, dtype=np.float64)
        if vector.shape != current.shape:
            raise UsageError(
                f"pairpotential: parameter vector has shape {vector.shape}; expected {current.shape}"
            )
        self._vector = vector.copy()
        self._e0_set = True

    def _checked_vector(self) -> FloatArray:
        if self._vector is None:
            raise UsageError(
                "pairpotential: no elements yet; give params.elements or call initialize() with training data"
            )
        return self._vector

    # -- training -----------------------------------------------------------------------------

    def loss_evaluator(self, arrays: Mapping[str, NDArray[Any]], settings: LossSettings) -> ShardLoss:
        """Find the shard's neighbour pairs once; return ``evaluator(vector) -> LossParts``.

        Raises:
            UsageError: the model has no elements yet.
            DataError: the shard holds an element the model does not know.
        """
        self._checked_vector()
        return ShardLoss(arrays, self._numbers, self.params.cutoff, settings)

    def regularization(self, vector: NDArray[np.float64], overfit: float) -> tuple[float, FloatArray]:
        """Return overfit * sum(pair parameters**2) and its gradient.

        Only the pair parameters (D, a, r0) are penalised; the per-element constants e0
        are not, since they carry the (large) absolute energy scale and no overfitting risk.
        """
        vector = np.asarray(vector, dtype=np.float64)
        n_pairs = 3 * n_pair_types(len(self.elements or ()))
        grad = np.zeros_like(vector)
        grad[:n_pairs] = 2.0 * overfit * vector[:n_pairs]
        return float(overfit * np.sum(vector[:n_pairs] ** 2)), grad

    # -- prediction ---------------------------------------------------------------------------

    def predict(
        self, atoms: Atoms, fingerprints: ImageFingerprints | None = None, forces: bool = False
    ) -> tuple[float, FloatArray | None]:
        """Return the energy (eV) and, with ``forces``, forces (n_atoms, 3) eV/A of one structure.

        Raises:
            UsageError: the model has no parameters yet.
            DataError: the structure holds an element the model was not trained for,
                or its cell/pbc is unusable.
        """
        vector = self._checked_vector()
        numbers = self._numbers
        index = element_index(atoms.numbers, numbers, "pairpotential prediction")
        i, j, d = structure_pairs(
            atoms.positions, atoms.cell.array, atoms.pbc, self.params.cutoff, "structure"
        )
        pairs = make_pairs(i, j, d, np.zeros(len(atoms), np.int64), index, len(numbers), self.params.cutoff)
        pair_params, e0 = split_vector(vector, len(numbers))
        terms = pair_terms(pairs.r, pairs.fc, pairs.dfc, pair_params[pairs.kind])
        energy = float(np.sum(terms.phi) + np.sum(e0[index]))
        return energy, pair_forces(pairs, terms.dphi, len(atoms)) if forces else None

    # -- saving -------------------------------------------------------------------------------

    def parameters(self) -> dict[str, Any] | None:
        """Return the current parameters in the ``params.parameters`` shape, or ``None``."""
        if self._vector is None or self.elements is None:
            return None
        pair_params, e0 = split_vector(self._vector, len(self.elements))
        names = [pair_key(a, b) for k, a in enumerate(self.elements) for b in self.elements[k:]]
        return {
            "pairs": {
                n: dict(zip(("D", "a", "r0"), map(float, row), strict=True))
                for n, row in zip(names, pair_params, strict=True)
            },
            "e0": {s: float(v) for s, v in zip(self.elements, e0, strict=True)},
        }

    def todict(self) -> dict[str, Any]:
        """Return the JSON document ``{"name", "params", "parameters"}`` that :func:`from_dict` reads."""
        params = self.params.todict()
        params["elements"] = None if self.elements is None else list(self.elements)
        return {"name": NAME, "params": params, "parameters": self.parameters() if self._e0_set else None}


def _pair_energies(evaluator: ShardLoss, vector: FloatArray) -> FloatArray:
    """Return (I,) pair energies (no e0) of a shard's images, eV."""
    pair_params, _ = split_vector(vector, evaluator.n_elements)
    p = evaluator.pairs
    phi = pair_terms(p.r, p.fc, p.dfc, pair_params[p.kind]).phi
    return np.bincount(p.image, phi, evaluator.n_images).astype(np.float64)


def _vector_from_parameters(parameters: Mapping[str, Any], elements: tuple[str, ...]) -> FloatArray:
    pairs = [parameters["pairs"][pair_key(a, b)] for k, a in enumerate(elements) for b in elements[k:]]
    flat = [value for p in pairs for value in (p["D"], p["a"], p["r0"])]
    return np.array(flat + [parameters["e0"][s] for s in elements], dtype=np.float64)


def from_dict(document: Mapping[str, Any]) -> PairPotential:
    """Rebuild a model (trained parameters included) from :meth:`PairPotential.todict` output.

    Raises:
        ModelFileError: the document is not a pairpotential model or its values are invalid.
    """
    if not isinstance(document, Mapping) or document.get("name") != NAME:
        found = document.get("name") if isinstance(document, Mapping) else type(document).__name__
        raise ModelFileError(f"not a {NAME} model document (name: {found!r}); expected name {NAME!r}")
    try:
        params = dict(document["params"])
        if params.get("elements") is not None:
            params["elements"] = tuple(params["elements"])
        params["parameters"] = document.get("parameters")
        return PairPotential(PairPotentialParams(**params))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"invalid {NAME} model document: {type(exc).__name__}: {exc}") from exc


@hookimpl
def amp_models() -> list[ModelEntry]:
    """Register ``pairpotential``."""
    return [
        ModelEntry(
            name=NAME,
            params=PairPotentialParams,
            factory=PairPotential,
            summary="Morse pair potential per element pair with a cosine cutoff (descriptor 'none').",
            loader=from_dict,
        )
    ]
