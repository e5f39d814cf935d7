"""The bispectrum descriptor: Amp's values, analytic derivatives, invariances, parameters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from amp_core import ConfigError, create_descriptor
from amp_core.errors import DataError
from amp_core.testing import check_descriptor
from amp_plugins.descriptors.bispectrum import BispectrumParams
from amp_plugins.descriptors.bispectrum._su2 import features

RC = 4.0
REFERENCE = Path(__file__).parent / "data" / "bispectrum_amp.json"
WEIGHTS = {"Cu": {"Cu": 1.0, "Pt": 2.5}, "Pt": {"Cu": 0.7, "Pt": -1.3}}


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


# ------------------------------------------------------------------ Amp's values


def reference_cases():
    return json.loads(REFERENCE.read_text())["cases"]


def test_the_reference_covers_periodic_and_not_and_two_elements():
    cases = reference_cases()
    assert len(cases) >= 2
    assert any(any(c["pbc"]) for c in cases) and any(not any(c["pbc"]) for c in cases)
    assert all(set(c["symbols"]) == {"Cu", "Pt"} for c in cases)
    assert any(c["params"]["Gs"] is None for c in cases) and any(c["params"]["Gs"] for c in cases)


@pytest.mark.parametrize("k", range(len(json.loads(REFERENCE.read_text())["cases"])))
def test_values_equal_amps_to_1e_10(k):
    case = reference_cases()[k]
    atoms = Atoms(case["symbols"], positions=case["positions"], cell=case["cell"], pbc=case["pbc"])
    p = case["params"]
    d = create_descriptor(
        "bispectrum", cutoff=p["cutoff"], jmax=p["jmax"], Gs=p["Gs"], elements=p["elements"]
    )
    expected = np.array([fp for _, fp in case["amp"]])
    assert [s for s, _ in case["amp"]] == case["symbols"]
    fp = d.compute(atoms)
    assert fp.values.shape == expected.shape == (len(atoms), len(features(p["jmax"])))
    # each value to 1e-10 of itself (a floor of 1e-13 of the atom's largest value for values near zero)
    bound = 1e-10 * np.abs(expected) + 1e-13 * np.abs(expected).max(axis=1, keepdims=True)
    assert np.all(np.abs(fp.values - expected) <= bound), np.abs(fp.values / expected - 1).max()


def test_feature_order_and_count_follow_amp():
    assert len(features(5)) == 51  # Amp's default jmax
    assert [(f.two_j1, f.j) for f in features(1)] == [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1)]
    # half-integer jmax: j stops at int(jmax) (Amp's int(min(2 j1, jmax)))
    assert [(f.two_j1, f.j) for f in features(1.5)] == [
        (0, 0),
        (1, 0),
        (1, 1),
        (2, 0),
        (2, 1),
        (3, 0),
        (3, 1),
    ]
    assert len(features(2.5)) == 1 + 2 + 3 + 3 + 3 + 3


def test_clebsch_gordan_known_values_and_orthonormality():
    from amp_plugins.descriptors.bispectrum._su2 import clebsch_gordan as cg

    # <1/2 1/2 1/2 -1/2 | 1 0> = 1/sqrt 2, <1 1 1 -1 | 0 0> = 1/sqrt 3, <1 0 1 0 | 1 0> = 0,
    # <3/2 3/2 1 -1 | 5/2 1/2> = sqrt(1/10) (tables, Condon-Shortley phases)
    assert cg(1, 1, 1, -1, 2, 0) == pytest.approx(2**-0.5, rel=1e-15)
    assert cg(2, 2, 2, -2, 0, 0) == pytest.approx(3**-0.5, rel=1e-15)
    assert cg(2, 0, 2, 0, 2, 0) == 0.0
    assert cg(3, 3, 2, -2, 5, 1) == pytest.approx(0.1**0.5, rel=1e-15)
    # the coupling of j1 = j2 = 3/2 is an orthogonal matrix
    rows = [(t1, t2) for t1 in range(-3, 4, 2) for t2 in range(-3, 4, 2)]
    columns = [(tj, tm) for tj in range(0, 7, 2) for tm in range(-tj, tj + 1, 2)]
    matrix = np.array([[cg(3, t1, 3, t2, tj, tm) for tj, tm in columns] for t1, t2 in rows])
    assert np.allclose(matrix.T @ matrix, np.eye(16), atol=1e-14)


def test_a_lone_atom_has_zero_fingerprint_and_the_centre_does_not_count():
    d = create_descriptor("bispectrum", cutoff=RC, jmax=2)
    empty = d.compute(Atoms(), derivatives=True)
    assert empty.values.shape == (0, 12) and empty.derivatives.shape == (0, 3, 12)
    lone = d.compute(Atoms("Cu", positions=[[0, 0, 0]]), derivatives=True)
    assert np.array_equal(lone.values, np.zeros((1, 12)))
    assert np.array_equal(lone.derivatives, np.zeros((1, 3, 12)))
    pair = d.compute(Atoms("CuPt", positions=[[0, 0, 0], [2.0, 0, 0]]))
    # one neighbour: B_{000} = (w fc)^3, w = Z of the neighbour (Amp's default weights)
    fc = 0.5 * (np.cos(np.pi * 2.0 / RC) + 1)
    assert pair.values[0, 0] == pytest.approx((78 * fc) ** 3, rel=1e-13)
    assert pair.values[1, 0] == pytest.approx((29 * fc) ** 3, rel=1e-13)


# ------------------------------------------------------------------ derivatives

CUTOFFS = [RC, {"name": "Polynomial", "Rc": RC, "gamma": 4}]
STRUCTURES = {
    "cluster": lambda: cluster(1),
    "cluster-dense": lambda: cluster(2, n=8, box=3.0),
    "periodic": lambda: periodic(3),
    "slab": lambda: slab(4),
}


@pytest.mark.parametrize("cutoff", CUTOFFS, ids=["cosine", "poly4"])
@pytest.mark.parametrize("name", list(STRUCTURES))
def test_derivatives_match_central_finite_differences(name, cutoff):
    d = create_descriptor("bispectrum", cutoff=cutoff, jmax=2, Gs=WEIGHTS)
    atoms = STRUCTURES[name]()
    analytic = d.compute(atoms, derivatives=True).dense_derivatives()
    numeric = finite_difference(d, atoms)
    scale = np.abs(analytic).max()
    assert scale > 1e-3
    assert np.allclose(analytic, numeric, rtol=1e-6, atol=1e-7 * scale)


def test_half_integer_jmax_derivatives_on_periodic_cell():
    d = create_descriptor("bispectrum", cutoff=3.5, jmax=1.5, elements=["Cu", "Pt"])
    atoms = periodic(8)
    analytic = d.compute(atoms, derivatives=True).dense_derivatives()
    scale = np.abs(analytic).max()
    assert np.allclose(analytic, finite_difference(d, atoms), rtol=1e-6, atol=1e-7 * scale)


def test_pairs_are_the_neighbour_pairs_plus_self_pairs():
    from amp_plugins.descriptors.gaussian._neighbors import neighbour_list

    atoms = slab(5)
    fp = create_descriptor("bispectrum", cutoff=RC, jmax=1).compute(atoms, derivatives=True)
    nb = neighbour_list(atoms, RC)
    expected = sorted(
        {(int(i), int(j)) for i, j in zip(nb.centre, nb.neighbour)} | {(i, i) for i in range(len(atoms))}
    )
    assert [tuple(p) for p in fp.pairs.tolist()] == expected
    assert fp.derivatives.shape == (len(expected), 3, 5)


@pytest.mark.parametrize("jmax", [1, 2.5])
def test_keeps_the_descriptor_contract(jmax):
    d = create_descriptor("bispectrum", cutoff=3.0, jmax=jmax, Gs=WEIGHTS)
    # values scale as weight^3: compare relative to them
    check_descriptor(d, atol=1e-6, rtol=1e-5)


def test_keeps_the_descriptor_contract_with_default_weights_for_any_element():
    d = create_descriptor("bispectrum", cutoff=3.0, jmax=1)
    assert d.elements is None
    check_descriptor(d, atol=1e-4, rtol=1e-5)


# ------------------------------------------------------------------ invariances (hypothesis)

DESCRIPTOR = create_descriptor("bispectrum", cutoff=RC, jmax=2, Gs=WEIGHTS)
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
    scale = np.abs(fp.values).max()
    assert np.allclose(fq.values, fp.values, rtol=1e-10, atol=1e-12 * scale)
    assert np.array_equal(fq.pairs, fp.pairs)
    rotated = np.einsum("kl,plf->pkf", rotation, fp.derivatives)
    assert np.allclose(fq.derivatives, rotated, rtol=1e-9, atol=1e-11 * np.abs(rotated).max())


@settings(max_examples=6, deadline=None)
@given(seed=SEEDS, angles=st.tuples(*[st.floats(-np.pi, np.pi)] * 3))
def test_periodic_values_invariant_under_rotating_cell_and_atoms(seed, angles):
    atoms = periodic(seed)
    rotation = Rotation.from_euler("xyz", angles).as_matrix()
    moved = atoms.copy()
    moved.set_cell(atoms.cell.array @ rotation.T)
    moved.positions = atoms.positions @ rotation.T
    expected = DESCRIPTOR.compute(atoms).values
    assert np.allclose(
        DESCRIPTOR.compute(moved).values, expected, rtol=1e-10, atol=1e-12 * np.abs(expected).max()
    )


@settings(max_examples=10, deadline=None)
@given(seed=SEEDS, data=st.data())
def test_permuting_atoms_permutes_values_and_derivatives(seed, data):
    atoms = cluster(seed, n=6)
    order = np.array(data.draw(st.permutations(range(len(atoms)))))
    fp = DESCRIPTOR.compute(atoms, derivatives=True)
    fq = DESCRIPTOR.compute(atoms[order], derivatives=True)
    assert np.allclose(fq.values, fp.values[order], rtol=1e-12, atol=0)
    dense = fp.dense_derivatives()
    assert np.allclose(
        fq.dense_derivatives(), dense[order][:, order], rtol=1e-11, atol=1e-13 * np.abs(dense).max()
    )


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
        DESCRIPTOR.compute(swapped).values, DESCRIPTOR.compute(atoms).values[order], rtol=1e-12, atol=0
    )


# ------------------------------------------------------------------ parameters and errors


def test_defaults_are_amps():
    p = BispectrumParams(elements=["Pt", "Cu"])
    assert p.cutoff.name == "Cosine" and p.cutoff.Rc == 6.5 and p.jmax == 5.0
    assert dict((c, dict(row)) for c, row in p.Gs) == {
        "Pt": {"Pt": 78.0, "Cu": 29.0},
        "Cu": {"Pt": 78.0, "Cu": 29.0},
    }
    assert create_descriptor("bispectrum", elements=["Cu"]).n_features == 51
    assert BispectrumParams(elements={"Pt", "Cu"}).elements == ("Cu", "Pt")  # a set, as Amp may keep


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"elements": ["Cu", "Pt"], "jmax": 2.5, "cutoff": {"name": "Cosine", "kwargs": {"Rc": 5.0}}},
        {"Gs": WEIGHTS, "cutoff": {"name": "Polynomial", "Rc": 5.0, "gamma": 3}},
    ],
)
def test_params_round_trip_through_todict_and_json(kwargs):
    p = BispectrumParams(**kwargs)
    again = BispectrumParams(**json.loads(json.dumps(p.todict())))
    assert again == p and hash(again) == hash(p)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"jmax": -1}, "jmax must be an integer or half-integer"),
        ({"jmax": 1.3}, "jmax must be an integer or half-integer"),
        ({"jmax": 9}, "from 0 to 8"),
        ({"jmax": "5"}, "jmax must be a number"),
        ({"jmax": True}, "jmax must be a number"),
        ({"jmax": {"Cu": 5}}, "one number for all elements"),
        ({"cutoff": -2.0}, "must be positive"),
        ({"elements": "CuPt"}, "list of symbols"),
        ({"elements": ["Cu", "Xx"]}, "not a chemical symbol"),
        ({"Gs": {"Cu": {"Cu": 1.0, "Pt": 2.0}}}, "must weight exactly the elements of Gs"),
        ({"Gs": {"Cu": [1.0]}}, "must be a dict"),
        ({"Gs": {"Cu": {"Cu": "heavy"}}}, r"Gs\['Cu'\]\['Cu'\] must be a number"),
        ({"Gs": {"Cu": {"Cu": float("nan")}}}, "finite"),
        ({"Gs": {}}, "non-empty dict"),
        ({"Gs": WEIGHTS, "elements": ["Cu"]}, "differ from the elements of Gs"),
    ],
)
def test_bad_parameters_are_rejected_clearly(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BispectrumParams(**kwargs)
    with pytest.raises(ConfigError, match=match):
        create_descriptor("bispectrum", **kwargs)


def test_an_element_without_weights_is_a_data_error():
    d = create_descriptor("bispectrum", elements=["Cu"], cutoff=RC, jmax=1)
    with pytest.raises(DataError, match="contains Pt, which the bispectrum descriptor has no weights for"):
        d.compute(cluster(0, n=3))


def test_overlapping_atoms_are_a_data_error():
    d = create_descriptor("bispectrum", cutoff=RC, jmax=1)
    with pytest.raises(DataError, match="overlap"):
        d.compute(Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 0]]))
