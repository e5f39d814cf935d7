"""Amp's ``amp.model.neuralnetwork``: :class:`NeuralNetwork` (amp-core plugin ``neuralnetwork``)."""

from __future__ import annotations

from typing import Any

from amp_core.amp.model import LossFunction
from amp_core.amp.regression import Regressor
from amp_core.errors import ConfigError


class NeuralNetwork:
    """Amp's atom-centred neural network (one per element): amp-core's ``neuralnetwork`` plugin.

    Amp's network, scalings, fprange, parameter order and loss; weights, scalings and
    fprange given here (e.g. from a loaded ``.amp`` file) are the starting point of training.

    Args:
        hiddenlayers: hidden-layer sizes, for every element or ``{element: sizes}``.
        activation: ``'tanh'``, ``'sigmoid'`` or ``'linear'``.
        weights, scalings, fprange: Amp's dictionaries; ``None``: set when training starts
            (random weights from ``randomseed``, scalings and fprange from the data, as Amp).
        mode: ``'atom-centered'`` (or ``None``); version: ``'2015.12'`` (or ``None``).
        regressor: a :class:`~amp_core.amp.regression.Regressor` (default ``BFGS``, as Amp).
        lossfunction: a :class:`~amp_core.amp.model.LossFunction` (default: Amp's defaults);
            may also be set later as ``calc.model.lossfunction = LossFunction(...)``.
        fortran: accepted for Amp scripts; compiled kernels are used when the backend asks.
        checkpoints: as Amp: every this many steps (at the end here) ``<label>-checkpoint.amp``
            is written; negative: kept per step in ``<label>-checkpoints/``; ``None``: none.
        randomseed: seed of the initial weights (``None``: 0, so reruns repeat).
        prescale: not supported (``True`` is a :class:`~amp_core.ConfigError`).
    """

    plugin = "neuralnetwork"

    def __init__(self, hiddenlayers: Any = (5, 5), activation: str = "tanh", weights: Any = None,
                 scalings: Any = None, fprange: Any = None, mode: str | None = None, version: str | None = None,
                 regressor: Regressor | None = None, lossfunction: LossFunction | None = None,
                 fortran: bool = True, checkpoints: int | None = 100, randomseed: int | None = None,
                 prescale: bool = False) -> None:
        if mode not in (None, "atom-centered"):
            raise ConfigError(f"NeuralNetwork: mode {mode!r}; only 'atom-centered' networks are supported")
        if version not in (None, "2015.12"):
            raise ConfigError(f"NeuralNetwork: version {version!r} is not supported (known: 2015.12)")
        if prescale:
            raise ConfigError("NeuralNetwork(prescale=True) is not supported; amp-core sets the scalings "
                              "from the data's energy range, as Amp does without prescale")
        if regressor is not None and not isinstance(regressor, Regressor):
            raise ConfigError("NeuralNetwork(regressor=...) takes amp_core.amp.regression.Regressor(optimizer=...)")
        self.parameters: dict[str, Any] = {
            "hiddenlayers": hiddenlayers, "activation": activation, "weights": weights,
            "scalings": scalings, "fprange": fprange, "mode": "atom-centered", "version": "2015.12",
        }
        self.regressor = regressor or Regressor()
        self.lossfunction = lossfunction or LossFunction()
        self.fortran, self.checkpoints, self.randomseed = fortran, checkpoints, randomseed

    def plugin_params(self) -> dict[str, Any]:
        """Return the ``neuralnetwork`` plugin's parameters."""
        p = self.parameters
        params = {k: p[k] for k in ("hiddenlayers", "activation", "weights", "scalings", "fprange")}
        params["seed"] = 0 if self.randomseed is None else self.randomseed
        return params

    def update(self, amp_parameters: dict[str, Any]) -> None:
        """Take the trained parameters (a model's ``amp_parameters()``) as Amp's model keeps them."""
        for key in ("hiddenlayers", "activation", "weights", "scalings", "fprange"):
            self.parameters[key] = amp_parameters[key]

    def __repr__(self) -> str:
        return f"<NeuralNetwork: hiddenlayers {self.parameters['hiddenlayers']}, {self.parameters['activation']}>"
