"""Neighbour lists and derivative-block numbering for the ``gaussian`` descriptor.

Both kernels (numpy and compiled) read these: the neighbour images of every centre, found
with vesin (cell lists, linear in atoms), and the numbering of the derivative blocks
d G_i / d R_m the images contribute to.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from amp_core.errors import DataError

if TYPE_CHECKING:
    from ase import Atoms

OVERLAP = 1e-6
"""Two atoms closer than this (Angstrom) are reported as overlapping."""


@dataclass(frozen=True)
class Neighbours:
    """Every (centre, neighbour image) pair within the cutoff, grouped by centre.

    ``n_entries`` counts the pairs; a neighbour atom appears once per periodic
    image within reach, and a centre's own images are neighbours too.

    Attributes:
        centre: (n_entries,) int64 index i of the centre atom.
        neighbour: (n_entries,) int64 index j of the neighbour atom.
        shift: (n_entries, 3) int64 cell shift S of the image: its position is
            positions[j] + S @ cell.
        vectors: (n_entries, 3) float64 r_ij = positions[j] + S @ cell - positions[i], Angstrom.
        distances: (n_entries,) float64 |r_ij|, Angstrom.
        starts: (n_atoms + 1,) int64; centre i's entries are ``starts[i]:starts[i + 1]``.
    """

    centre: NDArray[np.int64]
    neighbour: NDArray[np.int64]
    shift: NDArray[np.int64]
    vectors: NDArray[np.float64]
    distances: NDArray[np.float64]
    starts: NDArray[np.int64]

    @property
    def counts(self) -> NDArray[np.int64]:
        """(n_atoms,) int64 number of neighbour images of each centre."""
        return np.diff(self.starts)


def neighbour_list(atoms: Atoms, cutoff: float, *, half_search: bool = False) -> Neighbours:
    """Return all neighbour images within ``cutoff`` (Angstrom) of every atom.

    Periodic directions follow ``atoms.pbc``; positions outside the cell are
    fine. Entries are grouped by centre (ascending); their order within a centre is fixed but unspecified.

    Args:
        atoms: the structure.
        cutoff: radius in Angstrom.
        half_search: find each pair once (vesin's half list, about a quarter faster) and
            add its mirror image. The entries are the same as without; only their order
            within a centre differs, and with it the round-off of the sums over them. Each
            kernel keeps the order its numbers have always had: the numpy kernel the full
            search, the compiled kernel the half search.

    Raises:
        DataError: non-finite positions or cell, a periodic direction with a
            zero cell vector, or two atoms at the same place.
    """
    n, found = _search(atoms, cutoff, full=not half_search, quantities="ijSDd")
    if found is None:
        empty = np.zeros(0, np.int64)
        return Neighbours(
            empty, empty, np.zeros((0, 3), np.int64), np.zeros((0, 3)), np.zeros(0), np.zeros(1, np.int64)
        )
    i, j, shift, vectors, distances = found
    i, j = i.astype(np.int64), j.astype(np.int64)
    if half_search:  # each pair (i, j, S) also stands for (j, i, -S), with the opposite vector
        centre = np.concatenate([i, j])
        # a 16-bit key is sorted by radix, several times faster (the order is the same)
        order = np.argsort(centre.astype(np.int16) if n < 2**15 else centre, kind="stable")
        i, j = centre[order], np.concatenate([j, i])[order]
        shift = _mirrored(shift, order, np.int64, -1)
        vectors = _mirrored(vectors, order, np.float64, -1)
        distances = _mirrored(distances, order, np.float64, 1)
    else:
        shift = shift.astype(np.int64)
    starts = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(i, minlength=n), out=starts[1:])
    return Neighbours(i, j, shift, np.ascontiguousarray(vectors), distances, starts)


def _mirrored(half: NDArray[Any], order: NDArray[np.int64], dtype: type, sign: int) -> NDArray[Any]:
    """Return ``concatenate([half, sign * half])[order]`` (rows), with fewer large temporaries."""
    both = np.empty((2 * len(half), *half.shape[1:]), dtype=dtype)
    both[: len(half)] = half
    both[len(half) :] = half
    if sign < 0:
        np.negative(both[len(half) :], out=both[len(half) :])
    return np.take(both, order, axis=0)


def neighbour_counts(atoms: Atoms, cutoff: float) -> NDArray[np.int64]:
    """Return (n_atoms,) int64: each atom's number of neighbour images within ``cutoff``.

    The counts of :func:`neighbour_list` (``counts``), from a half list with indices and
    distances only: about a third of the time, for work estimates. Same checks and errors.
    """
    n, found = _search(atoms, cutoff, full=False, quantities="ijd")
    if found is None:
        return np.zeros(0, np.int64)
    i, j = found[0].astype(np.int64), found[1].astype(np.int64)
    return np.bincount(i, minlength=n) + np.bincount(j, minlength=n)  # each pair is one image of both


def _search(atoms: Atoms, cutoff: float, *, full: bool, quantities: str) -> tuple[int, list[NDArray[Any]] | None]:
    """Check the structure and run vesin: the full list sorted by centre, or the half list.

    Returns the atom count and the ``quantities`` (vesin's letters; they must start with
    ``ij`` and end with ``d``) of the pairs within ``cutoff``, or ``None`` for no atoms.

    Raises:
        DataError: see :func:`neighbour_list`.
    """
    from vesin import NeighborList

    positions = np.ascontiguousarray(atoms.positions, dtype=np.float64)
    cell = np.ascontiguousarray(atoms.cell.array, dtype=np.float64)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    _check_structure(positions, cell, pbc)
    n = len(positions)
    if n == 0:
        return 0, None
    box = cell.copy()
    box[~pbc] = 0.0  # vesin ignores non-periodic directions; a zero vector there is accepted
    calculator = NeighborList(cutoff=float(cutoff), full_list=full, sorted=full, n_threads=1)
    found = list(calculator.compute(positions, box, [bool(p) for p in pbc], quantities))
    keep = found[-1] < cutoff
    if not keep.all():
        found = [values[keep] for values in found]
    i, j, distances = found[0], found[1], found[-1]
    if len(distances) and distances.min() < OVERLAP:
        k = int(np.argmin(distances))
        raise DataError(
            f"atoms {i[k]} and {j[k]} overlap (distance {distances[k]:.2e} Angstrom); "
            "fingerprints need distinct positions: remove duplicate atoms"
        )
    return n, found


def _check_positions(positions: NDArray[np.float64]) -> None:
    if not np.isfinite(positions).all():
        bad = int(np.nonzero(~np.isfinite(positions).all(axis=1))[0][0])
        raise DataError(f"atom {bad} has a non-finite position {positions[bad].tolist()}; fix the structure")


def _check_structure(
    positions: NDArray[np.float64], cell: NDArray[np.float64], pbc: NDArray[np.bool_]
) -> None:
    _check_positions(positions)
    if not np.isfinite(cell).all():
        raise DataError(f"the cell has non-finite entries {cell.tolist()}; fix the structure")
    if pbc.any():
        periodic = cell[pbc]
        lengths = np.linalg.norm(periodic, axis=1)
        if (lengths < 1e-9).any():
            raise DataError(
                f"periodic direction(s) {np.nonzero(pbc)[0].tolist()} have a zero cell vector "
                f"(cell {cell.tolist()}, pbc {pbc.tolist()}); set the cell or make the direction non-periodic"
            )
        if pbc.all() and abs(np.linalg.det(cell)) < 1e-9:
            raise DataError(f"the periodic cell {cell.tolist()} has zero volume; fix the cell")


@dataclass(frozen=True)
class DerivativeBlocks:
    """The derivative blocks d G_i / d R_m of one structure: m == i and every distinct neighbour atom m of i.

    Attributes:
        pairs: (n_pairs, 2) int64 (i, m), sorted by i then m.
        entry: (n_entries,) int64 block (i, j) of each neighbour entry (i, j, shift) of the
            :class:`Neighbours` it was made from, in their order.
        own: (n_atoms,) int64 block (i, i) of each centre.
        starts: (n_atoms + 1,) int64; centre i's blocks are ``starts[i]:starts[i + 1]``.
    """

    pairs: NDArray[np.int64]
    entry: NDArray[np.int64]
    own: NDArray[np.int64]
    starts: NDArray[np.int64]


def kernel_slots(
    blocks: DerivativeBlocks | None, n_entries: int, n_atoms: int
) -> tuple[int, NDArray[np.int64], NDArray[np.int64]]:
    """Return (block count, block slot per neighbour entry, own slot per atom) as the compiled kernels take them.

    Without ``blocks`` (values only): no blocks and zero-filled slot arrays of the right lengths.
    """
    if blocks is None:
        return 0, np.zeros(n_entries, np.int64), np.zeros(n_atoms, np.int64)
    return len(blocks.pairs), blocks.entry, blocks.own


def derivative_blocks(neighbours: Neighbours) -> DerivativeBlocks:
    """Number the derivative blocks that ``neighbours`` contribute to.

    An image (i, j, shift) adds to block (i, j) and, with the opposite sign, to (i, i):
    every term depends on positions only through R_j + shift - R_i.
    """
    n = len(neighbours.starts) - 1
    own = np.arange(n, dtype=np.int64) * (n + 1)
    keys = np.concatenate([neighbours.centre * n + neighbours.neighbour, own])
    unique, slots = np.unique(keys, return_inverse=True)
    pairs = np.stack(np.divmod(unique, max(n, 1)), axis=1).astype(np.int64)
    slots = slots.reshape(-1).astype(np.int64)
    starts = np.searchsorted(pairs[:, 0], np.arange(n + 1)).astype(np.int64)
    return DerivativeBlocks(pairs, slots[: len(neighbours.centre)], slots[len(neighbours.centre) :], starts)


@dataclass(frozen=True)
class SkinList:
    """A neighbour list built with cutoff + skin, reused while atoms stay within skin / 2 of ``positions``.

    Attributes:
        cutoff: the descriptor's cutoff Rc, Angstrom; ``skin``: the extra radius, Angstrom.
        half_search: the search it was built with (the entry order of :func:`neighbour_list`).
        centre, neighbour, shift: the (i, j, S) of every image within Rc + skin, grouped by centre
            (ascending).
        starts: (n_atoms + 1,) int64; centre i's entries are ``starts[i]:starts[i + 1]``.
        n_atoms: the atom count it was built for.
        cell: (3, 3) float64 the cell it was built for; ``offsets`` (n, 3) float64 ``shift @ cell``
            for that cell (Angstrom), reused while the cell is the same.
        scratch: the output buffers of the compiled filter, reused call after call (fresh
            arrays would cost more in page faults than the filter itself).
    """

    cutoff: float
    skin: float
    half_search: bool
    centre: NDArray[np.int64]
    neighbour: NDArray[np.int64]
    shift: NDArray[np.int64]
    starts: NDArray[np.int64]
    n_atoms: int
    cell: NDArray[np.float64]
    offsets: NDArray[np.float64]
    scratch: dict[str, NDArray[Any]] = field(default_factory=dict, compare=False, repr=False)


def skin_list(atoms: Atoms, cutoff: float, skin: float, *, half_search: bool) -> SkinList:
    """Return the images within ``cutoff + skin`` (Angstrom) of every atom, for :func:`from_skin_list`."""
    found = neighbour_list(atoms, cutoff + skin, half_search=half_search)
    cell = np.array(atoms.cell.array, dtype=np.float64)
    return SkinList(float(cutoff), float(skin), half_search, found.centre, found.neighbour, found.shift,
                    found.starts, len(atoms), cell, found.shift @ cell)


def from_skin_list(atoms: Atoms, skin: SkinList, *, compiled: bool = False) -> Neighbours:
    """Return the images of ``skin`` within its cutoff, with vectors from the current positions and cell.

    The entries are those of a fresh :func:`neighbour_list` while no atom has moved more
    than ``skin.skin / 2`` since the list was built (and cell, pbc and numbers are the same);
    their order within a centre may differ (round-off only). Called every MD step: it
    gathers with ``np.take`` (several times faster than fancy indexing) and computes each
    distance once.

    Args:
        compiled: filter in one compiled pass (``skin_kernels``, when built; else numpy): the
            same entries and vectors bitwise, distances to the last bit (the compiled
            descriptor's path, whose kernel reads the vectors). Its arrays are read-only
            views of buffers the list reuses: valid until the next call with the same list
            (a descriptor uses them within its call).

    Raises:
        DataError: non-finite positions, a different atom count, or overlapping atoms.
    """
    positions = np.asarray(atoms.positions, dtype=np.float64)
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    same_cell = np.array_equal(cell, skin.cell)
    if same_cell:  # the cell was checked when the list was built
        _check_positions(positions)
    else:
        _check_structure(positions, cell, np.asarray(atoms.pbc, dtype=bool))
    if len(positions) != skin.n_atoms:
        raise DataError(f"the neighbour list was built for {skin.n_atoms} atoms, the structure has "
                        f"{len(positions)}; build a new one")
    offsets = skin.offsets if same_cell else skin.shift @ cell
    routine = _skin_filter() if compiled else None
    if routine is not None:
        return _filter_compiled(routine, positions, skin, offsets)
    vectors = np.take(positions, skin.neighbour, axis=0)  # r_ij = (R_j + S @ cell) - R_i
    vectors += offsets
    vectors -= np.repeat(positions, np.diff(skin.starts), axis=0)  # the entries are grouped by centre
    squares = np.einsum("ij,ij->i", vectors, vectors)
    keep = np.flatnonzero(squares < skin.cutoff * skin.cutoff)
    distances = np.sqrt(squares.take(keep))
    inside = distances < skin.cutoff  # the test a fresh search applies, on the rounded distance
    if not inside.all():
        keep, distances = keep[inside], distances[inside]
    if len(distances) and distances.min() < OVERLAP:
        k = int(np.argmin(distances))
        raise DataError(f"atoms {skin.centre[keep[k]]} and {skin.neighbour[keep[k]]} overlap (distance "
                        f"{distances[k]:.2e} Angstrom); fingerprints need distinct positions: remove duplicate atoms")
    starts = np.searchsorted(keep, skin.starts).astype(np.int64, copy=False)  # kept entries before each centre's
    return Neighbours(skin.centre.take(keep), skin.neighbour.take(keep), np.take(skin.shift, keep, axis=0),
                      np.take(vectors, keep, axis=0), distances, starts)


SKIN_STEM = "skin_kernels"
SKIN_ABI_VERSION = 1
SKIN_ERRORS = {
    1: "a size argument is negative",
    2: "the entry offsets are not ascending from 0 to the entry count (centre {index})",
    3: "a neighbour atom index is out of range (entry {index})",
}
_ptr, _i64, _f64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double
SKIN_ARGTYPES = [  # addresses of C-contiguous int64 / float64 arrays (checked when _filter_compiled keeps them)
    *(_i64, _i64, _ptr, _ptr, _ptr, _ptr, _ptr, _f64, _f64),  # sizes, the list, offsets, positions, cutoff, overlap
    *(_ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _ptr),  # n_kept, new starts, centre, neighbour, shift, vectors,
]  # distances, bad index


def _skin_filter() -> Any:
    """The compiled filter routine (``amp_skin_filter``), or ``None`` when it was not built here."""
    from amp_core.compiled import bind
    from amp_core.errors import PropertyNotImplementedError

    try:
        library = bind("amp_plugins.descriptors.gaussian", SKIN_STEM, "amp_skin_abi_version", SKIN_ABI_VERSION,
                       {"amp_skin_filter": SKIN_ARGTYPES})
    except (PropertyNotImplementedError, OSError):
        return None
    return library.amp_skin_filter


def _filter_compiled(routine: Any, positions: NDArray[np.float64], skin: SkinList,
                     offsets: NDArray[np.float64]) -> Neighbours:
    """:func:`from_skin_list` in one compiled pass (the arguments checked there)."""
    from amp_core.compiled import refused

    n = len(skin.centre)
    out = skin.scratch
    if not out:  # once per list: the output buffers, and the list's arrays as the kernel reads them
        out.update(centre=np.empty(n, np.int64), neighbour=np.empty(n, np.int64), shift=np.empty((n, 3), np.int64),
                   vectors=np.empty((n, 3)), distances=np.empty(n), starts=np.empty(skin.n_atoms + 1, np.int64),
                   counts=np.zeros(2, np.int64),  # (n_kept, bad_index)
                   list_starts=np.ascontiguousarray(skin.starts, dtype=np.int64),
                   list_neighbour=np.ascontiguousarray(skin.neighbour, dtype=np.int64),
                   list_shift=np.ascontiguousarray(skin.shift, dtype=np.int64),
                   list_offsets=np.ascontiguousarray(skin.offsets, dtype=np.float64))
    outputs = ("centre", "neighbour", "shift", "vectors", "distances", "starts")
    for name in outputs:
        out[name].flags.writeable = True
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    offsets = out["list_offsets"] if offsets is skin.offsets else np.ascontiguousarray(offsets, dtype=np.float64)
    counts = out["counts"]
    address = counts.ctypes.data
    status = routine(skin.n_atoms, n, out["list_starts"].ctypes.data, out["list_neighbour"].ctypes.data,
                     out["list_shift"].ctypes.data, offsets.ctypes.data, positions.ctypes.data, skin.cutoff, OVERLAP,
                     address, out["starts"].ctypes.data, out["centre"].ctypes.data, out["neighbour"].ctypes.data,
                     out["shift"].ctypes.data, out["vectors"].ctypes.data, out["distances"].ctypes.data, address + 8)
    for name in outputs:
        out[name].flags.writeable = False
    if status == 4:
        e = int(counts[1])
        d = np.linalg.norm(positions[skin.neighbour[e]] + offsets[e] - positions[skin.centre[e]])
        raise DataError(f"atoms {skin.centre[e]} and {skin.neighbour[e]} overlap (distance {d:.2e} Angstrom); "
                        "fingerprints need distinct positions: remove duplicate atoms")
    if status != 0:
        raise refused("skin-list filter", SKIN_STEM, SKIN_ERRORS, status, int(counts[1]))
    k = int(counts[0])
    return Neighbours(out["centre"][:k], out["neighbour"][:k], out["shift"][:k], out["vectors"][:k],
                      out["distances"][:k], out["starts"])
