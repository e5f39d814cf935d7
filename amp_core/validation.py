"""Validation during training: held-out images evaluated every few iterations, best parameters kept.

The validation images come from ``[data] validation`` (files) or ``[data]
validation_fraction`` (a split of the training images by image, random but fixed by
``[training] seed``; the split is written to ``split.json`` in the run folder).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from amp_core.config import Config
from amp_core.data import LossResult
from amp_core.images import load_dataset, split_dataset

OVERFIT_RATIO = 2.0
"""A validation RMSE more than this many times the training RMSE is warned about."""


def training_sources(cfg: Config, run_dir: Path, write: bool = True) -> tuple[Any, Any]:
    """Return (training images, validation images or ``None``) as the loss functions take them.

    With ``validation_fraction`` the split is written to ``split.json`` unless ``write`` is
    false (the serving MPI ranks compute the same split and leave the file to rank 0).
    """
    if cfg.data.validation_fraction is None:
        return list(cfg.data.train), (list(cfg.data.validation) or None)
    data = load_dataset(list(cfg.data.train), forces=cfg.forces)
    train, validation = split_dataset(data, cfg.data.validation_fraction, cfg.training.seed)
    split = {"seed": cfg.training.seed, "validation_fraction": cfg.data.validation_fraction,
             "train": train.origins, "validation": validation.origins}
    if write:
        (run_dir / "split.json").write_text(json.dumps(split, indent=1))
    return train, validation


def default_interval(n_train: int, n_validation: int) -> int:
    """Iterations between validations so that they cost under 10% of the run (one evaluation each)."""
    return max(1, math.ceil(10 * n_validation / max(n_train, 1)))


@dataclass
class Monitor:
    """Evaluates the validation loss every ``interval`` iterations and remembers the best parameters.

    Attributes:
        loss: the validation loss function (same settings as the training one).
        interval: iterations between validations.
        patience: validations without improvement before training stops (``None``: never).
    """

    loss: Any
    interval: int
    patience: int | None = None
    best: LossResult | None = None
    best_vector: NDArray[np.float64] | None = None
    best_iteration: int = -1
    last: LossResult | None = None
    since_best: int = field(default=0)

    @staticmethod
    def header() -> str:
        """Column names added to the progress rows."""
        return f" {'V_E_rmse':>10} {'V_F_rmse':>10}"

    def due(self, iteration: int, start: int) -> bool:
        """Whether ``iteration`` is one to validate at."""
        return (iteration - start) % self.interval == 0

    def check(self, iteration: int, vector: NDArray[np.float64]) -> LossResult:
        """Evaluate the validation loss at ``vector``; remember it when it is the best so far."""
        result: LossResult = self.loss.evaluate(vector)
        self.last = result
        if self.best is None or result.loss < self.best.loss:
            self.best, self.best_vector, self.best_iteration = result, np.array(vector, copy=True), iteration
            self.since_best = 0
        else:
            self.since_best += 1
        return result

    def columns(self, result: LossResult | None) -> str:
        """The validation columns of a progress row (``-`` where not evaluated)."""
        if result is None:
            return f" {'-':>10} {'-':>10}"
        return f" {result.energy_rmse:10.3e} {result.force_rmse:10.3e}"

    def reset(self) -> None:
        """Forget the best-so-far (the run restarts its record)."""
        self.best, self.best_vector, self.best_iteration, self.last, self.since_best = None, None, -1, None, 0

    def exhausted(self) -> bool:
        """Whether ``patience`` validations in a row brought no improvement."""
        return self.patience is not None and self.since_best >= self.patience

    def summary(self, train: LossResult, forces: bool) -> list[str]:
        """Lines for the log at the end: the best validation errors beside the training errors, and a warning."""
        best = self.best
        if best is None:
            return []
        lines = [f"best validation at iteration {self.best_iteration}: energy RMSE {best.energy_rmse:.4e} eV/atom"
                 + (f", force RMSE {best.force_rmse:.4e} eV/A" if forces else "")
                 + f" (training, same parameters: energy RMSE {train.energy_rmse:.4e}"
                 + (f", force RMSE {train.force_rmse:.4e})" if forces else ")")]
        pairs = [("energy", best.energy_rmse, train.energy_rmse)]
        if forces:
            pairs.append(("force", best.force_rmse, train.force_rmse))
        for what, validation, training in pairs:
            if training > 0 and validation > OVERFIT_RATIO * training:
                lines.append(f"warning: the validation {what} RMSE is {validation / training:.1f} times the "
                             f"training {what} RMSE: the potential does not generalise from these images "
                             "(more or more varied training data, a smaller network or a larger overfit "
                             "penalty may help)")
        return lines
