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

from amp_plugins.descriptors.gaussian._angular import Block, PairOperators, angular_terms, find_triplets
from amp_plugins.descriptors.gaussian._neighbors import Neighbours
from amp_plugins.descriptors.gaussian._params import Cutoff
from amp_plugins.descriptors.gaussian._plan import AngularPlan, ElementPlan, RadialPlan

BLOCK_PAIRS = {False: 150_000, True: 90_000}
"""Target number of padded neighbour pairs (centres x width^2) per block, without/with derivatives
(measured best on the 108-atom benchmark: larger blocks cut Python overhead, smaller stay in cache)."""


@dataclass
class Output:
    """Arrays being filled: values (n_atoms, F); derivatives (n_pairs, 3, F) or None."""

    values: NDArray[np.float64]
    pairs: NDArray[np.int64] | None
    derivatives: NDArray[np.float64] | None
    pair_starts: NDArray[np.int64] | None
    entry_pair: NDArray[np.int64] | None
    self_pair: NDArray[np.int64] | None = None


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
    entry_species = species_of_atom[neighbours.neighbour]
    # Within each centre, entries sorted by species: the pair sums then split by species cheaply.
    order = np.lexsort((entry_species, neighbours.centre))
    entry_species = entry_species[order]
    vectors, distances = neighbours.vectors[order], neighbours.distances[order]
    if derivatives:
        _prepare_pairs(out, neighbours.centre[order], neighbours.neighbour[order], n, n_features)
    fc, dfc = cutoff.evaluate(distances, derivatives)
    counts = neighbours.counts
    for z, plan in plans.items():
        centres = np.nonzero(species_of_atom == z)[0]
        for chunk in _blocks(centres, counts, derivatives):
            idx, starts = _gather(neighbours.starts, chunk)
            block = Block(
                vectors[idx], distances[idx], fc[idx], None if dfc is None else dfc[idx],
                entry_species[idx], starts, n_species,
            )  # fmt: skip
            values, ge = _block(plan, block, cutoff, derivatives)
            out.values[chunk, : plan.n_features] = values
            if derivatives:
                _scatter(out, chunk, idx, block, ge, plan.n_features)  # type: ignore[arg-type]
    return out


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


def _prepare_pairs(
    out: Output, centre: NDArray[np.int64], neighbour: NDArray[np.int64], n: int, n_features: int
) -> None:
    """Fill the sorted unique (i, m) list, including (i, i), and allocate derivative blocks."""
    keys = np.concatenate([centre * n + neighbour, np.arange(n, dtype=np.int64) * (n + 1)])
    unique = np.unique(keys)
    out.pairs = np.stack([unique // n, unique % n], axis=1) if n else np.zeros((0, 2), np.int64)
    out.entry_pair = np.searchsorted(unique, centre * n + neighbour)
    out.pair_starts = np.searchsorted(out.pairs[:, 0], np.arange(n + 1))
    out.self_pair = np.searchsorted(unique, np.arange(n, dtype=np.int64) * (n + 1))
    out.derivatives = np.zeros((len(unique), 3, n_features))


def _scatter(
    out: Output,
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
    assert out.pair_starts is not None and out.entry_pair is not None and out.derivatives is not None
    first, last = out.pair_starts[chunk], out.pair_starts[chunk + 1]
    n_rows = last - first
    row_starts = np.zeros(len(chunk) + 1, np.int64)
    np.cumsum(n_rows, out=row_starts[1:])
    rows = np.arange(row_starts[-1]) + np.repeat(first - row_starts[:-1], n_rows)  # global pair ids
    owner = np.repeat(np.arange(len(chunk)), np.diff(block.starts))
    local = out.entry_pair[idx] - first[owner] + row_starts[owner]
    n_e = len(idx)
    # one +1 per column (entry): a CSC matrix needs no sorting
    spread = sp.csc_matrix((np.ones(n_e), local, np.arange(n_e + 1)), shape=(len(rows), n_e))
    flat = ge.reshape(n_e, -1)
    result = np.asarray(spread @ flat)
    self_rows = out.self_pair[chunk] - first + row_starts[:-1]  # type: ignore[index]
    result[self_rows] -= np.asarray(block.centre_matrix() @ flat)
    out.derivatives[rows, :, :n_features] = result.reshape(len(rows), 3, n_features)
