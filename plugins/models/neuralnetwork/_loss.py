"""Loss and analytic gradient of the neural network over one shard (numpy hot path).

Everything that does not depend on the parameter vector is prepared once. First, for
both loss kernels (this one and the compiled one), :func:`prepare_shard` checks a shard
against the model and scales its inputs (:class:`Shard`). Then :class:`ShardLoss`
arranges it for numpy: scaled inputs per element as one matrix, and (with force
training) all fingerprint derivatives of the shard as two block-sparse matrices per
element, ``D`` (rows: atom moved and direction, columns: centre row and feature) and its
transpose. One call then costs a few batched network passes and two sparse products
per element (DESIGN.md section 6); nothing loops over atoms or images in Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from ase.data import chemical_symbols
from numpy.typing import NDArray

from amp_core.data import LossParts, LossSettings
from amp_core.errors import DataError

from . import _core as core

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Layout:
    """Where each element's parameters sit in the flat vector (Amp's order).

    Attributes:
        elements: sorted chemical symbols.
        weights: per element, ``(offset, shape)`` of each ``W_k``.
        scalings: per element, the index of its intercept (the slope follows).
        size: length of the vector.
    """

    elements: tuple[str, ...]
    weights: dict[str, tuple[tuple[int, tuple[int, int]], ...]]
    scalings: dict[str, int]
    size: int

    @staticmethod
    def build(shapes: Mapping[str, Sequence[tuple[int, int]]]) -> Layout:
        """Lay out weights of every element (sorted by symbol), then (intercept, slope) pairs."""
        elements = tuple(sorted(shapes))
        offset = 0
        weights = {}
        for el in elements:
            entries = []
            for shape in shapes[el]:
                entries.append((offset, (int(shape[0]), int(shape[1]))))
                offset += int(shape[0]) * int(shape[1])
            weights[el] = tuple(entries)
        scalings = {}
        for el in elements:
            scalings[el] = offset
            offset += 2
        return Layout(elements, weights, scalings, offset)

    def views(self, vector: Array, element: str) -> list[Array]:
        """Return the ``W_k`` of ``element`` as reshaped views into ``vector``."""
        return [vector[o : o + s[0] * s[1]].reshape(s) for o, s in self.weights[element]]


def input_scaling(fprange: Array) -> tuple[Array, Array]:
    """Return ``(scale, shift)`` (F,) with ``x' = x * scale + shift`` (Amp's rule, raw if max - min <= 1e-8)."""
    width = fprange[:, 1] - fprange[:, 0]
    wide = width > 1e-8
    scale = np.where(wide, 2.0 / np.where(wide, width, 1.0), 1.0)
    shift = np.where(wide, -1.0 - fprange[:, 0] * scale, 0.0)
    return scale, shift


def symbol_of(z: int, known: Sequence[str], where: str) -> str:
    """Return the symbol of atomic number ``z``; :class:`DataError` if the model has no network for it."""
    symbol = chemical_symbols[int(z)]
    if symbol not in known:
        raise DataError(
            f"{where}: element {symbol} has no network in this model (it knows {', '.join(known)}); "
            "train a model that includes it"
        )
    return symbol


def check_width(symbol: str, width: int, expected: int, where: str) -> None:
    """Raise :class:`DataError` when fingerprints of ``symbol`` do not fit the network."""
    if width != expected:
        raise DataError(
            f"{where}: element {symbol} has {width} fingerprint features but the model's network takes "
            f"{expected}; use the descriptor settings the model was trained with"
        )


@dataclass(frozen=True)
class ElementRows:
    """One element's atoms in a shard, as both loss kernels read them.

    Attributes:
        symbol: chemical symbol (it has a network in the model).
        z: atomic number.
        atoms: (n_e,) int64 shard-wide index of the atom of each row.
        image: (n_e,) int64 image of each row.
        x: (n_e, F) float64 scaled inputs ``x * scale + shift`` (:func:`input_scaling`).
        scale: (F,) float64 dx'/dx of the scaling.
        centre: (P,) int64 row of each derivative block's centre atom (force training
            only, else ``None``, as ``neighbour`` and ``dfp``).
        neighbour: (P,) int64 shard-wide atom each block moves.
        dfp: (P, 3, F) float64 d fp(centre) / d R(neighbour), 1/Angstrom, unscaled (may be
            memory-mapped).
    """

    symbol: str
    z: int
    atoms: NDArray[np.int64]
    image: NDArray[np.int64]
    x: Array
    scale: Array
    centre: NDArray[np.int64] | None = None
    neighbour: NDArray[np.int64] | None = None
    dfp: Array | None = None


@dataclass(frozen=True)
class Shard:
    """One shard checked against the model and prepared once, for the numpy and compiled kernels.

    Attributes:
        natoms: (I,) int64 atoms per image.
        energy: (I,) float64 reference energies, eV.
        atom_image: (N,) int64 image of each shard atom.
        numbers: (N,) int64 atomic number of each shard atom.
        forces: (N, 3) float64 reference forces in eV/Angstrom, ``None`` without force training.
        elements: the rows of each element present, in the shard's element order.
    """

    natoms: NDArray[np.int64]
    energy: Array
    atom_image: NDArray[np.int64]
    numbers: NDArray[np.int64]
    forces: Array | None
    elements: tuple[ElementRows, ...]


def prepare_shard(
    arrays: Mapping[str, Any], layout: Layout, fprange: Mapping[str, Array], forces: bool
) -> Shard:
    """Check one shard (layout of :mod:`amp_core.reshape`) against the model and scale its inputs.

    Args:
        arrays: the shard's arrays, fingerprints included, derivatives too with ``forces``.
        layout: the model's parameter layout (which elements have networks).
        fprange: per symbol, (F, 2) [min, max] of each feature.
        forces: whether the loss trains forces (then derivatives and forces are read).

    Raises:
        DataError: an element without a network, fingerprints of the wrong width, or
            missing derivatives.
    """
    atom_image = np.asarray(arrays["atom_image"], dtype=np.int64)
    elements = []
    for z in (int(z) for z in np.asarray(arrays["elements"])):
        symbol = symbol_of(z, layout.elements, "training shard")
        fp = np.asarray(arrays[f"fp_{z}"], dtype=np.float64)
        check_width(symbol, fp.shape[1], len(fprange[symbol]), "training shard")
        scale, shift = input_scaling(fprange[symbol])
        atoms = np.asarray(arrays[f"atoms_{z}"], dtype=np.int64)
        blocks: dict[str, Any] = {}
        if forces:
            if f"dfp_{z}" not in arrays:
                raise DataError(
                    f"training shard: element {symbol} has no fingerprint derivatives ('dfp_{z}'), which "
                    "force training needs; fingerprint again with derivatives"
                )
            blocks["centre"] = np.asarray(arrays[f"dcentre_{z}"], dtype=np.int64)
            blocks["neighbour"] = np.asarray(arrays[f"dneighbour_{z}"], dtype=np.int64)
            blocks["dfp"] = np.asarray(arrays[f"dfp_{z}"], dtype=np.float64)
        elements.append(ElementRows(symbol, z, atoms, atom_image[atoms], fp * scale + shift, scale, **blocks))
    return Shard(
        natoms=np.asarray(arrays["natoms"], dtype=np.int64),
        energy=np.ascontiguousarray(arrays["energy"], dtype=np.float64),
        atom_image=atom_image,
        numbers=np.asarray(arrays["numbers"], dtype=np.int64),
        forces=np.ascontiguousarray(arrays["forces"], dtype=np.float64).reshape(-1, 3) if forces else None,
        elements=tuple(elements),
    )


@dataclass
class _Element:
    symbol: str
    x: Array  # (n_e, F) scaled inputs
    image: NDArray[np.int64]  # (n_e,) image of each row
    count: Array  # (I,) atoms of this element per image
    d: Any = None  # BSR (3 n, n_e F): d fp / d positions, scale folded in
    dt: Any = None  # BSR (n_e F, 3 n): its transpose


def _derivative_matrices(rows: ElementRows, n_atoms: int) -> tuple[Any, Any]:
    assert rows.centre is not None and rows.neighbour is not None and rows.dfp is not None
    centre, neighbour = rows.centre, rows.neighbour
    blocks = rows.dfp * rows.scale  # (P, 3, F)
    width, n_rows = len(rows.scale), len(rows.x)
    by_neighbour = np.argsort(neighbour, kind="stable")
    indptr = np.concatenate([[0], np.cumsum(np.bincount(neighbour, minlength=n_atoms))])
    d = sp.bsr_matrix(
        (np.ascontiguousarray(blocks[by_neighbour]), centre[by_neighbour], indptr),
        shape=(3 * n_atoms, width * n_rows),
    )
    by_centre = np.argsort(centre, kind="stable")
    indptr_t = np.concatenate([[0], np.cumsum(np.bincount(centre, minlength=n_rows))])
    dt = sp.bsr_matrix(
        (np.ascontiguousarray(blocks[by_centre].transpose(0, 2, 1)), neighbour[by_centre], indptr_t),
        shape=(width * n_rows, 3 * n_atoms),
    )
    return d, dt


class ShardLoss:
    """``evaluator(vector) -> LossParts`` for one shard (built once per worker)."""

    def __init__(self, shard: Shard, layout: Layout, activation: str, settings: LossSettings) -> None:
        self.layout = layout
        self.activation = activation
        self.settings = settings
        self.shard = shard
        self._residuals: Any = None
        self.natoms = shard.natoms.astype(np.float64)
        self.energy = shard.energy
        n_images = len(self.natoms)
        n_atoms = len(shard.atom_image)
        self.parts: list[_Element] = []
        for rows in shard.elements:
            count = np.bincount(rows.image, minlength=n_images).astype(float)
            part = _Element(rows.symbol, rows.x, rows.image, count)
            if settings.forces:
                part.d, part.dt = _derivative_matrices(rows, n_atoms)
            self.parts.append(part)
        if settings.forces:
            assert shard.forces is not None
            self.fref = shard.forces.ravel()
            self.fweight = np.repeat(1.0 / (3.0 * self.natoms[shard.atom_image]), 3)

    def __call__(self, vector: Array) -> LossParts:
        """Return the shard's loss parts and gradient at ``vector``."""
        return self.many([vector])[0]

    def many(self, vectors: Sequence[Array]) -> list[LossParts]:
        """Return the loss parts at each of ``vectors`` (an ensemble's members), each bit for bit what a call
        with that vector alone gives: the derivative matrices are applied to all of them in one product per
        element (whose columns are computed independently, in the same order as one vector's), the rest is
        done vector by vector."""
        vectors = [np.asarray(v, dtype=np.float64) for v in vectors]
        layout, act = self.layout, self.activation
        n_images = len(self.natoms)
        states, weights, gradients = [], [], []
        for vector in vectors:
            state = []
            predicted = np.zeros(n_images)
            for part in self.parts:
                ws = layout.views(vector, part.symbol)
                i0 = layout.scalings[part.symbol]
                outputs = core.forward(part.x, ws, act)
                per_image = np.bincount(part.image, outputs[-1][:, 0], minlength=n_images)
                predicted += vector[i0 + 1] * per_image + vector[i0] * part.count
                state.append((part, ws, i0, outputs, per_image))
            states.append((state, (predicted - self.energy) / self.natoms))
            weights.append((2.0 * self.settings.energy_coefficient) * states[-1][1] / self.natoms)
            gradients.append(np.zeros(layout.size))
        if self.settings.forces:
            force_terms = self._forces(vectors, [s for s, _ in states], weights, gradients)
        else:
            force_terms = [(0.0, 0.0)] * len(vectors)
            for vector, (state, _), energy_weight, gradient in zip(vectors, states, weights, gradients):
                for part, ws, i0, outputs, per_image in state:
                    grads = layout.views(gradient, part.symbol)
                    fprimes = core.derivatives(outputs, act)
                    seed = (energy_weight[part.image] * vector[i0 + 1])[:, None]
                    core.backward(ws, outputs, fprimes, seed, None, 0.0, act, grads)
                    gradient[i0] += energy_weight @ part.count
                    gradient[i0 + 1] += energy_weight @ per_image
        out = []
        for (_, residual), gradient, (force_loss, force_max) in zip(states, gradients, force_terms):
            energy_loss = float(residual @ residual)
            out.append(LossParts(
                loss=self.settings.objective(energy_loss, force_loss),
                energy_loss=energy_loss,
                force_loss=force_loss,
                energy_maxresid=float(np.abs(residual).max()) if n_images else 0.0,
                force_maxresid=force_max,
                n_images=n_images,
                gradient=gradient,
            ))
        return out

    def residuals(self, vector: Array, request: Any) -> Any:
        """Return the :class:`~amp_core.residuals.Residuals` ``request`` names (``RESIDUAL_JACOBIAN``)."""
        if self._residuals is None:
            from ._jacobian import ShardResiduals

            self._residuals = ShardResiduals(self.shard, self.layout, self.activation, self.settings)
        return self._residuals(vector, request)

    def _forces(self, vectors: list[Array], states: list[list[Any]], energy_weights: list[Array],
                gradients: list[Array]) -> list[tuple[float, float]]:
        act, layout = self.activation, self.layout
        one = len(vectors) == 1  # one vector: matrix-vector products, else one matrix-matrix product
        forces = np.zeros(self.fref.shape if one else (len(self.fref), len(vectors)))
        extras = [[] for _ in vectors]  # type: list[list[Array]]
        for index, part in enumerate(self.parts):
            columns = []
            for vector, state, extra in zip(vectors, states, extras):
                _, ws, i0, outputs, _ = state[index]
                fprimes = core.derivatives(outputs, act)
                columns.append(core.input_gradient(ws, fprimes, vector[i0 + 1]).ravel())
                extra.append(fprimes)
            forces -= part.d @ (columns[0] if one else np.stack(columns, axis=1))
        terms, weighted_all = [], []
        for k in range(len(vectors)):
            diff = (forces if one else np.ascontiguousarray(forces[:, k])) - self.fref
            weighted = diff * self.fweight
            terms.append((float(weighted @ diff), float(np.abs(diff).max()) if diff.size else 0.0))
            weighted *= 2.0 * float(self.settings.force_coefficient or 0.0)
            weighted_all.append(weighted)
        for index, part in enumerate(self.parts):
            directions = part.dt @ (weighted_all[0] if one else np.stack(weighted_all, axis=1))
            for k, (vector, state, extra) in enumerate(zip(vectors, states, extras)):
                _, ws, i0, outputs, per_image = state[index]
                direction = (directions if one else np.ascontiguousarray(directions[:, k])).reshape(part.x.shape)
                fprimes = extra[index]
                tangents = core.tangent(direction, ws, fprimes)
                slope = vector[i0 + 1]
                seed = (energy_weights[k][part.image] * slope)[:, None]
                core.backward(
                    ws, outputs, fprimes, seed, tangents, -slope, act, layout.views(gradients[k], part.symbol)
                )
                gradients[k][i0] += energy_weights[k] @ part.count
                gradients[k][i0 + 1] += energy_weights[k] @ per_image - tangents[-1].sum()
        return terms
