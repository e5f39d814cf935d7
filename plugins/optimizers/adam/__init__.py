"""``adam``: Adam over minibatches of chunks, with an exponentially decaying learning rate.

Each iteration is one pass over the training data: the chunks (runs of images, see
:mod:`amp_core.chunks`) are shuffled (seeded) and taken ``batch_chunks`` at a time; every
minibatch gives one Adam step (Kingma & Ba, arXiv:1412.6980) on its loss and gradient. The
learning rate decays as ``learning_rate * 0.5 ** (pass / half_life)``, never below
``min_learning_rate``. With one chunk (small data) every step sees all images: plain Adam.

Deterministic: the same start, data and settings give the same trajectory, so ``--resume``
replays it exactly (:mod:`amp_core.journal`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from amp_core import OptimizerEntry, hookimpl


@dataclass(frozen=True)
class AdamParams:
    """Settings of ``adam``.

    Attributes:
        learning_rate: initial step size (parameters are O(1): Amp's scaled inputs and outputs).
        half_life: passes over the data after which the learning rate has halved.
        min_learning_rate: the floor of the decay.
        batch_chunks: chunks per minibatch (1: the smallest batches the data's chunking allows).
        beta1, beta2, epsilon: Adam's moment decay rates and denominator guard.
        seed: of the chunk shuffling.
    """

    learning_rate: float = 1e-3
    half_life: float = 100.0
    min_learning_rate: float = 1e-5
    batch_chunks: int = 1
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("learning_rate", "half_life", "min_learning_rate", "epsilon"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
        for name, low in (("batch_chunks", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")


class Adam:
    """Adam over shuffled minibatches of chunks (one iteration = one pass over the data)."""

    name = "adam"

    def __init__(self, params: AdamParams | None = None) -> None:
        self.params = params or AdamParams()

    def minimize(self, function: Callable[..., tuple[float, NDArray[np.float64]]], start: NDArray[np.float64],
                 *, maxiter: int, callback: Callable[[NDArray[np.float64]], None]) -> str:
        """Run ``maxiter`` passes over the data (the training loop stops it earlier on its criteria)."""
        p = self.params
        x = np.array(start, dtype=np.float64, copy=True)
        m = np.zeros_like(x)
        v = np.zeros_like(x)
        n_chunks = int(getattr(function, "n_chunks", 1))
        rng = np.random.default_rng(p.seed)
        step = 0
        for sweep in range(maxiter):
            rate = max(p.learning_rate * 0.5 ** (sweep / p.half_life), p.min_learning_rate)
            order = rng.permutation(n_chunks) if n_chunks > 1 else np.zeros(1, dtype=np.int64)
            for first in range(0, len(order), p.batch_chunks):
                batch = order[first:first + p.batch_chunks]
                _, gradient = function(x) if n_chunks == 1 else function(x, chunks=sorted(int(k) for k in batch))
                step += 1
                m = p.beta1 * m + (1.0 - p.beta1) * gradient
                v = p.beta2 * v + (1.0 - p.beta2) * gradient * gradient
                m_hat = m / (1.0 - p.beta1**step)
                v_hat = v / (1.0 - p.beta2**step)
                x = x - rate * m_hat / (np.sqrt(v_hat) + p.epsilon)
            callback(x)
        return f"{maxiter} passes over the data done"


@hookimpl
def amp_optimizers() -> list[OptimizerEntry[AdamParams]]:
    """Register ``adam``."""
    return [OptimizerEntry(name="adam", params=AdamParams, factory=Adam,
                           summary="Adam over shuffled minibatches of chunks, decaying learning rate.")]
