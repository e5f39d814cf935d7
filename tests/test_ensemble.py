"""Ensembles: members trained together equal members trained one by one; the file; the spread."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from ase.io import write

from amp_core import ConfigError, ExtrapolationWarning, Potential, load, train
from amp_core.ensemble import Ensemble
from amp_plugins.descriptors.gaussian import Gaussian


def _config(tmp_path, directory: str, **training) -> dict:
    return {"descriptor": {"name": "gaussian", "elements": ["Cu", "Pt"], "cutoff": 4.0},
            "model": {"name": "neuralnetwork", "hiddenlayers": [4]},
            "backend": {"name": "serial"},
            "data": {"train": str(tmp_path / "train.xyz")},
            "training": {"maxiter": 12, "directory": str(tmp_path / directory), "seed": 3,
                         "convergence": {"energy_rmse": 1e-12}, **training}}


@pytest.fixture
def data(tmp_path, slab_images):
    write(tmp_path / "train.xyz", slab_images[:4])
    return tmp_path


@pytest.mark.parametrize("training", [{"force_coefficient": 0.1}, {"optimizer": "adam", "maxiter": 8},
                                      {"validation_fraction": 0.25, "force_coefficient": 0.1}],
                         ids=["lbfgs", "adam", "validation"])
def test_members_trained_together_equal_members_trained_one_by_one(data, training):
    extra = dict(training)
    fraction = extra.pop("validation_fraction", None)
    config = _config(data, "ensemble", ensemble=3, **extra)
    if fraction:
        config["data"]["validation_fraction"] = fraction
    ensemble = train(config, echo=None)
    assert isinstance(ensemble.model, Ensemble) and len(ensemble.model) == 3
    alone = []
    for k in range(3):
        single = _config(data, f"alone-{k}", **extra)
        single["model"]["seed"] = 3 + k
        if fraction:
            single["data"]["validation_fraction"] = fraction
        alone.append(train(single, echo=None))
    for member, single in zip(ensemble.model.members, alone):
        assert np.array_equal(member.vector(), single.model.vector())  # bit for bit
    vectors = [m.vector() for m in ensemble.model.members]
    assert not np.array_equal(vectors[0], vectors[1])  # the members differ
    outcomes = ensemble.training["members"]
    assert all(o["iterations"] > 3 for o in outcomes)
    assert [o["iterations"] for o in outcomes] == [s.training["iterations"] for s in alone]


def _fortran_missing():
    from amp_plugins.models.neuralnetwork._fortran import probe

    return probe()


@pytest.mark.parametrize("backend", [{"name": "multiprocessing", "cores": 2},
                                     pytest.param({"name": "fortran", "cores": 2}, marks=pytest.mark.skipif(
                                         _fortran_missing() is not None, reason=f"{_fortran_missing()}"))],
                         ids=["multiprocessing", "fortran"])
def test_members_trained_together_equal_one_by_one_on_parallel_backends(data, backend):
    config = _config(data, "ensemble", ensemble=2, force_coefficient=0.1, maxiter=6)
    config["backend"] = backend
    ensemble = train(config, echo=None)
    for k, member in enumerate(ensemble.model.members):
        single = _config(data, f"alone-{k}", force_coefficient=0.1, maxiter=6)
        single["backend"] = backend
        single["model"]["seed"] = 3 + k
        assert np.array_equal(member.vector(), train(single, echo=None).model.vector())


def test_many_vectors_at_once_equal_one_at_a_time_bit_for_bit(data, slab_images):
    """The evaluators' ``many`` (one pass over the chunk for every member) against single calls."""
    from amp_core import create_descriptor, create_model
    from amp_core.data import LossSettings
    from amp_core.reshape import build_arrays

    images = slab_images[:3]
    descriptor = create_descriptor("gaussian", elements=["Cu", "Pt"], cutoff=4.0)
    arrays = build_arrays(images, [(a.get_potential_energy(), a.get_forces()) for a in images],
                          [descriptor.compute(a, derivatives=True) for a in images])
    models = [create_model("neuralnetwork", hiddenlayers=[5, 4], seed=k) for k in range(3)]
    for model in models:
        model.initialize([arrays])
    kernels = [models] + ([[m.compiled() for m in models]] if _fortran_missing() is None else [])
    for forces in (True, False):
        settings = LossSettings(1.0, 0.1 if forces else None, 0.0, forces)
        for members in kernels:
            evaluator = members[0].loss_evaluator(arrays, settings)
            vectors = [m.vector() for m in members]
            for alone, together in zip([evaluator(v) for v in vectors], evaluator.many(vectors)):
                assert (alone.loss, alone.energy_loss, alone.force_loss, alone.energy_maxresid,
                        alone.force_maxresid) == (together.loss, together.energy_loss, together.force_loss,
                                                  together.energy_maxresid, together.force_maxresid)
                assert alone.gradient.tobytes() == together.gradient.tobytes()


def test_ensemble_file_round_trip_and_spread(data, slab_images):
    potential = train(_config(data, "run", ensemble=3, force_coefficient=0.1), echo=None)
    saved = data / "run" / "potential.json"
    document = json.loads(saved.read_text())
    assert len(document["model"]["members"]) == 3
    again = load(saved)
    assert isinstance(again.model, Ensemble)
    for a, b in zip(again.model.members, potential.model.members):
        assert np.array_equal(a.vector(), b.vector())
    atoms = slab_images[5].copy()  # not trained on: the members disagree
    atoms.calc = again
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)
        energy = atoms.get_potential_energy()
        forces = atoms.get_forces()
        singles = []
        for k in range(3):
            member = load(data / "run" / "members" / str(k + 1) / "potential.json")
            probe = atoms.copy()
            probe.calc = member
            singles.append((probe.get_potential_energy(), probe.get_forces()))
    energies = np.array([e for e, _ in singles])
    member_forces = np.array([f for _, f in singles])
    assert energy == pytest.approx(energies.mean(), rel=1e-12)
    np.testing.assert_allclose(forces, member_forces.mean(axis=0), rtol=1e-10, atol=1e-12)
    assert again.results["energy_std"] == pytest.approx(energies.std(), rel=1e-10)
    expected = np.sqrt(np.mean(np.sum((member_forces - member_forces.mean(axis=0)) ** 2, axis=2), axis=0))
    np.testing.assert_allclose(again.results["forces_std"], expected, rtol=1e-10, atol=1e-14)
    assert again.results["forces_std"].shape == (len(atoms),) and again.results["energy_std"] > 0
    # one pass for all members (the descriptor takes sets) = one pass per member, bit for bit
    apart = Potential(OneSetOnly(again.descriptor.params), again.model)
    assert isinstance(apart._descriptor(), OneSetOnly) and isinstance(again._descriptor(), Gaussian)
    probe = atoms.copy()
    probe.calc = apart
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)
        assert probe.get_potential_energy() == energy
        assert np.array_equal(probe.get_forces(), forces)
    assert np.array_equal(apart.results["forces_std"], again.results["forces_std"])


class OneSetOnly(Gaussian):
    """A Gaussian descriptor whose contract takes one set of dE/dG (as a third-party one may)."""

    def contract(self, atoms, gradient, *, virial=False, neighbours=None):
        return super().contract(atoms, gradient, virial=virial, neighbours=neighbours)


def test_ensemble_needs_a_whole_number_of_members(data):
    for bad in (0, -1, 1.5, "3", True, 65):
        with pytest.raises(ConfigError, match="ensemble"):
            train(_config(data, "bad", ensemble=bad), echo=None)


def _interrupt_at(monkeypatch, after: int, error: BaseException):
    """Make the ensemble's training loss raise ``error`` at its ``after``-th evaluation."""
    from amp_core.loss import LossFunction

    calls = {"n": 0}
    original = LossFunction.evaluate

    def evaluate(self, vector=None):
        calls["n"] += 1
        if calls["n"] == after:
            raise error
        return original(self, vector)

    monkeypatch.setattr(LossFunction, "evaluate", evaluate)
    return lambda: monkeypatch.setattr(LossFunction, "evaluate", original)


def test_an_interrupted_ensemble_resumes_bit_for_bit(data, monkeypatch):
    def config(folder):
        return _config(data, folder, ensemble=3, force_coefficient=0.1, checkpoint_interval=4, maxiter=14)

    whole = train(config("whole"), echo=None)
    restore = _interrupt_at(monkeypatch, 15, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        train(config("parts"), echo=None)
    restore()
    for k in range(1, 4):  # every member saved its checkpoint
        checkpoint = json.loads((data / "parts" / "members" / str(k) / "checkpoint.json").read_text())
        assert 0 < checkpoint["iteration"] < 14
    assert not (data / "parts" / "potential.json").exists()
    resumed = train(config("parts"), resume=True, echo=None)
    np.testing.assert_array_equal(resumed.model.vector(), whole.model.vector())  # bitwise
    assert "replaying" in (data / "parts" / "members" / "1" / "train-log.txt").read_text()


def test_a_failing_evaluation_stops_every_member_with_checkpoints(data, monkeypatch):
    from amp_core.errors import BackendError

    _interrupt_at(monkeypatch, 9, BackendError("worker 1 died (test)", stage="loss"))
    with pytest.raises(BackendError, match="worker 1 died"):
        train(_config(data, "failed", ensemble=2, force_coefficient=0.1), echo=None)
    for k in (1, 2):
        log = (data / "failed" / "members" / str(k) / "train-log.txt").read_text()
        assert "failed at iteration" in log and "--resume" in log
        assert (data / "failed" / "members" / str(k) / "checkpoint.json").is_file()


def test_cli_trains_and_evaluates_an_ensemble(data, slab_images, capsys):
    from amp_core.cli import main

    write(data / "test.xyz", slab_images[4:8])
    toml = data / "ensemble.toml"
    toml.write_text(f"""
[descriptor]
name = "gaussian"
elements = ["Cu", "Pt"]
cutoff = 4.0
[model]
name = "neuralnetwork"
hiddenlayers = [4]
[data]
train = "{data / 'train.xyz'}"
[training]
ensemble = 3
maxiter = 5
force_coefficient = 0.1
directory = "{data / 'cli-run'}"
""")
    assert main(["train", str(toml), "--quiet"]) == 1  # stopped by maxiter
    assert main(["evaluate", str(data / "cli-run" / "potential.json"), str(data / "test.xyz")]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("file"))
    assert "E rho" in header and "F rho" in header and "Spearman" in header
    row = next(line for line in out.splitlines() if "test.xyz" in line).split()
    assert -1.0 <= float(row[-2]) <= 1.0 and -1.0 <= float(row[-1]) <= 1.0
    assert "each member's energy RMSE" in out
    assert main(["plot", "convergence", str(data / "cli-run" / "train-log.txt")]) == 2
    assert "members" in capsys.readouterr().err


def test_an_ensemble_refuses_amp_export_and_names_the_way_out(data):
    from amp_core import PropertyNotImplementedError

    potential = train(_config(data, "run", ensemble=2, maxiter=2), echo=None)
    with pytest.raises(PropertyNotImplementedError, match=r"ensemble of 2 members.*members\[0\]"):
        potential.save_amp(data / "x.amp")


def test_an_ensemble_in_md_gives_the_members_mean_forces_and_stress(data):
    from ase.build import bulk

    potential = train(_config(data, "run", ensemble=2, maxiter=4, force_coefficient=0.1), echo=None)
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True).repeat((2, 2, 2))
    atoms.numbers[::3] = 78
    atoms.rattle(0.05, seed=1)
    answers = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)
        for calc in (potential, *[type(potential)(potential.descriptor, m) for m in potential.model.members]):
            probe = atoms.copy()
            probe.calc = calc
            answers.append((probe.get_potential_energy(), probe.get_forces(), probe.get_stress()))
    (energy, forces, stress), members = answers[0], answers[1:]
    assert energy == pytest.approx(np.mean([m[0] for m in members]), rel=1e-12)
    np.testing.assert_allclose(forces, np.mean([m[1] for m in members], axis=0), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(stress, np.mean([m[2] for m in members], axis=0), rtol=1e-12, atol=1e-15)
    assert potential.results["forces_std"].shape == (len(atoms),)


def test_the_ensemble_loss_refuses_residual_optimisers_before_any_work(data, slab_images):
    from amp_core import Potential, create_descriptor, create_model, loss_function

    members = [create_model("neuralnetwork", hiddenlayers=[3], seed=k) for k in range(2)]
    potential = Potential(create_descriptor("gaussian", elements=["Cu", "Pt"], cutoff=4.0), Ensemble(members))
    with loss_function(slab_images[:2], potential, force_coefficient=0.1) as f:
        with pytest.raises(ConfigError, match="Jacobian rows"):
            f.check_residuals("optimizer 'ekf'")
