"""The compiled (Fortran, ctypes) kernel of the ``bispectrum`` descriptor: values and derivative blocks.

The kernel ``bispectrum_kernels.f90`` beside this module does, per centre, what the numpy
kernel :mod:`~amp_plugins.descriptors.bispectrum._kernel` does (same formulas, same
coupling table :mod:`~amp_plugins.descriptors.bispectrum._plan`, same neighbour list and
derivative-block numbering), in one call per structure.
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from amp_core.compiled import bind, probe_kernels, refused
from amp_plugins.descriptors.gaussian._neighbors import kernel_slots

if TYPE_CHECKING:  # the descriptor imports this module for its probe: keep that cheap
    from amp_plugins.descriptors.bispectrum._plan import Plan
    from amp_plugins.descriptors.gaussian._neighbors import DerivativeBlocks, Neighbours
    from amp_plugins.descriptors.gaussian._params import Cutoff

PACKAGE = "amp_plugins.descriptors.bispectrum"
STEM = "bispectrum_kernels"
ABI_VERSION = 1
ERRORS = {
    1: "a size argument is negative or inconsistent",
    3: "the neighbour offsets are not ascending from 0 to the entry count (centre {index})",
    5: "the coupling table has an index out of range (entry {index})",
    6: "the cutoff kind is unknown or Rc <= 0",
    7: "a derivative block index is out of range (entry {index})",
    8: "two atoms overlap: neighbour entry {index} is at zero distance from its centre",
    9: "the kernel could not allocate its scratch memory",
}
CUTOFF_KINDS = {"Cosine": 1, "Polynomial": 2}

_int = np.ctypeslib.ndpointer(dtype=np.int64, flags="C_CONTIGUOUS")
_real = np.ctypeslib.ndpointer(dtype=np.float64, flags="C_CONTIGUOUS")
_i64, _f64 = ctypes.c_int64, ctypes.c_double
ARGTYPES = [
    *(_i64, _i64, _int, _real, _real),  # atoms, neighbour list, weights
    *(_i64, _f64, _f64),  # cutoff
    *(_i64, _i64, _i64, _i64, _int, _int, _int, _int, _real),  # coupling table
    *(_i64, _i64, _int, _int, _real, _real, ctypes.POINTER(_i64)),  # derivatives, outputs
]


def _kernel() -> Any:
    """Load the library once per process and return its fingerprint routine.

    Raises:
        PropertyNotImplementedError: the library was not built, or was built for another
            version of this module.
    """
    function = bind(PACKAGE, STEM, "amp_bispectrum_abi_version", ABI_VERSION,
                    {"amp_bispectrum_fingerprints": ARGTYPES}).amp_bispectrum_fingerprints
    return function


def probe() -> str | None:
    """Return why the compiled bispectrum kernel cannot run here and how to get it, or ``None`` when it can."""
    return probe_kernels(_kernel, PACKAGE, STEM)


def fingerprint(
    plan: Plan,
    cutoff: Cutoff,
    weights: NDArray[np.float64],
    neighbours: Neighbours,
    blocks: DerivativeBlocks | None,
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
    """Compute every atom's bispectrum and, given the block numbering, its derivative blocks.

    Same arguments and results as :func:`amp_plugins.descriptors.bispectrum._kernel.fingerprint`
    (to round-off).

    Raises:
        DataError: the kernel refused its input (an inconsistency the checks before it missed).
    """
    n_atoms, nf = len(neighbours.starts) - 1, plan.n_features
    n_entries = len(neighbours.centre)
    n_pairs, slots, own = kernel_slots(blocks, len(neighbours.centre), n_atoms)
    values = np.empty((n_atoms, nf))
    derivatives = np.empty((n_pairs, 3, nf))
    gamma = 0.0 if cutoff.gamma is None else float(cutoff.gamma)
    bad = _i64(-1)
    status = _kernel()(
        *(n_atoms, n_entries, neighbours.starts, np.ascontiguousarray(neighbours.vectors)),
        np.ascontiguousarray(weights, dtype=np.float64),
        *(CUTOFF_KINDS[cutoff.name], cutoff.Rc, gamma),
        *(plan.two_jmax, plan.size, nf, len(plan.coef), plan.starts),
        *(plan.term_j, plan.term_1, plan.term_2, plan.coef),
        *(int(blocks is not None), n_pairs, slots, own, values, derivatives, ctypes.byref(bad)),
    )
    if status != 0:
        raise refused("Bispectrum", STEM, ERRORS, status, bad.value)
    return values, None if blocks is None else derivatives
