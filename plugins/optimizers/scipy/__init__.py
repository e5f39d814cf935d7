"""SciPy's gradient-based minimisers as optimisers: ``lbfgs`` (L-BFGS-B), ``bfgs`` and ``cg``.

These are what Amp uses (``scipy.optimize.minimize``). Each runs until the training loop's
callback stops it (convergence, ``maxiter``, ``max_time``, early stopping) or until SciPy
finds no further progress.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from amp_core import OptimizerEntry, hookimpl


@dataclass(frozen=True)
class ScipyParams:
    """Settings of the SciPy optimisers.

    Attributes:
        gtol: stop when the largest gradient component falls below this (SciPy's ``gtol``;
            tiny by default, so that amp-core's convergence criteria decide).
        maxcor: curvature pairs ``lbfgs`` keeps (SciPy's ``maxcor``, default 10); the others ignore it.
    """

    gtol: float = 1e-12
    maxcor: int = 10

    def __post_init__(self) -> None:
        if isinstance(self.gtol, bool) or not isinstance(self.gtol, (int, float)) or not 0 <= self.gtol < 1:
            raise ValueError(f"gtol must be a number in [0, 1), got {self.gtol!r}")
        if isinstance(self.maxcor, bool) or not isinstance(self.maxcor, int) or self.maxcor < 1:
            raise ValueError(f"maxcor must be a whole number >= 1, got {self.maxcor!r}")


class ScipyOptimizer:
    """One of SciPy's ``minimize`` methods, with Amp's settings."""

    method = ""

    def __init__(self, params: ScipyParams | None = None) -> None:
        self.params = params or ScipyParams()

    def minimize(self, function: Callable[[NDArray[np.float64]], tuple[float, NDArray[np.float64]]],
                 start: NDArray[np.float64], *, maxiter: int,
                 callback: Callable[[NDArray[np.float64]], None]) -> str:
        """Run ``scipy.optimize.minimize`` for at most ``maxiter`` iterations; return its message."""
        import scipy.optimize

        options: dict[str, Any] = {"maxiter": maxiter, "gtol": self.params.gtol}
        if self.method == "L-BFGS-B":
            options.update(maxfun=50 * maxiter, ftol=0.0, maxcor=self.params.maxcor)
        outcome = scipy.optimize.minimize(function, start, jac=True, method=self.method, callback=callback,
                                          options=options)
        return str(outcome.message)


class LBFGS(ScipyOptimizer):
    """Limited-memory BFGS with bounds (SciPy's L-BFGS-B; Amp's default)."""

    name = "lbfgs"
    method = "L-BFGS-B"


class BFGS(ScipyOptimizer):
    """BFGS with a dense inverse-Hessian estimate (for small networks)."""

    name = "bfgs"
    method = "BFGS"


class CG(ScipyOptimizer):
    """Nonlinear conjugate gradients."""

    name = "cg"
    method = "CG"


@hookimpl
def amp_optimizers() -> list[OptimizerEntry[ScipyParams]]:
    """Register ``lbfgs``, ``bfgs`` and ``cg``."""
    return [OptimizerEntry(name=cls.name, params=ScipyParams, factory=cls, summary=(cls.__doc__ or "").strip())
            for cls in (LBFGS, BFGS, CG)]
