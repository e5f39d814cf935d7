"""Loss and analytic gradient of the neural network over one shard (numpy hot path).

Everything that does not depend on the parameter vector is prepared once in
:class:`ShardLoss`: scaled inputs per element as one matrix, and (with force training)
all fingerprint derivatives of the shard as two block-sparse matrices per element,
``D`` (rows: atom moved and direction, columns: centre row and feature) and its
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


@dataclass
class _Element:
    symbol: str
    x: Array  # (n_e, F) scaled inputs
    image: NDArray[np.int64]  # (n_e,) image of each row
    count: Array  # (I,) atoms of this element per image
    d: Any = None  # BSR (3 n, n_e F): d fp / d positions, scale folded in
    dt: Any = None  # BSR (n_e F, 3 n): its transpose


def _derivative_matrices(
    arrays: Mapping[str, Any], z: int, n_rows: int, n_atoms: int, scale: Array
) -> tuple[Any, Any]:
    key = f"dfp_{z}"
    if key not in arrays:
        raise DataError(f"shard has no fingerprint derivatives for element {z}; force training needs them")
    centre = np.asarray(arrays[f"dcentre_{z}"], dtype=np.int64)
    neighbour = np.asarray(arrays[f"dneighbour_{z}"], dtype=np.int64)
    blocks = np.asarray(arrays[key], dtype=np.float64) * scale  # (P, 3, F)
    width = len(scale)
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

    def __init__(
        self,
        arrays: Mapping[str, Any],
        layout: Layout,
        fprange: Mapping[str, Array],
        activation: str,
        settings: LossSettings,
    ) -> None:
        self.layout = layout
        self.activation = activation
        self.settings = settings
        self.natoms = np.asarray(arrays["natoms"], dtype=np.float64)
        self.energy = np.asarray(arrays["energy"], dtype=np.float64)
        n_images = len(self.natoms)
        atom_image = np.asarray(arrays["atom_image"], dtype=np.int64)
        n_atoms = len(atom_image)
        self.parts: list[_Element] = []
        for z in np.asarray(arrays["elements"]):
            symbol = symbol_of(int(z), layout.elements, "training shard")
            fp = np.asarray(arrays[f"fp_{int(z)}"], dtype=np.float64)
            check_width(symbol, fp.shape[1], len(fprange[symbol]), "training shard")
            scale, shift = input_scaling(fprange[symbol])
            image = atom_image[np.asarray(arrays[f"atoms_{int(z)}"], dtype=np.int64)]
            part = _Element(
                symbol, fp * scale + shift, image, np.bincount(image, minlength=n_images).astype(float)
            )
            if settings.forces:
                part.d, part.dt = _derivative_matrices(arrays, int(z), len(fp), n_atoms, scale)
            self.parts.append(part)
        if settings.forces:
            self.fref = np.asarray(arrays["forces"], dtype=np.float64).ravel()
            self.fweight = np.repeat(1.0 / (3.0 * self.natoms[atom_image]), 3)

    def __call__(self, vector: Array) -> LossParts:
        """Return the shard's loss parts and gradient at ``vector``."""
        vector = np.asarray(vector, dtype=np.float64)
        layout, act = self.layout, self.activation
        n_images = len(self.natoms)
        state = []
        predicted = np.zeros(n_images)
        for part in self.parts:
            ws = layout.views(vector, part.symbol)
            i0 = layout.scalings[part.symbol]
            outputs = core.forward(part.x, ws, act)
            per_image = np.bincount(part.image, outputs[-1][:, 0], minlength=n_images)
            predicted += vector[i0 + 1] * per_image + vector[i0] * part.count
            state.append((part, ws, i0, outputs, per_image))
        residual = (predicted - self.energy) / self.natoms
        energy_weight = (2.0 * self.settings.energy_coefficient) * residual / self.natoms
        gradient = np.zeros(layout.size)
        force_loss = force_max = 0.0
        if self.settings.forces:
            force_loss, force_max = self._forces(vector, state, energy_weight, gradient)
        else:
            for part, ws, i0, outputs, per_image in state:
                grads = layout.views(gradient, part.symbol)
                fprimes = core.derivatives(outputs, act)
                seed = (energy_weight[part.image] * vector[i0 + 1])[:, None]
                core.backward(ws, outputs, fprimes, seed, None, 0.0, act, grads)
                gradient[i0] += energy_weight @ part.count
                gradient[i0 + 1] += energy_weight @ per_image
        energy_loss = float(residual @ residual)
        return LossParts(
            loss=self.settings.objective(energy_loss, force_loss),
            energy_loss=energy_loss,
            force_loss=force_loss,
            energy_maxresid=float(np.abs(residual).max()) if n_images else 0.0,
            force_maxresid=force_max,
            n_images=n_images,
            gradient=gradient,
        )

    def _forces(
        self, vector: Array, state: list[Any], energy_weight: Array, gradient: Array
    ) -> tuple[float, float]:
        act, layout = self.activation, self.layout
        forces = np.zeros_like(self.fref)
        extra = []
        for part, ws, i0, outputs, _ in state:
            fprimes = core.derivatives(outputs, act)
            gx = core.input_gradient(ws, fprimes, vector[i0 + 1])
            forces -= part.d @ gx.ravel()
            extra.append(fprimes)
        diff = forces - self.fref
        weighted = diff * self.fweight
        force_loss = float(weighted @ diff)
        force_max = float(np.abs(diff).max()) if diff.size else 0.0
        weighted *= 2.0 * float(self.settings.force_coefficient or 0.0)
        for (part, ws, i0, outputs, per_image), fprimes in zip(state, extra):
            direction = (part.dt @ weighted).reshape(part.x.shape)
            tangents = core.tangent(direction, ws, fprimes)
            slope = vector[i0 + 1]
            seed = (energy_weight[part.image] * slope)[:, None]
            core.backward(
                ws, outputs, fprimes, seed, tangents, -slope, act, layout.views(gradient, part.symbol)
            )
            gradient[i0] += energy_weight @ part.count
            gradient[i0 + 1] += energy_weight @ per_image - tangents[-1].sum()
        return force_loss, force_max
