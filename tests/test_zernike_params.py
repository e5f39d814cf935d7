"""Zernike parameters: defaults, round trips, the config path, and every rejected input."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from amp_core import create_descriptor
from amp_core.errors import ConfigError, DataError
from amp_plugins.descriptors.gaussian._neighbors import derivative_blocks, neighbour_list
from amp_plugins.descriptors.zernike import Zernike, ZernikeParams
from tests.test_zernike_values import compiled_available

SOURCE = Path(__file__).resolve().parents[1] / "plugins" / "descriptors" / "zernike" / "zernike_kernels.f90"


def test_defaults_are_amps():
    p = ZernikeParams(elements=["Pt", "Cu"])
    assert p.cutoff.name == "Cosine" and p.cutoff.Rc == 6.5 and p.nmax == 5
    assert p.elements == ("Cu", "Pt")
    assert p.todict()["Gs"] == {"Cu": {"Cu": 29.0, "Pt": 78.0}, "Pt": {"Cu": 29.0, "Pt": 78.0}}


def test_todict_round_trip_and_hash():
    p = ZernikeParams(cutoff={"name": "Polynomial", "kwargs": {"Rc": 5.0, "gamma": 3}}, nmax=7,
                      Gs={"Pt": {"Cu": 2, "Pt": 1.5}, "Cu": {"Pt": 0.5, "Cu": 1}})  # fmt: skip
    q = ZernikeParams(**p.todict())
    assert q == p and hash(q) == hash(p)
    assert p.todict() == {
        "cutoff": {"name": "Polynomial", "Rc": 5.0, "gamma": 3.0},
        "nmax": 7,
        "Gs": {"Cu": {"Cu": 1.0, "Pt": 0.5}, "Pt": {"Cu": 2.0, "Pt": 1.5}},
        "elements": ["Cu", "Pt"],
    }
    assert ZernikeParams(nmax=7.0, Gs=p.Gs, cutoff=p.cutoff) == p  # the normalised form is accepted too
    d = Zernike(p)
    assert pickle.loads(pickle.dumps(d)) == d and d.n_features("Pt") == 20
    assert "nmax=7" in repr(d)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"elements": ["Cu"], "nmax": -1}, "nmax must lie between 0 and 20, got -1"),
        ({"elements": ["Cu"], "nmax": 21}, "between 0 and 20"),
        ({"elements": ["Cu"], "nmax": 2.5}, "whole number"),
        ({"elements": ["Cu"], "nmax": "5"}, "whole number"),
        ({"elements": ["Cu"], "nmax": True}, "whole number"),
        ({"elements": ["Cu"], "nmax": {"Cu": 5}}, "one integer for all elements"),
        ({}, "give either Gs"),
        ({"elements": "CuPt"}, "list of symbols"),
        ({"elements": ["Cu", "Qq"]}, "'Qq' is not a chemical symbol"),
        ({"elements": ["Cu", "Cu"]}, "names an element twice"),
        ({"Gs": {"Cu": {"Cu": 1.0}}, "elements": ["Cu", "Pt"]}, "differ from the elements of Gs"),
        ({"Gs": {"Cu": {"Cu": 1.0, "Pt": 2.0}}}, r"Gs\['Cu'\].*not a centre in Gs: Pt"),
        ({"Gs": {"Cu": {"Cu": 1.0}, "Pt": {"Pt": 1.0}}}, r"Gs\['Cu'\] must give a weight.*missing: Pt"),
        ({"Gs": {"Cu": [29.0]}}, r"Gs\['Cu'\] must be a dict"),
        ({"Gs": {"Cu": {"Cu": "heavy"}}}, r"Gs\['Cu'\]\['Cu'\] must be a number"),
        ({"Gs": {"Cu": {"Cu": float("nan")}}}, "finite"),
        ({"Gs": {"Xx": {"Xx": 1.0}}}, "not a chemical symbol"),
        ({"Gs": {}}, "non-empty dict"),
        ({"Gs": [1, 2]}, "non-empty dict"),
        ({"elements": ["Cu"], "cutoff": -2.0}, "cutoff radius Rc must be positive"),
        ({"elements": ["Cu"], "cutoff": {"name": "Gaussian", "Rc": 5}}, "unknown cutoff"),
    ],
)
def test_bad_parameters_are_rejected(params, message):
    with pytest.raises(ValueError, match=message):
        ZernikeParams(**params)


def test_bad_parameters_through_the_public_api_are_config_errors():
    with pytest.raises(ConfigError, match="nmax"):
        create_descriptor("zernike", elements=["Cu"], nmax=-3)
    with pytest.raises(ConfigError, match="Accepted keys: cutoff, nmax, Gs, elements"):
        create_descriptor("zernike", elements=["Cu"], lmax=3)


def test_n_features_of_an_unknown_element():
    with pytest.raises(KeyError, match="covers Cu"):
        create_descriptor("zernike", elements=["Cu"]).n_features("Pt")  # type: ignore[attr-defined]


# ------------------------------------------------------------------ the compiled kernel


@pytest.mark.skipif(not compiled_available(), reason="the compiled (Fortran) zernike kernel is not built")
def test_compiled_kernel_refuses_inconsistent_input():
    from amp_plugins.descriptors.zernike import _fortran

    d = create_descriptor("zernike", cutoff=4.0, elements=["Cu"])
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    nl = neighbour_list(atoms, 4.0)
    blocks = derivative_blocks(nl)
    species = np.zeros(4, np.int64)
    bad_species = np.array([0, 0, 3, 0])
    with pytest.raises(DataError, match=r"element code is out of range \(atom 2\)"):
        _fortran.fingerprint(d.basis, d.params.cutoff, d.weights, bad_species, nl, blocks)
    broken = type(blocks)(blocks.pairs, blocks.entry + 10_000, blocks.own, blocks.starts)
    with pytest.raises(DataError, match=r"derivative block index is out of range \(entry 0\)"):
        _fortran.fingerprint(d.basis, d.params.cutoff, d.weights, species, nl, broken)
    far = type(nl)(nl.centre, nl.neighbour + 100, nl.shift, nl.vectors, nl.distances, nl.starts)
    with pytest.raises(DataError, match="neighbour atom index is out of range"):
        _fortran.fingerprint(d.basis, d.params.cutoff, d.weights, species, far, None)


@pytest.mark.skipif(shutil.which("gfortran") is None, reason="gfortran is not installed")
def test_bounds_checked_build_gives_the_same_numbers(bounds_checked):
    """Built with -fcheck=all: no array is read or written out of bounds, same numbers as numpy."""
    with bounds_checked.loaded(bounds_checked(SOURCE), "amp_plugins.descriptors.zernike", "zernike_kernels"):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
        atoms.symbols[3] = "Pt"
        atoms.rattle(0.05, seed=2)
        for cutoff in (4.5, {"name": "Polynomial", "Rc": 4.5, "gamma": 2.5}):
            d = create_descriptor("zernike", cutoff=cutoff, nmax=8, elements=["Cu", "Pt"])
            a = d.compute(atoms, derivatives=True)
            b = d.compiled().compute(atoms, derivatives=True)  # type: ignore[attr-defined]
            assert np.allclose(b.values, a.values, rtol=1e-10, atol=0)
            assert np.allclose(
                b.derivatives, a.derivatives, rtol=1e-10, atol=1e-10 * np.abs(a.derivatives).max()
            )
