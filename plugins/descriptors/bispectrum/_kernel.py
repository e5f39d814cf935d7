"""The numpy kernel of the ``bispectrum`` descriptor: values and analytic derivative blocks.

Per centre i, the density coefficients are c_i = sum_k w_k fc(r_k) U(r_k) over its
neighbour images k (the centre itself does not contribute, as in Amp), and each feature
is B_f = Re sum_t coef_t conj(c[j_t]) c[1_t] c[2_t] over the terms of :mod:`._plan`.

Derivatives (in the manner of Thompson et al., J. Comput. Phys. 285, 316 (2015)): with
the adjoint Y_f = d B_f / d c, collected once per centre as

    Y_f[j_t] += coef_t conj(c[1_t] c[2_t]),  Y_f[1_t] += coef_t conj(c[j_t]) c[2_t],
    Y_f[2_t] += coef_t conj(c[j_t]) c[1_t],

a neighbour image k moves B_f by d B_f / d r_k = Re sum_e (d (w_k fc U_k)[e] / d r_k) Y_f[e].
That adds to block (i, j_k) and, with the opposite sign, to block (i, i).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from amp_plugins.descriptors.bispectrum._su2 import cayley_klein, wigner_matrices

if TYPE_CHECKING:
    from amp_plugins.descriptors.bispectrum._plan import Plan
    from amp_plugins.descriptors.gaussian._neighbors import DerivativeBlocks, Neighbours
    from amp_plugins.descriptors.gaussian._params import Cutoff

MAX_ENTRIES = 1500
"""Neighbour images handled at once (the derivative of U takes 48 bytes times the U size each)."""
MAX_CENTRES = 24
"""Centres handled at once (each holds one product per term)."""


@functools.cache
def _scatter(plan: Plan) -> Any:
    """Return the sparse (n_features * size, 3 n_terms) map from term products to the adjoints Y."""
    from scipy.sparse import csr_matrix

    n = len(plan.coef)
    base = plan.feature * plan.size
    rows = np.concatenate([base + plan.term_j, base + plan.term_1, base + plan.term_2])
    columns = np.arange(3 * n)
    return csr_matrix((np.ones(3 * n), (rows, columns)), shape=(plan.n_features * plan.size, 3 * n))


def fingerprint(
    plan: Plan,
    cutoff: Cutoff,
    weights: NDArray[np.float64],
    neighbours: Neighbours,
    blocks: DerivativeBlocks | None,
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
    """Compute every atom's bispectrum and, given the block numbering, its derivative blocks.

    Args:
        plan: the term table of jmax.
        cutoff: the cutoff function (its ``Rc`` also sets the 3-sphere mapping).
        weights: (n_entries,) float64 weight of each neighbour entry's element.
        neighbours: all neighbour images within Rc, grouped by centre.
        blocks: the derivative-block numbering of ``neighbours``, or None for values only.

    Returns:
        values (n_atoms, n_features) float64 and derivative blocks (n_pairs, 3,
        n_features) float64 in 1/Angstrom (None without ``blocks``).
    """
    n_atoms = len(neighbours.starts) - 1
    nf = plan.n_features
    values = np.zeros((n_atoms, nf))
    derivatives = None if blocks is None else np.zeros((len(blocks.pairs), 3, nf))
    for first, last in _chunks(neighbours.starts):
        e0, e1 = int(neighbours.starts[first]), int(neighbours.starts[last])
        part = _chunk(plan, cutoff, weights[e0:e1], neighbours, first, last, blocks is not None)
        values[first:last] = part[0]
        if derivatives is not None and blocks is not None and part[1] is not None:
            step = part[1]
            np.add.at(derivatives, blocks.entry[e0:e1], step)
            np.add.at(derivatives, blocks.own[neighbours.centre[e0:e1]], -step)
    return values, derivatives


def _chunks(starts: NDArray[np.int64]) -> list[tuple[int, int]]:
    """Split centres 0..n into runs of at most MAX_CENTRES centres and about MAX_ENTRIES entries."""
    out, first, n = [], 0, len(starts) - 1
    while first < n:
        last = first + 1
        while last < n and last - first < MAX_CENTRES and starts[last + 1] - starts[first] <= MAX_ENTRIES:
            last += 1
        out.append((first, last))
        first = last
    return out


def _chunk(
    plan: Plan,
    cutoff: Cutoff,
    weights: NDArray[np.float64],
    neighbours: Neighbours,
    first: int,
    last: int,
    derivatives: bool,
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
    """Return values (last - first, n_features) and d B / d r of each entry (n_entries, 3, n_features)."""
    from scipy.sparse import csr_matrix

    e0, e1 = int(neighbours.starts[first]), int(neighbours.starts[last])
    vectors, r = neighbours.vectors[e0:e1], neighbours.distances[e0:e1]
    n_centres, n_entries = last - first, e1 - e0
    fc, dfc = cutoff.evaluate(r, derivative=derivatives)
    a, b, da, db = cayley_klein(vectors, cutoff.Rc, derivatives)
    u, du = wigner_matrices(a, b, plan.two_jmax, da, db)
    local = neighbours.centre[e0:e1] - first
    gather = csr_matrix((weights * fc, (local, np.arange(n_entries))), shape=(n_centres, n_entries))
    c = np.asarray(gather @ u)  # (centres, size) density coefficients
    cj, c1, c2 = c[:, plan.term_j], c[:, plan.term_1], c[:, plan.term_2]
    conj_cj = np.conj(cj)
    c12 = c1 * c2
    products = (conj_cj * c12).real * plan.coef
    values = np.add.reduceat(products, plan.starts[:-1], axis=1) if products.shape[1] else products
    if not derivatives:
        return values, None
    assert du is not None and dfc is not None
    coef = plan.coef
    terms = np.concatenate([np.conj(c12) * coef, conj_cj * c2 * coef, conj_cj * c1 * coef], axis=1)
    adjoint = np.asarray(_scatter(plan) @ terms.T).T.reshape(n_centres, plan.n_features, plan.size)
    unit = vectors / r[:, None]
    # d (w fc U) / d r: (entries, 3, size)
    dwu = du * (weights * fc)[:, None, None]
    dwu += (weights * dfc)[:, None, None] * unit[:, :, None] * u[:, None, :]
    step = np.empty((n_entries, 3, plan.n_features))
    starts = neighbours.starts[first : last + 1] - e0
    for k in range(n_centres):
        s, e = int(starts[k]), int(starts[k + 1])
        if s == e:
            continue
        # Re(d Y) as one real product: d as interleaved (re, im) pairs against (Re Y, -Im Y) pairs
        d = dwu[s:e].reshape(-1, plan.size).view(np.float64)
        y = np.empty((plan.n_features, plan.size, 2))
        y[:, :, 0] = adjoint[k].real
        y[:, :, 1] = -adjoint[k].imag
        step[s:e] = (d @ y.reshape(plan.n_features, -1).T).reshape(e - s, 3, plan.n_features)
    return values, step
