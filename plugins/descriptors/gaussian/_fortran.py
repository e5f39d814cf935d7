"""Compiled (Fortran, ctypes) Gaussian symmetry functions: values and derivative blocks.

The kernel ``gaussian_kernels.f90`` beside this module computes Behler-Parrinello
G2, G4 and G5 functions (Behler, J. Chem. Phys. 134, 074106 (2011)) in Amp's
conventions for one structure. Python finds the neighbours (``vesin``, periodic images
included), groups them by centre, numbers the derivative blocks ``(i, m)`` and hands
everything to Fortran in one call; the kernel loops over centres and neighbour pairs,
computing a pair's shared factors (exponentials, cutoffs, cosine) once for all features.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from ase.data import atomic_numbers, chemical_symbols
from numpy.typing import NDArray

from amp_core.compiled import load_library
from amp_core.data import ImageFingerprints
from amp_core.errors import ConfigError, DataError

PACKAGE = "amp_plugins.descriptors.gaussian"
STEM = "gaussian_kernels"
ABI_VERSION = 1
TYPE_CODES = {"G2": 2, "G4": 4, "G5": 5}
CUTOFF_CODES = {"cosine": 1, "polynomial": 2}
ERRORS = {
    1: "a size argument is negative or inconsistent",
    2: "an atom's element code is out of range (entry {index})",
    3: "the neighbour offsets are not ascending from 0 to the entry count (centre {index})",
    4: "a neighbour atom index is out of range (entry {index})",
    5: "a feature has an unknown type or element code (flat table index {index})",
    6: "the cutoff kind is unknown or Rc <= 0",
    7: "a derivative block index is out of range (entry {index})",
    8: "two atoms overlap: neighbour entry {index} is at zero distance from its centre",
    9: "the kernel could not allocate its scratch memory",
}

_int = np.ctypeslib.ndpointer(dtype=np.int64, flags="C_CONTIGUOUS")
_real = np.ctypeslib.ndpointer(dtype=np.float64, flags="C_CONTIGUOUS")
_i64, _f64 = ctypes.c_int64, ctypes.c_double
ARGTYPES = [
    *(_i64, _i64, _int, _i64, _int, _int, _real),  # atoms and neighbour list
    *(_i64, _f64, _f64),  # cutoff
    *(_i64, _int, _int, _int, _int, _real, _real, _real, _real),  # feature table
    *(_i64, _i64, _int, _int, _real, _real, ctypes.POINTER(_i64)),  # derivatives, outputs
]


def _kernel() -> Any:
    """Load the library once per process and return its fingerprint routine."""
    library = load_library(PACKAGE, STEM)
    function = library.amp_gaussian_fingerprints
    if function.argtypes is None:
        version = library.amp_gaussian_abi_version
        version.restype = _i64
        if version() != ABI_VERSION:
            raise ConfigError(
                f"the compiled kernels {library._name} have ABI version {version()}, this module "
                f"expects {ABI_VERSION}: reinstall amp-core so they are rebuilt"
            )
        function.argtypes = ARGTYPES
        function.restype = _i64
    return function


class FeatureTable:
    """Gaussian symmetry functions flattened into per-element arrays for the kernel.

    Attributes:
        symbols: (E,) chemical symbols with codes 0..E-1: the centre elements (``Gs``
            keys, sorted), then elements only named as neighbours.
        n_centre: number of centre elements (codes below it may be fingerprinted).
        counts: (E,) int64 features per element (0 for neighbour-only elements).
        types, el1, el2: (E, F_max) int64 type code (2, 4, 5) and neighbour element codes.
        eta, zeta, gamma, offset: (E, F_max) float64 parameters (offset in Angstrom).
        code_of_z: (119,) int64 element code of each atomic number, -1 for none.
    """

    def __init__(self, Gs: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        centres = sorted(Gs)
        named = {e for fs in Gs.values() for f in fs for e in _neighbour_elements(f)}
        self.symbols = tuple(centres) + tuple(sorted(named - set(centres)))
        for symbol in self.symbols:
            if symbol not in atomic_numbers:
                raise ConfigError(f"Gaussian descriptor: unknown chemical symbol {symbol!r} in Gs")
        self.n_centre = len(centres)
        code = {s: c for c, s in enumerate(self.symbols)}
        n_el, f_max = len(self.symbols), max([len(fs) for fs in Gs.values()] + [0])
        self.counts = np.zeros(n_el, dtype=np.int64)
        self.types, self.el1, self.el2 = (np.zeros((n_el, f_max), dtype=np.int64) for _ in range(3))
        self.eta, self.zeta, self.gamma, self.offset = (np.zeros((n_el, f_max)) for _ in range(4))
        for symbol in centres:
            e = code[symbol]
            self.counts[e] = len(Gs[symbol])
            for f, feature in enumerate(Gs[symbol]):
                self._set(e, f, feature, code)
        self.code_of_z = np.full(len(chemical_symbols), -1, dtype=np.int64)
        for c, symbol in enumerate(self.symbols[: self.n_centre]):
            self.code_of_z[atomic_numbers[symbol]] = c

    @property
    def n_features(self) -> int:
        """Width of the values array: the most features of any element."""
        return int(self.types.shape[1])

    def _set(self, e: int, f: int, feature: Mapping[str, Any], code: dict[str, int]) -> None:
        kind = str(feature["type"])
        self.types[e, f] = TYPE_CODES[kind]
        neighbours = _neighbour_elements(feature)
        self.el1[e, f] = code[neighbours[0]]
        self.el2[e, f] = code[neighbours[-1]]
        self.eta[e, f] = float(feature["eta"])
        if kind == "G2":
            self.offset[e, f] = float(feature.get("offset", 0.0))
        else:
            self.zeta[e, f] = float(feature["zeta"])
            self.gamma[e, f] = float(feature["gamma"])


def _neighbour_elements(feature: Mapping[str, Any]) -> list[str]:
    """Return the neighbour element(s) a feature dict names: one for G2, two for G4/G5."""
    kind = feature.get("type")
    if kind not in TYPE_CODES:
        raise ConfigError(
            f"Gaussian descriptor: feature {dict(feature)} has type {kind!r}; use one of G2, G4, G5"
        )
    if kind == "G2" and "element" in feature:
        return [str(feature["element"])]
    elements = [str(e) for e in feature.get("elements", ())]
    if kind == "G2" or len(elements) != 2:
        wanted = "one 'element'" if kind == "G2" else "exactly two 'elements'"
        raise ConfigError(f"Gaussian descriptor: feature {dict(feature)} must name {wanted}")
    return elements


def _cutoff(cutoff: Mapping[str, Any]) -> tuple[int, float, float]:
    """Return (kind code, Rc in Angstrom, polynomial gamma) of a cutoff dict."""
    name = str(cutoff.get("name", "")).lower()
    values = dict(cutoff.get("kwargs", {}), **{k: v for k, v in cutoff.items() if k != "kwargs"})
    if name not in CUTOFF_CODES or "Rc" not in values:
        raise ConfigError(
            f"Gaussian descriptor: cutoff {dict(cutoff)} must be {{'name': 'Cosine' or 'Polynomial', "
            "'Rc': radius in Angstrom[, 'gamma': exponent]}"
        )
    return CUTOFF_CODES[name], float(values["Rc"]), float(values.get("gamma", 4.0))


def neighbour_list(atoms: Any, rc: float) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """Return every (centre, neighbour) within ``rc``, periodic images included, sorted by centre.

    Returns:
        centre (P,) int64, neighbour (P,) int64 atom indices and vector (P, 3) float64,
        R_neighbour + shift - R_centre in Angstrom.
    """
    from vesin import NeighborList

    cell, pbc = np.asarray(atoms.cell.array, dtype=np.float64), np.asarray(atoms.pbc, dtype=bool)
    flat = [d for d in range(3) if pbc[d] and not np.any(cell[d])]
    if flat:
        raise DataError(
            f"the structure is periodic along cell vector(s) {flat} but they are zero; "
            "set a cell or make those directions non-periodic (atoms.pbc)"
        )
    positions = np.ascontiguousarray(atoms.positions, dtype=np.float64)
    try:  # the half list is faster to find; each pair is then mirrored
        i, j, vectors = NeighborList(cutoff=rc, full_list=False).compute(
            positions, cell, pbc, quantities="ijD"
        )
    except RuntimeError as error:
        raise DataError(
            f"neighbour search failed on this structure (cell {cell.tolist()}): {error}"
        ) from error
    centre = np.concatenate([i, j]).astype(np.int64)
    order = np.argsort(centre, kind="stable")
    neighbour = np.concatenate([j, i]).astype(np.int64)[order]
    return centre[order], neighbour, np.concatenate([vectors, -vectors])[order]


def derivative_blocks(
    n_atoms: int, centre: NDArray[np.int64], neighbour: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Number the blocks (i, m): m == i and every distinct neighbour atom m of i.

    Returns:
        pairs (n_pairs, 2) int64 sorted by i then m; the block of each neighbour entry
        (P,) int64; the block of each centre itself (n_atoms,) int64.
    """
    keys = np.concatenate([centre * n_atoms + neighbour, np.arange(n_atoms, dtype=np.int64) * (n_atoms + 1)])
    unique, slots = np.unique(keys, return_inverse=True)
    pairs = np.stack(np.divmod(unique, n_atoms), axis=1).astype(np.int64)
    slots = slots.reshape(-1).astype(np.int64)
    return pairs, slots[: len(centre)], slots[len(centre) :]


class CompiledGaussian:
    """Gaussian symmetry-function fingerprints computed by the compiled kernel.

    Args:
        cutoff: ``{'name': 'Cosine' | 'Polynomial', 'Rc': float (Angstrom)[, 'gamma': float]}``.
        Gs: Amp's format, ``{symbol: [feature dict, ...]}``; a feature dict is
            ``{'type': 'G2', 'element', 'eta', 'offset'}`` or ``{'type': 'G4' | 'G5',
            'elements': [a, b], 'eta', 'zeta', 'gamma'}``; feature order = list order.
        elements: optional, as in the ``gaussian`` descriptor's ``todict()``; must name
            exactly the ``Gs`` keys.

    Only the plain parameters are pickled; the library is loaded on first use in each process.
    """

    def __init__(
        self,
        cutoff: Mapping[str, Any],
        Gs: Mapping[str, Sequence[Mapping[str, Any]]],
        elements: Sequence[str] | None = None,
    ) -> None:
        self.cutoff = dict(cutoff)
        self.Gs = {str(s): [dict(f) for f in fs] for s, fs in Gs.items()}
        if elements is not None and sorted(elements) != sorted(self.Gs):
            raise ConfigError(
                f"Gaussian descriptor: elements {list(elements)} differ from the Gs keys {list(self.Gs)}"
            )
        self._cut = _cutoff(self.cutoff)
        self._table = FeatureTable(self.Gs)
        self.elements = self._table.symbols[: self._table.n_centre]

    def __getstate__(self) -> dict[str, Any]:
        return {"cutoff": self.cutoff, "Gs": self.Gs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["cutoff"], state["Gs"])  # type: ignore[misc]

    def compute(self, atoms: Any, derivatives: bool = False) -> ImageFingerprints:
        """Fingerprint one structure (positions in Angstrom).

        Returns:
            values (n_atoms, F_max) float64 zero-padded, lengths (n_atoms,) int64 and, with
            ``derivatives``, pairs (n_pairs, 2) int64 and derivatives (n_pairs, 3, F_max)
            float64 in 1/Angstrom (see :class:`~amp_core.data.ImageFingerprints`).

        Raises:
            DataError: the structure has an element without symmetry functions, overlapping
                atoms or an unusable cell.
        """
        table = self._table
        numbers = np.asarray(atoms.numbers, dtype=np.int64)
        codes = self._element_codes(numbers)
        n_atoms, f_max = len(numbers), table.n_features
        centre, neighbour, vectors = neighbour_list(atoms, self._cut[1])
        first = np.searchsorted(centre, np.arange(n_atoms + 1)).astype(np.int64)
        if derivatives:
            pairs, slots, own = derivative_blocks(n_atoms, centre, neighbour)
        else:
            pairs, slots, own = np.zeros((0, 2), dtype=np.int64), np.zeros(len(centre), np.int64), codes * 0
        values = np.empty((n_atoms, f_max))
        blocks = np.empty((len(pairs), 3, f_max))
        bad = _i64(-1)
        status = _kernel()(
            *(n_atoms, len(table.symbols), codes, len(centre), first, neighbour, vectors, *self._cut),
            *(f_max, table.counts, table.types, table.el1, table.el2),
            *(table.eta, table.zeta, table.gamma, table.offset),
            *(int(derivatives), len(pairs), slots, own, values, blocks, ctypes.byref(bad)),
        )
        if status != 0:
            message = ERRORS.get(status, f"unknown error code {status}").format(index=bad.value)
            raise DataError(f"Gaussian kernel ({STEM}) refused its input: {message}")
        return ImageFingerprints(
            numbers=numbers,
            values=values,
            lengths=table.counts[codes],
            pairs=pairs if derivatives else None,
            derivatives=blocks if derivatives else None,
        )

    def _element_codes(self, numbers: NDArray[np.int64]) -> NDArray[np.int64]:
        """Return each atom's element code; raise DataError naming unknown elements."""
        codes = self._table.code_of_z[np.clip(numbers, 0, len(self._table.code_of_z) - 1)]
        if np.any(codes < 0):
            unknown = sorted({chemical_symbols[z] for z in numbers[codes < 0]})
            raise DataError(
                f"the structure contains element(s) {', '.join(unknown)} but the Gaussian descriptor "
                f"has symmetry functions only for {', '.join(self.elements)}; add Gs for "
                f"{', '.join(unknown)} or remove those atoms"
            )
        return codes
