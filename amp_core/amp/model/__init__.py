"""Amp's ``amp.model`` package: :class:`LossFunction` (training settings of a model)."""

from __future__ import annotations

from typing import Any

from amp_core.errors import ConfigError

CRITERIA = ("energy_rmse", "energy_maxresid", "force_rmse", "force_maxresid")


class LossFunction:
    """Amp's loss function settings, turned into amp-core's ``[training]`` table by :meth:`Amp.train`.

    The loss is Amp's: energy_coefficient times the sum over images of the squared
    per-atom energy residual, plus force_coefficient times the per-image mean squared
    force residual, plus overfit times the squared weights.

    Args:
        energy_coefficient: weight of the energy term.
        force_coefficient: weight of the force term (default 0.04); ``None`` or 0 trains
            energies only (Amp trains forces whenever it is positive).
        convergence: Amp's criteria, merged into the default ``{'energy_rmse': 0.001,
            'energy_maxresid': None, 'force_rmse': None, 'force_maxresid': None}`` (eV, eV/A).
        overfit: weight of the squared-weights penalty.
        weight_duplicates: as Amp: ``False`` counts identical images in the training set
            once, ``True`` as often as they appear.
        maxiter: the most optimiser steps; reaching it ends training as Amp 1.0.1 does
            (counted as finished: ``<label>.amp`` is written, no error is raised).
        parallel, raise_ConvergenceOccurred, log_losses: accepted for Amp scripts, no effect
            (the backend comes from ``Amp(cores=...)``; every iteration is logged).
        d: must be ``None`` (amp-core always uses the analytic gradient).
    """

    default_parameters: dict[str, Any] = {"convergence": dict.fromkeys(CRITERIA, None) | {"energy_rmse": 0.001}}

    def __init__(self, energy_coefficient: float = 1.0, force_coefficient: float | None = 0.04,
                 convergence: dict[str, Any] | None = None, parallel: Any = None, overfit: float = 0.0,
                 raise_ConvergenceOccurred: bool = True, log_losses: bool = True, d: float | None = None,  # noqa: N803
                 weight_duplicates: bool = False, maxiter: int = 100000) -> None:
        criteria = dict(self.default_parameters["convergence"])
        for key, value in (convergence or {}).items():
            if key not in CRITERIA:
                raise ConfigError(f"LossFunction(convergence=...): unknown criterion {key!r}; "
                                  f"Amp's criteria are {', '.join(CRITERIA)}")
            criteria[key] = value
        if d is not None:
            raise ConfigError("LossFunction(d=...) (finite-difference gradients) is not supported: "
                              "amp-core always uses the analytic gradient")
        self.parameters: dict[str, Any] = {
            "convergence": criteria,
            "energy_coefficient": energy_coefficient,
            "force_coefficient": force_coefficient,
            "overfit": overfit,
            "weight_duplicates": weight_duplicates,
            "maxiter": maxiter,
        }
        self.parallel, self.raise_ConvergenceOccurred, self.log_losses = parallel, raise_ConvergenceOccurred, log_losses

    @property
    def forces(self) -> bool:
        """Whether forces are trained: as Amp, when ``force_coefficient`` is a positive number."""
        coefficient = self.parameters["force_coefficient"]
        return coefficient is not None and coefficient > 0

    def training_table(self) -> dict[str, Any]:
        """Return amp-core's ``[training]`` entries these settings stand for."""
        p = self.parameters
        table: dict[str, Any] = {
            "energy_coefficient": p["energy_coefficient"],
            "forces": self.forces,
            "overfit": p["overfit"],
            "maxiter": p["maxiter"],
            "convergence": {k: v for k, v in p["convergence"].items() if v is not None},
        }
        if self.forces:
            table["force_coefficient"] = p["force_coefficient"]
        else:
            table["convergence"] = {k: v for k, v in table["convergence"].items() if not k.startswith("force")}
        return table
