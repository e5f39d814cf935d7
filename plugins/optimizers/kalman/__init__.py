"""``ekf``: an extended Kalman filter over energy and force residuals (Blank & Brown 1994; n2p2's scheme).

The parameters ``w`` are the filter's state, with covariance ``P`` (n x n). An update takes
a batch of residuals ``r`` (energies of a few images, or a few force components; see
:mod:`amp_core.residuals`) and their Jacobian rows ``J`` (m x n) from the chunks holding
them (the training session computes them in its workers, in parallel), and does::

    A = J P J^T + R            (m x m; R = noise * (running mean of r^2 of that kind) * I)
    K = P J^T A^-1             (n x m)
    w = w - K r
    P = P - K J P + q I        (q: process noise, decaying per pass)

as in Singraber et al., J. Chem. Theory Comput. 15, 1827 (2019), except that the
measurement noise R follows the running mean square of each kind of residual (energies,
forces), so the filter does not depend on the units or weights of the residuals. One
iteration is one pass: every image's energy once and ``force_fraction`` of the force
components, in seeded random order, energy and force batches interleaved.

Memory and time: ``P`` holds n^2 float64 (n = number of parameters: 1,100 for the default
network on one element, 10 MB); an update costs about 4 n^2 m flops.

Deterministic (seeded): the same start, data and settings give the same trajectory, so
``--resume`` continues it exactly (the resumed run recomputes the Jacobian rows of the
passes before the checkpoint, which costs the time those passes took).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from amp_core import OptimizerEntry, hookimpl
from amp_core.residuals import ResidualRequest, residual_sizes

Array = NDArray[np.float64]


@dataclass(frozen=True)
class KalmanParams:
    """Settings of ``ekf``.

    Attributes:
        energy_batch: images whose energy residuals make one update.
        force_batch: force components that make one update.
        force_fraction: share of all force components used in one pass (0: energies only).
        initial_covariance: ``P`` starts as this times the identity (parameters are O(1)).
        noise: measurement noise relative to the running mean square residual of each kind.
        process_noise: ``q`` at the first pass; it decays as ``exp(-pass / process_decay)``
            down to ``min_process_noise``.
        process_decay, min_process_noise: see ``process_noise``.
        seed: of the residual order and sampling.
    """

    energy_batch: int = 8
    force_batch: int = 64
    force_fraction: float = 0.02
    initial_covariance: float = 1.0
    noise: float = 1.0
    process_noise: float = 1e-2
    process_decay: float = 2.302
    min_process_noise: float = 1e-6
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("energy_batch", "force_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a whole number >= 0, got {self.seed!r}")
        for name in ("initial_covariance", "noise", "process_decay"):
            _number(self, name, positive=True)
        for name in ("process_noise", "min_process_noise"):
            _number(self, name, positive=False)
        _number(self, "force_fraction", positive=False)
        if self.force_fraction > 1:
            raise ValueError(f"force_fraction must be in [0, 1], got {self.force_fraction!r}")


def _number(params: Any, name: str, *, positive: bool) -> None:
    value = getattr(params, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")


def split(indices: NDArray[np.int64], offsets: NDArray[np.int64], kind: str) -> dict[int, ResidualRequest]:
    """Turn data-set-wide residual indices into one request per chunk (chunk-local indices, sorted chunks).

    Args:
        indices: (m,) int64 global indices (images, or force components) in the wanted order.
        offsets: (n_chunks + 1,) int64 first global index of each chunk.
        kind: ``"images"`` or ``"components"``.
    """
    chunk = np.searchsorted(offsets, indices, side="right") - 1
    requests = {}
    for k in np.unique(chunk):
        local = indices[chunk == k] - offsets[k]
        requests[int(k)] = ResidualRequest.of(**{kind: local})
    return requests


def gather(answers: list[Any]) -> tuple[Array, Array]:
    """Return residuals (m,) and Jacobian (m, n) of the chunks' answers, stacked in chunk order."""
    values = np.concatenate([a.values for a in answers])
    jacobian = np.concatenate([a.jacobian for a in answers], axis=0)
    return values, jacobian


class Kalman:
    """Extended Kalman filter over batches of energy and force residuals (one iteration = one pass)."""

    name = "ekf"

    def __init__(self, params: KalmanParams | None = None) -> None:
        self.params = params or KalmanParams()

    def minimize(self, function: Callable[..., tuple[float, Array]], start: Array, *, maxiter: int,
                 callback: Callable[[Array], None]) -> str:
        """Run ``maxiter`` passes (the training loop stops it earlier on its criteria)."""
        p = self.params
        sizes = residual_sizes(function, "ekf")
        image_offsets = np.concatenate([[0], np.cumsum(sizes[:, 0])])
        force_offsets = np.concatenate([[0], np.cumsum(sizes[:, 1])])
        n_images, n_forces = int(image_offsets[-1]), int(force_offsets[-1])
        x = np.array(start, dtype=np.float64, copy=True)
        covariance = np.asfortranarray(np.eye(len(x)) * p.initial_covariance)  # lower triangle used
        rng = np.random.default_rng(p.seed)
        mean_square = {"images": 0.0, "components": 0.0}
        for sweep in range(maxiter):
            q = max(p.process_noise * math.exp(-sweep / p.process_decay), p.min_process_noise)
            batches = self._batches(rng, n_images, n_forces)
            for kind, indices in batches:
                offsets = image_offsets if kind == "images" else force_offsets
                requests = split(indices, offsets, kind)
                answers = function.residuals(x, requests)  # type: ignore[attr-defined]
                values, jacobian = gather(answers)
                square = float(values @ values) / len(values)
                mean_square[kind] = square if mean_square[kind] == 0.0 else 0.9 * mean_square[kind] + 0.1 * square
                noise = p.noise * mean_square[kind]
                if noise == 0.0:  # every residual of this kind is exactly zero: nothing to learn
                    continue
                x = update(x, covariance, values, jacobian, noise, q)
            callback(x)
        return f"{maxiter} passes over the data done"

    def _batches(self, rng: np.random.Generator, n_images: int, n_forces: int
                 ) -> list[tuple[str, NDArray[np.int64]]]:
        """Return one pass's batches: (kind, global indices), energy and force batches shuffled together."""
        p = self.params
        images = rng.permutation(n_images)
        batches = [("images", images[k:k + p.energy_batch]) for k in range(0, n_images, p.energy_batch)]
        n_sampled = int(round(p.force_fraction * n_forces))
        if n_sampled:
            forces = rng.choice(n_forces, size=n_sampled, replace=False)
            batches += [("components", forces[k:k + p.force_batch]) for k in range(0, n_sampled, p.force_batch)]
        order = rng.permutation(len(batches))
        return [batches[k] for k in order]


def update(x: Array, covariance: Array, values: Array, jacobian: Array, noise: float, q: float) -> Array:
    """Return the filter's state after the residuals ``values`` (m,) with rows ``jacobian`` (m, n); update ``covariance``.

    ``covariance`` (n, n) is Fortran-ordered and only its lower triangle is read and
    written (BLAS ``symm``/``syrk``: about 2 n^2 m flops, the covariance stays exactly
    symmetric). ``noise`` is the measurement variance (the same for all m), ``q`` the
    process noise added to the diagonal.
    """
    from scipy.linalg import blas, cho_factor, solve_triangular

    pj = blas.dsymm(1.0, covariance, np.asfortranarray(jacobian.T), side=0, lower=1)  # (n, m) = P J^T
    a = jacobian @ pj
    a[np.diag_indices_from(a)] += noise
    factor, _ = cho_factor(a, lower=True, overwrite_a=True, check_finite=False)  # A = L L^T
    scaled = solve_triangular(factor, pj.T, lower=True, check_finite=False)  # (m, n) = L^-1 J P
    x = x - scaled.T @ solve_triangular(factor, values, lower=True, check_finite=False)  # K r = P J^T A^-1 r
    blas.dsyrk(-1.0, np.asfortranarray(scaled), beta=1.0, c=covariance, trans=1, lower=1, overwrite_c=1)
    covariance[np.diag_indices_from(covariance)] += q
    return x


@hookimpl
def amp_optimizers() -> list[OptimizerEntry[KalmanParams]]:
    """Register ``ekf``."""
    return [OptimizerEntry(name="ekf", params=KalmanParams, factory=Kalman,
                           summary="Extended Kalman filter over energy and force residuals (n2p2's scheme).")]
