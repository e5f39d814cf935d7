"""``lm``: Levenberg-Marquardt on energy residuals and a random sample of force residuals.

Each iteration takes the loss ``L`` and its gradient ``g`` over the whole training set, the
Jacobian rows (:mod:`amp_core.residuals`) of every image's energy residual and of
``force_samples`` force components drawn at random (seeded; a new draw every iteration),
and builds the Gauss-Newton matrix ``H = 2 (J_E^T J_E + s J_F^T J_F)``, the force part
scaled by ``s = all force components / sampled ones`` so that it stands for the whole
sum. The step solves ``(H + mu h I) d = -g`` with ``h`` the mean of ``diag(H)`` (Levenberg's
isotropic damping: Marquardt's ``diag(H)`` scaling was measured to stall, the network's
near-null directions then going undamped); it is accepted when the full loss goes down (then ``mu`` shrinks), else ``mu`` grows and the
step is solved again with the same ``H``.

Cost per iteration: the rows (in the backend's workers), about ``n^2 m`` flops for ``H``
and ``n^3 / 3`` per tried step (n parameters, m rows); memory ``n^2`` float64 twice.

Deterministic (seeded), so ``--resume`` continues the trajectory exactly; the resumed run
recomputes the Jacobian rows of the iterations before the checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from amp_core import OptimizerEntry, hookimpl
from amp_core.residuals import ResidualRequest, residual_sizes

Array = NDArray[np.float64]


@dataclass(frozen=True)
class LevenbergParams:
    """Settings of ``lm``.

    Attributes:
        force_samples: force components drawn per iteration (all of them if fewer).
        damping: initial ``mu``.
        increase, decrease: factors ``mu`` is multiplied by after a rejected step and
            divided by after an accepted one.
        max_tries: rejected steps in a row after which the run ends (no progress).
        seed: of the force sampling.
    """

    force_samples: int = 1000
    damping: float = 1e-3
    increase: float = 4.0
    decrease: float = 3.0
    max_tries: int = 12
    seed: int = 0

    def __post_init__(self) -> None:
        for name, low in (("force_samples", 0), ("max_tries", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
        for name, low in (("damping", 0.0), ("increase", 1.0), ("decrease", 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value <= low:
                raise ValueError(f"{name} must be a finite number > {low:g}, got {value!r}")


def requests_for(sizes: NDArray[np.int64], forces: NDArray[np.int64]) -> dict[int, ResidualRequest]:
    """Return per chunk: every energy residual, and the sampled force components (global indices ``forces``)."""
    force_offsets = np.concatenate([[0], np.cumsum(sizes[:, 1])])
    chunk = np.searchsorted(force_offsets, forces, side="right") - 1
    return {k: ResidualRequest.of(range(int(sizes[k, 0])), np.sort(forces[chunk == k] - force_offsets[k]))
            for k in range(len(sizes))}


class Levenberg:
    """Levenberg-Marquardt: Gauss-Newton steps from sampled residual Jacobians, accepted on the full loss."""

    name = "lm"

    def __init__(self, params: LevenbergParams | None = None) -> None:
        self.params = params or LevenbergParams()

    def minimize(self, function: Callable[..., tuple[float, Array]], start: Array, *, maxiter: int,
                 callback: Callable[[Array], None]) -> str:
        """Take at most ``maxiter`` accepted steps (the training loop stops it earlier on its criteria)."""
        import scipy.linalg

        p = self.params
        sizes = residual_sizes(function, "lm")
        n_forces = int(sizes[:, 1].sum())
        rng = np.random.default_rng(p.seed)
        x = np.array(start, dtype=np.float64, copy=True)
        mu = p.damping
        loss, gradient = function(x)
        for _ in range(maxiter):
            drawn = min(p.force_samples, n_forces)
            forces = rng.choice(n_forces, size=drawn, replace=False) if drawn else np.zeros(0, dtype=np.int64)
            answers = function.residuals(x, requests_for(sizes, forces))  # type: ignore[attr-defined]
            hessian = self._gauss_newton(answers, sizes, n_forces / drawn if drawn else 0.0)
            diagonal = np.full(len(x), max(float(np.diag(hessian).mean()), 1e-300))
            for _ in range(p.max_tries):
                damped = hessian.copy()
                damped[np.diag_indices_from(damped)] += mu * diagonal
                try:
                    factor = scipy.linalg.cho_factor(damped, overwrite_a=True, check_finite=False)
                except np.linalg.LinAlgError:  # not positive definite at this damping: damp more
                    mu *= p.increase
                    continue
                step = -scipy.linalg.cho_solve(factor, gradient, check_finite=False)
                trial, trial_gradient = function(x + step)
                if trial < loss:
                    x, loss, gradient = x + step, trial, trial_gradient
                    mu = max(mu / p.decrease, 1e-15)
                    break
                mu *= p.increase
            else:
                return f"no step lowered the loss in {p.max_tries} tries (damping {mu:.3g})"
            callback(x)
        return f"{maxiter} steps done"

    @staticmethod
    def _gauss_newton(answers: list[object], sizes: NDArray[np.int64], scale: float) -> Array:
        """Return ``2 (J_E^T J_E + scale J_F^T J_F)`` from the chunks' answers (energy rows first in each)."""
        hessian: Array | None = None
        for answer, (n_images, _) in zip(answers, sizes):
            rows = answer.jacobian  # type: ignore[attr-defined]
            energy, force = rows[:n_images], rows[n_images:]
            part = energy.T @ energy
            if len(force):
                part += scale * (force.T @ force)
            hessian = part if hessian is None else hessian + part
        assert hessian is not None
        return 2.0 * hessian


@hookimpl
def amp_optimizers() -> list[OptimizerEntry[LevenbergParams]]:
    """Register ``lm``."""
    return [OptimizerEntry(name="lm", params=LevenbergParams, factory=Levenberg,
                           summary="Levenberg-Marquardt on energy and sampled force residuals, full-loss acceptance.")]
