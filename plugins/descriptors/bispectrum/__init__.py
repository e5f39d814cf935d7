"""The ``bispectrum`` descriptor: the SO(4) bispectrum of the neighbour density, as Amp defines it.

A. P. Bartok, M. C. Payne, R. Kondor and G. Csanyi, "Gaussian Approximation Potentials:
the accuracy of quantum mechanics, without the electrons", Phys. Rev. Lett. 104, 136403
(2010); conventions of Amp 1.0 (A. Khorshidi and A. A. Peterson, Comput. Phys. Commun.
207, 310 (2016)):

* the neighbour density of atom i is sum_k w(element_k) fc(r_k) delta(r - r_k) over the
  neighbour images k within Rc (the centre itself is left out; periodic images of it
  count); w is Amp's per-element weight ``Gs[centre][neighbour]`` (default: the
  neighbour's atomic number);
* a neighbour maps onto the 3-sphere as a rotation by omega = arcsin(r / Rc) about r / r;
  the density coefficients are c^j = sum_k w_k fc(r_k) U^j(r_k), U^j the Wigner matrices;
* features B_{j1 j1 j} = Re sum CG CG conj(c^j) c^{j1} c^{j1} for 2 j1 = 0..2 jmax and
  integer j = 0..min(2 j1, jmax), in that order (51 for jmax = 5).

Unlike Amp, the derivatives d B_i / d R_m are analytic (Thompson et al., J. Comput.
Phys. 285, 316 (2015)), so forces can be trained.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from amp_core import DescriptorEntry, hookimpl
from amp_core.compiled import compiled_twin
from amp_core.data import ImageFingerprints
from amp_core.errors import DataError
from amp_core.protocols import COMPILED, FINGERPRINT_DERIVATIVES, FINGERPRINTS
from amp_plugins.descriptors.bispectrum._fortran import probe  # the library loads only when called
from amp_plugins.descriptors.bispectrum._params import BispectrumParams, default_weights

if TYPE_CHECKING:
    from ase import Atoms

__all__ = ["Bispectrum", "BispectrumParams", "default_weights"]


class Bispectrum:
    """Bispectrum fingerprints (Bartok 2010, Amp's conventions) with analytic derivatives.

    Attributes:
        kernel: ``"numpy"``, or ``"fortran"`` in the twin :meth:`compiled` returns.
    """

    name = "bispectrum"
    implemented: frozenset[str] = frozenset({FINGERPRINTS, FINGERPRINT_DERIVATIVES, COMPILED})
    kernel = "numpy"

    def __init__(self, params: BispectrumParams) -> None:
        self.params = params
        self.elements: tuple[str, ...] | None = params.elements

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and other.params == self.params  # type: ignore[attr-defined]
            and other.kernel == self.kernel  # type: ignore[attr-defined]
        )

    def __hash__(self) -> int:
        return hash((self.name, self.params))

    def __repr__(self) -> str:
        kernel = "" if self.kernel == "numpy" else f", kernel={self.kernel!r}"
        elements = None if self.elements is None else list(self.elements)
        return (
            f"Bispectrum(cutoff={self.params.cutoff.todict()}, jmax={self.params.jmax:g}, "
            f"elements={elements}{kernel})"
        )

    @property
    def n_features(self) -> int:
        """Fingerprint length (the same for every element)."""
        from amp_plugins.descriptors.bispectrum._su2 import features

        return len(features(self.params.jmax))

    def _entry_weights(
        self, atoms: Atoms, centre: NDArray[np.int64], neighbour: NDArray[np.int64]
    ) -> NDArray[np.float64]:
        """Return (n_entries,) float64: the weight of each neighbour image for its centre.

        Raises:
            DataError: the structure has an element the parameters do not weight.
        """
        numbers = np.asarray(atoms.numbers, dtype=np.int64)
        present = sorted(set(numbers.tolist()))
        from ase.data import chemical_symbols

        symbols = [chemical_symbols[z] for z in present]
        if self.elements is not None:
            unknown = [s for s in symbols if s not in self.elements]
            if unknown:
                raise DataError(
                    f"the structure ({atoms.get_chemical_formula()}) contains {', '.join(unknown)}, which the "
                    f"bispectrum descriptor has no weights for (Gs covers: {', '.join(self.elements)}); "
                    "add them to Gs or elements"
                )
        table = np.array([[self.params.weight(c, n) for n in symbols] for c in symbols], dtype=np.float64)
        table = table.reshape(len(symbols), len(symbols))  # (0, 0) for a structure without atoms
        index = np.searchsorted(np.array(present, dtype=np.int64), numbers)
        return table[index[centre], index[neighbour]]

    def compute(self, atoms: Atoms, derivatives: bool = False) -> ImageFingerprints:
        """Fingerprint one structure.

        Args:
            atoms: the structure (positions in Angstrom; ``pbc`` per axis).
            derivatives: also return d B_i / d R_m for every (i, m) within the cutoff.

        Returns:
            per-atom fingerprints (n_atoms, n_features) float64 and, with derivatives,
            the sparse (i, m) blocks (n_pairs, 3, n_features) in 1/Angstrom.

        Raises:
            DataError: an element without weights, overlapping atoms or a bad cell.
        """
        from amp_plugins.descriptors.bispectrum._plan import make_plan
        from amp_plugins.descriptors.gaussian._neighbors import derivative_blocks, neighbour_list

        compiled = self.kernel == "fortran"
        neighbours = neighbour_list(atoms, self.params.cutoff.Rc, half_search=compiled)
        weights = self._entry_weights(atoms, neighbours.centre, neighbours.neighbour)
        blocks = derivative_blocks(neighbours) if derivatives else None
        plan = make_plan(int(round(2 * self.params.jmax)))
        if compiled:
            from amp_plugins.descriptors.bispectrum._fortran import fingerprint
        else:
            from amp_plugins.descriptors.bispectrum._kernel import fingerprint
        values, blocks_d = fingerprint(plan, self.params.cutoff, weights, neighbours, blocks)
        numbers = np.asarray(atoms.numbers, dtype=np.int64).copy()
        lengths = np.full(len(numbers), plan.n_features, dtype=np.int64)
        pairs = None if blocks is None else blocks.pairs
        return ImageFingerprints(numbers, values, lengths, pairs, blocks_d)

    def compiled(self) -> Bispectrum:
        """Return a twin of this descriptor (same parameters) that runs the compiled Fortran kernel.

        Raises:
            PropertyNotImplementedError: the kernel was not built here, saying how to get it.
        """
        return compiled_twin(self, probe)

    def cost(self, atoms: Atoms) -> float:
        """Estimate relative work: atoms (the couplings) plus neighbour images (U and its derivative)."""
        from amp_plugins.descriptors.gaussian._neighbors import neighbour_counts

        counts = neighbour_counts(atoms, self.params.cutoff.Rc).astype(np.float64)
        return float(10.0 * len(atoms) + counts.sum())

    def todict(self) -> dict[str, Any]:
        """Return JSON-serialisable keyword arguments: ``cutoff`` (dict), ``Gs``, ``jmax``, ``elements``."""
        return self.params.todict()

    def amp_parameters(self) -> dict[str, Any]:
        """Return the parameters of Amp's ``Bispectrum`` giving these fingerprints (for ``.amp`` files)."""
        p = self.params
        kwargs = {"Rc": p.cutoff.Rc} if p.cutoff.gamma is None else {"Rc": p.cutoff.Rc, "gamma": p.cutoff.gamma}
        return {
            "importname": ".descriptor.bispectrum.Bispectrum",
            "version": "2016.02",
            "mode": "atom-centered",
            "cutoff": {"name": p.cutoff.name, "kwargs": kwargs},
            "Gs": None if p.Gs is None else {c: dict(row) for c, row in p.Gs},
            "jmax": p.jmax,
            "elements": None if p.elements is None else sorted(p.elements),
        }


@hookimpl
def amp_descriptors() -> list[DescriptorEntry[BispectrumParams]]:
    """Register ``bispectrum``."""
    return [
        DescriptorEntry(
            name="bispectrum",
            params=BispectrumParams,
            factory=Bispectrum,
            summary="Bispectrum of the neighbour density (Bartok 2010, Amp's conventions), analytic derivatives.",
            probe=probe,
        )
    ]
