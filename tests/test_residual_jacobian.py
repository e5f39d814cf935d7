"""Per-residual Jacobian rows of the neural network (``RESIDUAL_JACOBIAN``), checked against finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from amp_core.data import LossSettings
from amp_core.protocols import RESIDUAL_JACOBIAN
from amp_core.residuals import ResidualRequest
from amp_plugins.models.neuralnetwork import NeuralNetwork, NeuralNetworkParams

from .test_neuralnetwork import data  # noqa: F401 - the toy-descriptor shard fixture

SETTINGS = LossSettings(0.7, 0.3, forces=True)


def _model(arrays, activation: str) -> tuple[NeuralNetwork, np.ndarray]:
    model = NeuralNetwork(NeuralNetworkParams(hiddenlayers=(3, 2), activation=activation, seed=3))
    model.initialize([arrays])
    return model, model.vector() + np.random.default_rng(5).normal(size=model.layout.size) * 0.3


def _every(arrays) -> ResidualRequest:
    return ResidualRequest.of(range(len(arrays["natoms"])), range(3 * len(arrays["atom_image"])))


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "linear"])
def test_jacobian_rows_match_central_differences_of_the_residuals(data, activation):  # noqa: F811
    _, _, _, arrays = data
    model, vector = _model(arrays, activation)
    assert RESIDUAL_JACOBIAN in model.implemented
    evaluator = model.loss_evaluator(arrays, SETTINGS)
    request = _every(arrays)
    answer = evaluator.residuals(vector, request)
    h = 1e-6
    numeric = np.stack([(evaluator.residuals(vector + h * e, request).values
                         - evaluator.residuals(vector - h * e, request).values) / (2 * h)
                        for e in np.eye(len(vector))], axis=1)
    assert np.abs(numeric).max() > 1e-3 and answer.jacobian.shape == numeric.shape
    np.testing.assert_allclose(answer.jacobian, numeric, rtol=1e-6, atol=1e-7 * np.abs(numeric).max())


@pytest.mark.parametrize("activation", ["tanh", "linear"])
def test_residuals_square_to_the_loss_and_give_its_gradient(data, activation):  # noqa: F811
    _, _, _, arrays = data
    model, vector = _model(arrays, activation)
    evaluator = model.loss_evaluator(arrays, SETTINGS)
    answer = evaluator.residuals(vector, _every(arrays))
    parts = evaluator(vector)
    assert answer.values @ answer.values == pytest.approx(parts.loss, rel=1e-12)
    np.testing.assert_allclose(2.0 * answer.jacobian.T @ answer.values, parts.gradient, rtol=1e-10,
                               atol=1e-12 * np.abs(parts.gradient).max())


def test_a_subset_gives_the_same_rows_in_request_order(data):  # noqa: F811
    _, _, _, arrays = data
    model, vector = _model(arrays, "tanh")
    evaluator = model.loss_evaluator(arrays, SETTINGS)
    whole = evaluator.residuals(vector, _every(arrays))
    n_images = len(arrays["natoms"])
    images, components = np.array([2, 0]), np.array([17, 4, 4, 30])
    part = evaluator.residuals(vector, ResidualRequest.of(images, components))
    rows = np.concatenate([images, n_images + components])
    np.testing.assert_allclose(part.values, whole.values[rows], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(part.jacobian, whole.jacobian[rows], rtol=1e-12, atol=1e-14)


def test_bad_requests_are_refused_with_the_range(data):  # noqa: F811
    _, _, _, arrays = data
    model, vector = _model(arrays, "tanh")
    evaluator = model.loss_evaluator(arrays, SETTINGS)
    with pytest.raises(ValueError, match="image indices must be 0 .. 3"):
        evaluator.residuals(vector, ResidualRequest.of([4], []))
    with pytest.raises(ValueError, match="force components must be"):
        evaluator.residuals(vector, ResidualRequest.of([], [-1]))
    energy_only = model.loss_evaluator(arrays, LossSettings(1.0, None))
    with pytest.raises(ValueError, match="forces are not trained"):
        energy_only.residuals(vector, ResidualRequest.of([], [0]))
