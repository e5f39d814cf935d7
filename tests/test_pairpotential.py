"""Tests of the ``pairpotential`` model: hand-computed energies, finite differences, fitting, I/O."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT
from scipy.optimize import minimize

import amp_core
from amp_core.data import LossSettings
from amp_core.errors import ConfigError, DataError, ModelFileError
from amp_core.reshape import build_arrays, save_arrays
from amp_plugins.backends.serial import Serial
from amp_plugins.models.pairpotential import PairPotential, PairPotentialParams, amp_models, from_dict

CU_PT = {
    "pairs": {
        "Cu-Cu": {"D": 0.35, "a": 1.4, "r0": 2.6},
        "Cu-Pt": {"D": 0.25, "a": 1.7, "r0": 2.7},
        "Pt-Pt": {"D": 0.45, "a": 1.2, "r0": 2.8},
    },
    "e0": {"Cu": -0.3, "Pt": 0.2},
}


def model(cutoff: float = 5.0, parameters: dict | None = None) -> PairPotential:
    return PairPotential(PairPotentialParams(cutoff=cutoff, parameters=parameters or CU_PT))


def morse(r: float, d: float, a: float, r0: float, rc: float) -> float:
    """The pair term written out independently of the plugin code."""
    if r >= rc:
        return 0.0
    return (
        d
        * (math.exp(-2 * a * (r - r0)) - 2 * math.exp(-a * (r - r0)))
        * 0.5
        * (math.cos(math.pi * r / rc) + 1)
    )


def emt_images(n: int = 10, seed: int = 0) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    images = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.75, cubic=True).repeat((2, 1, 1))
        atoms.numbers[rng.random(len(atoms)) < 0.4] = 78
        atoms.rattle(0.1, seed=seed * 100 + k)
        atoms.calc = EMT()
        images.append(atoms)
    return images


def shard(images: list[Atoms]) -> dict:
    return build_arrays(images, [(a.get_potential_energy(), a.get_forces()) for a in images], None)


# -- energies by hand -------------------------------------------------------------------------


def test_dimer_energy_by_hand() -> None:
    atoms = Atoms("CuPt", positions=[[0, 0, 0], [0.3, 2.5, 0.4]])
    r = math.sqrt(0.3**2 + 2.5**2 + 0.4**2)
    energy, forces = model().predict(atoms, None, forces=True)
    assert energy == pytest.approx(morse(r, 0.25, 1.7, 2.7, 5.0) - 0.3 + 0.2, rel=1e-12)
    assert forces is not None and np.allclose(forces.sum(axis=0), 0.0, atol=1e-12)


def test_three_atoms_by_hand_one_pair_beyond_cutoff() -> None:
    atoms = Atoms("CuCuPt", positions=[[0, 0, 0], [2.4, 0, 0], [0, 4.2, 0]])
    expected = (
        morse(2.4, 0.35, 1.4, 2.6, 4.5)  # Cu0-Cu1
        + morse(4.2, 0.25, 1.7, 2.7, 4.5)  # Cu0-Pt2; Cu1-Pt2 at 4.84 > rc
        + 2 * -0.3
        + 0.2
    )
    energy, _ = model(cutoff=4.5).predict(atoms, None, forces=False)
    assert energy == pytest.approx(expected, rel=1e-12)


def test_periodic_chain_counts_each_image_pair_once() -> None:
    atoms = Atoms("Cu", positions=[[0.1, 0.2, 0.3]], cell=[2.5, 0, 0], pbc=[True, False, False])
    energy, forces = model(cutoff=6.0).predict(atoms, None, forces=True)
    expected = sum(morse(n * 2.5, 0.35, 1.4, 2.6, 6.0) for n in (1, 2)) - 0.3
    assert energy == pytest.approx(expected, rel=1e-12)
    assert forces is not None and np.allclose(forces, 0.0, atol=1e-12)


# -- forces against finite differences --------------------------------------------------------


def _cluster() -> Atoms:
    rng = np.random.default_rng(3)
    atoms = Atoms("Cu3Pt3", positions=rng.random((6, 3)) * 4.0)
    atoms.positions[5] = atoms.positions[0] + [4.99, 0.0, 0.0]  # just inside rc = 5
    atoms.positions[4] = atoms.positions[1] + [0.0, 5.001, 0.0]  # just outside
    return atoms


def _bulk() -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.7)  # primitive cell, much smaller than rc: self images
    atoms = atoms.repeat((2, 1, 1))
    atoms.numbers[1] = 78
    atoms.rattle(0.1, seed=4)
    return atoms


def _slab() -> Atoms:
    atoms = fcc111("Pt", (2, 2, 2), vacuum=None, a=3.9)
    atoms.cell[2] = 0.0  # non-periodic axis with a zero cell vector
    atoms.pbc = [True, True, False]
    atoms.numbers[::3] = 29
    atoms.rattle(0.1, seed=5)
    return atoms


@pytest.mark.parametrize("make", [_cluster, _bulk, _slab], ids=["cluster", "bulk", "slab"])
def test_forces_match_finite_differences(make) -> None:
    atoms = make()
    pot = model()
    _, forces = pot.predict(atoms, None, forces=True)
    assert forces is not None and np.abs(forces).max() > 1e-3
    h = 1e-5
    numeric = np.zeros_like(forces)
    for a in range(len(atoms)):
        for c in range(3):
            shifted = []
            for step in (h, -h):
                moved = atoms.copy()
                moved.positions[a, c] += step
                shifted.append(pot.predict(moved, None, forces=False)[0])
            numeric[a, c] = -(shifted[0] - shifted[1]) / (2 * h)
    np.testing.assert_allclose(forces, numeric, atol=1e-7, rtol=1e-6)


# -- loss and gradient --------------------------------------------------------------------------


def _total(evaluator, pot: PairPotential, vector: np.ndarray, settings: LossSettings) -> float:
    parts = evaluator(vector)
    loss = (
        settings.energy_coefficient * parts.energy_loss
        + (settings.force_coefficient or 0.0) * parts.force_loss
    )
    return loss + pot.regularization(vector, settings.overfit)[0]


@pytest.mark.parametrize("force_coefficient", [None, 0.04])
@pytest.mark.parametrize("overfit", [0.0, 0.1])
def test_loss_gradient_matches_finite_differences(force_coefficient, overfit) -> None:
    images = emt_images(4, seed=1) + [_slab(), _cluster()]
    for atoms in images[-2:]:
        atoms.calc = EMT()
    pot = model()
    settings = LossSettings(energy_coefficient=0.7, force_coefficient=force_coefficient, overfit=overfit)
    evaluator = pot.loss_evaluator(shard(images), settings)
    vector = pot.vector()
    gradient = evaluator(vector).gradient + pot.regularization(vector, overfit)[1]
    numeric = np.zeros_like(vector)
    for k in range(len(vector)):
        step = np.zeros_like(vector)
        step[k] = 1e-6
        numeric[k] = (
            _total(evaluator, pot, vector + step, settings) - _total(evaluator, pot, vector - step, settings)
        ) / 2e-6
    assert np.abs(gradient).min() > 1e-6  # every parameter matters for this data
    np.testing.assert_allclose(gradient, numeric, rtol=1e-6, atol=1e-8)


def test_loss_parts_follow_definitions_from_predictions() -> None:
    images = emt_images(5, seed=2) + [_slab()]
    images[-1].calc = EMT()
    pot = model()
    parts = pot.loss_evaluator(shard(images), LossSettings(force_coefficient=1.0))(pot.vector())
    de, df, fl = [], [], 0.0
    for atoms in images:
        energy, forces = pot.predict(atoms, None, forces=True)
        n = len(atoms)
        de.append((energy - atoms.get_potential_energy()) / n)
        df.append(forces - atoms.get_forces())
        fl += np.sum(df[-1] ** 2) / (3 * n)
    assert parts.energy_loss == pytest.approx(np.sum(np.square(de)), rel=1e-10)
    assert parts.force_loss == pytest.approx(fl, rel=1e-10)
    assert parts.energy_maxresid == pytest.approx(np.max(np.abs(de)), rel=1e-10)
    assert parts.force_maxresid == pytest.approx(np.max(np.abs(np.concatenate(df))), rel=1e-10)
    assert parts.n_images == 6


def test_energy_only_loss_skips_forces() -> None:
    pot = model()
    evaluator = pot.loss_evaluator(shard(emt_images(3)), LossSettings(force_coefficient=None))
    parts = evaluator(pot.vector())
    assert parts.force_loss == 0.0 and parts.force_maxresid == 0.0 and parts.energy_loss > 0.0


def test_regularization_penalises_pair_parameters_only() -> None:
    pot = model()
    vector = pot.vector()
    penalty, gradient = pot.regularization(vector, 0.5)
    assert penalty == pytest.approx(0.5 * np.sum(vector[:9] ** 2))
    np.testing.assert_allclose(gradient, np.r_[vector[:9], 0.0, 0.0])


def test_short_fit_to_emt_lowers_the_loss() -> None:
    images = emt_images(10, seed=7)
    pot = PairPotential(PairPotentialParams(cutoff=5.0))
    arrays = shard(images)
    pot.initialize([arrays])
    settings = LossSettings(force_coefficient=0.04)
    evaluator = pot.loss_evaluator(arrays, settings)

    def loss(vector: np.ndarray) -> tuple[float, np.ndarray]:
        parts = evaluator(vector)
        return parts.energy_loss + 0.04 * parts.force_loss, parts.gradient

    start = loss(pot.vector())[0]
    result = minimize(loss, pot.vector(), jac=True, method="L-BFGS-B", options={"maxiter": 150})
    assert result.fun < 0.01 * start
    pot.set_vector(result.x)
    energy, _ = pot.predict(images[0], None, forces=False)
    assert abs(energy - images[0].get_potential_energy()) / len(images[0]) < 0.05


# -- initialisation -----------------------------------------------------------------------------


def test_initialize_fills_elements_and_least_squares_e0() -> None:
    images = emt_images(6, seed=3)
    arrays = shard(images)
    pot = PairPotential(PairPotentialParams(cutoff=5.0))
    assert pot.elements is None
    pot.initialize([arrays])
    assert pot.elements == ("Cu", "Pt")
    vector = pot.vector()
    np.testing.assert_allclose(vector[:9], np.tile([0.1, 1.5, 2.5], 3))
    evaluator = pot.loss_evaluator(arrays, LossSettings())
    # least squares in E: residuals are orthogonal to the element-count columns
    residual = np.array([pot.predict(a, None, False)[0] - a.get_potential_energy() for a in images])
    np.testing.assert_allclose(evaluator.counts.T @ residual, 0.0, atol=1e-9)
    pot.initialize([arrays])  # idempotent
    np.testing.assert_array_equal(pot.vector(), vector)


def test_initialize_keeps_given_parameters() -> None:
    pot = model()
    before = pot.vector()
    pot.initialize([shard(emt_images(2))])
    np.testing.assert_array_equal(pot.vector(), before)


def test_unknown_element_raises_data_error_naming_elements() -> None:
    pot = model()
    with pytest.raises(DataError, match=r"Au.*Cu, Pt"):
        pot.predict(Atoms("CuAu", positions=[[0, 0, 0], [2.5, 0, 0]]), None, forces=False)
    fixed = PairPotential(PairPotentialParams(elements=("Cu",)))
    with pytest.raises(DataError, match="Pt"):
        fixed.initialize([shard(emt_images(2))])


def test_uninitialised_model_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="initialize"):
        PairPotential().vector()


def test_periodic_axis_with_zero_cell_vector_raises_data_error() -> None:
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]], pbc=True)
    with pytest.raises(DataError, match="periodic"):
        model().predict(atoms, None, forces=False)


# -- saving, pickling, registration --------------------------------------------------------------


def test_todict_round_trip_gives_identical_predictions() -> None:
    pot = PairPotential(PairPotentialParams(cutoff=5.0))
    pot.initialize([shard(emt_images(3))])
    pot.set_vector(pot.vector() * 1.01)
    again = from_dict(json.loads(json.dumps(pot.todict())))
    atoms = _bulk()
    e1, f1 = pot.predict(atoms, None, forces=True)
    e2, f2 = again.predict(atoms, None, forces=True)
    assert e1 == e2
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(again.vector(), pot.vector())


def test_from_dict_rejects_bad_documents() -> None:
    with pytest.raises(ModelFileError, match="pairpotential"):
        from_dict({"name": "neuralnetwork", "params": {}})
    document = model().todict()
    document["parameters"]["pairs"].pop("Cu-Pt")
    with pytest.raises(ModelFileError, match="Cu-Pt"):
        from_dict(document)


def test_model_and_evaluator_pickle() -> None:
    pot = model()
    arrays = shard(emt_images(2))
    evaluator = pot.loss_evaluator(arrays, LossSettings(force_coefficient=0.1))
    pot2, evaluator2 = pickle.loads(pickle.dumps((pot, evaluator)))
    assert pot2.predict(_bulk(), None, False)[0] == pot.predict(_bulk(), None, False)[0]
    np.testing.assert_array_equal(evaluator2(pot.vector()).gradient, evaluator(pot.vector()).gradient)


def test_registered_entry_builds_and_loads() -> None:
    (entry,) = amp_models()
    assert entry.name == "pairpotential" and entry.loader is from_dict
    pot = amp_core.create_model("pairpotential", cutoff=4.0, elements=["Pt", "Cu"])
    assert pot.elements == ("Cu", "Pt") and pot.inputs == "structures"
    assert pot.implemented == frozenset({"energy", "forces"})
    assert isinstance(pot, amp_core.Model)
    with pytest.raises(ConfigError, match="cutoff"):
        amp_core.create_model("pairpotential", cutoff=-1.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cutoff": 0.0},
        {"cutoff": float("nan")},
        {"a": -1.0},
        {"D": 0.0},
        {"r0": 7.0},
        {"elements": ()},
        {"elements": ("Cu", "Cu")},
        {"elements": ("Xx",)},
        {"elements": "Cu"},
        {"parameters": {"pairs": {}}},
        {"parameters": {"pairs": {}, "e0": {"Cu": 0.0}}},
        {"parameters": {**CU_PT, "e0": {"Cu": 0.0, "Pt": "x"}}},
        {"parameters": CU_PT, "elements": ("Cu",)},
    ],
)
def test_params_reject_bad_input(kwargs) -> None:
    with pytest.raises(ValueError):
        PairPotentialParams(**kwargs)


def test_params_are_hashable_and_canonical() -> None:
    swapped = {
        "pairs": {"Pt-Cu" if k == "Cu-Pt" else k: v for k, v in CU_PT["pairs"].items()},
        "e0": CU_PT["e0"],
    }
    a = PairPotentialParams(parameters=CU_PT)
    b = PairPotentialParams(parameters=swapped)
    assert a == b and hash(a) == hash(b) and a.elements == ("Cu", "Pt")


def test_serial_backend_trains_on_memory_mapped_shards(tmp_path) -> None:
    images = emt_images(4, seed=9)
    pot = model()
    settings = LossSettings(force_coefficient=0.1)
    chunks = []
    for k, part in enumerate((images[:2], images[2:])):
        save_arrays(shard(part), tmp_path / f"chunk{k}")
        chunks.append(amp_core.ChunkHandle(k, str(tmp_path / f"chunk{k}"), len(part), sum(map(len, part)), 1.0))
    session = Serial().start(pot, chunks, settings)
    combined = amp_core.LossParts.combine(session.evaluate(pot.vector()))
    session.close()
    whole = pot.loss_evaluator(shard(images), settings)(pot.vector())
    assert combined.energy_loss == pytest.approx(whole.energy_loss, rel=1e-12)
    assert combined.force_loss == pytest.approx(whole.force_loss, rel=1e-12)
    np.testing.assert_allclose(combined.gradient, whole.gradient, rtol=1e-12)
