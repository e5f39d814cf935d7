"""Zernike fingerprints and their sparse position derivatives, in numpy.

Formulas in :mod:`~amp_plugins.descriptors.zernike._basis`. Centres are processed in runs
whose neighbour images number at most :data:`CHUNK_ENTRIES`, so temporaries stay small
(memory linear in atoms). Each run yields entry gradients ``ge[e, a, f]`` =
d G_i[f] / d r_ij[a] for its neighbour images e = (i, j, shift); a sparse matrix adds
them into the (i, m) derivative blocks (+ge to m = j, -ge to m = i).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from amp_plugins.descriptors.gaussian._neighbors import DerivativeBlocks, Neighbours
from amp_plugins.descriptors.gaussian._params import Cutoff
from amp_plugins.descriptors.zernike._basis import Basis

CHUNK_ENTRIES = 2_000
"""Most neighbour images per run of centres (a run of one centre may have more)."""


def fingerprint(
    basis: Basis,
    cutoff: Cutoff,
    weights: NDArray[np.float64],
    species_of_atom: NDArray[np.int64],
    neighbours: Neighbours,
    blocks: DerivativeBlocks | None,
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
    """Compute every atom's fingerprint and, given the block numbering, its derivative blocks.

    Args:
        basis: the feature tables for the descriptor's ``nmax``.
        cutoff: the cutoff function.
        weights: (n_species, n_species) float64; ``weights[a, b]`` weighs a neighbour of
            species b around a centre of species a.
        species_of_atom: (n_atoms,) int64 species of each atom.
        neighbours: the structure's neighbour images within the cutoff.
        blocks: the numbering of the derivative blocks, or ``None`` for values only.

    Returns:
        values (n_atoms, F) float64 and derivatives (n_pairs, 3, F) float64 in
        1/Angstrom times the value unit (``None`` without ``blocks``).
    """
    n_atoms, n_f = len(species_of_atom), basis.n_features
    values = np.zeros((n_atoms, n_f))
    derivatives = None if blocks is None else np.zeros((len(blocks.pairs), 3 * n_f))
    starts = neighbours.starts
    first = 0
    while first < n_atoms:
        last = int(np.searchsorted(starts, starts[first] + CHUNK_ENTRIES, side="right")) - 1
        last = min(max(last, first + 1), n_atoms)
        lo, hi = int(starts[first]), int(starts[last])
        if hi > lo:
            centre = neighbours.centre[lo:hi] - first
            w = weights[
                species_of_atom[neighbours.centre[lo:hi]], species_of_atom[neighbours.neighbour[lo:hi]]
            ]
            run_values, ge = _run(
                basis, cutoff, w, centre, last - first, neighbours.vectors[lo:hi], blocks is not None
            )
            values[first:last] = run_values
            if derivatives is not None and blocks is not None and ge is not None:
                _scatter(derivatives, blocks, neighbours.centre[lo:hi], lo, hi, ge)
        first = last
    return values, None if derivatives is None else derivatives.reshape(-1, 3, n_f)


def _run(
    basis: Basis,
    cutoff: Cutoff,
    w: NDArray[np.float64],
    centre: NDArray[np.int64],
    n_centres: int,
    vectors: NDArray[np.float64],
    with_derivatives: bool,
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
    """Values (n_centres, F) and entry gradients (E, 3 F) of one run of centres."""
    n_e = len(centre)
    r = np.sqrt(np.einsum("ea,ea->e", vectors, vectors))
    fc, dfc = cutoff.evaluate(r, with_derivatives)
    d = vectors * (1.0 / cutoff.Rc)
    x, y, z = d[:, 0], d[:, 1], d[:, 2]
    s = x * x + y * y + z * z
    lmax = basis.nmax
    qr, qi = _powers(x, y, lmax)  # (L+1, E): real and imaginary parts of (x + i y)^m
    pi, pi_z, pi_s = _legendre(z, s, lmax, with_derivatives)  # (L+1, L+1, E), index [l, m]
    spow = np.ones((basis.radial.shape[1], n_e))
    for t in range(1, len(spow)):
        spow[t] = spow[t - 1] * s
    radial = basis.radial @ spow  # (F, E)
    tf, tl, tm = basis.term_feature, basis.term_l, basis.term_m
    g = radial[tf] * pi[tl, tm]  # (T, E): P_nl Pi_lm
    ag = (w * fc)[None, :] * g
    summing = sp.csr_matrix((np.ones(n_e), centre, np.arange(n_e + 1)), shape=(n_e, n_centres)).T.tocsr()
    q_re, q_im = qr[tm], qi[tm]
    c_re = np.asarray(summing @ (ag * q_re).T)  # (n_centres, T)
    c_im = np.asarray(summing @ (ag * q_im).T)
    values = (basis.term_scale * (c_re * c_re + c_im * c_im)) @ basis.sum_terms
    if not with_derivatives:
        return values, None
    # A = 2 w_m K^2 C of each entry's centre; u = Re(A^* Q), and Re(A^* dQ/dx), Re(A^* dQ/dy)
    are = (2.0 * basis.term_scale * c_re)[centre].T  # (T, E)
    aim = (2.0 * basis.term_scale * c_im)[centre].T
    u = are * q_re + aim * q_im
    prev = np.maximum(tm - 1, 0)
    m = tm[:, None].astype(np.float64)
    p_re, p_im = qr[prev], qi[prev]
    ux = m * (are * p_re + aim * p_im)
    uy = m * (aim * p_re - are * p_im)
    dradial = (basis.radial[:, 1:] * np.arange(1, basis.radial.shape[1])) @ spow[:-1]  # dP/ds
    g_s = dradial[tf] * pi[tl, tm] + radial[tf] * pi_s[tl, tm]  # type: ignore[index]
    g_z = radial[tf] * pi_z[tl, tm]  # type: ignore[index]
    # d(w fc f)/dr = (w fc / Rc) grad_d f + w dfc f r / |r|; the terms along r share one factor
    along = u * (g_s * (2.0 * w * fc / cutoff.Rc**2)[None, :] + g * (w * dfc / r)[None, :])  # type: ignore[operator]
    total = along.T @ basis.sum_terms  # (E, F)
    scale = (w * fc / cutoff.Rc)[:, None]
    ge = np.empty((n_e, 3, basis.n_features))
    ge[:, 0] = scale * ((ux * g).T @ basis.sum_terms) + vectors[:, 0:1] * total
    ge[:, 1] = scale * ((uy * g).T @ basis.sum_terms) + vectors[:, 1:2] * total
    ge[:, 2] = scale * ((u * g_z).T @ basis.sum_terms) + vectors[:, 2:3] * total
    return values, ge.reshape(n_e, -1)


def _powers(
    x: NDArray[np.float64], y: NDArray[np.float64], lmax: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return the real and imaginary parts of (x + i y)^m, m = 0..lmax, each (lmax + 1, E)."""
    qr, qi = np.empty((lmax + 1, len(x))), np.empty((lmax + 1, len(x)))
    qr[0], qi[0] = 1.0, 0.0
    for k in range(1, lmax + 1):
        qr[k] = x * qr[k - 1] - y * qi[k - 1]
        qi[k] = x * qi[k - 1] + y * qr[k - 1]
    return qr, qi


def _legendre(
    z: NDArray[np.float64], s: NDArray[np.float64], lmax: int, with_derivatives: bool
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None, NDArray[np.float64] | None]:
    """Return Pi_lm(z, s) and (with derivatives) dPi/dz and dPi/ds, each (lmax + 1, lmax + 1, E), [l, m]; zero for m > l."""
    shape = (lmax + 1, lmax + 1, len(z))
    pi = np.zeros(shape)
    pz = np.zeros(shape) if with_derivatives else None
    ps = np.zeros(shape) if with_derivatives else None
    double_factorial = 1.0
    for m in range(lmax + 1):
        if m > 0:
            double_factorial *= 2 * m - 1
        pi[m, m] = double_factorial
        if m + 1 <= lmax:
            pi[m + 1, m] = (2 * m + 1) * z * double_factorial
            if pz is not None:
                pz[m + 1, m] = (2 * m + 1) * double_factorial
        for l in range(m + 2, lmax + 1):
            a, b = (2 * l - 1) / (l - m), (l + m - 1) / (l - m)
            pi[l, m] = a * z * pi[l - 1, m] - b * s * pi[l - 2, m]
            if pz is not None and ps is not None:
                pz[l, m] = a * (pi[l - 1, m] + z * pz[l - 1, m]) - b * s * pz[l - 2, m]
                ps[l, m] = a * z * ps[l - 1, m] - b * (pi[l - 2, m] + s * ps[l - 2, m])
    return pi, pz, ps


def _scatter(
    out: NDArray[np.float64],
    blocks: DerivativeBlocks,
    centre: NDArray[np.int64],
    lo: int,
    hi: int,
    ge: NDArray[np.float64],
) -> None:
    """Add entry gradients ``ge`` (E, 3 F) of entries lo:hi into ``out`` (n_pairs, 3 F).

    Entry (i, j, shift) adds to block (i, j) and subtracts from block (i, i); for an image
    of the centre itself (j == i) the two cancel.
    """
    n_e = hi - lo
    rows = np.concatenate([blocks.entry[lo:hi], blocks.own[centre]])
    first, last = int(rows.min()), int(rows.max()) + 1
    data = np.concatenate([np.ones(n_e), -np.ones(n_e)])
    cols = np.concatenate([np.arange(n_e), np.arange(n_e)])
    spread = sp.csr_matrix((data, (rows - first, cols)), shape=(last - first, n_e))
    out[first:last] += np.asarray(spread @ ge)
