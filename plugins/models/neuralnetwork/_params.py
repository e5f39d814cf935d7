"""Hyper-parameters of the ``neuralnetwork`` model and their normalisation.

Amp's dictionary formats (``{'Cu': (10, 10)}``, ``{'Cu': {1: W1, 2: W2}}``,
``{'Cu': {'intercept': a, 'slope': b}}``, ``{'Cu': [[min, max], ...]}``) are accepted and
turned into sorted, nested tuples so that the frozen dataclass stays hashable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

ACTIVATIONS = ("tanh", "sigmoid", "linear")

Layers = tuple[int, ...]
Matrix = tuple[tuple[float, ...], ...]


def _layers(value: Any, where: str) -> Layers:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value),)
    if isinstance(value, (str, bytes, dict)):  # "5" would be read as the layers (5,); a dict as its keys
        raise ValueError(f"{where} must be a list of layer sizes such as [10, 10], got {value!r}")
    try:
        layers = tuple(int(n) for n in value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{where} must be a sequence of positive layer sizes, got {value!r}") from None
    if not layers or any(n <= 0 for n in layers) or any(float(n) != float(m) for n, m in zip(layers, value)):
        raise ValueError(f"{where} must be a non-empty sequence of positive integers, got {value!r}")
    if max(layers) > MAX_WIDTH or len(layers) > MAX_DEPTH:
        raise ValueError(f"{where}: at most {MAX_DEPTH} hidden layers of at most {MAX_WIDTH:,} nodes each, "
                         f"got {value!r}")
    return layers


MAX_WIDTH = 10_000
"""Widest hidden layer accepted (a (10000, 10000) network already holds 10^8 weights per element)."""
MAX_DEPTH = 100
"""Most hidden layers accepted."""


def _is_per_element(value: Any) -> bool:
    if isinstance(value, Mapping):
        return True
    return (
        isinstance(value, (tuple, list))
        and len(value) > 0
        and all(isinstance(v, (tuple, list)) and len(v) == 2 and isinstance(v[0], str) for v in value)
    )


def _items(value: Any, what: str) -> list[tuple[str, Any]]:
    """Return sorted ``(symbol, value)`` pairs of a mapping or of a tuple of pairs."""
    items = list(value.items()) if isinstance(value, Mapping) else [tuple(v) for v in value]
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise ValueError(f"{what} must map chemical symbols to values, got entry {item!r}")
    return sorted(items, key=lambda kv: kv[0])


def normalise_hiddenlayers(value: Any) -> Layers | tuple[tuple[str, Layers], ...]:
    """Return ``(n1, n2, ...)`` or sorted ``((symbol, (n1, ...)), ...)``."""
    if _is_per_element(value):
        per_element = tuple((el, _layers(v, f"hiddenlayers[{el!r}]")) for el, v in _items(value, "hiddenlayers"))
        if not per_element:
            raise ValueError("hiddenlayers must give layer sizes, e.g. [10, 10] or {Cu = [10, 10]}; got an empty table")
        return per_element
    return _layers(value, "hiddenlayers")


def _matrix(value: Any, where: str) -> Matrix:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 2 or not np.all(np.isfinite(array)):
        raise ValueError(f"{where} must be a finite 2-D matrix, got shape {array.shape}")
    return tuple(tuple(float(x) for x in row) for row in array)


def _layer_key(key: Any, el: str) -> int:
    try:
        return int(key)
    except (TypeError, ValueError):
        raise ValueError(f"weights[{el!r}] layer keys must be 1, 2, ... (int or str), got {key!r}") from None


def normalise_weights(value: Any) -> tuple[tuple[str, tuple[Matrix, ...]], ...]:
    """Return sorted ``((symbol, (W1, W2, ...)), ...)`` with each ``W`` a tuple of row tuples."""
    out = []
    for el, layers in _items(value, "weights"):
        if isinstance(layers, Mapping):
            keyed = {_layer_key(k, el): w for k, w in layers.items()}
            if sorted(keyed) != list(range(1, len(keyed) + 1)):
                raise ValueError(f"weights[{el!r}] must have layers 1..n, got keys {sorted(keyed)}")
            matrices = [keyed[k] for k in range(1, len(keyed) + 1)]
        else:
            matrices = list(layers)
        if not matrices:
            raise ValueError(f"weights[{el!r}] has no layers")
        out.append((el, tuple(_matrix(w, f"weights[{el!r}][{k + 1}]") for k, w in enumerate(matrices))))
    return tuple(out)


def _scaling(value: Any, el: str) -> tuple[float, float]:
    if isinstance(value, Mapping):
        if set(value) != {"intercept", "slope"}:
            raise ValueError(f"scalings[{el!r}] needs exactly 'intercept' and 'slope', got {sorted(value)}")
        pair = (value["intercept"], value["slope"])
    else:
        pair = tuple(value)
        if len(pair) != 2:
            raise ValueError(f"scalings[{el!r}] must be (intercept, slope), got {value!r}")
    intercept, slope = float(pair[0]), float(pair[1])
    if not (np.isfinite(intercept) and np.isfinite(slope)):
        raise ValueError(f"scalings[{el!r}] must be finite, got {value!r}")
    return intercept, slope


def normalise_scalings(value: Any) -> tuple[tuple[str, tuple[float, float]], ...]:
    """Return sorted ``((symbol, (intercept, slope)), ...)``."""
    return tuple((el, _scaling(v, el)) for el, v in _items(value, "scalings"))


def _ranges(value: Any, el: str) -> tuple[tuple[float, float], ...]:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2 or not np.all(np.isfinite(array)):
        raise ValueError(
            f"fprange[{el!r}] must be a finite list of [min, max] pairs, got shape {array.shape}"
        )
    if np.any(array[:, 1] < array[:, 0]):
        raise ValueError(f"fprange[{el!r}] has a pair with max < min")
    return tuple((float(a), float(b)) for a, b in array)


def normalise_fprange(value: Any) -> tuple[tuple[str, tuple[tuple[float, float], ...]], ...]:
    """Return sorted ``((symbol, ((min, max), ...)), ...)``."""
    return tuple((el, _ranges(v, el)) for el, v in _items(value, "fprange"))


@dataclass(frozen=True)
class NeuralNetworkParams:
    """Hyper-parameters (and optional fixed parameters) of an atom-centred neural network.

    Attributes:
        hiddenlayers: hidden-layer sizes for every element (default (20, 20); Amp's is (5, 5)), or per
            element as Amp's ``{'Cu': (10, 10), 'Pt': (10, 10)}``.
        activation: ``'tanh'``, ``'sigmoid'`` or ``'linear'`` (every layer, output included).
        weights: Amp's ``{'Cu': {1: W1, 2: W2, ...}}``; ``W_k`` has shape
            (n_(k-1) + 1, n_k), last row the biases. ``None``: random (seeded).
        scalings: Amp's ``{'Cu': {'intercept': a, 'slope': b}}`` (eV). ``None``: from
            the training energies.
        fprange: Amp's ``{'Cu': [[min, max], ...]}`` per feature. ``None``: from the
            training fingerprints.
        seed: seed of the random initial weights (``numpy.random.default_rng``).
    """

    hiddenlayers: Any = (20, 20)
    activation: str = "tanh"
    weights: Any = None
    scalings: Any = None
    fprange: Any = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {self.activation!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "hiddenlayers", normalise_hiddenlayers(self.hiddenlayers))
        for name, normalise in (
            ("weights", normalise_weights),
            ("scalings", normalise_scalings),
            ("fprange", normalise_fprange),
        ):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, normalise(value))
        self._check_shapes()

    def layers_of(self, element: str) -> Layers | None:
        """Return the hidden layers of ``element`` (``None`` if a per-element dict lacks it)."""
        if self.hiddenlayers and isinstance(self.hiddenlayers[0], tuple):
            return dict(self.hiddenlayers).get(element)
        return self.hiddenlayers  # type: ignore[return-value]

    def _check_shapes(self) -> None:
        ranges = dict(self.fprange or ())
        for el, matrices in self.weights or ():
            layers = self.layers_of(el)
            n_in = len(matrices[0]) - 1
            sizes = [n_in, *(len(m[0]) for m in matrices)]
            if layers is not None and tuple(sizes[1:-1]) != layers:
                raise ValueError(
                    f"weights[{el!r}] have hidden layers {tuple(sizes[1:-1])}, hiddenlayers says {layers}"
                )
            if sizes[-1] != 1:
                raise ValueError(
                    f"weights[{el!r}]: the last layer must have one output node, has {sizes[-1]}"
                )
            for k, m in enumerate(matrices):
                if len(m) != sizes[k] + 1 or any(len(row) != sizes[k + 1] for row in m):
                    raise ValueError(
                        f"weights[{el!r}][{k + 1}] must have shape ({sizes[k] + 1}, {sizes[k + 1]}), "
                        f"got ({len(m)}, {len(m[0])})"
                    )
            if el in ranges and len(ranges[el]) != n_in:
                raise ValueError(
                    f"fprange[{el!r}] has {len(ranges[el])} features, weights[{el!r}] take {n_in}"
                )
