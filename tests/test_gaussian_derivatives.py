"""Gaussian fingerprint derivatives (finite differences, sparse layout) and invariance properties."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from amp_core import create_descriptor
from amp_plugins.descriptors.gaussian._neighbors import neighbour_list

RC = 4.0


def mixed_gs(elements=("Cu", "Pt")):
    """G2 with offsets, G4 and G5 for every pair, several zeta/gamma: every code path."""
    functions = []
    for element in elements:
        functions += [
            {"type": "G2", "element": element, "eta": 0.5},
            {"type": "G2", "element": element, "eta": 8.0, "offset": 2.2},
        ]
    for i, a in enumerate(elements):
        for b in elements[i:]:
            functions += [
                {"type": "G4", "elements": [a, b], "eta": 0.3, "zeta": 1.0, "gamma": -1.0},
                {"type": "G4", "elements": [a, b], "eta": 0.3, "zeta": 4.0, "gamma": 1.0},
                {"type": "G4", "elements": [a, b], "eta": 1.1, "zeta": 2.5, "gamma": 0.5},
                {"type": "G5", "elements": [a, b], "eta": 0.3, "zeta": 2.0, "gamma": -1.0},
            ]
    gs = {e: functions for e in elements}
    gs[elements[-1]] = functions[::-1][:7]  # a second element with a different, shorter list
    return gs


def cluster(seed: int, n: int = 6, box: float = 3.6, symbols=("Cu", "Pt")) -> Atoms:
    rng = np.random.default_rng(seed)
    points: list[np.ndarray] = []
    while len(points) < n:
        p = rng.uniform(0, box, 3)
        if all(np.linalg.norm(p - q) > 1.0 for q in points):
            points.append(p)
    return Atoms([symbols[k % len(symbols)] for k in range(n)], positions=points)


def periodic(seed: int) -> Atoms:
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=3.2) * (2, 1, 1)  # triclinic, 2 atoms; Rc reaches many images
    atoms.symbols[1] = "Pt"
    atoms.positions += rng.normal(scale=0.1, size=atoms.positions.shape)
    return atoms


def slab(seed: int) -> Atoms:
    atoms = fcc111("Cu", (1, 2, 2), a=3.3, vacuum=4.0)
    atoms.symbols[::3] = "Pt"
    atoms.rattle(0.08, seed=seed)
    return atoms


def near_cutoff() -> Atoms:
    # distances and r_jk within 1e-3 A of Rc (inside and outside), plus one atom well inside
    r = RC - 1e-3
    positions = [[0, 0, 0], [r, 0, 0], [0, r, 0], [r / 2, r / 2, RC + 2e-3], [1.3, 1.1, 0.9]]
    return Atoms("CuPtCuPtCu", positions=positions)


def finite_difference(descriptor, atoms: Atoms, step: float = 1e-5) -> np.ndarray:
    """(n_atoms, n_atoms, 3, F) central differences d values[i] / d positions[m]."""
    n = len(atoms)
    out = np.zeros((n, n, 3, descriptor.compute(atoms).values.shape[1]))
    for m in range(n):
        for axis in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[m, axis] += step
            minus.positions[m, axis] -= step
            out[:, m, axis] = (descriptor.compute(plus).values - descriptor.compute(minus).values) / (
                2 * step
            )
    return out


CUTOFFS = [RC, {"name": "Polynomial", "Rc": RC, "gamma": 4}, {"name": "Polynomial", "Rc": RC, "gamma": 2}]
STRUCTURES = {
    "cluster": lambda: cluster(1),
    "cluster-dense": lambda: cluster(2, n=9, box=3.0),
    "periodic": lambda: periodic(3),
    "slab": lambda: slab(4),
    "near-cutoff": near_cutoff,
}


@pytest.mark.parametrize("cutoff", CUTOFFS, ids=["cosine", "poly4", "poly2"])
@pytest.mark.parametrize("name", list(STRUCTURES))
def test_derivatives_match_central_finite_differences(name, cutoff):
    d = create_descriptor("gaussian", cutoff=cutoff, Gs=mixed_gs())
    atoms = STRUCTURES[name]()
    fp = d.compute(atoms, derivatives=True)
    analytic = fp.dense_derivatives()
    numeric = finite_difference(d, atoms)
    assert np.abs(analytic).max() > 1e-3
    assert np.allclose(analytic, numeric, rtol=1e-5, atol=1e-7)


def test_default_set_derivatives_on_rattled_alloy():
    d = create_descriptor("gaussian", elements=["Cu", "Pt"], cutoff=5.0)
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.symbols[::3] = "Pt"
    atoms.rattle(0.1, seed=9)
    assert np.allclose(d.compute(atoms, derivatives=True).dense_derivatives(), finite_difference(d, atoms),
                       rtol=1e-5, atol=1e-7)  # fmt: skip


@pytest.mark.parametrize("make", [lambda: cluster(5), lambda: periodic(6), lambda: slab(7)])
def test_pairs_are_the_sorted_neighbour_pairs_plus_self_pairs(make):
    atoms = make()
    d = create_descriptor("gaussian", cutoff=RC, Gs=mixed_gs())
    fp = d.compute(atoms, derivatives=True)
    nb = neighbour_list(atoms, RC)
    expected = sorted(
        {(int(i), int(j)) for i, j in zip(nb.centre, nb.neighbour)} | {(i, i) for i in range(len(atoms))}
    )
    assert [tuple(p) for p in fp.pairs.tolist()] == expected
    assert fp.pairs.dtype == np.int64 and fp.derivatives.dtype == np.float64
    assert fp.derivatives.shape == (len(expected), 3, fp.values.shape[1])
    assert np.array_equal(fp.values, d.compute(atoms).values)
    past = np.arange(fp.values.shape[1])[None, :] >= fp.lengths[fp.pairs[:, 0]][:, None]
    assert not fp.derivatives.transpose(0, 2, 1)[past].any()


def test_derivative_memory_is_linear_in_atoms():
    d = create_descriptor("gaussian", elements=["Cu"], cutoff=4.0)
    small = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((3, 3, 3))  # 10.8 A > 2 Rc: no repeated images
    large = small.repeat((2, 1, 1))
    ratio = len(d.compute(large, derivatives=True).pairs) / len(d.compute(small, derivatives=True).pairs)
    assert ratio == 2.0


# ------------------------------------------------------------------ invariances (hypothesis)

DESCRIPTOR = create_descriptor("gaussian", cutoff=RC, Gs=mixed_gs())
SEEDS = st.integers(min_value=0, max_value=2**31 - 1)


@settings(max_examples=10, deadline=None)
@given(
    seed=SEEDS, shift=st.tuples(*[st.floats(-20, 20)] * 3), angles=st.tuples(*[st.floats(-np.pi, np.pi)] * 3)
)
def test_values_invariant_and_derivatives_covariant_under_rotation_and_translation(seed, shift, angles):
    atoms = cluster(seed, n=5)
    fp = DESCRIPTOR.compute(atoms, derivatives=True)
    rotation = Rotation.from_euler("xyz", angles).as_matrix()
    moved = atoms.copy()
    moved.positions = atoms.positions @ rotation.T + np.array(shift)
    fq = DESCRIPTOR.compute(moved, derivatives=True)
    assert np.allclose(fq.values, fp.values, rtol=1e-10, atol=1e-12)
    assert np.array_equal(fq.pairs, fp.pairs)
    rotated = np.einsum("kl,plf->pkf", rotation, fp.derivatives)
    assert np.allclose(fq.derivatives, rotated, rtol=1e-9, atol=1e-11)


@settings(max_examples=8, deadline=None)
@given(seed=SEEDS, angles=st.tuples(*[st.floats(-np.pi, np.pi)] * 3))
def test_periodic_values_invariant_under_rotating_cell_and_atoms(seed, angles):
    atoms = periodic(seed)
    rotation = Rotation.from_euler("xyz", angles).as_matrix()
    moved = atoms.copy()
    moved.set_cell(atoms.cell.array @ rotation.T)
    moved.positions = atoms.positions @ rotation.T
    assert np.allclose(
        DESCRIPTOR.compute(moved).values, DESCRIPTOR.compute(atoms).values, rtol=1e-10, atol=1e-12
    )


@settings(max_examples=10, deadline=None)
@given(seed=SEEDS, data=st.data())
def test_permuting_atoms_permutes_values_and_derivatives(seed, data):
    atoms = cluster(seed, n=6)
    order = np.array(data.draw(st.permutations(range(len(atoms)))))
    fp = DESCRIPTOR.compute(atoms, derivatives=True)
    fq = DESCRIPTOR.compute(atoms[order], derivatives=True)
    assert np.allclose(fq.values, fp.values[order], rtol=1e-12, atol=1e-14)
    dense = fp.dense_derivatives()
    assert np.allclose(fq.dense_derivatives(), dense[order][:, order], rtol=1e-12, atol=1e-14)


@settings(max_examples=10, deadline=None)
@given(seed=SEEDS, data=st.data())
def test_swapping_same_element_atoms_leaves_the_fingerprint_set_unchanged(seed, data):
    atoms = cluster(seed, n=6)
    same = [k for k, s in enumerate(atoms.get_chemical_symbols()) if s == "Cu"]
    a, b = data.draw(st.sampled_from(same)), data.draw(st.sampled_from(same))
    swapped = atoms.copy()
    swapped.positions[[a, b]] = atoms.positions[[b, a]]
    order = np.arange(len(atoms))
    order[[a, b]] = [b, a]
    assert np.allclose(
        DESCRIPTOR.compute(swapped).values, DESCRIPTOR.compute(atoms).values[order], atol=1e-14
    )


@settings(max_examples=6, deadline=None)
@given(seed=SEEDS, repeat=st.sampled_from([(2, 1, 1), (1, 2, 1), (2, 2, 1), (1, 1, 3)]))
def test_supercell_atoms_have_their_primitive_atoms_fingerprints(seed, repeat):
    atoms = periodic(seed)
    values = DESCRIPTOR.compute(atoms).values
    big = DESCRIPTOR.compute(atoms.repeat(repeat)).values
    assert np.allclose(big, np.tile(values, (np.prod(repeat), 1)), rtol=1e-10, atol=1e-12)
    wrapped = atoms.copy()
    wrapped.positions += (
        3.0 * atoms.cell.array[0] - 2.0 * atoms.cell.array[2]
    )  # whole cells: outside the cell
    assert np.allclose(DESCRIPTOR.compute(wrapped).values, values, rtol=1e-10, atol=1e-12)
