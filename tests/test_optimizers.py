"""Optimisers are plugins: the SciPy built-ins under their names, and a third-party one registered in process."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from ase.io import write

from amp_core import ConfigError, OptimizerEntry, PluginManager, hookimpl, train
from amp_core.config import build_optimizer, from_dict


@dataclass(frozen=True)
class DescentParams:
    """Fixed step of the test optimiser."""

    step: float = 1e-3


class Descent:
    """Steepest descent with a fixed step (a third-party optimiser that is never installed)."""

    name = "descent"

    def __init__(self, params: DescentParams) -> None:
        self.params = params
        self.losses: list[float] = []

    def minimize(self, function, start, *, maxiter, callback):
        vector = np.array(start, dtype=np.float64)
        for _ in range(maxiter):
            loss, gradient = function(vector)
            self.losses.append(loss)
            vector = vector - self.params.step * gradient
            callback(vector)
        return f"{maxiter} fixed steps done"


class DescentPlugin:
    @hookimpl
    def amp_optimizers(self):
        return [OptimizerEntry("descent", DescentParams, Descent, "Fixed-step descent (test).")]


def _config(tmp_path, optimizer: str) -> dict:
    return {"descriptor": {"name": "gaussian", "elements": ["Cu", "Pt"], "cutoff": 4.0},
            "model": {"name": "neuralnetwork", "hiddenlayers": [3]},
            "data": {"train": str(tmp_path / "train.xyz")},
            "training": {"maxiter": 15, "optimizer": optimizer, "directory": str(tmp_path / "run"),
                         "convergence": {"energy_rmse": 1e-12}}}


def test_a_third_party_optimizer_registered_in_process_trains(tmp_path, slab_images):
    write(tmp_path / "train.xyz", slab_images[:4])
    manager = PluginManager()
    manager.register(DescentPlugin(), name="test-descent")
    potential = train(_config(tmp_path, "descent"), echo=None, manager=manager)
    assert potential.training["iterations"] == 15 and "15 fixed steps done" in potential.training["outcome"]
    log = (tmp_path / "run" / "train-log.txt").read_text()
    rows = [line.split() for line in log.splitlines() if line.split() and line.split()[0].isdigit()]
    assert float(rows[-1][2]) < float(rows[0][2])  # the loss went down


@pytest.mark.parametrize(("given", "name"), [("L-BFGS-B", "lbfgs"), ("BFGS", "bfgs"), ("CG", "cg"), ("lbfgs", "lbfgs")])
def test_builtin_optimizers_and_scipy_names(tmp_path, slab_images, given, name):
    write(tmp_path / "train.xyz", slab_images[:2])
    config = from_dict(_config(tmp_path, given))
    assert build_optimizer(config).name == name


def test_unknown_optimizer_suggests_one(tmp_path, slab_images):
    write(tmp_path / "train.xyz", slab_images[:2])
    with pytest.raises(ConfigError, match=r"unknown optimizer 'lbgfs'.*Did you mean 'lbfgs'"):
        train(_config(tmp_path, "lbgfs"), echo=None)
    assert not (tmp_path / "run").exists()  # refused before any work


def _interrupting(monkeypatch, after: int):
    """Make the training loss raise Ctrl-C at its ``after``-th evaluation (mid-run, mid line search)."""
    from amp_core.loss import LossFunction

    calls = {"n": 0}
    original, subset = LossFunction.evaluate, LossFunction._subset

    def count():
        calls["n"] += 1
        if calls["n"] == after:
            raise KeyboardInterrupt

    def evaluate(self, vector=None):
        count()
        return original(self, vector)

    def evaluate_subset(self, vector, chunks):
        count()
        return subset(self, vector, chunks)

    monkeypatch.setattr(LossFunction, "evaluate", evaluate)
    monkeypatch.setattr(LossFunction, "_subset", evaluate_subset)
    return lambda: (monkeypatch.setattr(LossFunction, "evaluate", original),
                    monkeypatch.setattr(LossFunction, "_subset", subset))


@pytest.mark.parametrize("optimizer", ["lbfgs", "bfgs", "cg", "adam", "descent"])
@pytest.mark.parametrize("validation", [False, True])
def test_resume_continues_the_interrupted_trajectory_bit_for_bit(tmp_path, slab_images, monkeypatch,
                                                                  optimizer, validation):
    write(tmp_path / "train.xyz", slab_images[:4])
    manager = PluginManager()
    manager.register(DescentPlugin(), name="test-descent")

    def config(folder):
        cfg = _config(tmp_path, optimizer)
        cfg["training"].update(directory=str(tmp_path / folder), checkpoint_interval=4, maxiter=14)
        if validation:
            write(tmp_path / "valid.xyz", slab_images[4:6])
            cfg["data"]["validation"] = str(tmp_path / "valid.xyz")
            cfg["training"]["validation_interval"] = 3
        return cfg

    whole = train(config("whole"), echo=None, manager=manager)
    restore = _interrupting(monkeypatch, after=17)  # some iterations in, inside the optimiser's evaluations
    with pytest.raises(KeyboardInterrupt):
        train(config("parts"), echo=None, manager=manager)
    restore()
    import json
    checkpoint = json.loads((tmp_path / "parts" / "checkpoint.json").read_text())
    assert 0 < checkpoint["iteration"] < 14 and checkpoint["journal"]["records"] > 0
    resumed = train(config("parts"), resume=True, echo=None, manager=manager)
    assert resumed.training["iterations"] == whole.training["iterations"]
    np.testing.assert_array_equal(resumed.model.vector(), whole.model.vector())  # bitwise
    if validation:
        assert resumed.training["best_validation"] == whole.training["best_validation"]
    log = (tmp_path / "parts" / "train-log.txt").read_text()
    assert "replaying" in log and "restarts" not in log


def test_resume_without_a_journal_restarts_the_optimizer_and_says_so(tmp_path, slab_images):
    import json

    write(tmp_path / "train.xyz", slab_images[:4])
    cfg = _config(tmp_path, "lbfgs")
    cfg["training"]["maxiter"] = 4
    train(cfg, echo=None)
    checkpoint = tmp_path / "run" / "checkpoint.json"
    document = json.loads(checkpoint.read_text())
    del document["journal"]  # as written by an older amp-core
    checkpoint.write_text(json.dumps(document))
    cfg["training"]["maxiter"] = 6
    assert train(cfg, resume=True, echo=None).training["iterations"] == 6
    assert "no optimiser journal" in (tmp_path / "run" / "train-log.txt").read_text()


def test_a_damaged_journal_restarts_the_optimizer_and_says_why(tmp_path, slab_images):
    write(tmp_path / "train.xyz", slab_images[:4])
    cfg = _config(tmp_path, "lbfgs")
    cfg["training"]["maxiter"] = 4
    train(cfg, echo=None)
    journal = tmp_path / "run" / "optimizer-journal.bin"
    journal.write_bytes(journal.read_bytes()[:100])  # truncated
    cfg["training"]["maxiter"] = 6
    assert train(cfg, resume=True, echo=None).training["iterations"] == 6
    log = (tmp_path / "run" / "train-log.txt").read_text()
    assert "optimiser journal" in log and "shorter than its checkpoint says" in log and "restarts" in log


def test_a_journal_that_does_not_replay_falls_back_with_a_note(tmp_path, slab_images):

    write(tmp_path / "train.xyz", slab_images[:4])
    cfg = _config(tmp_path, "lbfgs")
    cfg["training"]["maxiter"] = 4
    train(cfg, echo=None)
    run = tmp_path / "run"
    data = bytearray((run / "optimizer-journal.bin").read_bytes())
    data[8 + 8 + 8 * int.from_bytes(data[8:16], "little") + 3] ^= 0xFF  # first record's digest
    (run / "optimizer-journal.bin").write_bytes(bytes(data))
    cfg["training"]["maxiter"] = 6
    assert train(cfg, resume=True, echo=None).training["iterations"] == 6
    assert "could not replay" in (run / "train-log.txt").read_text()


@pytest.mark.parametrize("backend", ["serial", "multiprocessing"])
def test_a_subset_of_chunks_is_the_sum_over_those_chunks(tmp_path, slab_images, backend):
    from amp_core import Potential, create_backend, create_descriptor, create_model, loss_function

    potential = Potential(create_descriptor("gaussian", elements=["Cu", "Pt"], cutoff=4.0),
                          create_model("neuralnetwork", hiddenlayers=(3,)))
    options = {"cores": 2} if backend == "multiprocessing" else {}
    with create_backend(backend, **options) as made, loss_function(
            slab_images[:60], potential, made, force_coefficient=0.1, overfit=1e-3, run_dir=tmp_path / "run") as f:
        assert f.n_chunks >= 2
        vector = potential.model.vector() * 1.1
        whole, whole_gradient = f(vector)
        parts = [f(vector, chunks=[k]) for k in range(f.n_chunks)]
        # every chunk once adds up to the whole loss (penalty shared by image counts)
        assert sum(p[0] for p in parts) == pytest.approx(whole, rel=1e-12)
        np.testing.assert_allclose(sum(p[1] for p in parts), whole_gradient, rtol=1e-10, atol=1e-14)
        every = f(vector, chunks=range(f.n_chunks))
        assert every[0] == whole and np.array_equal(every[1], whole_gradient)  # bitwise: same sum, same order
        assert f(vector, chunks=[1, 0])[0] == f(vector, chunks=[0, 1])[0]
        with pytest.raises(Exception, match="chunks must be indices from 0 to"):
            f(vector, chunks=[f.n_chunks])


def test_a_backend_without_subsets_gives_the_same_subset_numbers(tmp_path, slab_images, monkeypatch):
    from amp_core import Potential, create_descriptor, create_model, loss_function
    from amp_plugins.backends.serial import SerialSession

    potential = Potential(create_descriptor("gaussian", elements=["Cu", "Pt"], cutoff=4.0),
                          create_model("neuralnetwork", hiddenlayers=(3,)))
    with loss_function(slab_images[:60], potential, "serial", run_dir=tmp_path / "run") as f:
        vector = potential.model.vector()
        expected = f(vector, chunks=[1])
        monkeypatch.setattr(SerialSession, "subsets", False)
        got = f(vector, chunks=[1])
    assert got[0] == expected[0] and np.array_equal(got[1], expected[1])


def test_adam_trains_over_minibatches_of_chunks(tmp_path, slab_images):
    write(tmp_path / "train.xyz", slab_images[:60])
    config = _config(tmp_path, "adam")
    config["training"]["maxiter"] = 12
    potential = train(config, echo=None)
    assert potential.training["iterations"] == 12 and "12 passes over the data" in potential.training["outcome"]
    rows = [line.split() for line in (tmp_path / "run" / "train-log.txt").read_text().splitlines()
            if line.split() and line.split()[0].isdigit()]
    assert float(rows[-1][2]) < float(rows[6][2]) < float(rows[0][2])
    assert "chunks: 2" in (tmp_path / "run" / "train-log.txt").read_text()


def test_adam_settings_are_checked():
    from amp_plugins.optimizers.adam import AdamParams

    for bad in ({"learning_rate": 0}, {"beta1": 1.0}, {"batch_chunks": 0}, {"half_life": "10"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            AdamParams(**bad)
