"""Index tables that map one centre element's symmetry functions onto shared work.

Features with the same radial parameters (G2: eta, offset) or angular parameters
(G4/G5: type, eta, zeta, gamma) share one evaluation per neighbour or neighbour pair;
the tables say which (neighbour element(s), parameter set) each feature reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from amp_plugins.descriptors.gaussian._params import SymmetryFunction


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


def make_plan(functions: tuple[SymmetryFunction, ...], species: tuple[str, ...], rc: float) -> ElementPlan:
    """Build the index tables of one centre element's symmetry functions.

    Args:
        functions: the element's symmetry functions, in fingerprint order.
        species: every symbol the descriptor knows; indices refer to this tuple.
        rc: cutoff radius, Angstrom (eta is divided by rc^2 here).
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
            keys[:, 0].astype(bool), keys[:, 1] * scale, keys[:, 2].copy(), keys[:, 3].copy(),
            table[:, 0], table[:, 1:3].copy(), table[:, 3],
        )  # fmt: skip
    return ElementPlan(len(functions), radial_plan, angular_plan)
