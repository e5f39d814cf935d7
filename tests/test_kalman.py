"""The ``ekf`` optimiser: the Kalman update against the textbook formula, training, resume, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.io import write

from amp_core import (
    ConfigError,
    Potential,
    create_backend,
    create_descriptor,
    create_model,
    loss_function,
    train,
)
from amp_core.residuals import ResidualRequest
from amp_plugins.optimizers.kalman import Kalman, KalmanParams, split, update


def test_update_is_the_textbook_kalman_step():
    rng = np.random.default_rng(0)
    n, m, noise, q = 40, 5, 0.3, 1e-3
    root = rng.normal(size=(n, n))
    covariance = root @ root.T / n + np.eye(n)
    jacobian, values, x = rng.normal(size=(m, n)), rng.normal(size=m), rng.normal(size=n)
    # by hand: A = J P J^T + R, K = P J^T A^-1, x' = x - K r, P' = P - K J P + q I
    gain = covariance @ jacobian.T @ np.linalg.inv(jacobian @ covariance @ jacobian.T + noise * np.eye(m))
    expected = covariance - gain @ jacobian @ covariance + q * np.eye(n)
    state = np.asfortranarray(np.tril(covariance))  # only the lower triangle is read
    moved = update(x, state, values, jacobian, noise, q)
    np.testing.assert_allclose(moved, x - gain @ values, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.tril(state), np.tril(expected), rtol=1e-12, atol=1e-12)


def test_one_residual_with_no_noise_is_fitted_exactly():
    # a linear residual r(x) = j.x - 1 with R -> 0: one update zeroes it
    j = np.array([1.0, 2.0, -0.5])
    x = np.zeros(3)
    covariance = np.asfortranarray(np.eye(3))
    moved = update(x, covariance, np.array([j @ x - 1.0]), j[None, :], 1e-14, 0.0)
    assert j @ moved - 1.0 == pytest.approx(0.0, abs=1e-12)


def test_split_gives_chunk_local_indices_in_chunk_order():
    offsets = np.array([0, 3, 5, 9])
    requests = split(np.array([7, 0, 4, 2, 8]), offsets, "images")
    assert sorted(requests) == [0, 1, 2]
    assert requests[0].images.tolist() == [0, 2] and requests[1].images.tolist() == [1]
    assert requests[2].images.tolist() == [2, 3] and requests[2].components.size == 0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"energy_batch": 0}, "energy_batch must be a whole number >= 1"),
    ({"force_batch": 2.5}, "force_batch must be a whole number >= 1"),
    ({"force_fraction": 1.5}, r"force_fraction must be in \[0, 1\]"),
    ({"force_fraction": -0.1}, "force_fraction must be a finite number >= 0"),
    ({"initial_covariance": 0.0}, "initial_covariance must be a finite number > 0"),
    ({"noise": float("nan")}, "noise must be a finite number > 0"),
    ({"process_noise": -1.0}, "process_noise must be a finite number >= 0"),
    ({"seed": -1}, "seed must be a whole number >= 0"),
])
def test_params_reject_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        KalmanParams(**kwargs)


def _config(tmp_path, folder: str, maxiter: int = 8, **options) -> dict:
    return {"descriptor": {"name": "gaussian", "elements": ["Cu", "Pt"], "cutoff": 4.0},
            "model": {"name": "neuralnetwork", "hiddenlayers": [3]},
            "data": {"train": str(tmp_path / "train.xyz")},
            "training": {"maxiter": maxiter, "optimizer": "ekf", "directory": str(tmp_path / folder),
                         "force_coefficient": 0.1, "convergence": {"energy_rmse": 1e-12},
                         "optimizer_options": {"energy_batch": 2, "force_batch": 16, "force_fraction": 0.2,
                                               **options}}}


def _losses(folder) -> list[float]:
    rows = [line.split() for line in (folder / "train-log.txt").read_text().splitlines()]
    return [float(r[2]) for r in rows if r and r[0].isdigit()]


def test_ekf_trains_on_the_shipped_slabs(tmp_path, slab_images):
    write(tmp_path / "train.xyz", slab_images[:8])
    potential = train(_config(tmp_path, "run"), echo=None)
    assert potential.training["iterations"] == 8 and "8 passes over the data done" in potential.training["outcome"]
    losses = _losses(tmp_path / "run")
    assert losses[-1] < 0.1 * losses[0]


def _fortran_missing() -> str | None:
    from amp_plugins.backends.fortran import probe

    return probe()


@pytest.mark.parametrize("backend", [
    "serial", "multiprocessing",
    pytest.param("fortran", marks=pytest.mark.skipif(_fortran_missing() is not None, reason="no fortran kernels"))])
def test_residuals_through_the_session_agree_with_the_evaluator(tmp_path, slab_images, backend):
    potential = Potential(create_descriptor("gaussian", elements=["Cu", "Pt"], cutoff=4.0),
                          create_model("neuralnetwork", hiddenlayers=(3,)))
    options = {"cores": 2} if backend in ("multiprocessing", "fortran") else {}
    with create_backend(backend, **options) as made, loss_function(
            slab_images[:60], potential, made, force_coefficient=0.1, run_dir=tmp_path / "run") as f:
        assert f.n_chunks >= 2 and f.residual_sizes[0] == (f.chunks[0].n_images, 3 * f.chunks[0].n_atoms)
        vector = potential.model.vector() * 1.1
        requests = {k: ResidualRequest.of(range(f.chunks[k].n_images), range(3 * f.chunks[k].n_atoms))
                    for k in range(f.n_chunks)}
        answers = f.residuals(vector, requests)
        loss, gradient = f(vector)
        values = np.concatenate([a.values for a in answers])
        jacobian = np.concatenate([a.jacobian for a in answers])
        assert values @ values == pytest.approx(loss, rel=1e-12)  # no regularisation here
        np.testing.assert_allclose(2 * jacobian.T @ values, gradient, rtol=1e-9, atol=1e-12 * abs(gradient).max())
        one = f.residuals(vector, {1: ResidualRequest.of([0], [5, 2])})
        assert len(one) == 1
        np.testing.assert_array_equal(one[0].values, answers[1].values[[0, f.chunks[1].n_images + 5,
                                                                         f.chunks[1].n_images + 2]])


def _interrupted_at_residuals(monkeypatch, n, config):
    """Train ``config`` until its ``n``-th residual request raises KeyboardInterrupt (as Ctrl-C would)."""
    from amp_core.loss import LossFunction

    original, calls = LossFunction.residuals, {"n": 0}

    def interrupted(self, vector, requests):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return original(self, vector, requests)

    monkeypatch.setattr(LossFunction, "residuals", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(config, echo=None)
    monkeypatch.setattr(LossFunction, "residuals", original)


def test_resume_continues_the_ekf_trajectory_bit_for_bit(tmp_path, slab_images, monkeypatch):
    write(tmp_path / "train.xyz", slab_images[:6])
    write(tmp_path / "valid.xyz", slab_images[6:8])

    def config(folder):
        cfg = _config(tmp_path, folder, maxiter=10)
        cfg["training"].update(checkpoint_interval=3, validation_interval=2)
        cfg["data"]["validation"] = str(tmp_path / "valid.xyz")
        return cfg

    whole = train(config("whole"), echo=None)
    _interrupted_at_residuals(monkeypatch, 40, config("parts"))  # some passes in, between two updates
    checkpoint = json.loads((tmp_path / "parts" / "checkpoint.json").read_text())
    assert 0 < checkpoint["iteration"] < 10
    resumed = train(config("parts"), resume=True, echo=None)
    assert resumed.training["iterations"] == whole.training["iterations"] == 10
    np.testing.assert_array_equal(resumed.model.vector(), whole.model.vector())  # bitwise
    assert resumed.training["best_validation"] == whole.training["best_validation"]
    assert "restarts" not in (tmp_path / "parts" / "train-log.txt").read_text()


def test_a_backend_without_residuals_is_refused_by_name_before_any_update(tmp_path, slab_images):
    class Session:  # a session like the mpi backend's: evaluate only
        def __init__(self, inner):
            self.inner = inner

        def evaluate(self, vector, chunks=None):
            return self.inner.evaluate(vector, chunks)

        def close(self):
            self.inner.close()

    potential = Potential(create_descriptor("gaussian", elements=["Cu", "Pt"], cutoff=4.0),
                          create_model("neuralnetwork", hiddenlayers=(3,)))
    with loss_function(slab_images[:4], potential, "serial", force_coefficient=0.1,
                       run_dir=tmp_path / "run") as f:
        f.session = Session(f.session)
        start = potential.model.vector()
        with pytest.raises(ConfigError, match=r"optimizer 'ekf' needs the Jacobian rows.*backend 'serial' cannot "
                                              r"serve; use backend 'serial', 'multiprocessing'"):
            Kalman().minimize(f, start, maxiter=3, callback=lambda v: None)


def test_a_model_without_residual_jacobians_is_refused(tmp_path, slab_images):
    write(tmp_path / "train.xyz", slab_images[:4])
    cfg = _config(tmp_path, "run")
    cfg["descriptor"] = {"name": "none"}
    cfg["model"] = {"name": "pairpotential"}
    with pytest.raises(ConfigError, match="model 'pairpotential' does not give"):
        train(cfg, echo=None)


# -- lm: Levenberg-Marquardt on the same residual Jacobians ----------------------------------------------


def _lm_config(tmp_path, folder: str, maxiter: int = 6) -> dict:
    cfg = _config(tmp_path, folder, maxiter)
    cfg["training"].update(optimizer="lm", optimizer_options={"force_samples": 200})
    return cfg


def test_lm_trains_on_the_shipped_slabs(tmp_path, slab_images):
    write(tmp_path / "train.xyz", slab_images[:8])
    potential = train(_lm_config(tmp_path, "run"), echo=None)
    assert potential.training["iterations"] == 6 and "6 steps done" in potential.training["outcome"]
    losses = _losses(tmp_path / "run")
    assert all(b < a for a, b in zip(losses, losses[1:]))  # every accepted step lowers the full loss
    assert losses[-1] < 0.1 * losses[0]


def test_lm_requests_every_energy_and_the_sampled_forces_per_chunk():
    from amp_plugins.optimizers.levenberg import requests_for

    sizes = np.array([[2, 6], [3, 9]])
    requests = requests_for(sizes, np.array([7, 0, 14, 5]))
    assert requests[0].images.tolist() == [0, 1] and requests[0].components.tolist() == [0, 5]
    assert requests[1].images.tolist() == [0, 1, 2] and requests[1].components.tolist() == [1, 8]


def test_resume_continues_the_lm_trajectory_bit_for_bit(tmp_path, slab_images, monkeypatch):
    write(tmp_path / "train.xyz", slab_images[:6])

    def config(folder):
        cfg = _lm_config(tmp_path, folder, maxiter=8)
        cfg["training"].update(checkpoint_interval=2)
        return cfg

    whole = train(config("whole"), echo=None)
    _interrupted_at_residuals(monkeypatch, 5, config("parts"))
    checkpoint = json.loads((tmp_path / "parts" / "checkpoint.json").read_text())
    assert 0 < checkpoint["iteration"] < 8 and checkpoint["journal"]["records"] > 0
    resumed = train(config("parts"), resume=True, echo=None)
    assert resumed.training["iterations"] == whole.training["iterations"] == 8
    np.testing.assert_array_equal(resumed.model.vector(), whole.model.vector())  # bitwise
    log = (tmp_path / "parts" / "train-log.txt").read_text()
    assert "replaying" in log and "restarts" not in log


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"force_samples": -1}, "force_samples must be a whole number >= 0"),
    ({"damping": 0.0}, "damping must be a finite number > 0"),
    ({"increase": 1.0}, "increase must be a finite number > 1"),
    ({"max_tries": 0}, "max_tries must be a whole number >= 1"),
])
def test_lm_params_reject_bad_values(kwargs, message):
    from amp_plugins.optimizers.levenberg import LevenbergParams

    with pytest.raises(ValueError, match=message):
        LevenbergParams(**kwargs)


def test_lbfgs_maxcor_reaches_scipy(monkeypatch):
    import scipy.optimize

    from amp_plugins.optimizers.scipy import LBFGS, ScipyParams

    seen = {}

    def minimize(function, start, **kwargs):
        seen.update(kwargs["options"])
        return scipy.optimize.OptimizeResult(message="stub")

    monkeypatch.setattr(scipy.optimize, "minimize", minimize)
    LBFGS(ScipyParams(maxcor=50)).minimize(lambda v: (0.0, v), np.zeros(2), maxiter=3, callback=lambda v: None)
    assert seen["maxcor"] == 50
    with pytest.raises(ValueError, match="maxcor must be a whole number >= 1"):
        ScipyParams(maxcor=0)


def test_an_ensemble_with_ekf_is_refused_with_what_to_do(tmp_path, slab_images):
    write(tmp_path / "train.xyz", slab_images[:4])
    cfg = _config(tmp_path, "run", maxiter=2)
    cfg["training"]["ensemble"] = 2
    with pytest.raises(ConfigError, match=r"optimizer 'ekf' needs a loss function that gives residual Jacobians.*"
                                          r"ensemble"):
        train(cfg, echo=None)
