"""The ``gaussian`` descriptor: Behler-Parrinello atom-centred symmetry functions, as Amp defines them.

J. Behler, "Atom-centered symmetry functions for constructing high-dimensional neural
network potentials", J. Chem. Phys. 134, 074106 (2011); conventions of Amp
(A. Khorshidi and A. A. Peterson, Comput. Phys. Commun. 207, 310 (2016)):

* G2 (neighbour element X; eta, offset Rs):
  sum_j exp(-eta (r_ij - Rs)^2 / Rc^2) fc(r_ij).
* G4 (neighbour elements {A, B}; eta, zeta, gamma): 2^(1 - zeta) times the sum over
  unordered neighbour pairs (j, k) of (1 + gamma cos theta_ijk)^zeta
  exp(-eta (r_ij^2 + r_ik^2 + r_jk^2) / Rc^2) fc(r_ij) fc(r_ik) fc(r_jk).
* G5: G4 without r_jk^2 in the exponent and without fc(r_jk).

zeta may be any positive number, as in Amp. With zeta < 1 the derivative of
(1 + gamma cos)^zeta is infinite where 1 + gamma cos = 0 (three atoms on one line, e.g. an
atom and its own periodic images when a cell vector is shorter than the cutoff): values
are still computed, but asking for derivatives there raises a ``DataError`` naming the
three atoms (Amp returns inf or NaN).

Neighbours are all atoms within Rc, periodic images included (also the centre's own
images). Parameters take Amp's ``Gs`` dictionary verbatim, so Amp settings carry over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from amp_core import DescriptorEntry, hookimpl
from amp_core.compiled import compiled_twin
from amp_core.data import ImageFingerprints
from amp_core.errors import PropertyNotImplementedError
from amp_core.protocols import (
    COMPILED,
    CONTRACT,
    FINGERPRINT_DERIVATIVES,
    FINGERPRINTS,
    NEIGHBOUR_LIST,
    STRAIN_DERIVATIVES,
    Contraction,
    GradientCallback,
)
from amp_plugins.descriptors.gaussian._fortran import probe  # the library loads only when called
from amp_plugins.descriptors.gaussian._params import Cutoff, _number, gs_todict, parse_gs

if TYPE_CHECKING:
    from ase import Atoms

    from amp_plugins.descriptors.gaussian._neighbors import Neighbours, SkinList
    from amp_plugins.descriptors.gaussian._plan import Plan

AMP_IMPORTNAME = ".descriptor.gaussian.Gaussian"
"""Amp's class of the same fingerprints (the ``importname`` of its ``.amp`` files)."""

DEFAULT_G2_ETAS = tuple(float(x) for x in np.logspace(np.log10(0.05), np.log10(5.0), num=4))
"""Amp's default G2 widths (dimensionless; divided by Rc^2 in the exponent)."""


def make_default_symmetry_functions(elements: list[str] | tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    """Return Amp's default ``Gs`` for ``elements`` (in the order given).

    For every centre element: G2 for each eta in logspace(log10 0.05, log10 5, 4) and
    each neighbour element; then G4 with eta 0.005, zeta 1 and 4, gamma +1 and -1,
    for each unordered element pair (``elements[i] <= elements[j]`` by position).
    Two elements give 8 + 12 = 20 features per element.

    Args:
        elements: chemical symbols, e.g. ``['Cu', 'Pt']``.
    """
    elements = list(elements)
    functions: list[dict[str, Any]] = []
    for eta in DEFAULT_G2_ETAS:
        for element in elements:
            functions.append({"type": "G2", "element": element, "eta": eta, "offset": 0.0})
    for eta in (0.005,):
        for zeta in (1.0, 4.0):
            for gamma in (1.0, -1.0):
                for i, el1 in enumerate(elements):
                    for el2 in elements[i:]:
                        functions.append(
                            {
                                "type": "G4",
                                "elements": sorted([el1, el2]),
                                "eta": eta,
                                "zeta": zeta,
                                "gamma": gamma,
                            }
                        )
    return {element: [dict(f) for f in functions] for element in elements}


PRESETS = ("systematic", "amp")
"""Default symmetry-function sets by name: ``systematic`` (the default) and Amp's ``amp``."""

SYSTEMATIC_RADIAL = 8
"""Radial (G2) functions per neighbour element in the ``systematic`` set."""
SYSTEMATIC_INNER = 1.0
"""Angstrom: the first G2 centre of the ``systematic`` set (closer pairs are rare in any chemistry)."""
SYSTEMATIC_ANGULAR_ETAS = (0.2, 1.0, 3.0)
"""Dimensionless angular widths (Amp's convention: divided by Rc^2 in the exponent)."""
SYSTEMATIC_ZETAS = (1.0, 2.0, 4.0, 16.0)


def make_systematic_symmetry_functions(
    elements: list[str] | tuple[str, ...], cutoff: float
) -> dict[str, list[dict[str, Any]]]:
    """Return the ``systematic`` default ``Gs`` for ``elements`` and cutoff radius ``cutoff``.

    The rule (scaled to the cutoff so one set serves any chemistry):

    * radial: for each neighbour element, 8 shifted G2 with centres ``r_s = 1 + k d``
      (k = 0..7, d = (Rc - 1) / 8 Angstrom), each as wide as the spacing
      (``exp(-(r - r_s)^2 / (2 d^2))``, i.e. Amp's dimensionless eta ``Rc^2 / (2 d^2)``),
      so together they resolve the neighbour shells from 1 Angstrom to the cutoff;
    * angular: for each unordered neighbour-element pair, G4 with dimensionless eta
      0.2, 1 and 3 (Amp's convention, ``exp(-eta (Rij^2 + Rik^2 + Rjk^2) / Rc^2)``: from
      triplets across the whole sphere down to the nearest shells), zeta 1, 2, 4, 16 and
      gamma +1, -1.

    One element gives 8 + 24 = 32 features per atom; two give 16 + 72 = 88.

    Args:
        elements: chemical symbols in the order their functions are listed.
        cutoff: cutoff radius Rc, Angstrom.
    """
    elements = list(elements)
    spacing = (cutoff - SYSTEMATIC_INNER) / SYSTEMATIC_RADIAL
    if spacing <= 0:
        raise ValueError(
            f"the systematic symmetry-function set needs a cutoff above {SYSTEMATIC_INNER:g} Angstrom, got {cutoff:g}"
        )
    eta = cutoff * cutoff / (2.0 * spacing * spacing)
    functions: list[dict[str, Any]] = []
    for element in elements:
        for k in range(SYSTEMATIC_RADIAL):
            offset = SYSTEMATIC_INNER + k * spacing
            functions.append({"type": "G2", "element": element, "eta": eta, "offset": offset})
    for i, el1 in enumerate(elements):
        for el2 in elements[i:]:
            for eta_a in SYSTEMATIC_ANGULAR_ETAS:
                for zeta in SYSTEMATIC_ZETAS:
                    for gamma in (1.0, -1.0):
                        functions.append(
                            {"type": "G4", "elements": sorted([el1, el2]), "eta": eta_a, "zeta": zeta, "gamma": gamma}
                        )
    return {element: [dict(f) for f in functions] for element in elements}


@dataclass(frozen=True)
class GaussianParams:
    """Parameters of the ``gaussian`` descriptor (frozen, hashable).

    Attributes:
        cutoff: a radius in Angstrom (Cosine cutoff) or a dict ``{'name': 'Cosine' |
            'Polynomial', 'Rc': ..., 'gamma': ...}`` (Amp 1.0's ``{'name': ...,
            'kwargs': {...}}`` too); normalised to a :class:`Cutoff`.
        Gs: Amp's dict ``{centre symbol: [{'type': 'G2', 'element': 'Pt', 'eta': 0.05,
            'offset': 0.0}, {'type': 'G4', 'elements': ['Cu', 'Pt'], 'eta': 0.005,
            'zeta': 1.0, 'gamma': -1.0}, ...]}``; a feature's position in an atom's
            fingerprint is its position in that list. Normalised to nested tuples.
        elements: symbols; when ``Gs`` is None, the ``preset`` set for them. After
            normalisation it is always the tuple of ``Gs`` keys.
        preset: the set used when ``Gs`` is None: ``"systematic"`` (default,
            :func:`make_systematic_symmetry_functions`, scaled to the cutoff) or
            ``"amp"`` (Amp's minimal default, :func:`make_default_symmetry_functions`).
            After normalisation it is None: ``Gs`` holds the functions.
        angular_cutoff: radius in Angstrom (0 < it <= Rc) of the angular functions (G4, G5),
            or None (default): the cutoff's. The angular functions are then exactly those of
            a descriptor whose cutoff (same kind) has this radius: only neighbours within it,
            every cutoff factor (fc(r_jk) too) and eta's 1/Rc^2 taken at it. A shorter
            angular than radial cutoff (as in ANI) cuts the neighbour triplets, the bulk of
            the work, by (R_angular / Rc)^6 roughly. Normalised to None when equal to Rc.
    """

    cutoff: Any = 6.5
    Gs: Any = None
    elements: Any = None
    preset: Any = None
    angular_cutoff: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "cutoff", Cutoff.parse(self.cutoff))
        object.__setattr__(self, "angular_cutoff", _angular_radius(self.angular_cutoff, self.cutoff.Rc))
        elements = self.elements
        if isinstance(elements, str):
            raise ValueError(f"elements must be a list of symbols such as ['Cu', 'Pt'], got {elements!r}")
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(map(repr, PRESETS))}; got {self.preset!r}")
        if self.Gs is None:
            if not elements:
                raise ValueError(
                    "give either Gs (Amp's symmetry-function dict) or elements (for the default set)"
                )
            if self.preset == "amp":
                gs = parse_gs(make_default_symmetry_functions(list(elements)))
            else:
                gs = parse_gs(make_systematic_symmetry_functions(list(elements), self.cutoff.Rc))
        else:
            if self.preset is not None:
                raise ValueError("give Gs or preset, not both: preset names a default set used when Gs is absent")
            gs = parse_gs(self.Gs)
        keys = tuple(symbol for symbol, _ in gs)
        if len(set(keys)) != len(keys):
            raise ValueError(f"Gs names an element twice: {keys}")
        if elements is not None and sorted(elements) != sorted(keys):
            raise ValueError(f"elements {list(elements)} differ from the elements of Gs {list(keys)}")
        object.__setattr__(self, "Gs", gs)
        object.__setattr__(self, "elements", keys)
        object.__setattr__(self, "preset", None)

    def todict(self) -> dict[str, Any]:
        """Return JSON-serialisable keyword arguments that rebuild these parameters
        (``angular_cutoff`` only when set, so descriptors without one keep their store keys)."""
        out = {"cutoff": self.cutoff.todict(), "Gs": gs_todict(self.Gs), "elements": list(self.elements)}
        if self.angular_cutoff is not None:
            out["angular_cutoff"] = self.angular_cutoff
        return out

    @property
    def angular(self) -> Cutoff:
        """The cutoff function of the angular functions: the cutoff's kind at ``angular_cutoff``."""
        if self.angular_cutoff is None:
            return self.cutoff
        return Cutoff(self.cutoff.name, self.angular_cutoff, self.cutoff.gamma)


def _angular_radius(value: Any, rc: float) -> float | None:
    """Validate ``angular_cutoff`` against the cutoff radius ``rc``; None when absent or equal to ``rc``."""
    if value is None:
        return None
    radius = _number(value, "angular_cutoff (a radius in Angstrom)")
    if not 0 < radius <= rc:
        raise ValueError(
            f"angular_cutoff must be positive and at most the cutoff radius Rc = {rc:g} Angstrom "
            f"(the neighbour list reaches Rc), got {value!r}; raise cutoff or lower angular_cutoff"
        )
    return None if radius == rc else radius


class Gaussian:
    """Gaussian symmetry functions (Behler-Parrinello, Amp's conventions) with analytic derivatives.

    Attributes:
        kernel: ``"numpy"``, or ``"fortran"`` in the twin :meth:`compiled` returns.
    """

    name = "gaussian"
    implemented: frozenset[str] = frozenset(
        {FINGERPRINTS, FINGERPRINT_DERIVATIVES, COMPILED, CONTRACT, STRAIN_DERIVATIVES, NEIGHBOUR_LIST}
    )
    kernel = "numpy"

    def __init__(self, params: GaussianParams) -> None:
        from amp_plugins.descriptors.gaussian._plan import make_plan

        self.params = params
        self.elements: tuple[str, ...] = params.elements
        self.plan: Plan = make_plan(params.Gs, params.cutoff, params.angular)

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
        angular = "" if self.params.angular_cutoff is None else f", angular_cutoff={self.params.angular_cutoff:g}"
        return f"Gaussian(cutoff={self.params.cutoff.todict()}{angular}, elements={list(self.elements)}{kernel})"

    def n_features(self, symbol: str) -> int:
        """Return the fingerprint length of atoms of element ``symbol``."""
        return int(self.plan.lengths[self.plan.species.index(symbol)])

    def compute(self, atoms: Atoms, derivatives: bool = False, neighbours: SkinList | None = None) -> ImageFingerprints:
        """Fingerprint one structure.

        Args:
            atoms: the structure (positions in Angstrom; ``pbc`` per axis).
            derivatives: also return d G_i / d R_m for every (i, m) within the cutoff.
            neighbours: a list from :meth:`neighbours` still valid for ``atoms`` (the
                caller checks), used instead of a new search.

        Returns:
            per-atom fingerprints (n_atoms, n_features) float64 and, with derivatives,
            the sparse (i, m) blocks (n_pairs, 3, n_features) in 1/Angstrom.

        Raises:
            DataError: an element without ``Gs`` entry, overlapping atoms or a bad cell.
        """
        from amp_plugins.descriptors.gaussian._neighbors import derivative_blocks

        species = self.plan.species_of(atoms)
        found = self._neighbour_images(atoms, neighbours)
        blocks = derivative_blocks(found) if derivatives else None
        if self.kernel == "fortran":
            from amp_plugins.descriptors.gaussian._fortran import fingerprint
        else:
            from amp_plugins.descriptors.gaussian._kernel import fingerprint
        values, blocks_d = fingerprint(self.plan, species, found, blocks)
        numbers = np.asarray(atoms.numbers, dtype=np.int64).copy()
        pairs = None if blocks is None else blocks.pairs
        return ImageFingerprints(numbers, values, self.plan.lengths[species], pairs, blocks_d)

    def contract(self, atoms: Atoms, gradient: GradientCallback, *, virial: bool = False,
                 neighbours: SkinList | None = None, sets: int | None = None) -> Contraction:
        """Fingerprint ``atoms`` and contract dE/dG with the derivatives in one pass (no derivative blocks stored).

        Args:
            atoms: the structure.
            gradient: ``gradient(rows, values) -> dE/dG`` (B, F), or (sets, B, F) with ``sets``,
                called once per batch of centres (each atom in one batch) as soon as their
                fingerprints are known.
            virial: also return sum over neighbour images of (dE/d r_ij) outer r_ij (eV):
                the fingerprints' strain derivatives contracted with dE/dG.
            neighbours: a list from :meth:`neighbours` still valid for ``atoms``.
            sets: contract that many sets of dE/dG at once (an ensemble's members): they share
                the fingerprints and every pair's factors, and each gets its own forces and virial.

        Returns:
            fingerprints (n_atoms, F), forces -dE/dR (n_atoms, 3) eV/Angstrom (with ``sets``:
            (sets, n_atoms, 3)), virial (3, 3) (with ``sets``: (sets, 3, 3)) or ``None``.

        Raises:
            ValueError: ``sets`` is not a positive integer. DataError: as :meth:`compute`.
            Whatever ``gradient`` raises propagates.
        """
        count = 1 if sets is None else int(sets)
        if sets is not None and (count != sets or count < 1):
            raise ValueError(f"sets must be a positive integer, got {sets!r}")
        stacked = gradient if sets is not None else (lambda rows, values: np.asarray(gradient(rows, values))[None])
        species = self.plan.species_of(atoms)
        found = self._neighbour_images(atoms, neighbours)
        if self.kernel == "fortran":
            from amp_plugins.descriptors.gaussian._fortran import contract

            values, de_dr, w = contract(self.plan, species, found, stacked, virial, count)
        else:
            from amp_plugins.descriptors.gaussian._kernel import Sink, fingerprint

            sink = Sink(stacked, np.zeros((count, len(species), 3)), np.zeros((count, 3, 3)) if virial else None)
            values, _ = fingerprint(self.plan, species, found, None, sink)
            de_dr, w = sink.de_dr, sink.virial
        if sets is None:
            return Contraction(values, -de_dr[0], None if w is None else w[0])
        return Contraction(values, -de_dr, w)

    def neighbours(self, atoms: Atoms, skin: float) -> SkinList:
        """Return the neighbour images within Rc + ``skin`` (Angstrom), for ``neighbours=`` of :meth:`compute`.

        Valid while no atom moved more than ``skin / 2`` and cell, pbc and numbers are
        unchanged (the caller checks). The entries then are those of a fresh search.
        """
        from amp_plugins.descriptors.gaussian._neighbors import skin_list

        if not skin >= 0:
            raise ValueError(f"skin must be >= 0 Angstrom, got {skin!r}")
        return skin_list(atoms, self.params.cutoff.Rc, skin, half_search=self.kernel == "fortran")

    def _neighbour_images(self, atoms: Atoms, neighbours: SkinList | None) -> Neighbours:
        """The neighbour images within Rc: from ``neighbours`` when given, else a new search."""
        from amp_plugins.descriptors.gaussian._neighbors import from_skin_list, neighbour_list

        compiled = self.kernel == "fortran"
        if neighbours is None or neighbours.half_search != compiled or neighbours.cutoff != self.params.cutoff.Rc:
            return neighbour_list(atoms, self.params.cutoff.Rc, half_search=compiled)
        return from_skin_list(atoms, neighbours, compiled=compiled)

    def compiled(self) -> Gaussian:
        """Return a twin of this descriptor (same parameters) that runs the compiled Fortran kernel.

        Raises:
            PropertyNotImplementedError: the kernel was not built here, saying how to get it.
        """
        return compiled_twin(self, probe)

    def cost(self, atoms: Atoms) -> float:
        """Estimate relative work: atoms plus neighbour images plus neighbour pairs (within the angular cutoff)."""
        from amp_plugins.descriptors.gaussian._neighbors import neighbour_counts

        counts = neighbour_counts(atoms, self.params.cutoff.Rc).astype(np.float64)
        inner = counts if self.params.angular_cutoff is None else \
            neighbour_counts(atoms, self.params.angular_cutoff).astype(np.float64)
        return float(len(atoms) + counts.sum() + 0.5 * (inner * inner).sum())

    def todict(self) -> dict[str, Any]:
        """Return JSON-serialisable keyword arguments: ``cutoff`` (dict), ``Gs``, ``elements``."""
        return self.params.todict()

    def amp_parameters(self) -> dict[str, Any]:
        """Return the parameters of Amp's ``Gaussian`` giving these fingerprints (for ``.amp`` files).

        ``cutoff`` in Amp's ``{'name', 'kwargs'}`` form, ``Gs`` written out (never the
        default-set shorthand), ``elements`` sorted.
        """
        cutoff = self.params.cutoff
        if self.params.angular_cutoff is not None:
            raise PropertyNotImplementedError(
                f"descriptor 'gaussian' with angular_cutoff = {self.params.angular_cutoff:g} Angstrom cannot be "
                "written as an Amp .amp file: Amp's Gaussian has one cutoff for all symmetry functions; save the "
                "potential as amp-core JSON (Potential.save) instead"
            )
        kwargs = {"Rc": cutoff.Rc} if cutoff.gamma is None else {"Rc": cutoff.Rc, "gamma": cutoff.gamma}
        return {
            "importname": AMP_IMPORTNAME,
            "version": "2015.12",
            "mode": "atom-centered",
            "cutoff": {"name": cutoff.name, "kwargs": kwargs},
            "Gs": gs_todict(self.params.Gs),
            "elements": sorted(self.elements),
        }


@hookimpl
def amp_descriptors() -> list[DescriptorEntry[GaussianParams]]:
    """Register ``gaussian``."""
    return [
        DescriptorEntry(
            name="gaussian",
            params=GaussianParams,
            factory=Gaussian,
            summary="Behler-Parrinello Gaussian symmetry functions (Amp's G2/G4/G5), analytic derivatives.",
            probe=probe,
        )
    ]
