"""The skin neighbour list of the ``gaussian`` descriptor: filtering a kept list gives a fresh list's entries.

:func:`from_skin_list` runs every MD step; these tests pin its entries against a fresh
:func:`neighbour_list` and its numbers (vectors, distances) bitwise against the plain
formula ``(shift @ cell + R_j) - R_i``; the compiled filter (``skin_kernels.f90``) against
the numpy one, in a bounds-checked (``-fcheck=all``) build.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amp_core.errors import DataError
from amp_plugins.descriptors.gaussian._neighbors import (
    _skin_filter,
    from_skin_list,
    neighbour_list,
    skin_list,
)

SOURCE = Path(__file__).resolve().parents[1] / "plugins" / "descriptors" / "gaussian" / "skin_kernels.f90"

CUTOFF, SKIN = 3.0, 0.6


def _structure(seed: int, n: int, pbc: tuple[bool, bool, bool]) -> Atoms:
    rng = np.random.default_rng(seed)
    cell = np.diag(rng.uniform(4.0, 6.0, 3)) + rng.uniform(-0.8, 0.8, (3, 3)) * (1 - np.eye(3))
    atoms = Atoms("Cu" * n, cell=cell, pbc=pbc)
    grid = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)[:n]
    atoms.set_scaled_positions((grid + 0.5) / 3 + rng.uniform(-0.03, 0.03, (n, 3)))
    return atoms


def _entries(found):
    """The (i, j, S) of every entry, sorted, as a set-like array."""
    rows = np.column_stack([found.centre, found.neighbour, found.shift])
    return rows[np.lexsort(rows.T[::-1])]


def _plain(atoms, skin):
    """The plain filtering (fancy indexing, two passes): the numbers the fast path must reproduce bitwise."""
    positions, cell = atoms.positions, atoms.cell.array
    vectors = skin.shift @ cell + positions[skin.neighbour] - positions[skin.centre]
    squares = np.einsum("ij,ij->i", vectors, vectors)
    keep = np.flatnonzero(squares < skin.cutoff**2)
    keep = keep[np.sqrt(squares[keep]) < skin.cutoff]
    return keep, vectors[keep], np.sqrt(squares[keep])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(2, 27), pbc=st.tuples(st.booleans(), st.booleans(), st.booleans()),
       half=st.booleans(), strain=st.sampled_from([0.0, 0.004, -0.006]))
def test_a_kept_list_gives_the_entries_of_a_fresh_search(seed, n, pbc, half, strain):
    atoms = _structure(seed, n, pbc)
    kept = skin_list(atoms, CUTOFF, SKIN, half_search=half)
    rng = np.random.default_rng(seed + 1)
    moved = atoms.copy()
    step = rng.normal(size=(n, 3))
    moved.positions += 0.49 * SKIN / 2 * step / np.linalg.norm(step, axis=1, keepdims=True)  # under skin / 2
    if strain:  # a slightly changed cell: the list computes the offsets anew (the caller decides on rebuilds)
        moved.set_cell(moved.cell.array * (1 + strain), scale_atoms=False)
    found = from_skin_list(moved, kept)
    fresh = neighbour_list(moved, CUTOFF, half_search=half)
    if not strain:  # a changed cell may move images by more than the skin: only the unchanged cell is promised
        np.testing.assert_array_equal(_entries(found), _entries(fresh))
    keep, vectors, distances = _plain(moved, kept)
    np.testing.assert_array_equal(found.vectors, vectors)
    np.testing.assert_array_equal(found.distances, distances)
    np.testing.assert_array_equal(found.centre, kept.centre[keep])
    np.testing.assert_array_equal(found.neighbour, kept.neighbour[keep])
    np.testing.assert_array_equal(found.shift, kept.shift[keep])
    assert found.starts.dtype == np.int64 and found.starts[0] == 0 and found.starts[-1] == len(found.centre)
    np.testing.assert_array_equal(np.repeat(np.arange(n), found.counts), found.centre)
    for name in ("centre", "neighbour", "shift", "vectors", "distances", "starts"):
        assert getattr(found, name).flags.c_contiguous, name


def test_non_finite_positions_and_overlaps_are_refused():
    atoms = _structure(3, 8, (True, True, True))
    kept = skin_list(atoms, CUTOFF, SKIN, half_search=True)
    bad = atoms.copy()
    bad.positions[5, 1] = np.nan
    with pytest.raises(DataError, match="atom 5 has a non-finite position"):
        from_skin_list(bad, kept)
    bad.set_cell(bad.cell.array * 1.01)  # the other branch checks the cell too
    with pytest.raises(DataError, match="atom 5 has a non-finite position"):
        from_skin_list(bad, kept)
    close = atoms.copy()
    close.positions[2] = close.positions[1] + 1e-8
    with pytest.raises(DataError, match="overlap"):
        from_skin_list(close, kept)
    flat = atoms.copy()
    flat.set_cell(np.diag([5.0, 5.0, 0.0]))
    with pytest.raises(DataError, match="zero cell vector"):
        from_skin_list(flat, kept)


# -- the compiled filter ---------------------------------------------------------------------

needs_gfortran = pytest.mark.skipif(shutil.which("gfortran") is None,
                                    reason="gfortran is not installed: the compiled filter cannot be built")


@pytest.fixture()
def checked_filter(bounds_checked):
    """Load the filter compiled bounds-checked for the test (and check that it was the one used)."""
    with bounds_checked.loaded(bounds_checked(SOURCE), "amp_plugins.descriptors.gaussian", "skin_kernels"):
        yield


@needs_gfortran
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), n=st.integers(1, 27), pbc=st.tuples(st.booleans(), st.booleans(), st.booleans()),
       strain=st.sampled_from([0.0, 0.005]))
def test_the_compiled_filter_gives_the_numpy_entries_and_vectors_bitwise(checked_filter, seed, n, pbc, strain):
    atoms = _structure(seed, n, pbc)
    kept = skin_list(atoms, CUTOFF, SKIN, half_search=True)
    moved = atoms.copy()
    moved.positions += np.random.default_rng(seed + 2).uniform(-0.17, 0.17, (n, 3))  # under skin / 2
    if strain:
        moved.set_cell(moved.cell.array * (1 + strain), scale_atoms=False)
    assert _skin_filter() is not None
    reference = from_skin_list(moved, kept)
    for _ in range(2):  # the second call reuses the list's buffers
        found = from_skin_list(moved, kept, compiled=True)
        for name in ("centre", "neighbour", "shift", "vectors", "starts"):
            array = getattr(found, name)
            np.testing.assert_array_equal(array, getattr(reference, name), err_msg=name)
            assert array.dtype == getattr(reference, name).dtype and array.flags.c_contiguous, name
            assert not array.flags.writeable, name  # views of the list's buffers
        np.testing.assert_allclose(found.distances, reference.distances, rtol=4e-16, atol=0)


@needs_gfortran
def test_the_compiled_filter_refuses_overlaps_and_corrupt_lists(checked_filter):
    atoms = _structure(4, 8, (True, True, True))
    kept = skin_list(atoms, CUTOFF, SKIN, half_search=True)
    close = atoms.copy()
    close.positions[2] = close.positions[1] + 1e-8
    with pytest.raises(DataError, match=r"atoms (1 and 2|2 and 1) overlap \(distance 1\.7"):
        from_skin_list(close, kept, compiled=True)
    bad = np.array(kept.neighbour)
    bad[5] = 8
    broken = dataclasses.replace(kept, neighbour=bad, scratch={})
    with pytest.raises(DataError, match=r"skin-list filter kernel \(skin_kernels\) refused its input: a neighbour "
                                        r"atom index is out of range \(entry 5\)"):
        from_skin_list(atoms, broken, compiled=True)
    starts = np.array(kept.starts)
    starts[3] = starts[4] + 1
    broken = dataclasses.replace(kept, starts=starts, scratch={})
    with pytest.raises(DataError, match=r"offsets are not ascending .*\(centre 3\)"):
        from_skin_list(atoms, broken, compiled=True)
