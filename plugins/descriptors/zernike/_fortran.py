"""The compiled (Fortran, ctypes) kernel of the ``zernike`` descriptor: values and derivative blocks.

The kernel ``zernike_kernels.f90`` beside this module computes the same numbers as
:mod:`~amp_plugins.descriptors.zernike._kernel` from the same inputs (the tables of
:mod:`~amp_plugins.descriptors.zernike._basis`, the neighbour list and the derivative-block
numbering of :mod:`~amp_plugins.descriptors.gaussian._neighbors`), looping over centres and
their neighbour images.
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from amp_core.compiled import bind, probe_kernels, refused
from amp_plugins.descriptors.gaussian._neighbors import kernel_slots

if TYPE_CHECKING:  # the descriptor imports this module for its probe: keep that cheap
    from amp_plugins.descriptors.gaussian._neighbors import DerivativeBlocks, Neighbours
    from amp_plugins.descriptors.gaussian._params import Cutoff
    from amp_plugins.descriptors.zernike._basis import Basis

PACKAGE = "amp_plugins.descriptors.zernike"
STEM = "zernike_kernels"
ABI_VERSION = 1
CUTOFF_CODES = {"Cosine": 1, "Polynomial": 2}
ERRORS = {
    1: "a size argument is negative or inconsistent",
    2: "an atom's element code is out of range (atom {index})",
    3: "the neighbour offsets are not ascending from 0 to the entry count (centre {index})",
    4: "a neighbour atom index is out of range (entry {index})",
    5: "a term of the basis table is out of range (term {index})",
    6: "the cutoff kind is unknown or Rc <= 0",
    7: "a derivative block index is out of range (entry {index})",
    8: "two atoms overlap: neighbour entry {index} is at zero distance from its centre",
    9: "the kernel could not allocate its scratch memory",
}

_int = np.ctypeslib.ndpointer(dtype=np.int64, flags="C_CONTIGUOUS")
_real = np.ctypeslib.ndpointer(dtype=np.float64, flags="C_CONTIGUOUS")
_i64, _f64 = ctypes.c_int64, ctypes.c_double
ARGTYPES = [
    *(_i64, _i64, _int, _real),  # atoms: count, element count, element codes, weights
    *(_i64, _int, _int, _real),  # neighbour list
    *(_i64, _f64, _f64),  # cutoff
    *(_i64, _i64, _i64, _real),  # lmax, features, radial table
    *(_i64, _int, _int, _int, _real),  # terms
    *(_i64, _i64, _int, _int, _real, _real, ctypes.POINTER(_i64)),  # derivatives, outputs
]


def _kernel() -> Any:
    """Load the library once per process and return its fingerprint routine.

    Raises:
        PropertyNotImplementedError: the library was not built, or was built for another
            version of this module.
    """
    function = bind(PACKAGE, STEM, "amp_zernike_abi_version", ABI_VERSION,
                    {"amp_zernike_fingerprints": ARGTYPES}).amp_zernike_fingerprints
    return function


def probe() -> str | None:
    """Return why the compiled zernike kernel cannot run here and how to get it, or ``None`` when it can."""
    return probe_kernels(_kernel, PACKAGE, STEM)


def fingerprint(
    basis: Basis,
    cutoff: Cutoff,
    weights: NDArray[np.float64],
    species_of_atom: NDArray[np.int64],
    neighbours: Neighbours,
    blocks: DerivativeBlocks | None,
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
    """Compute every atom's fingerprint and, given the block numbering, its derivative blocks.

    Same arguments and results as :func:`amp_plugins.descriptors.zernike._kernel.fingerprint`
    (to round-off).

    Raises:
        DataError: the kernel refused its input (an inconsistency the checks before it missed).
    """
    n_atoms, n_f = len(species_of_atom), basis.n_features
    n_pairs, slots, own = kernel_slots(blocks, len(neighbours.centre), n_atoms)
    values = np.empty((n_atoms, n_f))
    derivatives = np.empty((n_pairs, 3, n_f))
    gamma = 0.0 if cutoff.gamma is None else float(cutoff.gamma)
    bad = _i64(-1)
    status = _kernel()(
        *(
            n_atoms,
            len(weights),
            np.ascontiguousarray(species_of_atom, np.int64),
            np.ascontiguousarray(weights),
        ),
        *(len(neighbours.centre), neighbours.starts, neighbours.neighbour, neighbours.vectors),
        *(CUTOFF_CODES[cutoff.name], cutoff.Rc, gamma),
        *(basis.nmax, n_f, basis.radial.shape[1], np.ascontiguousarray(basis.radial)),
        *(len(basis.term_feature), basis.term_feature, basis.term_l, basis.term_m, basis.term_scale),
        *(int(blocks is not None), n_pairs, slots, own, values, derivatives, ctypes.byref(bad)),
    )
    if status != 0:
        raise refused("Zernike", STEM, ERRORS, status, bad.value)
    return values, None if blocks is None else derivatives
