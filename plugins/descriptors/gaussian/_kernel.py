"""Fingerprints and their sparse position derivatives for the ``gaussian`` descriptor.

Centres are processed element by element, in blocks of a few dozen, so that every
temporary stays small (memory linear in atoms) and numpy works on long vectors.
Each block yields entry gradients ``ge[e, l, f]`` = d G_i[f] / d r_ij[l] for its
neighbour images e = (i, j, shift); a sparse matrix then adds them into the
(i, m) blocks (+ge to m = j, -ge to m = i).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from amp_core.protocols import GradientCallback
from amp_plugins.descriptors.gaussian._angular import (
    Block,
    PairOperators,
    SingularTriplet,
    angular_terms,
    find_triplets,
    singular_error,
)
from amp_plugins.descriptors.gaussian._neighbors import DerivativeBlocks, Neighbours
from amp_plugins.descriptors.gaussian._params import Cutoff
from amp_plugins.descriptors.gaussian._plan import AngularPlan, ElementPlan, Plan, RadialPlan

BLOCK_PAIRS = {False: 150_000, True: 90_000}
"""Target number of padded neighbour pairs (centres x width^2) per block, without/with derivatives
(measured best on the 108-atom benchmark: larger blocks cut Python overhead, smaller stay in cache)."""


@dataclass
class _Target:
    """Derivative blocks being filled: ``derivatives`` (n_pairs, 3, F), the block of each
    neighbour entry in this kernel's entry order, and the numbering's ``starts`` and ``own``."""

    derivatives: NDArray[np.float64]
    entry: NDArray[np.int64]
    starts: NDArray[np.int64]
    own: NDArray[np.int64]


@dataclass
class Sink:
    """A one-pass contraction being accumulated (instead of derivative blocks), for one or more
    sets of dE/dG (an ensemble's members).

    Attributes:
        gradient: ``gradient(rows, values) -> dE/dG`` (sets, B, F) (see
            ``amp_core.protocols.GradientCallback``).
        de_dr: (sets, n_atoms, 3) float64 dE/dR being summed, eV/Angstrom.
        virial: (sets, 3, 3) float64 sum of (dE/d r_ij) outer r_ij, eV, or ``None`` when not wanted.
    """

    gradient: GradientCallback
    de_dr: NDArray[np.float64]
    virial: NDArray[np.float64] | None

    def add(self, centres: NDArray[np.int64], values: NDArray[np.float64], ge: NDArray[np.float64],
            neighbour: NDArray[np.int64], block: Block) -> None:
        """Contract a block's entry gradients ``ge`` (n_e, 3, F) with dE/dG of its ``centres``."""
        de_dg = np.asarray(self.gradient(centres, values), dtype=np.float64)
        if de_dg.shape != (len(self.de_dr), *values.shape):
            raise ValueError(f"the gradient callback returned shape {de_dg.shape}, "
                             f"expected {(len(self.de_dr), *values.shape)}")
        if block.n_entries == 0:
            return
        owner = np.repeat(np.arange(len(centres)), np.diff(block.starts))
        n = self.de_dr.shape[1]
        for k, set_k in enumerate(de_dg):
            v = np.einsum("elf,ef->el", ge, set_k[owner])  # dE/d r_ij of every entry
            for axis in range(3):
                self.de_dr[k, :, axis] += np.bincount(neighbour, v[:, axis], minlength=n)
                self.de_dr[k, :, axis] -= np.bincount(centres[owner], v[:, axis], minlength=n)
            if self.virial is not None:
                self.virial[k] += v.T @ block.vectors


def fingerprint(
    plan: Plan,
    species_of_atom: NDArray[np.int64],
    neighbours: Neighbours,
    blocks: DerivativeBlocks | None,
    sink: Sink | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
    """Compute every atom's fingerprint and, given the block numbering, its derivative blocks.

    Args:
        plan: the descriptor's prepared parameters.
        species_of_atom: (n_atoms,) int64 species number of each atom (all centre elements).
        neighbours: the structure's neighbour images within the cutoff.
        blocks: the numbering of the derivative blocks, or ``None`` for values only.
        sink: contract the derivatives of each block of centres into it as they are produced
            (with ``blocks`` ``None``: no derivative blocks are stored).

    Returns:
        values (n_atoms, F) float64, zero-padded, and derivatives (n_pairs, 3, F) float64 in
        1/Angstrom (``None`` without ``blocks``).

    Raises:
        DataError: with derivatives, three atoms on one line where a zeta < 1 function has
            no finite derivative (see ``_angular.SINGULAR_BASE``).
    """
    n = len(species_of_atom)
    values = np.zeros((n, plan.n_features))
    derivatives = blocks is not None or sink is not None
    entry_species = species_of_atom[neighbours.neighbour]
    # Within each centre, entries sorted by species: the pair sums then split by species cheaply.
    order = np.lexsort((entry_species, neighbours.centre))
    entry_species = entry_species[order]
    vectors, distances = neighbours.vectors[order], neighbours.distances[order]
    neighbour = neighbours.neighbour[order]
    target = None
    if blocks is not None:
        zeros = np.zeros((len(blocks.pairs), 3, plan.n_features))
        target = _Target(zeros, blocks.entry[order], blocks.starts, blocks.own)
    cutoff, n_species = plan.cutoff, len(plan.species)
    fc, dfc = cutoff.evaluate(distances, derivatives)
    counts = neighbours.counts
    for z, element in plan.elements.items():
        centres = np.nonzero(species_of_atom == z)[0]
        for chunk in _blocks(centres, counts, derivatives):
            idx, starts = _gather(neighbours.starts, chunk)
            block = Block(
                vectors[idx], distances[idx], fc[idx], None if dfc is None else dfc[idx],
                entry_species[idx], starts, n_species,
            )  # fmt: skip
            try:
                chunk_values, ge = _block(element, block, cutoff, plan.angular, derivatives)
            except SingularTriplet as exc:
                first, second = order[idx[exc.e1]], order[idx[exc.e2]]
                raise singular_error(neighbours, int(first), int(second), exc.zeta, exc.gamma) from None
            values[chunk, : element.n_features] = chunk_values
            if target is not None:
                _scatter(target, chunk, idx, block, ge, element.n_features)  # type: ignore[arg-type]
            if sink is not None:
                sink.add(chunk, chunk_values, ge, neighbour[idx], block)  # type: ignore[arg-type]
    return values, None if target is None else target.derivatives


def _blocks(
    centres: NDArray[np.int64], counts: NDArray[np.int64], derivatives: bool
) -> list[NDArray[np.int64]]:
    width = int(counts[centres].max()) if len(centres) else 0
    size = max(1, min(64, BLOCK_PAIRS[derivatives] // max(width * width, 1)))
    return [centres[k : k + size] for k in range(0, len(centres), size)]


def _gather(
    starts: NDArray[np.int64], chunk: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Return the global entry indices of ``chunk``'s centres and their local starts."""
    counts = starts[chunk + 1] - starts[chunk]
    local = np.zeros(len(chunk) + 1, np.int64)
    np.cumsum(counts, out=local[1:])
    idx = np.arange(local[-1]) + np.repeat(starts[chunk] - local[:-1], counts)
    return idx, local


def _block(
    plan: ElementPlan, block: Block, cutoff: Cutoff, angular: Cutoff, derivatives: bool
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
    n_c = len(block.starts) - 1
    values = np.zeros((n_c, plan.n_features))
    ge = np.zeros((block.n_entries, 3, plan.n_features)) if derivatives else None
    if block.n_entries == 0:
        return values, ge
    centre = block.centre_matrix()
    if plan.radial is not None:
        _radial(plan.radial, block, centre, values, ge)
    if plan.angular is None:
        return values, ge
    if angular.Rc == cutoff.Rc:
        _angular(plan.angular, block, cutoff, centre, block.onehot(), values, ge)
        return values, ge
    inner, near = _within(block, angular, derivatives)  # the angular functions' own neighbours
    if inner.n_entries:
        ge_inner = None if ge is None else np.zeros((inner.n_entries, 3, plan.n_features))
        _angular(plan.angular, inner, angular, inner.centre_matrix(), inner.onehot(), values, ge_inner)
        if ge is not None:
            ge[near] += ge_inner  # zero there before: the radial columns of ge_inner are zero
    return values, ge


def _within(block: Block, cutoff: Cutoff, derivatives: bool) -> tuple[Block, NDArray[np.int64]]:
    """The block's entries closer than ``cutoff.Rc`` (cutoff values at that radius), and their indices."""
    near = np.flatnonzero(block.r < cutoff.Rc)
    r = block.r[near]
    fc, dfc = cutoff.evaluate(r, derivatives)
    n_c = len(block.starts) - 1
    owner = np.repeat(np.arange(n_c), np.diff(block.starts))
    counts = np.bincount(owner[near], minlength=n_c)
    starts = np.zeros(len(block.starts), np.int64)
    np.cumsum(counts, out=starts[1:])
    inner = Block(block.vectors[near], r, fc, dfc, block.species[near], starts, block.n_species)
    return inner, near


def _radial(
    plan: RadialPlan,
    block: Block,
    centre: sp.csr_matrix,
    values: NDArray[np.float64],
    ge: NDArray[np.float64] | None,
) -> None:
    """Add G2 values (and entry gradients) of every feature in ``plan``."""
    d = block.r[:, None] - plan.offset[None, :]
    g = np.exp(-plan.eta[None, :] * d * d)
    n_e, n_q = g.shape
    split = np.zeros((n_e, block.n_species, n_q))
    split[np.arange(n_e), block.species] = g * block.fc[:, None]
    sums = (centre @ split.reshape(n_e, -1)).reshape(-1, block.n_species, n_q)
    values[:, plan.feature] = sums[:, plan.element, plan.param]
    if ge is not None:
        dfc = block.dfc[:, None]  # type: ignore[index]
        slope = g * (dfc - 2.0 * plan.eta[None, :] * d * block.fc[:, None]) / block.r[:, None]
        coef = slope[:, plan.param] * (block.species[:, None] == plan.element[None, :])
        ge[:, :, plan.feature] = block.vectors[:, :, None] * coef[:, None, :]


def _angular(
    plan: AngularPlan,
    block: Block,
    cutoff: Cutoff,
    centre: sp.csr_matrix,
    onehot: NDArray[np.float64],
    values: NDArray[np.float64],
    ge: NDArray[np.float64] | None,
) -> None:
    """Add G4/G5 values (and entry gradients) of every feature in ``plan``."""
    t = find_triplets(block, cutoff.Rc, keep_far=plan.any_g5)
    terms = angular_terms(plan, block, t, cutoff, ge is not None)
    n_e, n_s, n_p = block.n_entries, block.n_species, len(plan.eta)
    ops = PairOperators(t, block.species, n_p, n_s)
    ones = np.ones(n_e)
    # per_entry[p, e1, Y] = sum over partners e2 > e1 of species Y of the term: each pair once
    per_entry = ops.rows(terms.value, ones)
    split = np.zeros((n_e, n_s, n_p, n_s))
    split[np.arange(n_e), block.species] = per_entry.transpose(1, 0, 2)
    sums = (centre @ split.reshape(n_e, -1)).reshape(-1, n_s, n_p, n_s)
    a, b = plan.pair[:, 0], plan.pair[:, 1]
    totals = sums[:, a, plan.param, b] + np.where(a != b, 1.0, 0.0) * sums[:, b, plan.param, a]
    values[:, plan.feature] = totals
    if ge is None:
        return
    scalar = ops.rows(terms.alpha, ones) + ops.cols(terms.delta, ones)  # type: ignore[arg-type]
    vector = ops.rows(terms.beta, block.vectors) + ops.cols(terms.beta, block.vectors)  # type: ignore[arg-type]
    for x, (features, partners, params) in enumerate(plan.by_element(n_s)):
        rows = np.nonzero(block.species == x)[0]
        if len(rows) == 0 or len(features) == 0:
            continue
        coef = scalar[params[None, :], rows[:, None], partners[None, :]]  # (n_x, n_f)
        grad = coef[:, None, :] * block.vectors[rows][:, :, None]
        grad += vector[params[None, :], rows[:, None], partners[None, :]].transpose(0, 2, 1)
        ge[np.ix_(rows, np.arange(3), features)] = grad


def _scatter(
    out: _Target,
    chunk: NDArray[np.int64],
    idx: NDArray[np.int64],
    block: Block,
    ge: NDArray[np.float64],
    n_features: int,
) -> None:
    """Add entry gradients into the (i, m) derivative blocks of ``chunk``'s centres.

    Entry (i, j, shift) adds ``ge`` to block (i, j) and subtracts it from block (i, i).
    """
    if len(idx) == 0:
        return  # no neighbours: the self blocks stay zero
    first, last = out.starts[chunk], out.starts[chunk + 1]
    n_rows = last - first
    row_starts = np.zeros(len(chunk) + 1, np.int64)
    np.cumsum(n_rows, out=row_starts[1:])
    rows = np.arange(row_starts[-1]) + np.repeat(first - row_starts[:-1], n_rows)  # global pair ids
    owner = np.repeat(np.arange(len(chunk)), np.diff(block.starts))
    local = out.entry[idx] - first[owner] + row_starts[owner]
    n_e = len(idx)
    # one +1 per column (entry): a CSC matrix needs no sorting
    spread = sp.csc_matrix((np.ones(n_e), local, np.arange(n_e + 1)), shape=(len(rows), n_e))
    flat = ge.reshape(n_e, -1)
    result = np.asarray(spread @ flat)
    self_rows = out.own[chunk] - first + row_starts[:-1]
    result[self_rows] -= np.asarray(block.centre_matrix() @ flat)
    out.derivatives[rows, :, :n_features] = result.reshape(len(rows), 3, n_features)
