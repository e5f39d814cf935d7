"""Tests of the Amp ``.amp`` model-file reader."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

import amp_core
from amp_core.data import ImageFingerprints
from amp_core.errors import ModelFileError
from amp_plugins.descriptors.gaussian import make_default_symmetry_functions
from amp_plugins.models.neuralnetwork._ampfile import parse_text, read_amp_file

FIXTURE = Path(__file__).parent / "data" / "amp_cupt.amp"


def test_reads_the_fixture():
    descriptor, model = read_amp_file(FIXTURE)
    assert descriptor["elements"] == ["Cu", "Pt"]
    assert descriptor["cutoff"] == {"name": "Cosine", "kwargs": {"Rc": 6.5}}
    assert descriptor["Gs"]["Pt"][1] == {"type": "G2", "element": "Pt", "eta": 4.0, "offset": 0.0}
    assert model["activation"] == "tanh"
    assert model["hiddenlayers"] == {"Cu": [2], "Pt": [2]}
    assert model["weights"]["Cu"][1] == [[0.5, -0.25], [1.0, 0.75], [0.1, -0.2]]
    assert model["scalings"]["Cu"] == {"intercept": -3.5, "slope": 2.0}
    assert model["fprange"]["Pt"] == [[0.1, 0.5], [0.3, 0.3]]


def test_imported_model_predicts_hand_computed_energy():
    _, kwargs = read_amp_file(FIXTURE)
    model = amp_core.create_model("neuralnetwork", **kwargs)
    fps = ImageFingerprints(np.array([29, 78]), np.array([[0.55, 0.1], [0.3, 0.7]]), np.array([2, 2]))
    # Scaled inputs: Cu (0, -0.5); Pt (0, 0.7 raw, its range is zero).
    e_cu = 2.0 * math.tanh(1.5 * math.tanh(-0.4) - 0.5 * math.tanh(-0.575) + 0.25) - 3.5
    e_pt = 1.5 * math.tanh(0.7 * math.tanh(0.47) + 1.2 * math.tanh(-0.13) - 0.1) - 5.25
    assert model.predict(Atoms("CuPt"), fps, False)[0] == pytest.approx(e_cu + e_pt, abs=1e-12)


def _gaussian_available() -> bool:
    try:
        amp_core.create_descriptor("gaussian", elements=["Cu", "Pt"])
    except amp_core.AmpError:
        return False
    return True


@pytest.mark.skipif(not _gaussian_available(), reason="the gaussian descriptor is not registered yet")
def test_imported_descriptor_and_model_reproduce_a_dimer_by_hand():
    descriptor_kwargs, model_kwargs = read_amp_file(FIXTURE)
    descriptor = amp_core.create_descriptor("gaussian", **descriptor_kwargs)
    model = amp_core.create_model("neuralnetwork", **model_kwargs)
    r, rc = 2.5, 6.5
    dimer = Atoms("CuPt", positions=[[0, 0, 0], [r, 0, 0]])
    fc = 0.5 * (math.cos(math.pi * r / rc) + 1.0)
    x_cu = (0.0, math.exp(-4.0 * r * r / rc**2) * fc)  # (G2 over Cu, G2 over Pt) of the Cu atom
    x_pt = (math.exp(-0.05 * r * r / rc**2) * fc, 0.0)
    fps = descriptor.compute(dimer, derivatives=True)
    np.testing.assert_allclose(fps.values, [x_cu, x_pt], atol=1e-12)
    s_cu = (-1 + 2 * (x_cu[0] - 0.2) / 0.7, -1 + 2 * x_cu[1] / 0.4)
    s_pt = (-1 + 2 * (x_pt[0] - 0.1) / 0.4, x_pt[1])
    h_cu = [
        math.tanh(s_cu[0] * a + s_cu[1] * b + c) for a, b, c in zip((0.5, -0.25), (1.0, 0.75), (0.1, -0.2))
    ]
    h_pt = [
        math.tanh(s_pt[0] * a + s_pt[1] * b + c) for a, b, c in zip((-0.3, 0.8), (0.6, -0.4), (0.05, 0.15))
    ]
    e_cu = 2.0 * math.tanh(1.5 * h_cu[0] - 0.5 * h_cu[1] + 0.25) - 3.5
    e_pt = 1.5 * math.tanh(0.7 * h_pt[0] + 1.2 * h_pt[1] - 0.1) - 5.25
    energy, forces = model.predict(dimer, fps, True)
    assert energy == pytest.approx(e_cu + e_pt, abs=1e-12)
    shifted = []
    for dx in (1e-5, -1e-5):
        moved = Atoms("CuPt", positions=[[0, 0, 0], [r + dx, 0, 0]])
        shifted.append(model.predict(moved, descriptor.compute(moved), False)[0])
    np.testing.assert_allclose(forces[1, 0], -(shifted[0] - shifted[1]) / 2e-5, rtol=1e-6)
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-12)


def test_parses_numpy_reprs_without_evaluating():
    text = "dict(a=np.array([[1., -2.5e-3]]), b=numpy.array([nan, inf], dtype=float), c=matrix([[1]]), d=np.float64(-0.5))"
    value = parse_text(text)
    assert value["a"] == [[1.0, -0.0025]] and value["c"] == [[1]] and value["d"] == -0.5
    assert math.isnan(value["b"][0]) and value["b"][1] == math.inf


@pytest.mark.parametrize(
    "text, message",
    [
        ("__import__('os').system('touch /tmp/amp-should-not-exist')", "not allowed"),
        ("dict(descriptor=open('x').read())", "not allowed"),
        ("dict(descriptor=", "not an Amp"),
        ("[1, 2, 3]", "not a dict"),
        ("dict(model='dict()')", "no 'descriptor'"),
        (
            "dict(descriptor=\"dict(importname='.descriptor.fingerprintprime.Other')\", "
            "model=\"dict(importname='.model.neuralnetwork.NeuralNetwork')\")",
            "fingerprintprime.Other'; only Amp's Gaussian, Zernike and Bispectrum",
        ),
        (
            "dict(descriptor=\"dict(importname='.descriptor.gaussian.Gaussian', Gs={'Cu': []})\", "
            "model=\"dict(importname='.model.neuralnetwork.NeuralNetwork', version='2015.12', weights=None)\")",
            "only trained models",
        ),
        (
            "dict(descriptor=\"dict(importname='.descriptor.gaussian.Gaussian')\", "
            "model=\"dict(importname='.model.neuralnetwork.NeuralNetwork', version='2099.1')\")",
            "version",
        ),
    ],
)
def test_bad_files_raise_model_file_error(tmp_path, text, message):
    path = tmp_path / "bad.amp"
    path.write_text(text)
    with pytest.raises(ModelFileError, match=message) as info:
        read_amp_file(path)
    assert "bad.amp" in str(info.value)
    assert not Path("/tmp/amp-should-not-exist").exists()


def test_missing_file_is_a_model_file_error(tmp_path):
    with pytest.raises(ModelFileError, match="cannot read"):
        read_amp_file(tmp_path / "absent.amp")



def test_file_saved_before_first_use_gets_amps_default_set(tmp_path):
    # Amp writes Gs=None when a calculator is saved before its first calculation; it then
    # builds its default symmetry functions for the sorted elements.
    text = FIXTURE.read_text()
    start = text.index("Gs=")
    end = text.index("cutoff=")
    fresh = text[:start] + "Gs=None, elements=['Pt', 'Cu'], " + text[end:].replace("elements=['Cu', 'Pt'],", "")
    path = tmp_path / "fresh.amp"
    path.write_text(fresh)
    kwargs, _ = read_amp_file(path)
    assert "Gs" not in kwargs and kwargs["elements"] == ["Cu", "Pt"] and kwargs["preset"] == "amp"
    built = amp_core.create_descriptor("gaussian", **kwargs)
    default = amp_core.create_descriptor("gaussian", Gs=make_default_symmetry_functions(["Cu", "Pt"]))
    assert built.todict()["Gs"] == default.todict()["Gs"]
    path.write_text(fresh.replace("elements=['Pt', 'Cu'],", ""))
    with pytest.raises(ModelFileError, match="neither 'Gs'"):
        read_amp_file(path)
