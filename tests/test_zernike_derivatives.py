"""Zernike derivatives by finite differences, invariances (hypothesis), and ``check_descriptor``."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from amp_core import create_descriptor
from amp_core.testing import check_descriptor, default_structures
from tests.test_zernike_values import KERNELS, make

SEEDS = st.integers(min_value=0, max_value=2**31 - 1)
WEIGHTS = {"Cu": {"Cu": 1.0, "Pt": 2.2}, "Pt": {"Cu": 0.6, "Pt": -1.5}}


def cluster(seed: int, n: int = 5) -> Atoms:
    rng = np.random.default_rng(seed)
    positions = rng.uniform(0.0, 3.6, size=(n, 3))
    while True:  # keep atoms at least 1.4 Angstrom apart
        d = np.linalg.norm(positions[:, None] - positions[None], axis=-1) + 10 * np.eye(n)
        if d.min() > 1.4:
            break
        positions = rng.uniform(0.0, 3.6, size=(n, 3))
    return Atoms(["Cu" if k % 3 else "Pt" for k in range(n)], positions=positions)


def periodic(seed: int) -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.65, cubic=True)
    atoms.symbols[2] = "Pt"
    atoms.positions += np.random.default_rng(seed).normal(scale=0.08, size=(4, 3))
    return atoms


def finite_differences(descriptor, atoms: Atoms, h: float = 1e-5) -> np.ndarray:
    """Dense (n_atoms, n_atoms, 3, F) central differences d values[i] / d positions[m]."""
    n = len(atoms)
    out = np.zeros((n, n, 3, descriptor.basis.n_features))
    for m in range(n):
        for a in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[m, a] += h
            minus.positions[m, a] -= h
            out[:, m, a] = (descriptor.compute(plus).values - descriptor.compute(minus).values) / (2 * h)
    return out


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize(
    "cutoff",
    [{"name": "Cosine", "Rc": 4.5}, {"name": "Polynomial", "Rc": 4.5, "gamma": 4.0},
     {"name": "Polynomial", "Rc": 5.0, "gamma": 1.5}],
)  # fmt: skip
@pytest.mark.parametrize("structure", ["cluster", "periodic", "slab"])
def test_derivatives_match_finite_differences(kernel, cutoff, structure):
    atoms = {"cluster": cluster(1, 6), "periodic": periodic(2), "slab": periodic(3)}[structure]
    if structure == "slab":
        atoms.pbc = (True, False, True)
        atoms.cell[1] = [0.0, 15.0, 0.0]
    descriptor = make(kernel, cutoff=cutoff, nmax=6, Gs=WEIGHTS)
    fp = descriptor.compute(atoms, derivatives=True)
    dense, fd = fp.dense_derivatives(), finite_differences(descriptor, atoms)
    scale = np.abs(fd).max()
    assert scale > 0
    assert np.allclose(dense, fd, rtol=1e-6, atol=1e-8 * scale)
    # every (i, m) that moves values[i] has a block, and no block is listed twice
    moving = {tuple(p) for p in np.argwhere(np.abs(fd).max(axis=(2, 3)) > 1e-9 * scale)}
    assert moving <= {tuple(p) for p in fp.pairs}
    assert len({tuple(p) for p in fp.pairs}) == len(fp.pairs)


def test_forces_sum_to_zero_per_centre():
    """Each G_i depends on positions only through differences: its blocks sum to zero over m."""
    atoms = cluster(4, 7)
    fp = create_descriptor("zernike", cutoff=5.0, Gs=WEIGHTS).compute(atoms, derivatives=True)
    total = np.zeros((len(atoms), 3, fp.values.shape[1]))
    np.add.at(total, fp.pairs[:, 0], fp.derivatives)
    assert np.abs(total).max() < 1e-10 * np.abs(fp.derivatives).max()


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("elements", [["Cu", "Pt"], ["H", "C", "O"]])
def test_check_descriptor_passes(kernel, elements):
    descriptor = make(kernel, cutoff=4.0, nmax=5, elements=elements)
    check_descriptor(descriptor, default_structures(elements))


@pytest.mark.parametrize("kernel", KERNELS)
def test_check_descriptor_passes_with_polynomial_cutoff_and_weights(kernel):
    descriptor = make(kernel, cutoff={"name": "Polynomial", "Rc": 4.0, "gamma": 2.0}, nmax=4, Gs=WEIGHTS)
    check_descriptor(descriptor, default_structures(["Cu", "Pt"]))


# ------------------------------------------------------------------ invariances (hypothesis)

DESCRIPTOR = create_descriptor("zernike", cutoff=4.5, nmax=6, Gs=WEIGHTS)


@settings(max_examples=10, deadline=None)
@given(
    seed=SEEDS, shift=st.tuples(*[st.floats(-20, 20)] * 3), angles=st.tuples(*[st.floats(-np.pi, np.pi)] * 3)
)
def test_values_invariant_and_derivatives_covariant_under_rotation_and_translation(seed, shift, angles):
    atoms = cluster(seed, 5)
    fp = DESCRIPTOR.compute(atoms, derivatives=True)
    rotation = Rotation.from_euler("xyz", angles).as_matrix()
    moved = atoms.copy()
    moved.positions = atoms.positions @ rotation.T + np.array(shift)
    fq = DESCRIPTOR.compute(moved, derivatives=True)
    assert np.allclose(fq.values, fp.values, rtol=1e-10, atol=1e-12 * np.abs(fp.values).max())
    assert np.array_equal(fq.pairs, fp.pairs)
    rotated = np.einsum("kl,plf->pkf", rotation, fp.derivatives)
    assert np.allclose(fq.derivatives, rotated, rtol=1e-9, atol=1e-10 * np.abs(fp.derivatives).max())


@settings(max_examples=8, deadline=None)
@given(seed=SEEDS, angles=st.tuples(*[st.floats(-np.pi, np.pi)] * 3))
def test_periodic_values_invariant_under_rotating_cell_and_atoms(seed, angles):
    atoms = periodic(seed)
    rotation = Rotation.from_euler("xyz", angles).as_matrix()
    moved = atoms.copy()
    moved.set_cell(atoms.cell.array @ rotation.T)
    moved.positions = atoms.positions @ rotation.T
    a, b = DESCRIPTOR.compute(atoms).values, DESCRIPTOR.compute(moved).values
    assert np.allclose(b, a, rtol=1e-10, atol=1e-12 * np.abs(a).max())


@settings(max_examples=8, deadline=None)
@given(seed=SEEDS, data=st.data())
def test_wrapping_atoms_by_lattice_vectors_changes_nothing(seed, data):
    atoms = periodic(seed)
    shifts = np.array(data.draw(st.lists(st.tuples(*[st.integers(-2, 2)] * 3), min_size=4, max_size=4)))
    moved = atoms.copy()
    moved.positions += shifts @ atoms.cell.array
    a, b = DESCRIPTOR.compute(atoms, derivatives=True), DESCRIPTOR.compute(moved, derivatives=True)
    assert np.allclose(b.values, a.values, rtol=1e-10, atol=1e-12 * np.abs(a.values).max())
    assert np.allclose(
        b.dense_derivatives(), a.dense_derivatives(), rtol=1e-9, atol=1e-10 * np.abs(a.derivatives).max()
    )


@settings(max_examples=10, deadline=None)
@given(seed=SEEDS, data=st.data())
def test_permuting_atoms_permutes_values_and_derivatives(seed, data):
    atoms = cluster(seed, 6)
    order = np.array(data.draw(st.permutations(range(len(atoms)))))
    fp = DESCRIPTOR.compute(atoms, derivatives=True)
    fq = DESCRIPTOR.compute(atoms[order], derivatives=True)
    scale = np.abs(fp.values).max()
    assert np.allclose(fq.values, fp.values[order], rtol=1e-12, atol=1e-14 * scale)
    dense = fp.dense_derivatives()
    assert np.allclose(fq.dense_derivatives(), dense[order][:, order], rtol=1e-11, atol=1e-13 * scale)
