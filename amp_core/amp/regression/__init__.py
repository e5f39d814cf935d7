"""Amp's ``amp.regression.Regressor``: which optimiser trains the model."""

from __future__ import annotations

from typing import Any

from amp_core.errors import ConfigError

OPTIMIZERS = {"BFGS": "bfgs", "L-BFGS-B": "lbfgs", "CG": "cg"}
"""Amp's optimiser names and amp-core's optimisers of the same SciPy methods."""


class Regressor:
    """Choose the optimiser, as Amp's ``Regressor(optimizer='BFGS')`` does.

    Args:
        optimizer: ``'BFGS'`` (Amp's default), ``'L-BFGS-B'`` or ``'CG'`` (SciPy's methods,
            amp-core's ``bfgs``, ``lbfgs``, ``cg``); an amp-core optimiser name works too.
        optimizer_kwargs: not supported (amp-core's optimisers use their own tolerances);
            giving any is a :class:`~amp_core.ConfigError`.
        lossprime: must be True (amp-core always uses the analytic gradient).
    """

    def __init__(self, optimizer: str = "BFGS", optimizer_kwargs: dict[str, Any] | None = None,
                 lossprime: bool = True) -> None:
        if not isinstance(optimizer, str):
            raise ConfigError(f"Regressor(optimizer=...) must be a name such as 'BFGS', got {optimizer!r}; "
                              "optimiser callables are not supported")
        if optimizer_kwargs:
            raise ConfigError(f"Regressor(optimizer_kwargs={optimizer_kwargs!r}) is not supported: amp-core's "
                              "optimisers use their own tolerances (maxiter goes in LossFunction(maxiter=...))")
        if lossprime is not True:
            raise ConfigError("Regressor(lossprime=False) is not supported: amp-core always uses the analytic gradient")
        self.optimizer = optimizer

    @property
    def name(self) -> str:
        """amp-core's optimiser name (``[training] optimizer``)."""
        return OPTIMIZERS.get(self.optimizer, self.optimizer)
