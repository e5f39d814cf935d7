"""The descriptor's parameters prepared once for its kernels: a :class:`Plan`.

Both kernels read one plan, built from the validated parameters. The numpy kernel reads
per-element index tables: features with the same radial parameters (G2: eta, offset) or
angular parameters (G4/G5: type, eta, zeta, gamma) share one evaluation per neighbour or
neighbour pair, and the tables say which (neighbour element(s), parameter set) each
feature reads. The compiled kernel reads the same functions as flat arrays
(:class:`FeatureTable`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from amp_core.errors import DataError
from amp_plugins.descriptors.gaussian._params import Cutoff, SymmetryFunction, SymmetryFunctions

if TYPE_CHECKING:
    from ase import Atoms


@dataclass(frozen=True)
class RadialPlan:
    """G2 features of one centre element.

    Attributes:
        eta: (Q,) float64 distinct eta values already divided by Rc^2, 1/Angstrom^2.
        offset: (Q,) float64 matching offsets Rs, Angstrom.
        feature: (n,) int64 position of each G2 feature in the fingerprint.
        element: (n,) int64 species index of the feature's neighbour element.
        param: (n,) int64 index into ``eta``/``offset``.
    """

    eta: NDArray[np.float64]
    offset: NDArray[np.float64]
    feature: NDArray[np.int64]
    element: NDArray[np.int64]
    param: NDArray[np.int64]


@dataclass(frozen=True)
class AngularPlan:
    """G4 and G5 features of one centre element.

    Attributes:
        g4: (P,) bool; True for G4 (r_jk term and fc(r_jk)), False for G5.
        eta: (P,) float64 distinct eta values divided by Rc^2, 1/Angstrom^2.
        zeta: (P,) float64.
        gamma: (P,) float64.
        feature: (n,) int64 position of each angular feature in the fingerprint.
        pair: (n, 2) int64 species indices (sorted) of the neighbour-element pair.
        param: (n,) int64 index into the parameter arrays.
    """

    g4: NDArray[np.bool_]
    eta: NDArray[np.float64]
    zeta: NDArray[np.float64]
    gamma: NDArray[np.float64]
    feature: NDArray[np.int64]
    pair: NDArray[np.int64]
    param: NDArray[np.int64]

    @property
    def any_g5(self) -> bool:
        """Whether some feature has no fc(r_jk) factor (then no pair may be skipped)."""
        return bool((~self.g4).any())

    def by_element(
        self, n_species: int
    ) -> list[tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]]:
        """For each neighbour species X: (features, partner species, params) of pairs containing X."""
        out = []
        for x in range(n_species):
            features, partners, params = [], [], []
            for f, (a, b), p in zip(self.feature, self.pair, self.param):
                if x in (a, b):
                    features.append(f)
                    partners.append(b if a == x else a)
                    params.append(p)
            out.append(
                (np.array(features, np.int64), np.array(partners, np.int64), np.array(params, np.int64))
            )
        return out


@dataclass(frozen=True)
class ElementPlan:
    """Everything needed to fingerprint centres of one element.

    Attributes:
        n_features: length of this element's fingerprint.
        radial: its G2 features, or ``None``.
        angular: its G4/G5 features, or ``None``.
    """

    n_features: int
    radial: RadialPlan | None
    angular: AngularPlan | None


def make_element_plan(
    functions: tuple[SymmetryFunction, ...], species: tuple[str, ...], rc: float, rc_angular: float | None = None
) -> ElementPlan:
    """Build the index tables of one centre element's symmetry functions.

    Args:
        functions: the element's symmetry functions, in fingerprint order.
        species: every symbol the descriptor knows; indices refer to this tuple.
        rc: cutoff radius, Angstrom (the G2 eta is divided by rc^2 here).
        rc_angular: the angular functions' cutoff radius (their eta is divided by its
            square); None: ``rc``.
    """
    index = {s: k for k, s in enumerate(species)}
    radial: dict[tuple[float, float], int] = {}
    angular: dict[tuple[bool, float, float, float], int] = {}
    rows2: list[tuple[int, int, int]] = []
    rows4: list[tuple[int, int, int, int]] = []
    for f, g in enumerate(functions):
        if g.type == "G2":
            q = radial.setdefault((g.eta, g.offset), len(radial))
            rows2.append((f, index[g.elements[0]], q))
        else:
            p = angular.setdefault((g.type == "G4", g.eta, g.zeta, g.gamma), len(angular))
            a, b = sorted((index[g.elements[0]], index[g.elements[1]]))
            rows4.append((f, a, b, p))
    scale = 1.0 / (rc * rc)
    scale_angular = scale if rc_angular is None else 1.0 / (rc_angular * rc_angular)
    radial_plan = None
    if rows2:
        keys = np.array(list(radial), dtype=np.float64).reshape(-1, 2)
        table = np.array(rows2, dtype=np.int64)
        radial_plan = RadialPlan(keys[:, 0] * scale, keys[:, 1].copy(), table[:, 0], table[:, 1], table[:, 2])
    angular_plan = None
    if rows4:
        keys = np.array(list(angular), dtype=np.float64).reshape(-1, 4)
        table = np.array(rows4, dtype=np.int64)
        angular_plan = AngularPlan(
            keys[:, 0].astype(bool), keys[:, 1] * scale_angular, keys[:, 2].copy(), keys[:, 3].copy(),
            table[:, 0], table[:, 1:3].copy(), table[:, 3],
        )  # fmt: skip
    return ElementPlan(len(functions), radial_plan, angular_plan)


TYPE_CODES = {"G2": 2, "G4": 4, "G5": 5}
CUTOFF_CODES = {"Cosine": 1, "Polynomial": 2}


@dataclass(frozen=True)
class FeatureTable:
    """The symmetry functions as flat per-element arrays: the compiled kernel's view of a plan.

    The kernel numbers elements alphabetically (centre elements, then neighbour-only ones)
    and sorts each centre's neighbours by that number, so the numbering is part of its
    round-off; ``code`` maps the plan's species onto it.

    Attributes:
        code: (n_species,) int64 kernel element code of each species of the plan.
        counts: (E,) int64 features per code (0 for neighbour-only elements).
        types, el1, el2: (E, F) int64 type code (2, 4, 5) and neighbour element codes.
        eta, zeta, gamma, offset: (E, F) float64 parameters as given (eta not divided by
            Rc^2; offset in Angstrom; zeta and gamma 0 for G2).
        cutoff: (kind code 1 Cosine | 2 Polynomial, Rc in Angstrom, polynomial gamma, the
            angular functions' radius in Angstrom: Rc unless the descriptor has a shorter one).
    """

    code: NDArray[np.int64]
    counts: NDArray[np.int64]
    types: NDArray[np.int64]
    el1: NDArray[np.int64]
    el2: NDArray[np.int64]
    eta: NDArray[np.float64]
    zeta: NDArray[np.float64]
    gamma: NDArray[np.float64]
    offset: NDArray[np.float64]
    cutoff: tuple[int, float, float, float]

    @property
    def n_features(self) -> int:
        """Width of the values array: the most features of any element."""
        return int(self.types.shape[1])


def make_feature_table(
    gs: SymmetryFunctions, species: tuple[str, ...], n_centre: int, cutoff: Cutoff, angular: Cutoff | None = None
) -> FeatureTable:
    """Flatten the symmetry functions ``gs`` (species numbered as in ``species``) for the compiled kernel."""
    symbols = tuple(sorted(species[:n_centre])) + species[n_centre:]
    code = {s: c for c, s in enumerate(symbols)}
    n_el, f_max = len(symbols), max(len(functions) for _, functions in gs)
    counts = np.zeros(n_el, dtype=np.int64)
    types, el1, el2 = (np.zeros((n_el, f_max), dtype=np.int64) for _ in range(3))
    eta, zeta, gamma, offset = (np.zeros((n_el, f_max)) for _ in range(4))
    for symbol, functions in gs:
        e = code[symbol]
        counts[e] = len(functions)
        for f, g in enumerate(functions):
            types[e, f] = TYPE_CODES[g.type]
            el1[e, f], el2[e, f] = code[g.elements[0]], code[g.elements[-1]]
            eta[e, f] = g.eta
            if g.type == "G2":
                offset[e, f] = g.offset
            else:
                zeta[e, f], gamma[e, f] = g.zeta, g.gamma
    kind = (CUTOFF_CODES[cutoff.name], cutoff.Rc, 4.0 if cutoff.gamma is None else cutoff.gamma,
            cutoff.Rc if angular is None else angular.Rc)
    codes = np.array([code[s] for s in species], dtype=np.int64)
    return FeatureTable(codes, counts, types, el1, el2, eta, zeta, gamma, offset, kind)


@dataclass(frozen=True)
class Plan:
    """Everything both kernels read from the descriptor's parameters, derived once per descriptor.

    Attributes:
        cutoff: the cutoff function (Rc in Angstrom).
        angular: the cutoff function of the angular functions (G4, G5): ``cutoff``, or the
            same kind at the descriptor's shorter ``angular_cutoff``.
        species: the symbols the species numbers stand for: the centre elements in ``Gs``
            order, then the elements only named as neighbours (sorted).
        n_centre: number of centre elements (species numbers below it).
        elements: species number of a centre element -> its feature tables (numpy kernel).
        lengths: (n_species,) int64 fingerprint length of each species (0: neighbour only).
        n_features: width of the values array (the longest fingerprint).
        table: the same symmetry functions for the compiled kernel.
        species_of_z: (119,) int64 species number of each atomic number; -1 where that
            element has no symmetry functions.
    """

    cutoff: Cutoff
    angular: Cutoff
    species: tuple[str, ...]
    n_centre: int
    elements: dict[int, ElementPlan]
    lengths: NDArray[np.int64]
    n_features: int
    table: FeatureTable
    species_of_z: NDArray[np.int64]

    def species_of(self, atoms: Atoms) -> NDArray[np.int64]:
        """Return (n_atoms,) int64 species number of each atom.

        Raises:
            DataError: the structure has atoms of an element without symmetry functions.
        """
        numbers = np.asarray(atoms.numbers)
        species = self.species_of_z.take(numbers, mode="clip")  # numbers past the table: unknown (-1)
        if len(species) and species.min() < 0:
            unknown = sorted(set(np.asarray(atoms.get_chemical_symbols())[species < 0]))
            centres = ", ".join(self.species[: self.n_centre])
            raise DataError(
                f"the structure ({atoms.get_chemical_formula()}) contains {', '.join(unknown)}, which the "
                f"gaussian descriptor has no symmetry functions for (Gs covers: {centres}); "
                "add them to Gs or elements"
            )
        return species


def make_plan(gs: SymmetryFunctions, cutoff: Cutoff, angular: Cutoff | None = None) -> Plan:
    """Prepare validated symmetry functions ``gs`` (``GaussianParams.Gs``), ``cutoff`` and the angular
    functions' cutoff ``angular`` (None: ``cutoff``; same kind, radius at most Rc) for the kernels."""
    angular = cutoff if angular is None else angular
    rc_angular = None if angular.Rc == cutoff.Rc else angular.Rc
    centres = tuple(symbol for symbol, _ in gs)
    referenced = {s for _, functions in gs for g in functions for s in g.elements}
    species = centres + tuple(sorted(referenced - set(centres)))
    elements = {k: make_element_plan(functions, species, cutoff.Rc, rc_angular) for k, (_, functions) in enumerate(gs)}
    lengths = np.zeros(len(species), dtype=np.int64)
    lengths[: len(gs)] = [len(functions) for _, functions in gs]
    table = make_feature_table(gs, species, len(centres), cutoff, angular)
    from ase.data import atomic_numbers, chemical_symbols

    species_of_z = np.full(len(chemical_symbols), -1, dtype=np.int64)
    species_of_z[[atomic_numbers[s] for s in centres]] = np.arange(len(centres))
    return Plan(cutoff, angular, species, len(centres), elements, lengths, int(lengths.max()), table, species_of_z)
