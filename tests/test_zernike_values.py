"""Zernike fingerprint values: the original Amp's numbers, an independent scipy reference, hand cases, kernels agree.

``tests/data/zernike_amp_reference.json`` holds values and derivatives computed by the
original Amp 1.0.1 (``tests/data/make_zernike_reference.py`` says how), from its Fortran
path and from its Python path. With the Polynomial cutoff Amp's Fortran-path derivatives
are wrong (they disagree with finite differences of Amp's own values, recorded in the
file); its Python path is right there, and ours equal it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.special
from ase import Atoms
from ase.build import bulk
from ase.data import atomic_numbers

from amp_core import create_descriptor
from amp_core.errors import DataError, PropertyNotImplementedError
from amp_plugins.descriptors.gaussian._neighbors import neighbour_list
from amp_plugins.descriptors.zernike._basis import feature_list, n_features

REFERENCE = json.loads((Path(__file__).parent / "data" / "zernike_amp_reference.json").read_text())
CASES = {case["name"]: case for case in REFERENCE["cases"]}


def compiled_available() -> bool:
    try:
        create_descriptor("zernike", elements=["Cu"]).compiled()  # type: ignore[attr-defined]
    except PropertyNotImplementedError:
        return False
    return True


KERNELS = [
    "numpy",
    pytest.param(
        "fortran",
        marks=pytest.mark.skipif(
            not compiled_available(), reason="the compiled (Fortran) zernike kernel is not built"
        ),
    ),
]


def make(kernel: str, **params):
    descriptor = create_descriptor("zernike", **params)
    return descriptor.compiled() if kernel == "fortran" else descriptor  # type: ignore[attr-defined]


def atoms_of(case: dict) -> Atoms:
    return Atoms(numbers=case["numbers"], positions=case["positions"], cell=case["cell"], pbc=case["pbc"])


# ------------------------------------------------------------------ the original Amp


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_values_equal_amps(name, kernel):
    case = CASES[name]
    fp = make(kernel, **case["params"]).compute(atoms_of(case))
    expected = np.array(case["values"])
    assert fp.values.shape == expected.shape
    assert np.allclose(fp.values, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())


def assert_blocks_equal(dense: np.ndarray, blocks: list, scale: float) -> None:
    assert len(blocks) > 0
    for block in blocks:
        got = dense[block["i"], block["m"]]
        assert np.allclose(got, block["d"], rtol=1e-10, atol=1e-10 * scale), (block["i"], block["m"])


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_derivatives_equal_amps_python_path(name, kernel):
    case = CASES[name]
    assert case["amp_python_fd_max_error"] < 1e-6  # Amp's derivatives agree with its finite differences
    fp = make(kernel, **case["params"]).compute(atoms_of(case), derivatives=True)
    scale = np.abs(np.array(case["values"])).max()
    assert len(case["derivatives_python"]) > len(case["numbers"])
    assert_blocks_equal(fp.dense_derivatives(), case["derivatives_python"], scale)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize(
    "name", sorted(n for n, c in CASES.items() if c["params"]["cutoff"]["name"] == "Cosine")
)
def test_derivatives_equal_amps_fortran_path_with_the_cosine_cutoff(name, kernel):
    case = CASES[name]
    assert case["amp_fd_max_error"] < 1e-6
    fp = make(kernel, **case["params"]).compute(atoms_of(case), derivatives=True)
    scale = np.abs(np.array(case["values"])).max()
    assert_blocks_equal(fp.dense_derivatives(), case["derivatives"], scale)


def test_amps_fortran_polynomial_derivatives_are_wrong_and_ours_match_finite_differences():
    """Amp 1.0.1's Fortran-path Zernike derivatives with a Polynomial cutoff disagree with its own values.

    Ours agree with central differences of the values, which equal Amp's.
    """
    for name in ("cluster_polynomial", "bulk_polynomial"):
        case = CASES[name]
        assert case["amp_fd_max_error"] > 1e-2
        atoms = atoms_of(case)
        descriptor = make("numpy", **case["params"])
        dense = descriptor.compute(atoms, derivatives=True).dense_derivatives()
        h, scale = 1e-5, np.abs(np.array(case["values"])).max()
        worst_amp = 0.0
        for block in case["derivatives"]:
            i, m = block["i"], block["m"]
            for a in range(3):
                plus, minus = atoms.copy(), atoms.copy()
                plus.positions[m, a] += h
                minus.positions[m, a] -= h
                fd = (descriptor.compute(plus).values[i] - descriptor.compute(minus).values[i]) / (2 * h)
                assert np.allclose(dense[i, m, a], fd, rtol=1e-6, atol=1e-7 * scale), (name, i, m, a)
                worst_amp = max(worst_amp, np.abs(np.array(block["d"][a]) - fd).max() / scale)
        assert worst_amp > 1e-3  # the reference file's Fortran-path derivatives really are off


# ------------------------------------------------------------------ an independent reference


def spherical_harmonic(l: int, m: int, polar: np.ndarray, azimuth: np.ndarray) -> np.ndarray:
    if hasattr(scipy.special, "sph_harm_y"):
        return scipy.special.sph_harm_y(l, m, polar, azimuth)
    return scipy.special.sph_harm(m, l, azimuth, polar)  # pragma: no cover - scipy < 1.15


def radial(n: int, l: int, rho: np.ndarray) -> np.ndarray:
    """3D Zernike radial function from its Jacobi form, orthonormal with weight rho^2 on [0, 1]."""
    k = (n - l) // 2
    return math.sqrt(2 * n + 3) * rho**l * scipy.special.eval_jacobi(k, 0.0, l + 0.5, 2 * rho**2 - 1)


def reference(atoms: Atoms, rc: float, nmax: int, weights: dict) -> np.ndarray:
    """Direct complex sums over neighbour images with scipy's spherical harmonics, all m from -l to l."""
    nl = neighbour_list(atoms, rc)
    symbols = atoms.get_chemical_symbols()
    out = np.zeros((len(atoms), n_features(nmax)))
    for i in range(len(atoms)):
        sel = nl.centre == i
        vec, r = nl.vectors[sel], nl.distances[sel]
        w = np.array([weights[symbols[i]][symbols[j]] for j in nl.neighbour[sel]])
        fc = 0.5 * (np.cos(np.pi * r / rc) + 1.0)
        polar, azimuth = np.arccos(vec[:, 2] / r), np.arctan2(vec[:, 1], vec[:, 0])
        for f, (n, l) in enumerate(feature_list(nmax)):
            for m in range(-l, l + 1):
                c = np.sum(w * fc * radial(n, l, r / rc) * np.conj(spherical_harmonic(l, m, polar, azimuth)))
                out[i, f] += abs(c) ** 2
    return out


def test_radial_functions_are_orthonormal_on_the_unit_ball():
    rho, weights = scipy.special.roots_legendre(40)
    rho, weights = 0.5 * (rho + 1.0), 0.5 * weights
    from amp_plugins.descriptors.zernike._basis import radial_coefficients

    for l in range(6):
        ns = range(l, 12, 2)
        table = np.array([rho**l * np.polyval(radial_coefficients(n, l)[::-1], rho**2) for n in ns])
        gram = (table * weights * rho**2) @ table.T
        assert np.allclose(gram, np.eye(len(ns)), atol=1e-12)
        jacobi = np.array([radial(n, l, rho) for n in ns])
        assert np.allclose(np.abs(table), np.abs(jacobi), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("nmax", [0, 3, 6, 9])
def test_values_equal_direct_sums_with_scipy_harmonics(kernel, nmax):
    rng = np.random.default_rng(nmax)
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True) * (1, 1, 2)
    atoms.symbols[[1, 6]] = "Pt"
    atoms.positions += rng.normal(scale=0.1, size=atoms.positions.shape)
    weights = {"Cu": {"Cu": 1.3, "Pt": -0.4}, "Pt": {"Cu": 2.0, "Pt": 0.9}}
    got = make(kernel, cutoff=4.2, nmax=nmax, Gs=weights).compute(atoms).values
    expected = reference(atoms, 4.2, nmax, weights)
    assert np.allclose(got, expected, rtol=1e-10, atol=1e-12 * np.abs(expected).max())


def test_dimer_by_hand():
    """One neighbour: G_nl = w^2 fc^2 R_nl(rho)^2 (2l + 1) / (4 pi) (addition theorem)."""
    rc, r = 5.0, 2.0
    atoms = Atoms("CuPt", positions=[[0, 0, 0], [1.2, -0.4, r * 0.0]])
    atoms.positions[1] *= r / np.linalg.norm(atoms.positions[1])
    fp = create_descriptor("zernike", cutoff=rc, nmax=4, elements=["Cu", "Pt"]).compute(atoms).values
    fc = 0.5 * (math.cos(math.pi * r / rc) + 1.0)
    for centre, other in ((0, "Pt"), (1, "Cu")):
        w = atomic_numbers[other]
        expected = [
            w**2 * fc**2 * radial(n, l, np.array(r / rc)) ** 2 * (2 * l + 1) / (4 * math.pi)
            for n, l in feature_list(4)
        ]
        assert np.allclose(fp[centre], expected, rtol=1e-12)
    # n = l = 0: R_00 = sqrt(3), Y_00^2 = 1 / (4 pi)
    assert fp[0, 0] == pytest.approx(78**2 * fc**2 * 3 / (4 * math.pi), rel=1e-13)


def test_feature_count_follows_amps_formula():
    for nmax in range(12):
        expected = nmax + (nmax / 2) ** 2 + 1 if nmax % 2 == 0 else nmax + (nmax**2 - 1) / 4 + 1
        assert n_features(nmax) == expected


def test_isolated_atom_and_empty_structure():
    d = create_descriptor("zernike", cutoff=3.0, elements=["Cu"])
    fp = d.compute(Atoms("Cu2", positions=[[0, 0, 0], [10, 0, 0]]), derivatives=True)
    assert fp.values.shape == (2, 12) and not fp.values.any()
    assert fp.pairs.tolist() == [[0, 0], [1, 1]] and not fp.derivatives.any()
    empty = d.compute(Atoms(), derivatives=True)
    assert empty.values.shape == (0, 12) and empty.derivatives.shape == (0, 3, 12)


# ------------------------------------------------------------------ numpy and compiled agree


@pytest.mark.skipif(not compiled_available(), reason="the compiled (Fortran) zernike kernel is not built")
@pytest.mark.parametrize(
    "cutoff", [{"name": "Cosine", "Rc": 5.0}, {"name": "Polynomial", "Rc": 5.5, "gamma": 3.5}]
)
def test_numpy_and_compiled_agree_on_a_bulk(cutoff):
    rng = np.random.default_rng(3)
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    atoms.symbols[::5] = "Pt"
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    params = {"cutoff": cutoff, "nmax": 7, "elements": ["Cu", "Pt"]}
    a = make("numpy", **params).compute(atoms, derivatives=True)
    b = make("fortran", **params).compute(atoms, derivatives=True)
    assert np.array_equal(a.pairs, b.pairs)
    assert np.allclose(b.values, a.values, rtol=1e-10, atol=1e-10 * np.abs(a.values).max())
    scale = np.abs(a.derivatives).max()
    assert np.allclose(b.derivatives, a.derivatives, rtol=1e-10, atol=1e-10 * scale)


def test_numpy_kernel_runs_of_centres_give_the_same_numbers(monkeypatch):
    """Centres are processed in runs of bounded size; the split changes nothing."""
    from amp_plugins.descriptors.zernike import _kernel

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 1))
    atoms.rattle(0.05, seed=1)
    d = create_descriptor("zernike", cutoff=4.5, elements=["Cu"])
    whole = d.compute(atoms, derivatives=True)
    monkeypatch.setattr(_kernel, "CHUNK_ENTRIES", 50)
    split = d.compute(atoms, derivatives=True)
    assert np.allclose(split.values, whole.values, rtol=1e-13)
    assert np.allclose(
        split.derivatives, whole.derivatives, rtol=1e-12, atol=1e-12 * np.abs(whole.derivatives).max()
    )


# ------------------------------------------------------------------ bad structures


@pytest.mark.parametrize("kernel", KERNELS)
def test_unknown_element_names_atom_and_fix(kernel):
    d = make(kernel, elements=["Cu", "Pt"])
    with pytest.raises(DataError, match=r"contains Au \(first at atom 1\).*Gs covers: Cu, Pt.*add them"):
        d.compute(Atoms("CuAu", positions=[[0, 0, 0], [2, 0, 0]]))


@pytest.mark.parametrize("kernel", KERNELS)
def test_overlapping_atoms_are_reported(kernel):
    with pytest.raises(DataError, match="overlap"):
        make(kernel, elements=["Cu"]).compute(Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 0]]))
