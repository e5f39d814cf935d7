"""The ``zernike`` descriptor: 3D Zernike fingerprints of atomic environments, as Amp defines them.

A. Khorshidi and A. A. Peterson, "Amp: A modular approach to machine learning in atomistic
simulations", Comput. Phys. Commun. 207, 310 (2016), section 2.2 and Eq. (16); the 3D
Zernike functions of M. Novotni and R. Klein, Comput.-Aided Des. 36, 1047 (2004).

For a centre i, with neighbour images j within Rc (periodic images, the centre's own
included) and d_j = r_ij / Rc:

    c_nlm = sum_j w(element i, element j) fc(r_ij) Z_nlm(d_j)^*,
    G_nl  = sum_{m=-l}^{l} |c_nlm|^2,

one feature per (n, l) with 0 <= l <= n <= nmax and n - l even (n outer, l inner; 12
features for the default nmax 5). Z_nlm = R_nl(|d|) Y_lm in Amp's normalisation, see
:mod:`~amp_plugins.descriptors.zernike._basis`. The weights ``Gs`` are Amp's (default: the
neighbour's atomic number); cutoffs as the ``gaussian`` descriptor's (Cosine, Polynomial).
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
from amp_plugins.descriptors.zernike._fortran import probe  # the library loads only when called
from amp_plugins.descriptors.zernike._params import ZernikeParams

if TYPE_CHECKING:
    from ase import Atoms

    from amp_plugins.descriptors.zernike._basis import Basis

__all__ = ["Zernike", "ZernikeParams"]


class Zernike:
    """Zernike fingerprints (Amp's conventions) with analytic derivatives.

    Attributes:
        kernel: ``"numpy"``, or ``"fortran"`` in the twin :meth:`compiled` returns.
        elements: the sorted element symbols the descriptor covers.
    """

    name = "zernike"
    implemented: frozenset[str] = frozenset({FINGERPRINTS, FINGERPRINT_DERIVATIVES, COMPILED})
    kernel = "numpy"

    def __init__(self, params: ZernikeParams) -> None:
        from ase.data import atomic_numbers

        from amp_plugins.descriptors.zernike._basis import make_basis

        self.params = params
        self.elements: tuple[str, ...] = params.elements
        self.basis: Basis = make_basis(params.nmax)
        self.weights: NDArray[np.float64] = np.array([[w for _, w in row] for _, row in params.Gs])
        numbers = [atomic_numbers[e] for e in self.elements]
        self._species_of_z = np.full(max(numbers) + 1, -1, dtype=np.int64)
        self._species_of_z[numbers] = np.arange(len(numbers))

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
        return (
            f"Zernike(cutoff={self.params.cutoff.todict()}, nmax={self.params.nmax}, "
            f"elements={list(self.elements)}{kernel})"
        )

    def n_features(self, symbol: str) -> int:
        """Return the fingerprint length of atoms of element ``symbol`` (the same for every element)."""
        if symbol not in self.elements:
            raise KeyError(f"the zernike descriptor covers {', '.join(self.elements)}, not {symbol!r}")
        return self.basis.n_features

    def species_of(self, atoms: Atoms) -> NDArray[np.int64]:
        """Return (n_atoms,) int64 index into ``elements`` of each atom.

        Raises:
            DataError: the structure has atoms of an element the descriptor does not cover.
        """
        numbers = np.asarray(atoms.numbers)
        species = self._species_of_z[np.clip(numbers, 0, len(self._species_of_z) - 1)]
        species = np.where(numbers < len(self._species_of_z), species, -1)
        if (species < 0).any():
            unknown = sorted(set(np.asarray(atoms.get_chemical_symbols())[species < 0]))
            first = int(np.nonzero(species < 0)[0][0])
            raise DataError(
                f"the structure ({atoms.get_chemical_formula()}) contains {', '.join(unknown)} (first at atom "
                f"{first}), which the zernike descriptor has no weights for (Gs covers: "
                f"{', '.join(self.elements)}); add them to Gs or elements"
            )
        return species.astype(np.int64)

    def compute(self, atoms: Atoms, derivatives: bool = False) -> ImageFingerprints:
        """Fingerprint one structure.

        Args:
            atoms: the structure (positions in Angstrom; ``pbc`` per axis).
            derivatives: also return d G_i / d R_m for every (i, m) within the cutoff.

        Returns:
            per-atom fingerprints (n_atoms, n_features) float64 (units of weight^2) and,
            with derivatives, the sparse (i, m) blocks (n_pairs, 3, n_features) per Angstrom.

        Raises:
            DataError: an element without weights, overlapping atoms or a bad cell.
        """
        from amp_plugins.descriptors.gaussian._neighbors import derivative_blocks, neighbour_list

        species = self.species_of(atoms)
        neighbours = neighbour_list(atoms, self.params.cutoff.Rc)
        blocks = derivative_blocks(neighbours) if derivatives else None
        if self.kernel == "fortran":
            from amp_plugins.descriptors.zernike._fortran import fingerprint
        else:
            from amp_plugins.descriptors.zernike._kernel import fingerprint
        values, blocks_d = fingerprint(
            self.basis, self.params.cutoff, self.weights, species, neighbours, blocks
        )
        numbers = np.asarray(atoms.numbers, dtype=np.int64).copy()
        lengths = np.full(len(numbers), self.basis.n_features, dtype=np.int64)
        pairs = None if blocks is None else blocks.pairs
        return ImageFingerprints(numbers, values, lengths, pairs, blocks_d)

    def compiled(self) -> Zernike:
        """Return a twin of this descriptor (same parameters) that runs the compiled Fortran kernel.

        Raises:
            PropertyNotImplementedError: the kernel was not built here, saying how to get it.
        """
        return compiled_twin(self, probe)

    def cost(self, atoms: Atoms) -> float:
        """Estimate relative work: atoms plus neighbour images (the work is linear in neighbours)."""
        from amp_plugins.descriptors.gaussian._neighbors import neighbour_counts

        counts = neighbour_counts(atoms, self.params.cutoff.Rc)
        return float(len(atoms) + counts.sum())

    def todict(self) -> dict[str, Any]:
        """Return JSON-serialisable keyword arguments: ``cutoff`` (dict), ``nmax``, ``Gs``, ``elements``."""
        return self.params.todict()

    def amp_parameters(self) -> dict[str, Any]:
        """Return the parameters of Amp's ``Zernike`` giving these fingerprints (for ``.amp`` files)."""
        cutoff = self.params.cutoff
        kwargs = {"Rc": cutoff.Rc} if cutoff.gamma is None else {"Rc": cutoff.Rc, "gamma": cutoff.gamma}
        return {
            "importname": ".descriptor.zernike.Zernike",
            "version": "2016.02",
            "mode": "atom-centered",
            "cutoff": {"name": cutoff.name, "kwargs": kwargs},
            "Gs": {centre: dict(row) for centre, row in self.params.Gs},
            "nmax": self.params.nmax,
            "elements": sorted(self.elements),
        }


@hookimpl
def amp_descriptors() -> list[DescriptorEntry[ZernikeParams]]:
    """Register ``zernike``."""
    return [
        DescriptorEntry(
            name="zernike",
            params=ZernikeParams,
            factory=Zernike,
            summary="3D Zernike fingerprints (Amp's Zernike descriptor), analytic derivatives.",
            probe=probe,
        )
    ]
