"""Batched feed-forward network passes for one element (numpy).

Notation: ``o_0 = x'`` (n_atoms, F) scaled fingerprints; for layer k = 1..L with
``W_k`` of shape (n_(k-1) + 1, n_k) (last row biases), ``net_k = o_(k-1) A_k + b_k`` and
``o_k = f(net_k)``; the atomic energy is ``slope * o_L + intercept`` (eV).

Every pass works on all atoms of an element at once (matrix products over the batch);
no loop runs over atoms.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


def activate(net: Array, activation: str) -> Array:
    """Apply ``f`` in place to ``net`` and return it."""
    if activation == "tanh":
        np.tanh(net, out=net)
    elif activation == "sigmoid":
        np.negative(net, out=net)
        np.exp(net, out=net)
        net += 1.0
        np.reciprocal(net, out=net)
    return net


def slope_of(o: Array, activation: str) -> Array:
    """Return ``f'(net)`` from the layer output ``o = f(net)``."""
    if activation == "tanh":
        return 1.0 - o * o
    if activation == "sigmoid":
        return o * (1.0 - o)
    return np.ones_like(o)


def curvature_factor(o: Array, activation: str) -> Array | None:
    """Return ``f''(net) / f'(net)`` as a function of ``o`` (``None`` for linear)."""
    if activation == "tanh":
        return -2.0 * o
    if activation == "sigmoid":
        return 1.0 - 2.0 * o
    return None


def forward(x: Array, weights: Sequence[Array], activation: str) -> list[Array]:
    """Return ``[o_0, o_1, ..., o_L]``; ``o_L`` has shape (n_atoms, 1)."""
    outputs = [x]
    for w in weights:
        net = outputs[-1] @ w[:-1]
        net += w[-1]
        outputs.append(activate(net, activation))
    return outputs


def derivatives(outputs: Sequence[Array], activation: str) -> list[Array]:
    """Return ``[f'(net_1), ..., f'(net_L)]`` (same shapes as ``o_1..o_L``)."""
    return [slope_of(o, activation) for o in outputs[1:]]


def input_gradient(weights: Sequence[Array], fprimes: Sequence[Array], slope: float) -> Array:
    """Return ``dE_i / dx'_i`` (n_atoms, F) for every atom of the batch.

    Args:
        weights: ``W_1..W_L``.
        fprimes: ``f'(net_1)..f'(net_L)`` from :func:`derivatives`.
        slope: the element's energy slope (eV).
    """
    delta = fprimes[-1] * slope
    for k in range(len(weights) - 1, 0, -1):
        delta = (delta @ weights[k][:-1].T) * fprimes[k - 1]
    return delta @ weights[0][:-1].T


def tangent(direction: Array, weights: Sequence[Array], fprimes: Sequence[Array]) -> list[Array]:
    """Return the forward tangents ``[t_0 = direction, t_1, ..., t_L]``.

    ``t_k`` is the derivative of ``o_k`` along ``direction`` in scaled input space.
    """
    tangents = [direction]
    for w, fp in zip(weights, fprimes):
        t = tangents[-1] @ w[:-1]
        t *= fp
        tangents.append(t)
    return tangents


def backward(
    weights: Sequence[Array],
    outputs: Sequence[Array],
    fprimes: Sequence[Array],
    seed_output: Array,
    tangents: Sequence[Array] | None,
    seed_tangent: float,
    activation: str,
    grads: Sequence[Array],
) -> None:
    """Add the gradient of ``sum(seed_output * o_L) + seed_tangent * sum(t_L)`` to ``grads``.

    One reverse pass through the primal network and, with ``tangents``, through its
    forward tangent (second-order chain rule), for all atoms of the batch at once.

    Args:
        weights: ``W_1..W_L``.
        outputs: ``o_0..o_L`` from :func:`forward`.
        fprimes: ``f'(net_1)..f'(net_L)``.
        seed_output: (n_atoms, 1) adjoint of ``o_L``.
        tangents: ``t_0..t_L`` from :func:`tangent`, or ``None`` (energy only).
        seed_tangent: adjoint of every ``t_L`` entry.
        activation: the activation name.
        grads: views of the gradient, one per ``W_k`` (same shapes); added to.
    """
    o_bar = seed_output
    t_bar = None if tangents is None else np.full_like(seed_output, seed_tangent)
    for k in range(len(weights) - 1, -1, -1):
        fp = fprimes[k]
        net_bar = o_bar * fp
        if tangents is not None and t_bar is not None:
            factor = curvature_factor(outputs[k + 1], activation)
            if factor is not None:
                net_bar += t_bar * factor * tangents[k + 1]
            tn_bar = t_bar * fp
            grads[k][:-1] += tangents[k].T @ tn_bar
        grads[k][:-1] += outputs[k].T @ net_bar
        grads[k][-1] += net_bar.sum(axis=0)
        if k > 0:
            a_t = weights[k][:-1].T
            o_bar = net_bar @ a_t
            if tangents is not None:
                t_bar = tn_bar @ a_t
