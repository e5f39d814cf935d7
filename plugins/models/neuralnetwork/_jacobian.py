"""Jacobian rows of the weighted energy and force residuals of one shard (numpy).

See :mod:`amp_core.residuals` for the residuals. With per-element networks
``E = sum_i (slope * o_L(x'_i) + intercept)`` and
``F[m, l] = -slope * sum_p t_L(p)``, where the sum runs over the derivative blocks
``p = (centre i, neighbour m)`` and ``t_L(p)`` is the forward tangent of the centre's
network along ``v_p = dfp[p, l] * scale`` (scaled input space), every residual is a sum
of per-atom (energies) or per-block (forces) network terms. One reverse pass over all
those terms at once gives each term's gradient; one small matrix product per residual
adds its terms (:func:`per_term_backward`). Only the atoms the request touches are passed through.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from amp_core.data import LossSettings
from amp_core.residuals import ResidualRequest, Residuals

from . import _core as core
from ._loss import Layout, Shard

Array = NDArray[np.float64]


def slots_of(target: NDArray[np.int64], n_rows: int) -> NDArray[np.int64]:
    """Return (n_rows, c) int64: the terms of each residual row (``target``: row of each term, sorted), padded with
    the index ``len(target)`` (a zero term)."""
    counts = np.bincount(target, minlength=n_rows)
    width = int(counts.max()) if len(target) else 0
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slots = np.full((n_rows, width), len(target), dtype=np.int64)
    column = np.arange(len(target)) - first[target]
    slots[target, column] = np.arange(len(target))
    return slots


def _gathered(values: Array, slots: NDArray[np.int64], bias: float) -> Array:
    """Return (R, c, k + 1): ``[values, bias]`` of each slot's term (zero for padding)."""
    padded = np.zeros((len(values) + 1, values.shape[1] + 1))
    padded[:-1, :-1] = values
    padded[:-1, -1] = bias
    return padded[slots]


def per_term_backward(weights: Sequence[Array], outputs: Sequence[Array], fprimes: Sequence[Array],
                      seed_output: Array | None, tangents: Sequence[Array] | None, seed_tangent: Array | None,
                      activation: str, slots: NDArray[np.int64], out: Array, offsets: Sequence[int]) -> None:
    """Add, for each residual row, the sum over its terms of ``d term_b / d W`` into ``out``.

    ``term_b = seed_output_b o_L,b + seed_tangent_b t_L,b``: the reverse pass of
    :func:`core.backward`, kept per term (row ``b`` of the batch) instead of summed over
    the batch; each residual's terms are then added by one small matrix product per row.

    Args:
        weights: ``W_1..W_L``.
        outputs, fprimes, tangents: per-term forward quantities (B rows each).
        seed_output: (B, 1) or ``None`` (zero); seed_tangent: (B, 1) or ``None`` (zero).
        slots: (R, c) int64 the terms of each residual row, padded with ``B`` (:func:`slots_of`).
        out: (R, n_parameters) rows, added to.
        offsets: the offset of each ``W_k`` in the parameter vector.
    """
    n = len(outputs[0])
    o_bar = np.zeros((n, 1)) if seed_output is None else seed_output
    t_bar = None
    if tangents is not None:
        t_bar = np.zeros((n, 1)) if seed_tangent is None else seed_tangent
    for k in range(len(weights) - 1, -1, -1):
        fp = fprimes[k]
        net_bar = o_bar * fp
        tn_bar = None
        if tangents is not None and t_bar is not None:
            factor = core.curvature_factor(outputs[k + 1], activation)
            if factor is not None:
                net_bar = net_bar + t_bar * factor * tangents[k + 1]
            tn_bar = t_bar * fp
        left = _gathered(outputs[k], slots, 1.0)  # (R, c, n_(k-1) + 1): the bias row takes net_bar itself
        right = _gathered(net_bar, slots, 0.0)[:, :, :-1]
        if tangents is not None and tn_bar is not None:
            left = np.concatenate([left, _gathered(tangents[k], slots, 0.0)], axis=1)
            right = np.concatenate([right, _gathered(tn_bar, slots, 0.0)[:, :, :-1]], axis=1)
        rows = np.matmul(left.transpose(0, 2, 1), right)  # (R, n_(k-1) + 1, n_k), W_k's layout
        out[:, offsets[k]:offsets[k] + rows[0].size] += rows.reshape(len(rows), -1)
        if k > 0:
            a_t = weights[k][:-1].T
            o_bar = net_bar @ a_t
            if tn_bar is not None:
                t_bar = tn_bar @ a_t


class ShardResiduals:
    """``residuals(vector, request) -> Residuals`` for one shard (built once per worker, on first use)."""

    def __init__(self, shard: Shard, layout: Layout, activation: str, settings: LossSettings) -> None:
        self.shard = shard
        self.layout = layout
        self.activation = activation
        self.settings = settings
        self.natoms = shard.natoms.astype(np.float64)
        n_atoms = len(shard.atom_image)
        self.blocks = []  # per element: pairs sorted by neighbour, and the neighbour index pointer
        for rows in shard.elements:
            if rows.neighbour is None:
                self.blocks.append(None)
                continue
            order = np.argsort(rows.neighbour, kind="stable")
            indptr = np.concatenate([[0], np.cumsum(np.bincount(rows.neighbour, minlength=n_atoms))])
            self.blocks.append((order, indptr))
        # row of each shard atom within its element's rows
        self.row_of = np.full(n_atoms, -1, dtype=np.int64)
        for rows in shard.elements:
            self.row_of[rows.atoms] = np.arange(len(rows.atoms))

    def __call__(self, vector: Array, request: ResidualRequest) -> Residuals:
        """Return the requested residuals and their Jacobian rows at ``vector``."""
        vector = np.asarray(vector, dtype=np.float64)
        shard, layout = self.shard, self.layout
        request.check(len(shard.natoms), len(shard.atom_image), self.settings.forces, "residual request")
        images, components = request.images, request.components
        n_e, n_f = len(images), len(components)
        values = np.zeros(n_e + n_f)
        jacobian = np.zeros((n_e + n_f, layout.size))
        if n_e:
            self._energies(vector, images, values[:n_e], jacobian[:n_e])
            scale = np.sqrt(self.settings.energy_coefficient) / self.natoms[images]
            values[:n_e] = scale * (values[:n_e] - shard.energy[images])
            jacobian[:n_e] *= scale[:, None]
        if n_f:
            assert shard.forces is not None
            self._forces(vector, components, values[n_e:], jacobian[n_e:])
            atom = components // 3
            scale = np.sqrt(self.settings.force_coefficient / (3.0 * self.natoms[shard.atom_image[atom]]))
            values[n_e:] = scale * (values[n_e:] - shard.forces.reshape(-1)[components])
            jacobian[n_e:] *= scale[:, None]
        return Residuals(values, jacobian)

    def _offsets(self, symbol: str) -> list[int]:
        return [offset for offset, _ in self.layout.weights[symbol]]

    def _energies(self, vector: Array, images: NDArray[np.int64], energy: Array, jacobian: Array) -> None:
        """Put the predicted energies (eV) of ``images`` in ``energy`` and d E / d parameters in ``jacobian``."""
        layout, act = self.layout, self.activation
        slot = np.full(len(self.natoms), -1, dtype=np.int64)
        slot[images] = np.arange(len(images))
        for rows in self.shard.elements:
            picked = np.flatnonzero(slot[rows.image] >= 0)
            if not len(picked):
                continue
            picked = picked[np.argsort(slot[rows.image[picked]], kind="stable")]  # grouped by residual row
            ws = layout.views(vector, rows.symbol)
            i0 = layout.scalings[rows.symbol]
            outputs = core.forward(rows.x[picked], ws, act)
            target = slot[rows.image[picked]]
            slope = vector[i0 + 1]
            per_image = np.bincount(target, outputs[-1][:, 0], minlength=len(images))
            count = np.bincount(target, minlength=len(images)).astype(np.float64)
            energy += slope * per_image + vector[i0] * count
            jacobian[:, i0] += count
            jacobian[:, i0 + 1] += per_image
            fprimes = core.derivatives(outputs, act)
            per_term_backward(ws, outputs, fprimes, np.full((len(picked), 1), slope), None, None, act,
                              slots_of(target, len(images)), jacobian, self._offsets(rows.symbol))

    def _forces(self, vector: Array, components: NDArray[np.int64], force: Array, jacobian: Array) -> None:
        """Put the predicted force components (eV/A) in ``force`` and d F / d parameters in ``jacobian``."""
        layout, act = self.layout, self.activation
        atom, axis = components // 3, components % 3
        for rows, blocks in zip(self.shard.elements, self.blocks):
            assert blocks is not None and rows.dfp is not None and rows.centre is not None
            order, indptr = blocks
            counts = indptr[atom + 1] - indptr[atom]
            total = int(counts.sum())
            if not total:
                continue
            target = np.repeat(np.arange(len(components)), counts)
            starts = np.repeat(indptr[atom] - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
            pairs = order[starts + np.arange(total)]
            centre = rows.centre[pairs]
            direction = np.asarray(rows.dfp[pairs, axis[target], :]) * rows.scale  # (T, F)
            used, local = np.unique(centre, return_inverse=True)
            ws = layout.views(vector, rows.symbol)
            i0 = layout.scalings[rows.symbol]
            slope = vector[i0 + 1]
            base = core.forward(rows.x[used], ws, act)
            outputs = [o[local] for o in base]
            fprimes = core.derivatives(outputs, act)
            tangents = core.tangent(direction, ws, fprimes)
            t_sum = np.bincount(target, tangents[-1][:, 0], minlength=len(components))
            force -= slope * t_sum
            jacobian[:, i0 + 1] -= t_sum
            per_term_backward(ws, outputs, fprimes, None, tangents, np.full((total, 1), -slope), act,
                              slots_of(target, len(components)), jacobian, self._offsets(rows.symbol))
