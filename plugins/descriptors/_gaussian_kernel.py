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

from amp_plugins.descriptors._gaussian_angular import Block, angular_terms, find_triplets, pair_operator
from amp_plugins.descriptors._gaussian_neighbors import Neighbours
from amp_plugins.descriptors._gaussian_params import Cutoff
from amp_plugins.descriptors._gaussian_plan import AngularPlan, ElementPlan, RadialPlan

BLOCK_PAIRS = 60_000
"""Target number of padded neighbour pairs (centres x width^2) per block."""


@dataclass
class Output:
    """Arrays being filled: values (n_atoms, F); derivatives (n_pairs, 3, F) or None."""

    values: NDArray[np.float64]
    pairs: NDArray[np.int64] | None
    derivatives: NDArray[np.float64] | None
    pair_starts: NDArray[np.int64] | None
    entry_pair: NDArray[np.int64] | None


def fingerprint(
    species_of_atom: NDArray[np.int64],
    plans: dict[int, ElementPlan],
    n_species: int,
    n_features: int,
    neighbours: Neighbours,
    cutoff: Cutoff,
    derivatives: bool,
) -> Output:
    """Compute every atom's fingerprint and, if asked, its derivative blocks.

    Args:
        species_of_atom: (n_atoms,) int64 species index of each atom (all have plans).
        plans: species index -> the element's feature tables.
        n_species: number of species the descriptor knows.
        n_features: width of the output (longest fingerprint).
        neighbours: the structure's neighbour images within the cutoff.
        cutoff: the cutoff function.
        derivatives: also compute d G_i / d R_m blocks.
    """
    n = len(species_of_atom)
    out = Output(np.zeros((n, n_features)), None, None, None, None)
    if derivatives:
        _prepare_pairs(out, neighbours, n, n_features)
    fc, dfc = cutoff.evaluate(neighbours.distances)
    entry_species = species_of_atom[neighbours.neighbour]
    counts = neighbours.counts
    for z, plan in plans.items():
        centres = np.nonzero(species_of_atom == z)[0]
        for chunk in _blocks(centres, counts):
            idx, starts = _gather(neighbours.starts, chunk)
            block = Block(
                neighbours.vectors[idx], neighbours.distances[idx], fc[idx], dfc[idx],
                entry_species[idx], starts, n_species,
            )  # fmt: skip
            values, ge = _block(plan, block, cutoff, derivatives)
            out.values[chunk, : plan.n_features] = values
            if derivatives:
                _scatter(out, chunk, idx, starts, ge, plan.n_features, neighbours)  # type: ignore[arg-type]
    return out


def _blocks(centres: NDArray[np.int64], counts: NDArray[np.int64]) -> list[NDArray[np.int64]]:
    width = int(counts[centres].max()) if len(centres) else 0
    size = max(1, min(64, BLOCK_PAIRS // max(width * width, 1)))
    return [centres[k : k + size] for k in range(0, len(centres), size)]


def _gather(starts: NDArray[np.int64], chunk: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Return the global entry indices of ``chunk``'s centres and their local starts."""
    counts = starts[chunk + 1] - starts[chunk]
    local = np.zeros(len(chunk) + 1, np.int64)
    np.cumsum(counts, out=local[1:])
    idx = np.arange(local[-1]) + np.repeat(starts[chunk] - local[:-1], counts)
    return idx, local


def _block(
    plan: ElementPlan, block: Block, cutoff: Cutoff, derivatives: bool
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
    n_c = len(block.starts) - 1
    values = np.zeros((n_c, plan.n_features))
    ge = np.zeros((block.n_entries, 3, plan.n_features)) if derivatives else None
    if block.n_entries == 0:
        return values, ge
    centre = block.centre_matrix()
    onehot = block.onehot()
    if plan.radial is not None:
        _radial(plan.radial, block, centre, values, ge)
    if plan.angular is not None:
        _angular(plan.angular, block, cutoff, centre, onehot, values, ge)
    return values, ge


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
        slope = g * (block.dfc[:, None] - 2.0 * plan.eta[None, :] * d * block.fc[:, None]) / block.r[:, None]
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
    stacked = np.tile(onehot, (n_p, 1))
    # per_entry[p, e1, Y] = sum over partners e2 > e1 of species Y of the term
    per_entry = (pair_operator(t, n_e, n_p, terms.value) @ stacked).reshape(n_p, n_e, n_s)
    split = np.zeros((n_e, n_s, n_p, n_s))
    split[np.arange(n_e), block.species] = per_entry.transpose(1, 0, 2)
    sums = (centre @ split.reshape(n_e, -1)).reshape(-1, n_s, n_p, n_s)
    a, b = plan.pair[:, 0], plan.pair[:, 1]
    totals = sums[:, a, plan.param, b] + np.where(a != b, 1.0, 0.0) * sums[:, b, plan.param, a]
    values[:, plan.feature] = totals
    if ge is None:
        return
    op_alpha = pair_operator(t, n_e, n_p, terms.alpha)  # type: ignore[arg-type]
    op_delta = pair_operator(t, n_e, n_p, terms.delta)  # type: ignore[arg-type]
    op_beta = pair_operator(t, n_e, n_p, terms.beta)  # type: ignore[arg-type]
    scalar = (op_alpha @ stacked + op_delta.T @ stacked).reshape(n_p, n_e, n_s)
    placed = np.zeros((n_e, n_s, 3))
    placed[np.arange(n_e), block.species] = block.vectors
    placed = np.tile(placed.reshape(n_e, 3 * n_s), (n_p, 1))
    vector = (op_beta @ placed + op_beta.T @ placed).reshape(n_p, n_e, n_s, 3)
    for x, (features, partners, params) in enumerate(plan.by_element(n_s)):
        rows = np.nonzero(block.species == x)[0]
        if len(rows) == 0 or len(features) == 0:
            continue
        coef = scalar[params[None, :], rows[:, None], partners[None, :]]  # (n_x, n_f)
        grad = coef[:, None, :] * block.vectors[rows][:, :, None]
        grad += vector[params[None, :], rows[:, None], partners[None, :]].transpose(0, 2, 1)
        ge[np.ix_(rows, np.arange(3), features)] = grad


def _prepare_pairs(out: Output, nb: Neighbours, n: int, n_features: int) -> None:
    """Fill the sorted unique (i, m) list, including (i, i), and allocate derivative blocks."""
    keys = np.concatenate([nb.centre * n + nb.neighbour, np.arange(n, dtype=np.int64) * (n + 1)])
    unique = np.unique(keys)
    out.pairs = np.stack([unique // n, unique % n], axis=1) if n else np.zeros((0, 2), np.int64)
    out.entry_pair = np.searchsorted(unique, nb.centre * n + nb.neighbour)
    out.pair_starts = np.searchsorted(out.pairs[:, 0], np.arange(n + 1))
    out.derivatives = np.zeros((len(unique), 3, n_features))


def _scatter(
    out: Output,
    chunk: NDArray[np.int64],
    idx: NDArray[np.int64],
    starts: NDArray[np.int64],
    ge: NDArray[np.float64],
    n_features: int,
    nb: Neighbours,
) -> None:
    """Add entry gradients into the (i, m) derivative blocks of ``chunk``'s centres."""
    pair_starts, entry_pair = out.pair_starts, out.entry_pair
    assert pair_starts is not None and entry_pair is not None and out.derivatives is not None
    first, last = pair_starts[chunk], pair_starts[chunk + 1]
    n_rows = last - first
    row_starts = np.zeros(len(chunk) + 1, np.int64)
    np.cumsum(n_rows, out=row_starts[1:])
    rows = np.arange(row_starts[-1]) + np.repeat(first - row_starts[:-1], n_rows)  # global pair ids
    counts = np.diff(starts)
    owner = np.repeat(np.arange(len(chunk)), counts)
    local = entry_pair[idx] - first[owner] + row_starts[owner]
    self_pair = np.searchsorted(out.pairs[rows, 1] + out.pairs[rows, 0] * len(out.values),  # type: ignore[index]
                                chunk * (len(out.values) + 1))  # fmt: skip
    n_e = len(idx)
    matrix = sp.csr_matrix(
        (np.concatenate([np.ones(n_e), -np.ones(n_e)]),
         (np.concatenate([local, self_pair[owner]]), np.concatenate([np.arange(n_e), np.arange(n_e)]))),
        shape=(len(rows), n_e),
    )  # fmt: skip
    block = matrix @ ge.reshape(n_e, -1)
    out.derivatives[rows, :, :n_features] = block.reshape(len(rows), 3, n_features)
