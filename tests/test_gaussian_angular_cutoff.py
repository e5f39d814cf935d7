"""The gaussian descriptor's ``angular_cutoff``: G4/G5 functions with their own, shorter cutoff radius.

Definition checked: with ``angular_cutoff = a`` the angular columns (values and derivative
blocks) are those of the same symmetry functions under a cutoff of radius ``a`` (same kind),
the radial columns those under the full cutoff; both kernels, both angular routes of the
compiled one (Amp's set: per-feature; the systematic set: folded), the one-pass contraction
against the blocks, and finite differences through ``amp_core.testing``.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT

from amp_core import Potential, create_descriptor, create_model, evaluate_loss, load
from amp_core.errors import PropertyNotImplementedError
from amp_core.testing import check_descriptor
from amp_plugins.descriptors.gaussian import Gaussian, GaussianParams

SOURCE = "plugins/descriptors/gaussian/gaussian_kernels.f90"


def alloy() -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    atoms.symbols[::5] = "Pt"
    atoms.rattle(0.08, seed=3)
    return atoms


def cluster() -> Atoms:
    rng = np.random.default_rng(5)
    atoms = Atoms("Cu6Pt3", positions=rng.uniform(0.0, 5.0, (9, 3)))
    while min(atoms.get_all_distances()[np.triu_indices(9, 1)]) < 1.8:
        atoms.positions = rng.uniform(0.0, 5.0, (9, 3))
    return atoms


def twins(preset: str, cutoff: dict, radius: float, compiled: bool) -> tuple[Gaussian, Gaussian, Gaussian]:
    """(descriptor with angular_cutoff radius, same functions at cutoff radius, same at the full cutoff)."""
    full = create_descriptor("gaussian", cutoff=cutoff, elements=["Cu", "Pt"], preset=preset, angular_cutoff=radius)
    gs = full.params.todict()["Gs"]
    short = create_descriptor("gaussian", cutoff={**cutoff, "Rc": radius}, Gs=gs)
    long = create_descriptor("gaussian", cutoff=cutoff, Gs=gs)
    out = (full, short, long)
    return tuple(d.compiled() for d in out) if compiled else out  # type: ignore[return-value]


def dense(fp, n: int) -> np.ndarray:
    out = np.zeros((n, n, 3, fp.values.shape[1]))
    for (i, m), block in zip(fp.pairs, fp.derivatives):
        out[i, m] += block
    return out


@pytest.fixture
def built() -> None:
    """Skip (saying why) when the compiled gaussian kernel is not built here."""
    try:
        create_descriptor("gaussian", cutoff=5.0, elements=["Cu"]).compiled()
    except PropertyNotImplementedError as exc:
        pytest.skip(f"compiled (Fortran) gaussian kernel not built: {exc}")


@pytest.fixture(params=["numpy", "compiled"])
def compiled(request) -> bool:
    if request.param == "compiled":
        request.getfixturevalue("built")
    return request.param == "compiled"


# ----------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("bad", [0.0, -1.0, 6.6, float("nan"), float("inf"), "4", True, [4.0]])
def test_bad_angular_cutoff_is_refused_saying_what_to_do(bad):
    with pytest.raises(ValueError, match="angular_cutoff") as info:
        GaussianParams(cutoff=6.5, elements=["Cu"], angular_cutoff=bad)
    assert repr(bad) in str(info.value)


def test_angular_cutoff_equal_to_the_cutoff_is_no_angular_cutoff():
    same = GaussianParams(cutoff=6.5, elements=["Cu"], angular_cutoff=6.5)
    plain = GaussianParams(cutoff=6.5, elements=["Cu"])
    assert same == plain and same.angular_cutoff is None and "angular_cutoff" not in same.todict()
    assert hash(Gaussian(same)) == hash(Gaussian(plain))


def test_angular_cutoff_round_trips_and_keeps_the_cutoff_kind():
    params = GaussianParams(cutoff={"name": "Polynomial", "Rc": 6.0, "gamma": 5}, elements=["Cu"], angular_cutoff=4)
    assert params.angular_cutoff == 4.0 and params.todict()["angular_cutoff"] == 4.0
    assert params.angular.name == "Polynomial" and params.angular.gamma == 5.0 and params.angular.Rc == 4.0
    assert GaussianParams(**params.todict()) == params
    assert "angular_cutoff=4" in repr(Gaussian(params))
    assert params != GaussianParams(cutoff=params.cutoff, elements=["Cu"])  # a different descriptor (store key)


def test_potential_file_keeps_the_angular_cutoff(tmp_path):
    descriptor = create_descriptor("gaussian", cutoff=5.0, elements=["Cu", "Pt"], preset="amp", angular_cutoff=3.5)
    potential = Potential(descriptor, create_model("neuralnetwork", hiddenlayers=(3,), seed=1))
    images = [alloy(), cluster()]
    for atoms in images:
        atoms.calc = EMT()
        atoms.get_forces()
    evaluate_loss(images, potential, forces=True)  # initialises the network
    loaded = load(potential.save(tmp_path / "potential.json"))
    assert loaded.descriptor.params.angular_cutoff == 3.5
    atoms = alloy()
    np.testing.assert_array_equal(loaded.descriptor.compute(atoms).values, descriptor.compute(atoms).values)
    atoms.calc = loaded
    assert np.isfinite(atoms.get_potential_energy())


def test_amp_file_is_refused_with_an_angular_cutoff():
    descriptor = create_descriptor("gaussian", cutoff=5.0, elements=["Cu"], angular_cutoff=4.0)
    with pytest.raises(PropertyNotImplementedError, match="one cutoff for all symmetry functions"):
        descriptor.amp_parameters()
    assert create_descriptor("gaussian", cutoff=5.0, elements=["Cu"]).amp_parameters()["cutoff"]["kwargs"] == {
        "Rc": 5.0}


def test_cost_counts_triplets_within_the_angular_cutoff():
    atoms = alloy()
    short = create_descriptor("gaussian", cutoff=6.0, elements=["Cu", "Pt"], angular_cutoff=3.0)
    plain = create_descriptor("gaussian", cutoff=6.0, elements=["Cu", "Pt"])
    assert 0 < short.cost(atoms) < 0.3 * plain.cost(atoms)


# ----------------------------------------------------------------------------- definition


@pytest.mark.parametrize("preset", ["amp", "systematic"])
@pytest.mark.parametrize("cutoff", [{"name": "Cosine", "Rc": 6.0}, {"name": "Polynomial", "Rc": 5.5, "gamma": 4}])
@pytest.mark.parametrize("make", [alloy, cluster])
def test_angular_columns_are_those_of_the_shorter_cutoff(preset, cutoff, make, compiled):
    atoms = make()
    full, short, long = twins(preset, cutoff, 3.9, compiled)
    angular = np.array([f["type"] != "G2" for f in full.params.todict()["Gs"]["Cu"]])
    f, s, g = (d.compute(atoms.copy(), derivatives=True) for d in (full, short, long))
    assert np.abs(s.values[:, angular]).max() > 0.1  # the check sees real angular terms
    np.testing.assert_allclose(f.values[:, angular], s.values[:, angular], rtol=1e-13, atol=1e-14)
    np.testing.assert_array_equal(f.values[:, ~angular], g.values[:, ~angular])
    df, ds, dg = (dense(fp, len(atoms)) for fp in (f, s, g))
    np.testing.assert_allclose(df[..., angular], ds[..., angular], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(df[..., ~angular], dg[..., ~angular], rtol=1e-13, atol=1e-13)
    # the whole fingerprint differs from both: the option changes the descriptor
    assert not np.allclose(f.values, g.values)


@pytest.mark.parametrize("preset", ["amp", "systematic"])
def test_contraction_matches_the_blocks_with_an_angular_cutoff(preset, compiled):
    atoms = alloy()
    descriptor = twins(preset, {"name": "Cosine", "Rc": 6.0}, 4.2, compiled)[0]
    fp = descriptor.compute(atoms.copy(), derivatives=True)
    rng = np.random.default_rng(2)
    weights = rng.normal(size=(2, fp.values.shape[1]))
    out = descriptor.contract(atoms.copy(), lambda rows, values: np.stack([np.tile(w, (len(rows), 1))
                                                                           for w in weights]), virial=True, sets=2)
    np.testing.assert_allclose(out.values, fp.values, rtol=1e-13, atol=1e-14)
    d = dense(fp, len(atoms))
    for k, w in enumerate(weights):
        expected = -np.einsum("imcf,f->mc", d, w)
        np.testing.assert_allclose(out.forces[k], expected, rtol=1e-11, atol=1e-11 * np.abs(expected).max())


@pytest.mark.parametrize("preset", ["amp", "systematic"])
def test_numpy_and_compiled_kernels_agree_with_an_angular_cutoff(preset, built):
    atoms = alloy()
    fast = twins(preset, {"name": "Cosine", "Rc": 6.0}, 4.2, True)[0]
    slow = twins(preset, {"name": "Cosine", "Rc": 6.0}, 4.2, False)[0]
    a, b = fast.compute(atoms.copy(), derivatives=True), slow.compute(atoms.copy(), derivatives=True)
    np.testing.assert_allclose(a.values, b.values, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dense(a, len(atoms)), dense(b, len(atoms)), rtol=1e-10, atol=1e-12)
    w = np.random.default_rng(4).normal(size=a.values.shape[1])
    ca, cb = (d.contract(atoms.copy(), lambda rows, v: np.tile(w, (len(rows), 1)), virial=True) for d in (fast, slow))
    np.testing.assert_allclose(ca.forces, cb.forces, rtol=1e-10, atol=1e-10 * np.abs(cb.forces).max())
    np.testing.assert_allclose(ca.virial, cb.virial, rtol=1e-10, atol=1e-10 * np.abs(cb.virial).max())


@pytest.mark.parametrize("preset", ["amp", "systematic"])
def test_descriptor_contract_and_finite_differences_with_an_angular_cutoff(preset, compiled):
    descriptor = twins(preset, {"name": "Cosine", "Rc": 4.5}, 3.2, compiled)[0]
    check_descriptor(descriptor)


def test_bounds_checked_build_with_an_angular_cutoff(bounds_checked):
    atoms = alloy()
    reference = [twins(p, {"name": "Cosine", "Rc": 6.0}, 4.2, False)[0] for p in ("amp", "systematic")]
    w = np.random.default_rng(6).normal(size=200)
    with bounds_checked.loaded(bounds_checked(SOURCE), "amp_plugins.descriptors.gaussian", "gaussian_kernels"):
        for slow in reference:
            fast = Gaussian(slow.params).compiled()
            a, b = fast.compute(atoms.copy(), derivatives=True), slow.compute(atoms.copy(), derivatives=True)
            np.testing.assert_allclose(a.values, b.values, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(a.derivatives, b.derivatives, rtol=1e-10, atol=1e-12)
            grad = lambda rows, v: np.tile(w[: v.shape[1]], (len(rows), 1))  # noqa: E731
            ca, cb = fast.contract(atoms.copy(), grad, virial=True), slow.contract(atoms.copy(), grad, virial=True)
            np.testing.assert_allclose(ca.forces, cb.forces, rtol=1e-10, atol=1e-10 * np.abs(cb.forces).max())
