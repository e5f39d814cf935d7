"""Smooth per-element coordination numbers: an example third-party amp-core descriptor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from ase.data import atomic_numbers
from vesin import NeighborList

from amp_core import DescriptorEntry, ImageFingerprints, hookimpl
from amp_core.errors import DataError
from amp_core.protocols import FINGERPRINT_DERIVATIVES, FINGERPRINTS


@dataclass(frozen=True)
class CoordinationParams:
    """Parameters: neighbour elements and cutoff radii (Angstrom) of the features."""

    elements: tuple[str, ...] = ("Cu", "Pt")
    radii: tuple[float, ...] = (3.0, 4.5, 6.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "elements", tuple(self.elements))
        object.__setattr__(self, "radii", tuple(float(r) for r in self.radii))
        unknown = [e for e in self.elements if e not in atomic_numbers]
        if unknown or not self.elements:
            raise ValueError(f"elements must be chemical symbols, got {list(self.elements)}")
        if not self.radii or min(self.radii) <= 0:
            raise ValueError(f"radii must be positive, got {list(self.radii)}")


class Coordination:
    """Per atom, for each element X and radius rc: sum over neighbours j of X of fc(r_ij)."""

    name = "coordination"
    implemented = frozenset({FINGERPRINTS, FINGERPRINT_DERIVATIVES})

    def __init__(self, params: CoordinationParams) -> None:
        self.params = params
        self.elements = params.elements
        self._z = np.array([atomic_numbers[e] for e in params.elements])
        self._rc = np.array(params.radii)

    def cost(self, atoms: Any) -> float:
        """Work grows with atoms."""
        return float(len(atoms))

    def todict(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this descriptor."""
        return {"elements": list(self.params.elements), "radii": list(self.params.radii)}

    def compute(self, atoms: Any, derivatives: bool = False) -> ImageFingerprints:
        """Fingerprint one structure: (n_atoms, n_elements * n_radii) values, derivatives optional."""
        numbers = atoms.numbers.astype(np.int64)
        unknown = sorted(set(numbers.tolist()) - set(self._z.tolist()))
        if unknown:
            raise DataError(f"coordination descriptor: atomic number(s) {unknown} not in its elements "
                            f"{list(self.elements)}")
        n, n_r = len(atoms), len(self._rc)
        width = len(self._z) * n_r
        i, j, vec = _neighbours(atoms, float(self._rc.max()))
        r = np.linalg.norm(vec, axis=1)
        inside = r[:, None] < self._rc[None, :]
        x = np.pi * r[:, None] / self._rc[None, :]
        fc = np.where(inside, 0.5 * (np.cos(x) + 1.0), 0.0)
        order = np.argsort(self._z)
        column = order[np.searchsorted(self._z[order], numbers[j])]  # element slot of each neighbour
        cols = column[:, None] * n_r + np.arange(n_r)[None, :]
        values = np.zeros((n, width))
        np.add.at(values, (np.repeat(i, n_r), cols.ravel()), fc.ravel())
        if not derivatives:
            return ImageFingerprints(numbers, values, np.full(n, width, dtype=np.int64))
        dfc = np.where(inside, -0.5 * np.pi / self._rc[None, :] * np.sin(x), 0.0)  # d fc / d r
        unit = vec / np.where(r > 0, r, 1.0)[:, None]
        grad = dfc[:, :, None] * unit[:, None, :]  # (pairs, radii, 3): d fc / d R_j
        pairs = np.unique(np.concatenate([np.stack([np.arange(n), np.arange(n)], 1), np.stack([i, j], 1)]), axis=0)
        index = {(a, b): k for k, (a, b) in enumerate(pairs.tolist())}
        blocks = np.zeros((len(pairs), 3, width))
        to_j = np.array([index[(a, b)] for a, b in zip(i.tolist(), j.tolist())], dtype=np.int64)
        to_i = np.array([index[(a, a)] for a in i.tolist()], dtype=np.int64)
        for k in range(n_r):
            np.add.at(blocks, (to_j, slice(None), cols[:, k]), grad[:, k, :])
            np.add.at(blocks, (to_i, slice(None), cols[:, k]), -grad[:, k, :])
        return ImageFingerprints(numbers, values, np.full(n, width, dtype=np.int64), pairs.astype(np.int64), blocks)


def _neighbours(atoms: Any, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full neighbour list (i, j, r_j - r_i) with periodic images, via vesin."""
    pbc = np.asarray(atoms.pbc, dtype=bool)
    box = np.array(atoms.cell.array, dtype=np.float64)
    if not pbc.any():
        box = np.zeros((3, 3))
    i, j, vec = NeighborList(cutoff=cutoff, full_list=True).compute(
        atoms.positions, box, pbc.tolist() if pbc.any() else False, quantities="ijD"
    )
    return i.astype(np.int64), j.astype(np.int64), np.asarray(vec, dtype=np.float64)


@hookimpl
def amp_descriptors() -> list[DescriptorEntry[CoordinationParams]]:
    """Register ``coordination``."""
    return [DescriptorEntry(name="coordination", params=CoordinationParams, factory=Coordination,
                            summary="Smooth per-element coordination numbers (example plugin).")]
