"""The compiled (Fortran, ctypes) kernel of the ``gaussian`` descriptor: values and derivative blocks.

The kernel ``gaussian_kernels.f90`` beside this module computes Behler-Parrinello
G2, G4 and G5 functions (Behler, J. Chem. Phys. 134, 074106 (2011)) in Amp's
conventions for one structure. It reads what the numpy kernel reads: the descriptor's
:class:`~amp_plugins.descriptors.gaussian._plan.Plan` (as its flat feature table), the
neighbour list and the derivative-block numbering of
:mod:`~amp_plugins.descriptors.gaussian._neighbors`; one call loops over centres and
neighbour pairs, computing a pair's shared factors (exponentials, cutoffs, cosine) once
for all features.
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from amp_core.compiled import bind, load_library, probe_kernels, refused
from amp_plugins.descriptors.gaussian._neighbors import kernel_slots

if TYPE_CHECKING:  # the descriptor imports this module for its probe: keep that cheap
    from amp_core.protocols import GradientCallback
    from amp_plugins.descriptors.gaussian._neighbors import DerivativeBlocks, Neighbours
    from amp_plugins.descriptors.gaussian._plan import Plan

PACKAGE = "amp_plugins.descriptors.gaussian"
STEM = "gaussian_kernels"
ABI_VERSION = 5
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
    10: "a zeta < 1 function has no finite derivative at a collinear triplet (pair code {index}); rattle the "
        "structure, use zeta >= 1, or train energies only",
    11: "the gradient callback failed (batch starting at atom {index})",
}
SINGULAR = 10
"""Status of a zeta < 1 function without finite derivative at a collinear triplet (see ``_angular.singular_error``)."""

_int = np.ctypeslib.ndpointer(dtype=np.int64, flags="C_CONTIGUOUS")
_real = np.ctypeslib.ndpointer(dtype=np.float64, flags="C_CONTIGUOUS")
_i64, _f64 = ctypes.c_int64, ctypes.c_double
ARGTYPES = [
    *(_i64, _i64, _int, _i64, _int, _int, _real),  # atoms and neighbour list
    *(_i64, _f64, _f64, _f64),  # cutoff (kind, Rc, polynomial gamma, angular Rc)
    *(_i64, _int, _int, _int, _int, _real, _real, _real, _real),  # feature table
    *(_i64, _i64, _int, _int, _real, _real, ctypes.POINTER(_i64)),  # derivatives, outputs
]
BATCH = 64
"""Centres per batch of the one-pass contraction: dE/dG is asked once per batch (fewer, larger
batches cost less Python per call; the kernel keeps no derivatives of a batch, only its dE/dG)."""
CALLBACK = ctypes.CFUNCTYPE(_i64, _i64, ctypes.POINTER(_i64), _i64, _i64,
                            ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_double))
CONTRACT_ARGTYPES = [
    *(_i64, _i64, _int, _i64, _int, _int, _real),  # atoms and neighbour list
    *(_i64, _f64, _f64, _f64),  # cutoff (kind, Rc, polynomial gamma, angular Rc)
    *(_i64, _int, _int, _int, _int, _real, _real, _real, _real),  # feature table
    *(_i64, _i64, CALLBACK, _i64, _real, _real, _real, ctypes.POINTER(_i64)),  # batches, sets, callback, outputs
]


def _kernel() -> Any:
    """Load the library once per process and return its fingerprint routine.

    Raises:
        PropertyNotImplementedError: the library was not built, or was built for another
            version of this module.
    """
    library = bind(PACKAGE, STEM, "amp_gaussian_abi_version", ABI_VERSION,
                   {"amp_gaussian_fingerprints": ARGTYPES, "amp_gaussian_contract": CONTRACT_ARGTYPES})
    function = library.amp_gaussian_fingerprints
    return function


def contract(
    plan: Plan, species_of_atom: NDArray[np.int64], neighbours: Neighbours, gradient: GradientCallback,
    virial: bool, sets: int = 1,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64] | None]:
    """Fingerprints, dE/dR and the virial in one pass (``amp_gaussian_contract``), asking ``gradient`` per batch.

    ``gradient`` answers ``sets`` sets of dE/dG at once, shaped (sets, B, F); each set is
    contracted on its own, sharing the pairs' factors.

    Returns:
        values (n_atoms, F), dE/dR (sets, n_atoms, 3) eV/Angstrom, virial (sets, 3, 3) eV or ``None``.

    Raises:
        DataError: the kernel refused its input. Whatever ``gradient`` raised propagates.
    """
    _kernel()
    library = load_library(PACKAGE, STEM)
    table = plan.table
    n_atoms, f_max = len(species_of_atom), table.n_features
    codes = table.code[species_of_atom]
    failure: list[BaseException] = []

    def answer(n: int, rows: Any, nf: int, n_sets: int, vals: Any, grad: Any) -> int:
        try:
            index = np.ctypeslib.as_array(rows, shape=(n,)).copy()
            given = np.ctypeslib.as_array(vals, shape=(n, nf))
            result = np.asarray(gradient(index, given), dtype=np.float64)
            if result.shape != (n_sets, n, nf):
                raise ValueError(f"the gradient callback returned shape {result.shape}, expected {(n_sets, n, nf)}")
            np.ctypeslib.as_array(grad, shape=(n_sets, n, nf))[...] = result
            return 0
        except BaseException as exc:  # noqa: BLE001 - re-raised after the kernel returns
            failure.append(exc)
            return 1

    callback = CALLBACK(answer)
    values, de_dr, w = np.empty((n_atoms, f_max)), np.empty((sets, n_atoms, 3)), np.empty((sets, 3, 3))
    bad = _i64(-1)
    status = library.amp_gaussian_contract(
        *(n_atoms, len(table.counts), codes, len(neighbours.centre), neighbours.starts),
        *(neighbours.neighbour, neighbours.vectors, *table.cutoff),
        *(f_max, table.counts, table.types, table.el1, table.el2),
        *(table.eta, table.zeta, table.gamma, table.offset),
        *(BATCH, sets, callback, int(virial), values, de_dr, w, ctypes.byref(bad)),
    )
    if failure:
        raise failure[0]
    if status == SINGULAR:
        raise _singular(plan, species_of_atom, neighbours, bad.value)
    if status != 0:
        raise refused("Gaussian", STEM, ERRORS, status, bad.value)
    return values, de_dr, w if virial else None


def probe() -> str | None:
    """Return why the compiled gaussian kernel cannot run here and how to get it, or ``None`` when it can."""
    return probe_kernels(_kernel, PACKAGE, STEM)


def fingerprint(
    plan: Plan,
    species_of_atom: NDArray[np.int64],
    neighbours: Neighbours,
    blocks: DerivativeBlocks | None,
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
    """Compute every atom's fingerprint and, given the block numbering, its derivative blocks.

    Same arguments and results as :func:`amp_plugins.descriptors.gaussian._kernel.fingerprint`
    (to round-off); ``neighbours`` as the half search gives them.

    Raises:
        DataError: with derivatives, three atoms on one line where a zeta < 1 function has no
            finite derivative; or the kernel refused its input (an inconsistency the checks
            before it missed).
    """
    table = plan.table
    n_atoms, f_max = len(species_of_atom), table.n_features
    codes = table.code[species_of_atom]
    n_pairs, slots, own = kernel_slots(blocks, len(neighbours.centre), n_atoms)
    values = np.empty((n_atoms, f_max))
    derivatives = np.empty((n_pairs, 3, f_max))
    bad = _i64(-1)
    status = _kernel()(
        *(n_atoms, len(table.counts), codes, len(neighbours.centre), neighbours.starts),
        *(neighbours.neighbour, neighbours.vectors, *table.cutoff),
        *(f_max, table.counts, table.types, table.el1, table.el2),
        *(table.eta, table.zeta, table.gamma, table.offset),
        *(int(blocks is not None), n_pairs, slots, own, values, derivatives, ctypes.byref(bad)),
    )
    if status == SINGULAR:
        raise _singular(plan, species_of_atom, neighbours, bad.value)
    if status != 0:
        raise refused("Gaussian", STEM, ERRORS, status, bad.value)
    return values, None if blocks is None else derivatives


def _singular(plan: Plan, species_of_atom: NDArray[np.int64], neighbours: Neighbours, code: int) -> Exception:
    """The ``DataError`` naming the collinear triplet of a SINGULAR status (``code`` = entry_j * n_entries + entry_k)."""
    from amp_plugins.descriptors.gaussian._angular import singular_error

    entry_j, entry_k = divmod(code, len(neighbours.centre))
    species = int(species_of_atom[neighbours.centre[entry_j]])
    zeta, gamma = _singular_parameters(plan, species, neighbours, entry_j, entry_k)
    return singular_error(neighbours, entry_j, entry_k, zeta, gamma)


def _singular_parameters(
    plan: Plan, species: int, neighbours: Neighbours, entry_j: int, entry_k: int
) -> tuple[float, float]:
    """Return (zeta, gamma) of the centre's zeta < 1 function closest to 1 + gamma cos = 0 (for the message)."""
    angular = plan.elements[species].angular
    assert angular is not None  # the kernel reports a singular pair only for angular functions
    a, b = neighbours.vectors[entry_j], neighbours.vectors[entry_k]
    cos = float(np.clip(a @ b / np.sqrt((a @ a) * (b @ b)), -1.0, 1.0))
    low = [(float(z), float(g)) for z, g in zip(angular.zeta, angular.gamma) if z < 1.0]
    return min(low, key=lambda zg: 1.0 + zg[1] * cos)
