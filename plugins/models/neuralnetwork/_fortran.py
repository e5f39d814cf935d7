"""ctypes wrapper of the compiled neural-network loss kernel (``neuralnetwork_kernels.f90``).

:func:`compiled_loss_evaluator` prepares one shard once (scaled fingerprints, 1-based
index arrays, per-image row ranges, scratch space) and returns a callable that passes
only pointers to the kernel per call. The numbers equal those of the numpy model in
:mod:`amp_plugins.models.neuralnetwork` to round-off; the model definitions are in the
module header of the Fortran source.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from ase.data import atomic_numbers
from numpy.typing import NDArray

from amp_core.compiled import load_library
from amp_core.data import LossParts, LossSettings
from amp_core.errors import ConfigError, DataError, UsageError

PACKAGE = "amp_plugins.models.neuralnetwork"
STEM = "neuralnetwork_kernels"
ACTIVATIONS = {"tanh": 0, "sigmoid": 1, "linear": 2}
SPAN_MIN = 1e-8  # features whose range is at most this stay unscaled (Amp's rule)
CHUNK = 64  # rows per network pass in the kernel (a multiple of LANES)
LANES = 16  # the kernel's LN: its sums over atoms run in LN lanes, so rows are padded to a multiple
PAD = 4  # the kernel's PAD: packed derivative blocks hold a multiple of this many features
POINTERS = (
    "xt",
    "scale",
    "rows",
    "work",
    "bptr",
    "neigh",
    "bpat",
    "boff",
    "dc",
    "pcnt",
    "pidx",
    "bacc",
    "sptr",
    "slot",
)

_I64 = ctypes.c_int64
_PTR = ctypes.c_void_p


def _setup(lib: ctypes.CDLL) -> Any:
    function = lib.amp_nn_loss
    function.argtypes = [_I64] * 7 + [_PTR, _PTR, _I64, _I64] + [_PTR] * 11
    function.restype = None
    return function


def parameter_layout(
    elements: Sequence[str], hiddenlayers: Mapping[str, Sequence[int]], nfeatures: Mapping[str, int]
) -> tuple[dict[str, tuple[int, ...]], dict[str, int], int]:
    """Return each element's layer widths, weight offset (0-based) and the vector length.

    The vector holds, per element in ``elements`` order, every layer's W_k
    (n_(k-1) + 1, n_k) flattened row-major (bias row last); then per element its
    (intercept, slope), starting at ``sum of weights``.
    """
    sizes, offsets, total = {}, {}, 0
    for symbol in elements:
        widths = (int(nfeatures[symbol]), *(int(h) for h in hiddenlayers[symbol]), 1)
        sizes[symbol] = widths
        offsets[symbol] = total
        total += sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:]))
    return sizes, offsets, total + 2 * len(elements)


def scale_fingerprints(
    values: NDArray[np.float64], fprange: Sequence[Sequence[float]]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return scaled fingerprints (n, F) and dx'/dx (F,) for ranges [[min, max], ...] (F, 2)."""
    bounds = np.asarray(fprange, dtype=np.float64).reshape(-1, 2)
    low, span = bounds[:, 0], bounds[:, 1] - bounds[:, 0]
    scaled = span > SPAN_MIN
    safe = np.where(scaled, span, 1.0)
    xs = np.where(scaled, -1.0 + 2.0 * (values - low) / safe, values)
    return np.ascontiguousarray(xs), np.where(scaled, 2.0 / safe, 1.0)


def padded_rows(n: int) -> int:
    """Leading dimension ld of the kernel's per-row arrays for ``n`` rows: an odd multiple of
    ``LANES``, so that the columns of a row (8 ld bytes apart) fall into different cache sets.
    With ld a multiple of 512 (4 KiB of doubles), every column of a row maps to the same L1
    set, and the kernel ran 35% slower on such shards."""
    blocks = max(1, -(-n // LANES))
    return (blocks + 1 - blocks % 2) * LANES


def _element_block(
    arrays: Mapping[str, NDArray[Any]], z: int, symbol: str, fprange: Sequence[Sequence[float]], forces: bool
) -> dict[str, NDArray[Any]]:
    """Prepare one element's kernel arrays (see the Fortran module header)."""
    fp = np.asarray(arrays[f"fp_{z}"], dtype=np.float64)
    if len(fprange) != fp.shape[1]:
        raise DataError(
            f"element {symbol}: the shard has {fp.shape[1]} features per atom but the model's fprange "
            f"has {len(fprange)}; fingerprint with the descriptor the model was initialised with"
        )
    xs, scale = scale_fingerprints(fp, fprange)
    padded = padded_rows(len(fp))
    xt = np.zeros((fp.shape[1], padded))  # Fortran (rows, features), padding rows zero
    xt[:, : len(fp)] = xs.T
    atoms = np.asarray(arrays[f"atoms_{z}"], dtype=np.int64)
    image = np.asarray(arrays["atom_image"], dtype=np.int64)[atoms]
    if np.any(np.diff(image) < 0):
        raise DataError(f"element {symbol}: rows of 'fp_{z}' are not in image order; rebuild the shard")
    rows = np.searchsorted(image, np.arange(len(arrays["natoms"]) + 1)) + 1
    out = {"xt": xt, "scale": scale, "rows": rows.astype(np.int64)}
    if forces:
        out.update(_derivative_block(arrays, z, symbol, atoms, image))
    return out


def _derivative_block(
    arrays: Mapping[str, NDArray[Any]],
    z: int,
    symbol: str,
    atoms: NDArray[np.int64],
    image: NDArray[np.int64],
) -> dict[str, NDArray[Any]]:
    """Return blocks sorted by centre, their CSR pointer, 1-based neighbour indices and packed data."""
    if f"dfp_{z}" not in arrays:
        raise DataError(
            f"element {symbol}: force training needs fingerprint derivatives but the shard has "
            f"none ('dfp_{z}' missing); fingerprint again with derivatives"
        )
    centre = np.asarray(arrays[f"dcentre_{z}"], dtype=np.int64)
    neighbour = np.asarray(arrays[f"dneighbour_{z}"], dtype=np.int64)
    dfp = arrays[f"dfp_{z}"]
    if np.any(np.diff(centre) < 0):  # reshape sorts by centre; anything else is copied once
        order = np.argsort(centre, kind="stable")
        centre, neighbour, dfp = centre[order], neighbour[order], np.asarray(dfp)[order]
    if len(centre) and not np.array_equal(image[centre], np.asarray(arrays["atom_image"])[neighbour]):
        raise DataError(
            f"element {symbol}: a derivative block couples atoms of two different images; "
            "rebuild the shard with amp_core.reshape.build_arrays"
        )
    # Blocks of one kind (self, or the neighbour's element) share the features they can move.
    numbers = np.asarray(arrays["numbers"], dtype=np.int64)[neighbour]
    kind = np.where(atoms[centre] == neighbour, 0, 1 + np.searchsorted(arrays["elements"], numbers))
    packed = pack_blocks(np.asarray(dfp, dtype=np.float64), kind)
    return {
        "bptr": (np.searchsorted(centre, np.arange(len(atoms) + 1)) + 1).astype(np.int64),
        "neigh": neighbour + 1,
        **packed,
        **force_slots(image[centre], neighbour, packed["bpat"], packed["pcnt"], len(arrays["natoms"])),
    }


def force_slots(
    image: NDArray[np.int64],
    neighbour: NDArray[np.int64],
    bpat: NDArray[np.int64],
    pcnt: NDArray[np.int64],
    n_images: int,
) -> dict[str, NDArray[np.int64]]:
    """Give each (pattern, neighbour) pair that occurs in an image a slot of the kernel's force sums.

    Args:
        image: (P,) 0-based image of each block; nondecreasing.
        neighbour: (P,) 0-based shard atom moved by each block.
        bpat: (P,) 1-based pattern of each block; pcnt: (npat,) its feature count.
        n_images: number of images in the shard.

    Returns ``bacc`` (P,) 0-based start of each block's slot within its image's sums (a slot
    of pattern k holds 3 pcnt[k] values), ``sptr`` (n_images + 1,) 1-based first slot of each
    image and ``slot`` (S, 3) per slot: 1-based neighbour, pattern and 0-based start.
    """
    span = np.int64(len(pcnt) + 1)
    top = np.int64(neighbour.max() + 1) if len(neighbour) else np.int64(1)
    key = (image * top + neighbour) * span + bpat
    keys, inverse = np.unique(key, return_inverse=True)
    slot_image = keys // span // top
    slot_pattern = keys % span
    size = 3 * pcnt[slot_pattern - 1]
    start = np.concatenate([[0], np.cumsum(size)[:-1]]).astype(np.int64)
    sptr = np.searchsorted(slot_image, np.arange(n_images + 1)).astype(np.int64)
    start -= start[np.minimum(sptr[slot_image], len(start) - 1)] if len(start) else 0
    slot = np.stack([(keys // span) % top + 1, slot_pattern, start], axis=1).astype(np.int64)
    return {"bacc": start[inverse].astype(np.int64), "sptr": sptr + 1, "slot": slot}


def pack_blocks(dfp: NDArray[np.float64], kind: NDArray[np.int64]) -> dict[str, NDArray[Any]]:
    """Pack derivative blocks (P, 3, F) without the features that are zero in every block of a kind.

    Returns ``bpat`` (P,) 1-based pattern, ``boff`` (P,) 1-based start in ``dc``, ``dc`` the
    packed data (block p: (3, nk) row-major), ``pcnt`` (npat,) features per pattern, padded
    to a multiple of ``PAD`` with zero data, and ``pidx`` (npat, F + PAD) their 1-based
    indices. Only exact zeros are dropped, so products are unchanged.
    """
    nonzero = np.any(dfp != 0.0, axis=1)  # (P, F)
    kinds, bpat = np.unique(kind, return_inverse=True)
    pidx = np.ones((len(kinds), dfp.shape[2] + PAD), dtype=np.int64)
    pcnt = np.zeros(len(kinds), dtype=np.int64)
    features = []
    for k in range(len(kinds)):
        chosen = np.flatnonzero(nonzero[bpat == k].any(axis=0))
        pidx[k, : len(chosen)] = chosen + 1  # the padding points at feature 1 with zero data
        pcnt[k] = -(-len(chosen) // PAD) * PAD
        features.append(chosen)
    sizes = 3 * pcnt[bpat]
    boff = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    dc = np.zeros(max(1, int(sizes.sum())))
    for k, chosen in enumerate(features):
        selected = np.flatnonzero(bpat == k)
        packed = np.zeros((len(selected), 3, pcnt[k]))
        packed[:, :, : len(chosen)] = dfp[np.ix_(selected, np.arange(3), chosen)]  # one copy
        dc[boff[selected, None] + np.arange(3 * pcnt[k])] = packed.reshape(len(selected), -1)
    return {"bpat": bpat.astype(np.int64) + 1, "boff": boff + 1, "dc": dc, "pcnt": pcnt, "pidx": pidx}


class CompiledLossEvaluator:
    """``evaluator(vector) -> LossParts`` of one shard, computed by the Fortran kernel.

    Holds every prepared array (so the pointers stay valid) and the argument list;
    a call fills in only the parameter vector.
    """

    def __init__(
        self, function: Any, header: list[Any], keep: list[Any], n_images: int, settings: LossSettings
    ) -> None:
        self._function = function
        self._settings = settings
        self._header = header
        self._keep = keep  # the arrays the header points into
        self.n_images = n_images
        self.n_parameters = int(header[3])
        self._out = np.zeros(4)
        self._grad = np.zeros(self.n_parameters)

    def __call__(self, vector: NDArray[np.float64]) -> LossParts:
        """Return the shard's loss parts for ``vector`` (n_parameters,) float64."""
        vec = np.ascontiguousarray(vector, dtype=np.float64)
        if vec.shape != (self.n_parameters,):
            raise UsageError(
                f"the parameter vector has shape {vec.shape}, the neural network expects "
                f"({self.n_parameters},); pass the model's own vector()"
            )
        *head, pointers, f, scratch = self._header
        self._function(
            *head, pointers, vec.ctypes.data, f, scratch, self._out.ctypes.data, self._grad.ctypes.data
        )
        out = self._out
        return LossParts(
            loss=self._settings.objective(float(out[0]), float(out[1])),
            energy_loss=float(out[0]),
            force_loss=float(out[1]),
            energy_maxresid=float(out[2]),
            force_maxresid=float(out[3]),
            n_images=self.n_images,
            gradient=self._grad.copy(),
        )


def compiled_loss_evaluator(
    arrays: Mapping[str, NDArray[Any]],
    settings: LossSettings,
    *,
    elements: tuple[str, ...],
    hiddenlayers: Mapping[str, Sequence[int]],
    activation: str,
    fprange: Mapping[str, Sequence[Sequence[float]]],
) -> CompiledLossEvaluator:
    """Prepare one shard for the compiled kernel; return ``evaluator(vector) -> LossParts``.

    Args:
        arrays: the shard's arrays (layout of :mod:`amp_core.reshape`), fingerprints
            included, derivatives too when ``settings.forces``.
        settings: loss coefficients; without ``settings.forces`` every force term is skipped.
        elements: the model's chemical symbols, sorted (the vector's element order).
        hiddenlayers: hidden-layer widths per symbol.
        activation: ``"tanh"``, ``"sigmoid"`` or ``"linear"``.
        fprange: per symbol, [[min, max], ...] (F, 2) of each feature.

    Raises:
        PropertyNotImplementedError: the kernels were not built.
        ConfigError: unknown activation. DataError: the shard does not fit the model.
    """
    if activation not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
    function = _setup(load_library(PACKAGE, STEM))
    forces = settings.forces
    present = [int(z) for z in arrays["elements"]]
    symbols = [_symbol(z, elements) for z in present]
    nfeatures = {s: len(fprange[s]) for s in elements}
    sizes, offsets, nparam = parameter_layout(elements, hiddenlayers, nfeatures)
    blocks = [_element_block(arrays, z, s, fprange[s], forces) for z, s in zip(present, symbols)]
    info, table = _tables(symbols, blocks, sizes, offsets, elements, nparam)
    for block, row in zip(blocks, info):
        block["work"] = np.zeros((int(row[8] + 2 * row[2] + 1), int(row[1])))
    natoms = np.ascontiguousarray(arrays["natoms"], dtype=np.int64)
    ntot = int(natoms.sum())
    keep: dict[str, NDArray[Any]] = {
        "info": info,
        "sizes": table,
        "coef": np.array([settings.energy_coefficient, settings.force_coefficient if settings.forces else 0.0]),
        "natoms": natoms,
        "atomstart": np.concatenate([[0], np.cumsum(natoms)]).astype(np.int64) + 1,
        "eref": np.ascontiguousarray(arrays["energy"], dtype=np.float64),
        "fref": np.ascontiguousarray(arrays["forces"], dtype=np.float64).reshape(ntot, 3),
        "f": np.zeros((ntot, 3)),
        "scratch": np.zeros(_scratch_length(info, int(natoms.max()))),
    }
    pointers = _pointer_table(blocks)
    header: list[Any] = [len(blocks), len(natoms), ntot, nparam, table.shape[1] - 1]
    header += [CHUNK, len(keep["scratch"])]
    header += [keep["info"].ctypes.data, keep["sizes"].ctypes.data, ACTIVATIONS[activation], int(forces)]
    header += [keep[k].ctypes.data for k in ("coef", "natoms", "atomstart", "eref", "fref")]
    header += [ctypes.addressof(pointers), keep["f"].ctypes.data, keep["scratch"].ctypes.data]
    return CompiledLossEvaluator(function, header, [blocks, keep, pointers], len(natoms), settings)


def _scratch_length(info: NDArray[np.int64], max_atoms: int) -> int:
    """Scratch of the kernel: six (CHUNK, H) chunk buffers, or the per-image force sums if larger."""
    widest, features, patterns = int(info[:, 8].max()), int(info[:, 2].max()), int(info[:, 9].max())
    return max(6 * CHUNK * widest, 3 * (features + PAD) * patterns * (max_atoms + 1), 1)


def _symbol(z: int, elements: Sequence[str]) -> str:
    for symbol in elements:
        if atomic_numbers.get(symbol) == z:
            return symbol
    raise DataError(
        f"the shard has atoms with atomic number {z}, which the neural network has no parameters for "
        f"(elements: {', '.join(elements)}); initialise the model on data containing every element"
    )


def _tables(
    symbols: Sequence[str],
    blocks: Sequence[Mapping[str, NDArray[Any]]],
    sizes: Mapping[str, tuple[int, ...]],
    offsets: Mapping[str, int],
    elements: Sequence[str],
    nparam: int,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Return info (E, 12) and layer widths (E, maxL+1) per element present.

    info: [rows, padded rows, F, blocks, layers, weight start, slope, intercept, H,
    patterns, packed length, 0] (indices 1-based).
    """
    maxl = max(len(sizes[s]) - 1 for s in symbols)
    table = np.zeros((len(symbols), maxl + 1), dtype=np.int64)
    info = np.zeros((len(symbols), 12), dtype=np.int64)
    for e, (symbol, block) in enumerate(zip(symbols, blocks)):
        widths = sizes[symbol]
        table[e, : len(widths)] = widths
        intercept = nparam - 2 * len(elements) + 2 * elements.index(symbol)
        n, padded = int(block["rows"][-1] - 1), block["xt"].shape[1]
        npairs = len(block["neigh"]) if "neigh" in block else 0
        npat, ndc = (len(block["pcnt"]), len(block["dc"])) if "dc" in block else (0, 0)
        info[e, :6] = [n, padded, widths[0], npairs, len(widths) - 1, offsets[symbol] + 1]
        info[e, 6:11] = [intercept + 2, intercept + 1, sum(widths[1:]), npat, ndc]
    return info, table


def _pointer_table(blocks: Sequence[Mapping[str, NDArray[Any]]]) -> ctypes.Array[ctypes.c_void_p]:
    """Return a C array (E, len(POINTERS)) of each element's data pointers (null when absent)."""
    values = [block[key].ctypes.data if key in block else None for block in blocks for key in POINTERS]
    return (ctypes.c_void_p * len(values))(*values)
