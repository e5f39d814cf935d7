"""Numerics of the ``pairpotential`` model: neighbour pairs, the Morse term and its derivatives.

The pair energy of atoms at distance ``r`` (Angstrom) of pair type ``t`` is

    phi(r) = D_t (u^2 - 2 u) fc(r),   u = exp(-a_t (r - r0_t)),
    fc(r) = 0.5 (cos(pi r / rc) + 1) for r < rc, 0 beyond,

so phi has its minimum near r0_t with depth about -D_t, and phi and phi' go to 0 at rc.
Every function here works on flat arrays over all pairs at once (no Python loop over pairs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import vesin
from numpy.typing import NDArray

from amp_core.errors import DataError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def pair_type_table(n_elements: int) -> IntArray:
    """Return the (E, E) int64 symmetric table of pair-type indices.

    Types run over unordered element pairs (k, l), k <= l, in the order
    (0, 0), (0, 1), ..., (0, E-1), (1, 1), ..., (E-1, E-1).
    """
    table = np.zeros((n_elements, n_elements), dtype=np.int64)
    t = 0
    for k in range(n_elements):
        for m in range(k, n_elements):
            table[k, m] = table[m, k] = t
            t += 1
    return table


def structure_pairs(
    positions: FloatArray, cell: FloatArray, pbc: NDArray[np.bool_], cutoff: float, where: str = "structure"
) -> tuple[IntArray, IntArray, FloatArray]:
    """Return every unordered pair of atoms within ``cutoff``, periodic images included.

    A pair of an atom with its own periodic image appears once per image pair
    (S and -S count once), so the energy of the cell is the sum over the pairs.

    Args:
        positions: (n_atoms, 3) float64, Angstrom.
        cell: (3, 3) float64 cell vectors as rows, Angstrom; rows of non-periodic
            axes may be zero.
        pbc: (3,) bool periodicity per axis.
        cutoff: Angstrom.
        where: names the structure in error messages.

    Returns:
        ``(i, j, d)``: (P,) int64, (P,) int64 and (P, 3) float64 with
        ``d = positions[j] + shift - positions[i]`` (Angstrom).

    Raises:
        DataError: a periodic axis has a zero cell vector, or the search fails.
    """
    pbc = np.asarray(pbc, dtype=bool)
    cell = np.asarray(cell, dtype=np.float64)
    lengths = np.linalg.norm(cell, axis=1)
    bad = [axis for axis in range(3) if pbc[axis] and lengths[axis] == 0.0]
    if bad:
        raise DataError(
            f"{where}: axis {bad} is periodic but its cell vector is zero; "
            "set a cell vector for every periodic axis or set pbc=False there"
        )
    if len(positions) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3))
    search = vesin.NeighborList(cutoff=float(cutoff), full_list=False)
    try:
        i, j, d = search.compute(np.asarray(positions, dtype=np.float64), cell, pbc.tolist(), "ijD")
    except Exception as exc:  # vesin raises plain RuntimeError/ValueError
        raise DataError(
            f"{where}: neighbour search failed ({type(exc).__name__}: {exc}); check cell and pbc"
        ) from exc
    return i.astype(np.int64), j.astype(np.int64), np.asarray(d, dtype=np.float64).reshape(-1, 3)


def cutoff_terms(r: FloatArray, cutoff: float) -> tuple[FloatArray, FloatArray]:
    """Return the cosine cutoff fc(r) and dfc/dr (1/Angstrom), both (P,) float64."""
    inside = r < cutoff
    arg = np.pi * r / cutoff
    fc = np.where(inside, 0.5 * (np.cos(arg) + 1.0), 0.0)
    dfc = np.where(inside, -0.5 * np.pi / cutoff * np.sin(arg), 0.0)
    return fc, dfc


@dataclass
class PairTerms:
    """Per-pair values of one parameter set (all arrays run over the P pairs).

    Attributes:
        phi: (P,) float64 pair energies, eV.
        dphi: (P,) float64 d phi / d r, eV/Angstrom.
        phi_grad: (P, 3) float64 d phi / d (D, a, r0).
        dphi_grad: (P, 3) float64 d (d phi / d r) / d (D, a, r0), or ``None``.
    """

    phi: FloatArray
    dphi: FloatArray
    phi_grad: FloatArray | None = None
    dphi_grad: FloatArray | None = None


def pair_terms(
    r: FloatArray,
    fc: FloatArray,
    dfc: FloatArray,
    params: FloatArray,
    *,
    gradient: bool = False,
    force_gradient: bool = False,
) -> PairTerms:
    """Evaluate the Morse pair term and, on request, its parameter derivatives.

    Args:
        r: (P,) float64 pair distances, Angstrom.
        fc, dfc: (P,) float64 cutoff function and its r-derivative (:func:`cutoff_terms`).
        params: (P, 3) float64 (D eV, a 1/Angstrom, r0 Angstrom) of each pair's type.
        gradient: also return d phi / d params.
        force_gradient: also return d phi'(r) / d params (needed by the force loss).
    """
    depth, alpha, r0 = params[:, 0], params[:, 1], params[:, 2]
    x = r - r0
    u = np.exp(-alpha * x)
    shape = u * u - 2.0 * u  # Morse shape, M / D
    slope = 2.0 * alpha * u * (1.0 - u)  # dM/dr / D
    terms = PairTerms(phi=depth * shape * fc, dphi=depth * (slope * fc + shape * dfc))
    if gradient or force_gradient:
        dshape_da = 2.0 * x * u * (1.0 - u)  # d shape / d a
        dshape_dr0 = -2.0 * alpha * u * (1.0 - u)  # d shape / d r0
    if gradient:
        terms.phi_grad = np.stack([shape * fc, depth * dshape_da * fc, depth * dshape_dr0 * fc], axis=1)
    if force_gradient:
        dslope_da = 2.0 * u * (1.0 - u) - 2.0 * alpha * x * u * (1.0 - 2.0 * u)
        dslope_dr0 = 2.0 * alpha * alpha * u * (1.0 - 2.0 * u)
        terms.dphi_grad = np.stack(
            [
                slope * fc + shape * dfc,
                depth * (dslope_da * fc + dshape_da * dfc),
                depth * (dslope_dr0 * fc + dshape_dr0 * dfc),
            ],
            axis=1,
        )
    return terms


@dataclass
class ShardPairs:
    """Every neighbour pair of one shard, found once (atom indices are shard indices).

    Attributes:
        i, j: (P,) int64 atoms of each pair.
        image: (P,) int64 image (within the shard) of each pair.
        kind: (P,) int64 pair-type index (:func:`pair_type_table`).
        r: (P,) float64 distances, Angstrom.
        unit: (P, 3) float64 unit vectors from atom i to (the image of) atom j.
        fc, dfc: (P,) float64 cutoff function and its derivative.
    """

    i: IntArray
    j: IntArray
    image: IntArray
    kind: IntArray
    r: FloatArray
    unit: FloatArray
    fc: FloatArray
    dfc: FloatArray


def shard_pairs(
    arrays: Mapping[str, NDArray[Any]], element_index: IntArray, n_elements: int, cutoff: float
) -> ShardPairs:
    """Find the neighbour pairs of every image of a shard (one loop over images, once).

    Args:
        arrays: shard arrays in the :mod:`amp_core.reshape` layout.
        element_index: (n,) int64 model element index of every shard atom.
        n_elements: number of model elements E (fixes the pair-type numbering).
        cutoff: Angstrom.
    """
    natoms = np.asarray(arrays["natoms"], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(natoms)])
    positions = np.asarray(arrays["positions"], dtype=np.float64)
    parts_i, parts_j, parts_d = [], [], []
    for k in range(len(natoms)):
        i, j, d = structure_pairs(
            positions[offsets[k] : offsets[k + 1]],
            np.asarray(arrays["cell"][k]),
            np.asarray(arrays["pbc"][k]),
            cutoff,
            where=f"shard image {k}",
        )
        parts_i.append(i + offsets[k])
        parts_j.append(j + offsets[k])
        parts_d.append(d)
    i = np.concatenate(parts_i) if parts_i else np.zeros(0, np.int64)
    j = np.concatenate(parts_j) if parts_j else np.zeros(0, np.int64)
    d = np.concatenate(parts_d) if parts_d else np.zeros((0, 3))
    atom_image = np.asarray(arrays["atom_image"], dtype=np.int64)
    return make_pairs(i, j, d, atom_image, element_index, n_elements, cutoff)


def make_pairs(
    i: IntArray,
    j: IntArray,
    d: FloatArray,
    atom_image: IntArray,
    element_index: IntArray,
    n_elements: int,
    cutoff: float,
) -> ShardPairs:
    """Bundle pair arrays with their distances, unit vectors, types and cutoff values.

    Raises:
        DataError: two atoms (or an atom and a periodic image) sit on the same point.
    """
    r = np.linalg.norm(d, axis=1)
    if np.any(r == 0.0):
        p = int(np.flatnonzero(r == 0.0)[0])
        raise DataError(
            f"atoms {int(i[p])} and {int(j[p])} (image {int(atom_image[i[p]])}) are at distance 0; "
            "remove the duplicate atom"
        )
    table = pair_type_table(n_elements)
    fc, dfc = cutoff_terms(r, cutoff)
    return ShardPairs(
        i=i,
        j=j,
        image=atom_image[i],
        kind=table[element_index[i], element_index[j]],
        r=r,
        unit=d / r[:, None],
        fc=fc,
        dfc=dfc,
    )


def pair_forces(pairs: ShardPairs, dphi: FloatArray, n_atoms: int) -> FloatArray:
    """Return the forces (n_atoms, 3) float64 eV/Angstrom from the pair derivatives dphi (P,)."""
    forces = np.empty((n_atoms, 3))
    for axis in range(3):
        push = dphi * pairs.unit[:, axis]
        forces[:, axis] = np.bincount(pairs.i, push, n_atoms) - np.bincount(pairs.j, push, n_atoms)
    return forces
