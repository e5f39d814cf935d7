"""Gaussian fingerprint values: hand-computed cases, DScribe's ACSF, and the neighbour list versus ASE."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from ase.data import atomic_numbers
from ase.neighborlist import neighbor_list

from amp_core import create_descriptor
from amp_plugins.descriptors.gaussian._neighbors import neighbour_list
from amp_plugins.descriptors.gaussian._params import Cutoff


def cosine(r: float, rc: float) -> float:
    return 0.5 * (math.cos(math.pi * r / rc) + 1.0) if r < rc else 0.0


def g2(element, eta, offset=0.0):
    return {"type": "G2", "element": element, "eta": eta, "offset": offset}


def g4(kind, pair, eta, zeta, gamma):
    return {"type": kind, "elements": list(pair), "eta": eta, "zeta": zeta, "gamma": gamma}


# ------------------------------------------------------------------ hand-computed cases


def test_cutoff_functions_by_hand():
    cos = Cutoff("Cosine", 4.0)
    poly = Cutoff("Polynomial", 4.0, 4.0)
    r = np.array([0.0, 2.0, 4.0, 5.0])
    # Cosine: 0.5 (cos(pi r / Rc) + 1) -> 1, 0.5, 0, 0; derivative at Rc/2: -pi / (2 Rc)
    assert np.allclose(cos.evaluate(r)[0], [1.0, 0.5, 0.0, 0.0])
    assert cos.evaluate(np.array([2.0]))[1][0] == pytest.approx(-math.pi / 8.0)
    # Polynomial gamma 4 at x = 1/2: 1 + 4/32 - 5/16 = 0.8125; derivative 20/Rc x^3 (x - 1) = -0.3125
    assert np.allclose(poly.evaluate(r)[0], [1.0, 0.8125, 0.0, 0.0])
    assert poly.evaluate(np.array([2.0]))[1][0] == pytest.approx(20.0 / 4.0 * 0.125 * -0.5)


def test_g2_of_a_dimer_by_hand():
    rc, r = 6.5, 2.5
    gs = {"Cu": [g2("Pt", 0.05), g2("Cu", 0.05), g2("Pt", 4.0, offset=2.0)], "Pt": [g2("Cu", 1.0)]}
    fp = create_descriptor("gaussian", cutoff=rc, Gs=gs).compute(
        Atoms("CuPt", positions=[[0, 0, 0], [0, 0, r]])
    )
    fc = cosine(r, rc)  # 0.5 (cos(pi 2.5 / 6.5) + 1) = 0.677302...
    assert fc == pytest.approx(0.677302, abs=1e-6)
    expected_cu = [math.exp(-0.05 * r**2 / rc**2) * fc, 0.0, math.exp(-4.0 * (r - 2.0) ** 2 / rc**2) * fc]
    assert fp[0] == pytest.approx(expected_cu, rel=1e-14)
    assert fp[1] == pytest.approx([math.exp(-1.0 * r**2 / rc**2) * fc], rel=1e-14)
    assert fp.lengths.tolist() == [3, 1]
    assert fp.values[1, 1:].tolist() == [0.0, 0.0]


def test_g4_and_g5_of_an_equilateral_triangle_by_hand():
    # Each centre sees one neighbour pair at cos(theta) = 1/2 with r_ij = r_ik = r_jk = s.
    s, rc, eta = 2.0, 5.0, 0.7
    positions = [[0, 0, 0], [s, 0, 0], [s / 2, s * math.sqrt(3) / 2, 0]]
    gs = {"H": [g4("G4", "HH", eta, 1.0, 1.0), g4("G4", "HH", eta, 4.0, -1.0), g4("G5", "HH", eta, 2.0, 1.0)]}
    fp = create_descriptor("gaussian", cutoff=rc, Gs=gs).compute(Atoms("H3", positions=positions))
    f = cosine(s, rc)
    g4_1 = 2.0**0 * 1.5**1 * math.exp(-eta * 3 * s**2 / rc**2) * f**3
    g4_2 = 2.0**-3 * 0.5**4 * math.exp(-eta * 3 * s**2 / rc**2) * f**3
    g5 = 2.0**-1 * 1.5**2 * math.exp(-eta * 2 * s**2 / rc**2) * f**2
    for atom in range(3):
        assert fp[atom] == pytest.approx([g4_1, g4_2, g5], rel=1e-13)


def test_g4_only_counts_the_matching_element_pair_once():
    # Right angle at O: pair (H, H) seen from O; from each H the pair is (H, O).
    positions = [[0, 0, 0], [1.0, 0, 0], [0, 1.2, 0]]
    gs = {e: [g4("G4", "HH", 0.0, 1.0, -1.0), g4("G4", "HO", 0.0, 1.0, -1.0)] for e in "HO"}
    fp = create_descriptor("gaussian", cutoff=3.0, Gs=gs).compute(Atoms("OH2", positions=positions))
    r1, r2, r12 = 1.0, 1.2, math.hypot(1.0, 1.2)
    ff = cosine(r1, 3.0) * cosine(r2, 3.0) * cosine(r12, 3.0)
    assert fp[0] == pytest.approx([(1 - 0.0) * ff, 0.0], abs=1e-15)  # cos 90 deg = 0
    cos_h1 = r1 / r12  # angle at H1 between H1->O and H1->H2
    assert fp[1] == pytest.approx([0.0, (1 - cos_h1) * ff], rel=1e-13)


@pytest.mark.parametrize("rc", [2.5, 2.8])
def test_self_images_in_a_small_periodic_cell_by_hand(rc):
    # One atom, simple cubic a = 2, Rc < 2 sqrt(2): its six images at 2 A are its only
    # neighbours; the 12 pairs of perpendicular images are 2 sqrt(2) > Rc apart (no G4
    # term) and the 3 opposite pairs 4 apart (cos = -1); G5 counts all 15 pairs.
    a, eta = 2.0, 0.4
    gs = {
        "Cu": [g2("Cu", eta), g4("G4", ("Cu", "Cu"), eta, 1.0, 1.0), g4("G5", ("Cu", "Cu"), eta, 1.0, -1.0)]
    }
    atoms = Atoms("Cu", cell=[a, a, a], pbc=True, positions=[[0.3, 0.2, 0.1]])
    fp = create_descriptor("gaussian", cutoff=rc, Gs=gs).compute(atoms, derivatives=True)
    f = cosine(a, rc)
    expected_g2 = 6 * math.exp(-eta * a**2 / rc**2) * f
    expected_g5 = (3 * 2.0 + 12 * 1.0) * math.exp(-eta * 2 * a**2 / rc**2) * f * f
    assert fp[0] == pytest.approx([expected_g2, 0.0, expected_g5], rel=1e-13, abs=1e-15)
    assert fp.pairs.tolist() == [[0, 0]]
    assert np.abs(fp.derivatives).max() < 1e-13  # moving the only atom moves its images too


def test_self_images_along_a_periodic_chain_by_hand():
    # Chain along x (a = 2, only x periodic), Rc = 4.5: images at -4, -2, +2, +4.
    # G4 with gamma = -1 keeps only pairs at cos = -1 with r_jk < Rc: (-2, +2) (r_jk = 4).
    # G4 with gamma = +1 keeps the pairs at cos = +1: (+2, +4) and (-2, -4) (r_jk = 2).
    a, rc, eta = 2.0, 4.5, 0.3
    gs = {"Cu": [g4("G4", ("Cu", "Cu"), eta, 1.0, -1.0), g4("G4", ("Cu", "Cu"), eta, 2.0, 1.0)]}
    atoms = Atoms("Cu", cell=[a, 10, 10], pbc=(True, False, False), positions=[[0.5, 1, 1]])
    fp = create_descriptor("gaussian", cutoff=rc, Gs=gs).compute(atoms)
    f2, f4 = cosine(2.0, rc), cosine(4.0, rc)
    opposite = 2.0 * math.exp(-eta * (4 + 4 + 16) / rc**2) * f2 * f2 * f4
    same_side = 2 * (2.0**-1 * 2.0**2) * math.exp(-eta * (4 + 16 + 4) / rc**2) * f2 * f4 * f2
    assert fp[0] == pytest.approx([opposite, same_side], rel=1e-13)


# ------------------------------------------------------------------ against DScribe


DS_RC = 5.0
DS_G2 = [(0.05, 0.0), (0.2, 1.5)]
DS_G4 = [(0.01, 1.0, 1.0), (0.03, 4.0, -1.0)]
DS_G5 = [(0.02, 2.0, -1.0), (0.01, 1.0, 1.0)]


def _dscribe_layout(species):
    """DScribe's columns (as observed): per species (by Z) [G1, G2...], then per pair i >= j [G4..., G5...]."""
    rank = {s: k for k, s in enumerate(sorted(species, key=lambda s: atomic_numbers[s]))}
    radial_width = 1 + len(DS_G2)

    def radial(element, q):
        return rank[element] * radial_width + 1 + q

    def angular(a, b, k):
        i, j = max(rank[a], rank[b]), min(rank[a], rank[b])
        return len(species) * radial_width + (i * (i + 1) // 2 + j) * (len(DS_G4) + len(DS_G5)) + k

    return radial, angular


def _our_gs_and_columns(species):
    radial, angular = _dscribe_layout(species)
    functions, columns = [], []
    for q, (eta, offset) in enumerate(DS_G2):
        for element in species:
            functions.append(g2(element, eta * DS_RC**2, offset))  # DScribe has no 1/Rc^2 in the exponent
            columns.append(radial(element, q))
    for kind, table, first in (("G4", DS_G4, 0), ("G5", DS_G5, len(DS_G4))):
        for k, (eta, zeta, gamma) in enumerate(table):
            for i, a in enumerate(species):
                for b in species[i:]:
                    functions.append(g4(kind, (a, b), eta * DS_RC**2, zeta, gamma))
                    columns.append(angular(a, b, first + k))
    return {s: functions for s in species}, columns


def _structures():
    ethanol = molecule("CH3CH2OH")
    alloy = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
    alloy.symbols[::3] = "Pt"
    alloy.rattle(0.05, seed=2)
    slab = fcc111("Pt", (2, 2, 3), vacuum=5.0)
    slab.symbols[::4] = "Cu"
    slab.rattle(0.05, seed=3)
    tiny = bulk("Cu", "sc", a=1.8)
    shifted = alloy.copy()
    shifted.positions += [7.1, -3.3, 12.0]  # outside the cell
    skew = bulk("Cu", "fcc", a=3.61) * (2, 2, 1)  # primitive, non-orthogonal cell
    skew.symbols[1] = "Pt"
    skew.rattle(0.05, seed=4)
    return [(ethanol, ["H", "C", "O"]), (alloy, ["Cu", "Pt"]), (slab, ["Cu", "Pt"]), (tiny, ["Cu"]),
            (shifted, ["Cu", "Pt"]), (skew, ["Cu", "Pt"])]  # fmt: skip


@pytest.mark.parametrize("index", range(6))
def test_values_match_dscribe_acsf(index):
    from dscribe.descriptors import ACSF

    atoms, species = _structures()[index]
    reference = ACSF(
        r_cut=DS_RC, g2_params=[list(x) for x in DS_G2], g4_params=[list(x) for x in DS_G4],
        g5_params=[list(x) for x in DS_G5], species=species, periodic=bool(atoms.pbc.any()),
    ).create(atoms)  # fmt: skip
    gs, columns = _our_gs_and_columns(species)
    values = create_descriptor("gaussian", cutoff=DS_RC, Gs=gs).compute(atoms).values
    expected = reference[:, columns]
    assert np.abs(expected).max() > 1.0  # non-trivial
    assert np.allclose(values, expected, rtol=1e-11, atol=1e-12)


# ------------------------------------------------------------------ neighbour list versus ASE


def _neighbour_cases():
    periodic = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    periodic.rattle(0.05, seed=5)
    slab = fcc111("Cu", (3, 3, 3), vacuum=6.0)
    slab.rattle(0.05, seed=6)
    tiny = Atoms("Cu", cell=[1.8, 1.8, 1.8], pbc=True, positions=[[0.1, 0.2, 0.3]])
    mol = molecule("C6H6")
    return [(periodic, 6.5), (slab, 6.5), (tiny, 4.0), (mol, 3.0)]


@pytest.mark.parametrize("half_search", [False, True])
@pytest.mark.parametrize("index", range(4))
def test_neighbour_images_equal_ase(index, half_search):
    atoms, rc = _neighbour_cases()[index]
    nb = neighbour_list(atoms, rc, half_search=half_search)
    i, j, shift = neighbor_list("ijS", atoms, rc)
    ours = set(zip(nb.centre.tolist(), nb.neighbour.tolist(), map(tuple, nb.shift.tolist())))
    theirs = set(zip(i.tolist(), j.tolist(), map(tuple, shift.tolist())))
    assert len(ours) == len(nb.centre) > 0
    assert ours == theirs
    assert (np.diff(nb.centre) >= 0).all()
    expected = atoms.positions[nb.neighbour] + nb.shift @ atoms.cell.array - atoms.positions[nb.centre]
    assert np.allclose(nb.vectors, expected, atol=1e-12)
    assert np.allclose(nb.distances, np.linalg.norm(expected, axis=1), atol=1e-12)


@pytest.mark.parametrize("index", range(4))
def test_neighbour_counts_equal_the_full_list(index):
    from amp_plugins.descriptors.gaussian._neighbors import neighbour_counts

    atoms, rc = _neighbour_cases()[index]
    expected = neighbour_list(atoms, rc).counts
    assert expected.sum() > 0
    np.testing.assert_array_equal(neighbour_counts(atoms, rc), expected)


@pytest.mark.parametrize("index", range(4))
def test_derivative_blocks_number_each_centre_and_its_distinct_neighbours(index):
    from amp_plugins.descriptors.gaussian._neighbors import derivative_blocks

    atoms, rc = _neighbour_cases()[index]
    nb = neighbour_list(atoms, rc)
    blocks = derivative_blocks(nb)
    n = len(atoms)
    expected = sorted({(i, i) for i in range(n)} | set(zip(nb.centre.tolist(), nb.neighbour.tolist())))
    assert blocks.pairs.tolist() == [list(p) for p in expected]
    np.testing.assert_array_equal(blocks.pairs[blocks.entry], np.stack([nb.centre, nb.neighbour], axis=1))
    np.testing.assert_array_equal(blocks.pairs[blocks.own], np.stack([np.arange(n)] * 2, axis=1))
    np.testing.assert_array_equal(blocks.starts, np.searchsorted(blocks.pairs[:, 0], np.arange(n + 1)))


def test_single_isolated_atom_has_zero_fingerprint_and_a_self_pair():
    d = create_descriptor("gaussian", elements=["Cu"], preset="amp")
    fp = d.compute(Atoms("Cu", positions=[[1, 2, 3]]), derivatives=True)
    assert fp.values.shape == (1, 8) and not fp.values.any()
    assert fp.pairs.tolist() == [[0, 0]] and not fp.derivatives.any()
