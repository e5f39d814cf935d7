"""Parameters of the gaussian descriptor: Amp's formats, defaults, round trips and rejected input."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from ase import Atoms

from amp_core import ConfigError, DataError, create_descriptor
from amp_plugins.descriptors.gaussian import Gaussian, GaussianParams, make_default_symmetry_functions

CU_PT_GS = {
    "Cu": [
        {"type": "G2", "element": "Pt", "eta": 0.05, "offset": 0.0},
        {"type": "G2", "element": "Cu", "eta": 4.0},
        {"type": "G4", "elements": ["Cu", "Pt"], "eta": 0.005, "zeta": 1.0, "gamma": -1.0},
    ],
    "Pt": [
        {"type": "G5", "elements": ["Pt", "Pt"], "eta": 0.005, "zeta": 4.0, "gamma": 1.0},
    ],
}


def test_default_set_follows_amps_order_for_two_elements():
    gs = make_default_symmetry_functions(["Cu", "Pt"])
    assert list(gs) == ["Cu", "Pt"]
    assert gs["Cu"] == gs["Pt"]
    functions = gs["Cu"]
    assert len(functions) == 20
    etas = np.logspace(np.log10(0.05), np.log10(5.0), num=4)
    expected_g2 = [(eta, el) for eta in etas for el in ["Cu", "Pt"]]
    assert [g["type"] for g in functions[:8]] == ["G2"] * 8
    assert [g["element"] for g in functions[:8]] == [el for _, el in expected_g2]
    assert np.allclose([g["eta"] for g in functions[:8]], [eta for eta, _ in expected_g2], rtol=1e-15, atol=0)
    assert all(g["offset"] == 0.0 for g in functions[:8])
    expected_g4 = [
        (zeta, gamma, pair)
        for zeta in (1, 4)
        for gamma in (1, -1)
        for pair in (["Cu", "Cu"], ["Cu", "Pt"], ["Pt", "Pt"])
    ]
    assert [(g["zeta"], g["gamma"], g["elements"]) for g in functions[8:]] == expected_g4
    assert all(g["type"] == "G4" and g["eta"] == 0.005 for g in functions[8:])


def test_default_set_sorts_each_pair_but_keeps_the_given_element_order():
    gs = make_default_symmetry_functions(["Pt", "Cu"])
    assert list(gs) == ["Pt", "Cu"]
    assert [g["element"] for g in gs["Pt"][:2]] == ["Pt", "Cu"]
    assert [g["elements"] for g in gs["Pt"][8:11]] == [["Pt", "Pt"], ["Cu", "Pt"], ["Cu", "Cu"]]


def test_amp_gs_dict_is_accepted_verbatim_and_feature_order_is_list_order():
    d = create_descriptor("gaussian", cutoff=6.5, Gs=CU_PT_GS)
    assert d.elements == ("Cu", "Pt")
    assert d.n_features("Cu") == 3 and d.n_features("Pt") == 1
    back = d.todict()
    assert back["Gs"]["Cu"][1] == {"type": "G2", "element": "Cu", "eta": 4.0, "offset": 0.0}
    assert back["Gs"]["Pt"][0]["type"] == "G5"


def test_todict_is_json_and_rebuilds_an_equal_descriptor():
    d = create_descriptor(
        "gaussian", cutoff={"name": "Polynomial", "Rc": 5.0, "gamma": 3}, elements=["Cu", "Pt"]
    )
    document = json.loads(json.dumps(d.todict()))
    assert document["cutoff"] == {"name": "Polynomial", "Rc": 5.0, "gamma": 3.0}
    rebuilt = create_descriptor("gaussian", **document)
    assert rebuilt == d and hash(rebuilt) == hash(d)
    assert pickle.loads(pickle.dumps(d)) == d
    assert create_descriptor("gaussian", Gs=CU_PT_GS) != create_descriptor("gaussian", elements=["Cu", "Pt"])


def test_params_are_frozen_and_hashable():
    params = GaussianParams(elements=("Cu",))
    assert hash(params) == hash(GaussianParams(elements=["Cu"]))
    with pytest.raises(AttributeError):
        params.cutoff = 5.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "cutoff, expected",
    [
        (6.5, {"name": "Cosine", "Rc": 6.5}),
        ({"name": "Cosine", "Rc": 4}, {"name": "Cosine", "Rc": 4.0}),
        ({"name": "Cosine", "kwargs": {"Rc": 6.5}}, {"name": "Cosine", "Rc": 6.5}),
        (
            {"name": "Polynomial", "kwargs": {"Rc": 5.0, "gamma": 2.0}},
            {"name": "Polynomial", "Rc": 5.0, "gamma": 2.0},
        ),
        ({"name": "Polynomial", "Rc": 5.0}, {"name": "Polynomial", "Rc": 5.0, "gamma": 4.0}),
    ],
)
def test_cutoff_forms(cutoff, expected):
    assert create_descriptor("gaussian", cutoff=cutoff, elements=["Cu"]).todict()["cutoff"] == expected


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cutoff": 0.0, "elements": ["Cu"]}, "positive"),
        ({"cutoff": -3.0, "elements": ["Cu"]}, "positive"),
        ({"cutoff": {"name": "Gaussian", "Rc": 5.0}, "elements": ["Cu"]}, "unknown cutoff"),
        ({"cutoff": {"name": "Cosine"}, "elements": ["Cu"]}, "'Rc'"),
        ({"cutoff": {"name": "Polynomial", "Rc": 5, "gamma": 0.5}, "elements": ["Cu"]}, "gamma"),
        ({}, "either Gs"),
        ({"elements": ["Cu", "Qq"]}, "chemical symbol"),
        (
            {"Gs": {"Cu": [{"type": "G3", "element": "Cu", "eta": 1.0}]}},
            "unknown symmetry function type 'G3'",
        ),
        ({"Gs": {"Cu": [{"type": "G2", "elment": "Cu", "eta": 1.0}]}}, "unknown: ['elment']"),
        (
            {"Gs": {"Cu": [{"type": "G4", "elements": ["Cu", "Cu"], "eta": 0.005, "zeta": 0.0, "gamma": 1}]}},
            "zeta must be positive",
        ),
        (
            {"Gs": {"Cu": [{"type": "G4", "elements": ["Cu", "Cu"], "eta": 0.005, "zeta": 1, "gamma": 2}]}},
            "gamma",
        ),
        ({"Gs": {"Cu": [{"type": "G4", "elements": ["Cu"], "eta": 0.005, "zeta": 1, "gamma": 1}]}}, "pair"),
        ({"Gs": {"Cu": [{"type": "G2", "element": "Cu", "eta": -1.0}]}}, "eta"),
        ({"Gs": {"Cu": [{"type": "G2", "element": "Cu", "eta": float("nan")}]}}, "finite"),
        ({"Gs": {"Cu": []}}, "empty"),
        ({"Gs": {"Cu": [{"type": "G2", "element": "Cu", "eta": 1.0}]}, "elements": ["Pt"]}, "differ"),
    ],
)
def test_bad_parameters_are_rejected_at_construction(kwargs, message):
    with pytest.raises(ConfigError, match="invalid parameters") as info:
        create_descriptor("gaussian", **kwargs)
    assert message in str(info.value)
    with pytest.raises(ValueError, match="."):
        GaussianParams(**kwargs)


def test_unknown_element_in_structure_names_it_and_the_known_ones():
    d = Gaussian(GaussianParams(elements=("Cu", "Pt")))
    atoms = Atoms("CuAu", positions=[[0, 0, 0], [2.5, 0, 0]])
    with pytest.raises(DataError, match=r"contains Au.*Gs covers: Cu, Pt"):
        d.compute(atoms)


def test_overlapping_atoms_and_bad_cells_are_data_errors():
    d = Gaussian(GaussianParams(elements=("Cu",)))
    with pytest.raises(DataError, match="overlap"):
        d.compute(Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 0]]))
    with pytest.raises(DataError, match="zero cell vector"):
        d.compute(Atoms("Cu", positions=[[0, 0, 0]], cell=[3, 3, 0], pbc=True))
    with pytest.raises(DataError, match="non-finite"):
        d.compute(Atoms("Cu", positions=[[0, np.nan, 0]]))
    # the work estimate, computed before any fingerprint, refuses the same structures
    with pytest.raises(DataError, match="atoms 0 and 1 overlap"):
        d.cost(Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 0]]))
    with pytest.raises(DataError, match="zero cell vector"):
        d.cost(Atoms("Cu", positions=[[0, 0, 0]], cell=[3, 3, 0], pbc=True))


def test_the_default_set_is_the_systematic_one_scaled_to_the_cutoff():
    from amp_plugins.descriptors.gaussian import make_systematic_symmetry_functions

    for cutoff in (5.0, 6.5):
        params = GaussianParams(cutoff=cutoff, elements=["Mo"])
        assert params == GaussianParams(cutoff=cutoff, Gs=make_systematic_symmetry_functions(["Mo"], cutoff))
        (symbol, functions), = params.Gs
        assert symbol == "Mo" and len(functions) == 8 + 24
        radial, angular = functions[:8], functions[8:]
        spacing = (cutoff - 1.0) / 8  # centres 1 A apart-ish from 1 A on, each as wide as the spacing
        np.testing.assert_allclose([g.offset for g in radial], 1.0 + spacing * np.arange(8), rtol=1e-15)
        for g in radial:  # Amp's exp(-eta (r - r_s)^2 / Rc^2) is a Gaussian of standard deviation `spacing`
            r = g.offset + spacing
            assert np.exp(-g.eta * (r - g.offset) ** 2 / cutoff**2) == pytest.approx(np.exp(-0.5), rel=1e-12)
        assert {(g.eta, g.zeta, g.gamma) for g in angular} == {
            (eta, zeta, gamma) for eta in (0.2, 1.0, 3.0) for zeta in (1.0, 2.0, 4.0, 16.0) for gamma in (1.0, -1.0)}
    two = GaussianParams(elements=["Cu", "Pt"])
    assert [len(f) for _, f in two.Gs] == [16 + 3 * 24] * 2


def test_preset_amp_is_amps_default_set_and_presets_are_checked():
    assert GaussianParams(elements=["Cu", "Pt"], preset="amp") == GaussianParams(
        Gs=make_default_symmetry_functions(["Cu", "Pt"]))
    assert GaussianParams(elements=["Cu"], preset="systematic") == GaussianParams(elements=["Cu"])
    with pytest.raises(ValueError, match="preset must be one of 'systematic', 'amp'; got 'behler'"):
        GaussianParams(elements=["Cu"], preset="behler")
    with pytest.raises(ValueError, match="give Gs or preset, not both"):
        GaussianParams(Gs=CU_PT_GS, preset="amp")
    with pytest.raises(ValueError, match="needs a cutoff above 1 Angstrom"):
        GaussianParams(cutoff=0.9, elements=["Cu"])
    with pytest.raises(ConfigError, match="preset"):
        create_descriptor("gaussian", elements=["Cu"], preset=3)
    assert "preset" not in create_descriptor("gaussian", elements=["Cu"], preset="amp").todict()  # Gs is explicit
