"""ctypes wrapper of the compiled neural-network loss kernel (``neuralnetwork_kernels.f90``).

:func:`compiled_loss_evaluator` takes the shard :func:`~._loss.prepare_shard` prepared
for both kernels (checked, inputs scaled) and arranges it once for the kernel (1-based
index arrays, per-image row ranges, packed derivative blocks, scratch space); the
callable it returns passes only pointers to the kernel per call. The numbers equal
those of :class:`~._loss.ShardLoss` to round-off; the model definitions are in the
module header of the Fortran source.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from amp_core.compiled import load_library, probe_kernels
from amp_core.data import LossParts, LossSettings
from amp_core.errors import DataError, UsageError

if TYPE_CHECKING:  # the model imports this module for its probe: keep that cheap
    from ._loss import ElementRows, Layout, Shard

PACKAGE = "amp_plugins.models.neuralnetwork"
STEM = "neuralnetwork_kernels"
ACTIVATIONS = {"tanh": 0, "sigmoid": 1, "linear": 2}
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


def _kernel() -> Any:
    """Load the library once per process and return its loss routine.

    Raises:
        PropertyNotImplementedError: the library was not built.
    """
    function = load_library(PACKAGE, STEM).amp_nn_loss
    if function.argtypes is None:
        function.argtypes = [_I64] * 7 + [_PTR, _PTR, _I64, _I64] + [_PTR] * 11
        function.restype = None
    return function


def _kernel_many() -> Any:
    """The library's routine for several parameter vectors at once, ``None`` in a build without it."""
    library = load_library(PACKAGE, STEM)
    function = getattr(library, "amp_nn_loss_many", None)
    if function is not None and function.argtypes is None:
        function.argtypes = [_I64] * 8 + [_PTR, _PTR, _I64, _I64] + [_PTR] * 12
        function.restype = None
    return function


def probe() -> str | None:
    """Return why the compiled network kernel cannot run here and how to get it, or ``None`` when it can."""
    return probe_kernels(_kernel, PACKAGE, STEM)


def padded_rows(n: int) -> int:
    """Leading dimension ld of the kernel's per-row arrays for ``n`` rows: an odd multiple of
    ``LANES``, so that the columns of a row (8 ld bytes apart) fall into different cache sets.
    With ld a multiple of 512 (4 KiB of doubles), every column of a row maps to the same L1
    set, and the kernel ran 35% slower on such shards."""
    blocks = max(1, -(-n // LANES))
    return (blocks + 1 - blocks % 2) * LANES


def _element_block(shard: Shard, rows: ElementRows, forces: bool) -> dict[str, NDArray[Any]]:
    """Arrange one element's prepared rows as the kernel reads them (see the Fortran module header)."""
    n, width = rows.x.shape
    xt = np.zeros((width, padded_rows(n)))  # Fortran (rows, features), padding rows zero
    xt[:, :n] = rows.x.T
    if np.any(np.diff(rows.image) < 0):
        raise DataError(
            f"element {rows.symbol}: rows of 'fp_{rows.z}' are not in image order; rebuild the shard"
        )
    starts = np.searchsorted(rows.image, np.arange(len(shard.natoms) + 1)) + 1
    out = {"xt": xt, "scale": rows.scale, "rows": starts.astype(np.int64)}
    if forces:
        out.update(_derivative_block(shard, rows))
    return out


def _derivative_block(shard: Shard, rows: ElementRows) -> dict[str, NDArray[Any]]:
    """Return blocks sorted by centre, their CSR pointer, 1-based neighbour indices and packed data."""
    assert rows.centre is not None and rows.neighbour is not None and rows.dfp is not None
    centre, neighbour, dfp = rows.centre, rows.neighbour, rows.dfp
    if np.any(np.diff(centre) < 0):  # reshape sorts by centre; anything else is copied once
        order = np.argsort(centre, kind="stable")
        centre, neighbour, dfp = centre[order], neighbour[order], dfp[order]
    if len(centre) and not np.array_equal(rows.image[centre], shard.atom_image[neighbour]):
        raise DataError(
            f"element {rows.symbol}: a derivative block couples atoms of two different images; "
            "rebuild the shard with amp_core.reshape.build_arrays"
        )
    # Blocks of one kind (self, or the neighbour's element) share the features they can move.
    present = np.array([element.z for element in shard.elements], dtype=np.int64)
    other = 1 + np.searchsorted(present, shard.numbers[neighbour])
    kind = np.where(rows.atoms[centre] == neighbour, 0, other)
    packed = pack_blocks(dfp, kind)
    return {
        "bptr": (np.searchsorted(centre, np.arange(len(rows.atoms) + 1)) + 1).astype(np.int64),
        "neigh": neighbour + 1,
        **packed,
        **force_slots(rows.image[centre], neighbour, packed["bpat"], packed["pcnt"], len(shard.natoms)),
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
        self._residual_source: tuple[Any, ...] = ()
        self._residuals: Any = None
        self._extra_work: list[list[NDArray[np.float64]]] = []

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
        return self._parts(self._out, self._grad.copy())

    def _parts(self, out: NDArray[np.float64], gradient: NDArray[np.float64]) -> LossParts:
        return LossParts(
            loss=self._settings.objective(float(out[0]), float(out[1])),
            energy_loss=float(out[0]),
            force_loss=float(out[1]),
            energy_maxresid=float(out[2]),
            force_maxresid=float(out[3]),
            n_images=self.n_images,
            gradient=gradient,
        )

    def residuals(self, vector: NDArray[np.float64], request: Any) -> Any:
        """Return the :class:`~amp_core.residuals.Residuals` ``request`` names (numpy kernel: no compiled twin yet)."""
        if self._residuals is None:
            from ._jacobian import ShardResiduals

            self._residuals = ShardResiduals(*self._residual_source, self._settings)
        return self._residuals(vector, request)
    def many(self, vectors: Sequence[NDArray[np.float64]]) -> list[LossParts]:
        """Return the loss parts at each of ``vectors`` (an ensemble's members) from one kernel call that reads
        each image's derivative blocks once for all of them; each bit for bit what a call with it alone gives."""
        function = _kernel_many()
        if function is None or len(vectors) == 1:
            return [self(v) for v in vectors]
        vecs = np.ascontiguousarray(np.stack([np.asarray(v, dtype=np.float64) for v in vectors]))
        if vecs.shape[1] != self.n_parameters:
            raise UsageError(f"the parameter vectors have {vecs.shape[1]} values, the neural network expects "
                             f"{self.n_parameters}; pass the members' own vector()")
        works = self._works(len(vectors))
        out, grad = np.zeros((len(vectors), 4)), np.zeros((len(vectors), self.n_parameters))
        *head, pointers, f, scratch = self._header
        function(len(vectors), *head, pointers, ctypes.addressof(works), vecs.ctypes.data, f, scratch,
                 out.ctypes.data, grad.ctypes.data)
        return [self._parts(out[m], grad[m].copy()) for m in range(len(vectors))]

    def _works(self, count: int) -> ctypes.Array[ctypes.c_void_p]:
        """Pointers (E, count), Fortran order, to ``count`` sets of per-element work arrays (the first: the
        evaluator's own; the others made once and kept)."""
        blocks = self._keep[0]
        while len(self._extra_work) < count - 1:
            self._extra_work.append([np.zeros_like(block["work"]) for block in blocks])
        sets = [[block["work"] for block in blocks], *self._extra_work[:count - 1]]
        values = [work.ctypes.data for works in sets for work in works]
        return (ctypes.c_void_p * len(values))(*values)


def compiled_loss_evaluator(
    shard: Shard, layout: Layout, activation: str, settings: LossSettings
) -> CompiledLossEvaluator:
    """Arrange one prepared shard for the compiled kernel; return ``evaluator(vector) -> LossParts``.

    The compiled counterpart of :class:`~._loss.ShardLoss`, with the same arguments.

    Args:
        shard: the shard as :func:`~._loss.prepare_shard` prepared it (with derivatives
            and forces when ``settings.forces``).
        layout: where each element's parameters sit in the vector.
        activation: ``"tanh"``, ``"sigmoid"`` or ``"linear"``.
        settings: loss coefficients; without ``settings.forces`` every force term is skipped.

    Raises:
        PropertyNotImplementedError: the kernels were not built.
        DataError: the shard's rows or blocks are not in the order the kernel needs.
    """
    function = _kernel()
    forces = settings.forces
    blocks = [_element_block(shard, rows, forces) for rows in shard.elements]
    info, table = _tables(shard, blocks, layout)
    for block, row in zip(blocks, info):
        block["work"] = np.zeros((int(row[8] + 2 * row[2] + 1), int(row[1])))
    natoms = np.ascontiguousarray(shard.natoms, dtype=np.int64)
    ntot = int(natoms.sum())
    keep: dict[str, NDArray[Any]] = {
        "info": info,
        "sizes": table,
        "coef": np.array([settings.energy_coefficient, settings.force_coefficient if forces else 0.0]),
        "natoms": natoms,
        "atomstart": np.concatenate([[0], np.cumsum(natoms)]).astype(np.int64) + 1,
        "eref": shard.energy,
        "fref": np.zeros((ntot, 3)) if shard.forces is None else shard.forces,
        "f": np.zeros((ntot, 3)),
        "scratch": np.zeros(_scratch_length(info, int(natoms.max()))),
    }
    pointers = _pointer_table(blocks)
    header: list[Any] = [len(blocks), len(natoms), ntot, layout.size, table.shape[1] - 1]
    header += [CHUNK, len(keep["scratch"])]
    header += [keep["info"].ctypes.data, keep["sizes"].ctypes.data, ACTIVATIONS[activation], int(forces)]
    header += [keep[k].ctypes.data for k in ("coef", "natoms", "atomstart", "eref", "fref")]
    header += [ctypes.addressof(pointers), keep["f"].ctypes.data, keep["scratch"].ctypes.data]
    evaluator = CompiledLossEvaluator(function, header, [blocks, keep, pointers], len(natoms), settings)
    evaluator._residual_source = (shard, layout, activation)  # residual Jacobians (numpy) on demand
    return evaluator


def _scratch_length(info: NDArray[np.int64], max_atoms: int) -> int:
    """Scratch of the kernel: six (CHUNK, H) chunk buffers, or the per-image force sums if larger."""
    widest, features, patterns = int(info[:, 8].max()), int(info[:, 2].max()), int(info[:, 9].max())
    return max(6 * CHUNK * widest, 3 * (features + PAD) * patterns * (max_atoms + 1), 1)


def _tables(
    shard: Shard, blocks: Sequence[Mapping[str, NDArray[Any]]], layout: Layout
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Return info (E, 12) and layer widths (E, maxL+1) per element present.

    info: [rows, padded rows, F, blocks, layers, weight start, slope, intercept, H,
    patterns, packed length, 0] (indices 1-based).
    """
    widths = {}
    for rows in shard.elements:
        shapes = [shape for _, shape in layout.weights[rows.symbol]]
        widths[rows.symbol] = (shapes[0][0] - 1, *(columns for _, columns in shapes))
    maxl = max(len(w) - 1 for w in widths.values())
    table = np.zeros((len(blocks), maxl + 1), dtype=np.int64)
    info = np.zeros((len(blocks), 12), dtype=np.int64)
    for e, (rows, block) in enumerate(zip(shard.elements, blocks)):
        width = widths[rows.symbol]
        table[e, : len(width)] = width
        start, intercept = layout.weights[rows.symbol][0][0], layout.scalings[rows.symbol]
        n, padded = int(block["rows"][-1] - 1), block["xt"].shape[1]
        npairs = len(block["neigh"]) if "neigh" in block else 0
        npat, ndc = (len(block["pcnt"]), len(block["dc"])) if "dc" in block else (0, 0)
        info[e, :6] = [n, padded, width[0], npairs, len(width) - 1, start + 1]
        info[e, 6:11] = [intercept + 2, intercept + 1, sum(width[1:]), npat, ndc]
    return info, table


def _pointer_table(blocks: Sequence[Mapping[str, NDArray[Any]]]) -> ctypes.Array[ctypes.c_void_p]:
    """Return a C array (E, len(POINTERS)) of each element's data pointers (null when absent)."""
    values = [block[key].ctypes.data if key in block else None for block in blocks for key in POINTERS]
    return (ctypes.c_void_p * len(values))(*values)
