"""The ``neuralnetwork`` model: Amp's atom-centred feed-forward neural network.

Behler-Parrinello networks (J. Behler and M. Parrinello, Phys. Rev. Lett. 98, 146401
(2007)) as defined in Amp (A. Khorshidi and A. A. Peterson, Comput. Phys. Commun. 207,
310 (2016)): one network per element; inputs scaled per feature to [-1, 1] by
``fprange``; activation on every layer including the single output node; atomic energy
``slope * o_out + intercept``; total energy the sum over atoms; forces ``-dE/dR``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from ase.data import atomic_numbers, chemical_symbols
from numpy.typing import NDArray

from amp_core import ModelEntry, hookimpl
from amp_core.compiled import compiled_twin
from amp_core.data import LossSettings
from amp_core.entries import FileReader
from amp_core.errors import DataError, ModelFileError, UsageError
from amp_core.protocols import ATOMIC_GRADIENT, COMPILED, ENERGY, FORCES, RESIDUAL_JACOBIAN

from . import _ampfile
from . import _core as core
from ._fortran import probe  # the library loads only when called
from ._loss import Layout, ShardLoss, check_width, input_scaling, prepare_shard, symbol_of
from ._params import NeuralNetworkParams

if TYPE_CHECKING:
    from ase import Atoms

    from amp_core.data import ImageFingerprints
    from amp_core.protocols import LossEvaluator

Array = NDArray[np.float64]
FORMAT = "amp-core/neuralnetwork"
VERSION = 1

__all__ = ["NeuralNetwork", "NeuralNetworkParams", "from_dict"]

GROUPS_KEPT = 8
"""How many ``numbers`` arrays :meth:`NeuralNetwork.atomic_gradient` keeps the element grouping of."""


class _Net(NamedTuple):
    """One element's network as prediction uses it: symbol, input width, input scaling, weights, energy scaling."""

    symbol: str
    width: int
    scale: Array
    shift: Array
    weights: list[Array]
    intercept: float
    slope: float


class NeuralNetwork:
    """Atom-centred neural network (one per element), trained on energies and forces.

    Attributes:
        kernel: ``"numpy"``, or ``"fortran"`` in the twin :meth:`compiled` returns (its loss
            evaluators run the compiled kernel).
    """

    name = "neuralnetwork"
    implemented: frozenset[str] = frozenset({ENERGY, FORCES, COMPILED, ATOMIC_GRADIENT, RESIDUAL_JACOBIAN})
    inputs = "fingerprints"
    kernel = "numpy"

    def __init__(self, params: NeuralNetworkParams | None = None) -> None:
        self.params = params or NeuralNetworkParams()
        p = self.params
        self._weights: dict[str, list[Array]] | None = None
        if p.weights is not None:
            self._weights = {el: [np.array(w, dtype=np.float64) for w in ws] for el, ws in p.weights}
        self._scalings: dict[str, tuple[float, float]] | None = dict(p.scalings) if p.scalings else None
        self._fprange: dict[str, Array] | None = None
        if p.fprange is not None:
            self._fprange = {el: np.array(r, dtype=np.float64).reshape(-1, 2) for el, r in p.fprange}
        self._layout: Layout | None = None
        self._penalty_mask: tuple[Layout, Array] | None = None
        self._nets_cache: tuple[Any, Any, Any, dict[int, _Net]] | None = None
        self._groups_cache: dict[tuple[str, bytes], list[tuple[int, NDArray[np.int64] | None]]] = {}

    @property
    def elements(self) -> tuple[str, ...] | None:
        """Sorted symbols that have networks, ``None`` before weights exist."""
        return None if self._weights is None else tuple(sorted(self._weights))

    @property
    def activation(self) -> str:
        """The activation function name."""
        return str(self.params.activation)

    # -- initialisation --------------------------------------------------------------

    def initialize(self, arrays: Sequence[Mapping[str, NDArray[Any]]]) -> None:
        """Fill in fprange, weights and scalings not given, from the training shards.

        Idempotent: what is already set is kept.

        Raises:
            DataError: the shards lack an element's fingerprints or targets, or contain an
                element a given weight set has no network for.
        """
        if self._ready():
            return
        if not arrays:
            raise DataError("neuralnetwork: no training shards to initialise the model from")
        if self._fprange is None:
            self._fprange = _fingerprint_range(arrays)
        elements = sorted(set(self._fprange) | set(_shard_symbols(arrays)))
        if self._weights is None:
            self._weights = self._random_weights(elements)
        for el in elements:
            for what, table in (("weights", self._weights), ("fprange", self._fprange)):
                if el not in table:
                    raise DataError(
                        f"neuralnetwork: element {el} is in the training data but the given {what} "
                        f"cover only {', '.join(sorted(table))}; give {what} for {el} or leave them unset"
                    )
            check_width(
                el, len(self._fprange[el]), self._weights[el][0].shape[0] - 1, "neuralnetwork fprange"
            )
        if self._scalings is None:
            self._scalings = _initial_scalings(arrays, self.activation, sorted(self._weights))
        self._layout = None

    def _ready(self) -> bool:
        return self._weights is not None and self._scalings is not None and self._fprange is not None

    def _random_weights(self, elements: Sequence[str]) -> dict[str, list[Array]]:
        assert self._fprange is not None
        rng = np.random.default_rng(self.params.seed)
        weights = {}
        for el in sorted(elements):
            layers = self.params.layers_of(el)
            if layers is None:
                raise DataError(
                    f"neuralnetwork: hiddenlayers gives no layers for element {el}, found in the training data"
                )
            sizes = [len(self._fprange[el]), *layers, 1]
            weights[el] = []
            for n_in, n_out in zip(sizes[:-1], sizes[1:]):
                eps = np.sqrt(6.0 / (n_in + n_out))
                weights[el].append(rng.uniform(-eps, eps, size=(n_in + 1, n_out)))
        return weights

    # -- parameter vector ------------------------------------------------------------

    def _require(self) -> tuple[dict[str, list[Array]], dict[str, tuple[float, float]], dict[str, Array]]:
        if not self._ready():
            raise UsageError("neuralnetwork: the model has no parameters yet; call initialize(arrays) first")
        assert self._weights is not None and self._scalings is not None and self._fprange is not None
        return self._weights, self._scalings, self._fprange

    @property
    def layout(self) -> Layout:
        """Positions of every parameter in :meth:`vector`."""
        weights, _, _ = self._require()
        if self._layout is None:
            self._layout = Layout.build({el: [w.shape for w in ws] for el, ws in weights.items()})
        return self._layout

    def vector(self) -> Array:
        """Return the flat parameters: each element's ``W_k`` row-major, then (intercept, slope) per element."""
        weights, scalings, _ = self._require()
        layout = self.layout
        out = np.empty(layout.size)
        for el in layout.elements:
            for view, w in zip(layout.views(out, el), weights[el]):
                view[...] = w
            out[layout.scalings[el] : layout.scalings[el] + 2] = scalings[el]
        return out

    def set_vector(self, vector: Array) -> None:
        """Set every weight and scaling from a flat vector (the layout of :meth:`vector`)."""
        layout = self.layout
        vector = np.asarray(vector, dtype=np.float64)
        if vector.shape != (layout.size,):
            raise UsageError(
                f"neuralnetwork: parameter vector has shape {vector.shape}, expected ({layout.size},)"
            )
        self._weights = {el: [v.copy() for v in layout.views(vector, el)] for el in layout.elements}
        self._scalings = {el: (float(vector[i]), float(vector[i + 1])) for el, i in layout.scalings.items()}

    # -- training ------------------------------------------------------------------

    def loss_evaluator(self, arrays: Mapping[str, NDArray[Any]], settings: LossSettings) -> LossEvaluator:
        """Prepare one shard once; return ``evaluator(vector) -> LossParts`` (run by :attr:`kernel`).

        Raises:
            DataError: the shard has an element without a network, fingerprints of the
                wrong width, or (force training) no derivatives.
        """
        _, _, fprange = self._require()
        shard = prepare_shard(arrays, self.layout, fprange, settings.forces)
        if self.kernel == "fortran":
            from amp_plugins.models.neuralnetwork._fortran import compiled_loss_evaluator

            return compiled_loss_evaluator(shard, self.layout, self.activation, settings)
        return ShardLoss(shard, self.layout, self.activation, settings)

    def compiled(self) -> NeuralNetwork:
        """Return a twin of this model (same parameters) whose loss evaluators run the compiled Fortran kernel.

        Raises:
            PropertyNotImplementedError: the kernel was not built here, saying how to get it.
        """
        return compiled_twin(self, probe)

    def regularization(self, vector: Array, overfit: float) -> tuple[float, Array]:
        """Return ``overfit * sum(first-layer non-bias weights^2)`` and its gradient."""
        layout = self.layout
        if self._penalty_mask is None or self._penalty_mask[0] is not layout:  # once per layout
            mask = np.zeros(layout.size, dtype=bool)
            for el in layout.elements:
                offset, (rows, cols) = layout.weights[el][0]
                mask[offset : offset + (rows - 1) * cols] = True
            self._penalty_mask = (layout, mask)
        mask = self._penalty_mask[1]
        vector = np.asarray(vector, dtype=np.float64)
        penalty = float(overfit * np.sum(vector[mask] ** 2))
        return penalty, np.where(mask, 2.0 * overfit * vector, 0.0)

    # -- prediction ----------------------------------------------------------------

    def predict(
        self, atoms: Atoms, fingerprints: ImageFingerprints | None, forces: bool
    ) -> tuple[float, Array | None]:
        """Return the energy (eV) and, with ``forces``, the forces (n_atoms, 3) eV/A of one structure.

        Raises:
            DataError: an element without a network, or fingerprints of the wrong length.
        """
        weights, scalings, fprange = self._require()
        if fingerprints is None:
            raise DataError("neuralnetwork needs fingerprints; it cannot use the 'none' descriptor")
        if forces and not fingerprints.has_derivatives:
            raise DataError("neuralnetwork: forces need fingerprints computed with derivatives=True")
        numbers = np.asarray(fingerprints.numbers)
        known = tuple(sorted(weights))
        energy = 0.0
        gradient = np.zeros_like(fingerprints.values, dtype=np.float64)
        for z in np.unique(numbers):
            el = symbol_of(int(z), known, "prediction")
            rows = np.flatnonzero(numbers == z)
            width = len(fprange[el])
            for length in np.unique(fingerprints.lengths[rows]):
                check_width(el, int(length), width, "prediction")
            scale, shift = input_scaling(fprange[el])
            outputs = core.forward(
                fingerprints.values[rows, :width] * scale + shift, weights[el], self.activation
            )
            intercept, slope = scalings[el]
            energy += float(slope * outputs[-1].sum() + intercept * len(rows))
            if forces:
                fprimes = core.derivatives(outputs, self.activation)
                gradient[rows, :width] = core.input_gradient(weights[el], fprimes, slope) * scale
        if not forces:
            return energy, None
        assert fingerprints.pairs is not None and fingerprints.derivatives is not None
        centre, moved = fingerprints.pairs[:, 0], fingerprints.pairs[:, 1]
        width = gradient.shape[1]
        per_pair = np.einsum("plf,pf->pl", fingerprints.derivatives[:, :, :width], gradient[centre])
        result = np.zeros((len(numbers), 3))
        np.add.at(result, moved, -per_pair)
        return energy, result

    def atomic_gradient(self, numbers: NDArray[np.int64], values: Array) -> tuple[Array, Array]:
        """Return the atomic energies (B,) eV and dE/dG (B, F) of atoms with fingerprints ``values`` (B, F).

        The energy of a structure is the sum of its atoms' energies, each a function of the
        atom's own fingerprint only (columns past an element's feature count get zero gradient).
        Called at every MD step: the per-element input scaling is computed once per set of
        parameters, and the atoms of each element are grouped once per ``numbers``.

        Raises:
            DataError: an element without a network, or fingerprints narrower than its network.
        """
        nets = self._nets()
        values = np.asarray(values)
        energies = np.empty(len(numbers))
        gradient = np.zeros_like(values, dtype=np.float64)
        for z, rows in self._groups(numbers):
            net = nets.get(z)
            if net is None:
                symbol_of(z, tuple(sorted(net.symbol for net in nets.values())), "prediction")
                raise AssertionError("unreachable: symbol_of raises for an element without a network")
            width = net.width
            if values.shape[1] < width:
                check_width(net.symbol, int(values.shape[1]), width, "prediction")
            block = values[:, :width] if rows is None else np.take(values, rows, axis=0)[:, :width]
            outputs = core.forward(block * net.scale + net.shift, net.weights, self.activation)
            energies[rows if rows is not None else slice(None)] = net.slope * outputs[-1][:, 0] + net.intercept
            fprimes = core.derivatives(outputs, self.activation)
            gradient[rows if rows is not None else slice(None), :width] = (
                core.input_gradient(net.weights, fprimes, net.slope) * net.scale)
        return energies, gradient

    def _nets(self) -> dict[int, _Net]:
        """Atomic number -> its network and input scaling, built once per set of parameters."""
        weights, scalings, fprange = self._require()
        cached = self._nets_cache
        if cached is not None and cached[0] is weights and cached[1] is scalings and cached[2] is fprange:
            return cached[3]
        nets = {}
        for el in weights:
            scale, shift = input_scaling(fprange[el])
            intercept, slope = scalings[el]
            nets[atomic_numbers[el]] = _Net(el, len(fprange[el]), scale, shift, weights[el], intercept, slope)
        self._nets_cache = (weights, scalings, fprange, nets)
        return nets

    def _groups(self, numbers: NDArray[np.int64]) -> list[tuple[int, NDArray[np.int64] | None]]:
        """(atomic number, rows of its atoms) for each element of ``numbers`` in ascending order; rows ``None``:
        all of them. Kept for the last few ``numbers`` (an MD run asks with the same ones every step)."""
        numbers = np.asarray(numbers)
        key = (numbers.dtype.str, numbers.tobytes())
        groups = self._groups_cache.get(key)
        if groups is None:
            present = np.unique(numbers).tolist()
            groups = ([(int(present[0]), None)] if len(present) == 1
                      else [(int(z), np.flatnonzero(numbers == z)) for z in present])
            if len(self._groups_cache) >= GROUPS_KEPT:
                self._groups_cache.pop(next(iter(self._groups_cache)))
            self._groups_cache[key] = groups
        return groups

    # -- saving --------------------------------------------------------------------

    def todict(self) -> dict[str, Any]:
        """Return a JSON document: hyper-parameters plus the trained weights, scalings and fprange."""
        p = self.params
        hidden = p.hiddenlayers
        doc: dict[str, Any] = {
            "name": self.name,
            "format": FORMAT,
            "version": VERSION,
            "params": {
                "hiddenlayers": {el: list(h) for el, h in hidden} if _per_element(hidden) else list(hidden),
                "activation": p.activation,
                "seed": p.seed,
            },
            "activation": p.activation,
            "elements": list(self.elements) if self.elements else None,
            "hiddenlayers": None,
            "weights": None,
            "scalings": None,
            "fprange": None,
        }
        if self._weights is not None:
            doc["hiddenlayers"] = {
                el: [w.shape[1] for w in ws[:-1]] for el, ws in sorted(self._weights.items())
            }
            doc["weights"] = {
                el: {str(k + 1): w.tolist() for k, w in enumerate(ws)}
                for el, ws in sorted(self._weights.items())
            }
        if self._scalings is not None:
            doc["scalings"] = {
                el: {"intercept": a, "slope": b} for el, (a, b) in sorted(self._scalings.items())
            }
        if self._fprange is not None:
            doc["fprange"] = {el: r.tolist() for el, r in sorted(self._fprange.items())}
        return doc


    def amp_parameters(self) -> dict[str, Any]:
        """Return the parameters of Amp's ``NeuralNetwork`` predicting as this model does (for ``.amp`` files).

        Weights ``{element: {layer: array (n_in + 1, n_out)}}`` (bias last row), scalings
        ``{element: {'intercept', 'slope'}}`` (eV) and fprange ``{element: array (F, 2)}``;
        ``None`` where not yet set (Amp then initialises them when it trains).
        """
        weights = scalings = fprange = None
        hidden: Any = self.params.hiddenlayers
        hidden = {el: tuple(h) for el, h in hidden} if _per_element(hidden) else tuple(hidden)
        if self._weights is not None:
            weights = {el: {k + 1: w.copy() for k, w in enumerate(ws)} for el, ws in sorted(self._weights.items())}
            hidden = {el: tuple(int(w.shape[1]) for w in ws[:-1]) for el, ws in sorted(self._weights.items())}
        if self._scalings is not None:
            scalings = {el: {"intercept": a, "slope": b} for el, (a, b) in sorted(self._scalings.items())}
        if self._fprange is not None:
            fprange = {el: r.copy() for el, r in sorted(self._fprange.items())}
        return {
            "importname": _ampfile.MODEL_IMPORTNAME,
            "version": "2015.12",
            "mode": "atom-centered",
            "hiddenlayers": hidden,
            "activation": self.params.activation,
            "weights": weights,
            "scalings": scalings,
            "fprange": fprange,
        }


def _per_element(hidden: Any) -> bool:
    return bool(hidden) and isinstance(hidden[0], tuple)


def from_dict(doc: Mapping[str, Any]) -> NeuralNetwork:
    """Rebuild a model (trained parameters included) from :meth:`NeuralNetwork.todict`.

    Raises:
        ModelFileError: the document is of another model, format or version, or is incomplete.
    """
    if not isinstance(doc, Mapping) or doc.get("name") != "neuralnetwork":
        name = doc.get("name") if isinstance(doc, Mapping) else type(doc).__name__
        raise ModelFileError(f"not a neuralnetwork model document (name {name!r})")
    if doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise ModelFileError(
            f"neuralnetwork document of format {doc.get('format')!r} version {doc.get('version')!r}; "
            f"this amp-core reads format {FORMAT!r} version {VERSION}. Re-save it with a matching amp-core."
        )
    try:
        params = doc["params"]
        hidden = doc.get("hiddenlayers") or params["hiddenlayers"]
        built = NeuralNetworkParams(
            hiddenlayers=hidden,
            activation=doc.get("activation", params.get("activation", "tanh")),
            weights=doc.get("weights"),
            scalings=doc.get("scalings"),
            fprange=doc.get("fprange"),
            seed=params.get("seed", 0),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(
            f"neuralnetwork document is incomplete or invalid: {type(exc).__name__}: {exc}"
        ) from exc
    return NeuralNetwork(built)


def _shard_symbols(arrays: Sequence[Mapping[str, NDArray[Any]]]) -> list[str]:
    return sorted({chemical_symbols[int(z)] for a in arrays for z in np.asarray(a["elements"])})


def _fingerprint_range(arrays: Sequence[Mapping[str, NDArray[Any]]]) -> dict[str, Array]:
    """Return per element the (F, 2) [min, max] of every feature over all shards."""
    lows: dict[str, Array] = {}
    highs: dict[str, Array] = {}
    for a in arrays:
        for z in np.asarray(a["elements"]):
            key = f"fp_{int(z)}"
            if key not in a:
                raise DataError(f"neuralnetwork: training shard has no fingerprints for element {int(z)}")
            fp = np.asarray(a[key])
            el = chemical_symbols[int(z)]
            if el in lows and lows[el].shape[0] != fp.shape[1]:
                raise DataError(
                    f"neuralnetwork: element {el} has {fp.shape[1]} features in one shard, {len(lows[el])} in another"
                )
            low, high = fp.min(axis=0), fp.max(axis=0)
            lows[el] = np.minimum(lows[el], low) if el in lows else low
            highs[el] = np.maximum(highs[el], high) if el in highs else high
    return {el: np.stack([lows[el], highs[el]], axis=1) for el in lows}


MIN_SPREAD = 0.01
"""eV per atom: the smallest energy spread the initial slope is set from (a zero slope would freeze training)."""


def _initial_scalings(
    arrays: Sequence[Mapping[str, NDArray[Any]]], activation: str, elements: Sequence[str]
) -> dict[str, tuple[float, float]]:
    """Return the initial (intercept, slope) per element: a per-element energy reference.

    The intercepts start from a least-squares fit of the total energies on composition,
    ``E ~ sum_el n_el e_el`` (minimum-norm when compositions do not tell elements apart),
    so the network learns only the remainder; the remainder per atom, ``r = (E - sum
    n_el e_el) / N``, then sets Amp's rule: with tanh, intercept ``e_el + (max r + min
    r) / 2`` and slope ``(max r - min r) / 2``. With one element this is exactly Amp's
    initialisation from the highest and lowest per-atom energies.
    """
    energies = np.concatenate([np.asarray(a["energy"], dtype=np.float64) for a in arrays])
    natoms = np.concatenate([np.asarray(a["natoms"], dtype=np.float64) for a in arrays])
    if energies.size == 0:
        raise DataError("neuralnetwork: no training energies to initialise the scalings from")
    index = {el: k for k, el in enumerate(elements)}
    counts = np.zeros((energies.size, len(elements)))
    row = 0
    for a in arrays:
        image = np.asarray(a["atom_image"]) + row
        for el, k in index.items():
            mine = np.asarray(a["numbers"]) == atomic_numbers[el]
            np.add.at(counts[:, k], image[mine], 1.0)
        row += len(np.asarray(a["energy"]))
    # one element: no fit (the reference folds into the shift; Amp's numbers exactly)
    reference = np.linalg.lstsq(counts, energies, rcond=None)[0] if len(elements) > 1 else np.zeros(1)
    per_atom = (energies - counts @ reference) / natoms
    hi, lo = float(per_atom.max()), float(per_atom.min())
    if hi - lo < MIN_SPREAD:  # energies exactly linear in composition: keep the network's output alive
        hi, lo = (hi + lo + MIN_SPREAD) / 2.0, (hi + lo - MIN_SPREAD) / 2.0
    if activation == "sigmoid":
        shift, slope = lo, hi - lo
    elif activation == "tanh":
        shift, slope = (hi + lo) / 2.0, (hi - lo) / 2.0
    else:
        shift, slope = (hi + lo) / 2.0, 1e-10 * (hi - lo) / 2.0
    return {el: (float(reference[index[el]]) + shift, slope) for el in elements}


def _factory(params: NeuralNetworkParams) -> NeuralNetwork:
    return NeuralNetwork(params)


@hookimpl
def amp_models() -> list[ModelEntry[NeuralNetworkParams]]:
    """Register ``neuralnetwork``."""
    return [
        ModelEntry(
            name="neuralnetwork",
            params=NeuralNetworkParams,
            factory=_factory,
            summary="Amp's atom-centred feed-forward neural network (energies and forces).",
            loader=from_dict,
            readers=(FileReader("Amp .amp", _ampfile.accepts, _ampfile.read_amp_text),),
            probe=probe,
        )
    ]
