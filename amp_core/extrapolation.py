"""The range of the training data, stored with a potential, and the check of new structures against it.

A :class:`TrainingRange` is model-independent: per element the minimum and maximum of
every fingerprint feature over the training atoms, and per element pair the shortest
interatomic distance in the training structures. It is built once, from the chunk
arrays the training already reshaped (:mod:`amp_core.reshape`), and saved in
``potential.json``. :meth:`TrainingRange.check` flags the atoms of a structure whose
fingerprint leaves that range or whose nearest neighbour is closer than any seen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase.data import chemical_symbols
from numpy.typing import NDArray

SEARCH = 4.0
"""Radius (Angstrom) searched for the shortest distances: a pair never closer in training is
recorded at this value ("none closer than 4 Angstrom seen")."""
FEATURE_TOLERANCE = 1e-9
"""Slack, relative to a feature's training span (absolute 1e-12 at least), before it counts as outside."""


def _pair(a: str, b: str) -> str:
    return "-".join(sorted((a, b)))


@dataclass(frozen=True)
class Extrapolation:
    """Which atoms of one structure lie outside the training range.

    Attributes:
        atoms: (k,) int64 sorted indices of the flagged atoms.
        features: atom index -> indices of its features outside [min, max] (only atoms with some).
        close: atom index -> (neighbour index, distance Angstrom, training minimum Angstrom) of
            its closest neighbour below the training minimum of that element pair.
        unknown: atom index -> its symbol, for elements the training data had no atoms of.
    """

    atoms: NDArray[np.int64]
    features: dict[int, NDArray[np.int64]] = field(default_factory=dict)
    close: dict[int, tuple[int, float, float]] = field(default_factory=dict)
    unknown: dict[int, str] = field(default_factory=dict)

    def describe(self, symbols: Sequence[str], limit: int = 4) -> str:
        """One sentence naming up to ``limit`` flagged atoms, their features and close neighbours.

        The worst come first: atoms of unknown elements, then close contacts (closest first),
        then the atoms with the most features outside the range.
        """
        parts = []
        worst = sorted(self.atoms.tolist(), key=lambda i: (i not in self.unknown, i not in self.close,
                                                           self.close.get(i, (0, 0.0, 0.0))[1],
                                                           -len(self.features.get(i, ())), i))
        for i in worst[:limit]:
            reasons = []
            if i in self.unknown:
                reasons.append("an element absent from the training data")
            if i in self.features:
                shown = ", ".join(map(str, self.features[i][:6].tolist()))
                more = ", ..." if len(self.features[i]) > 6 else ""
                reasons.append(f"features {shown}{more} outside the training range")
            if i in self.close:
                j, d, low = self.close[i]
                reasons.append(f"neighbour atom {j} at {d:.3f} A (training minimum {_pair(symbols[i], symbols[j])} {low:.3f} A)")
            parts.append(f"atom {i} ({symbols[i]}): " + " and ".join(reasons))
        more = f"; and {len(self.atoms) - limit} more" if len(self.atoms) > limit else ""
        return "; ".join(parts) + more


@dataclass(frozen=True)
class TrainingRange:
    """The training data's range: per-element feature bounds and per-pair shortest distances.

    Attributes:
        low, high: element symbol -> (F,) float64 minimum and maximum of each feature.
        min_distance: ``"A-B"`` (sorted symbols) -> shortest distance seen, Angstrom (at most
            :data:`SEARCH`, which stands for "none closer").
        n_atoms: training atoms the record was built from.
    """

    low: dict[str, NDArray[np.float64]]
    high: dict[str, NDArray[np.float64]]
    min_distance: dict[str, float]
    n_atoms: int

    @classmethod
    def from_arrays(cls, arrays: Sequence[Mapping[str, NDArray[Any]]]) -> TrainingRange | None:
        """Build the record from chunk arrays (with fingerprints); ``None`` when they hold none."""
        low: dict[str, NDArray[np.float64]] = {}
        high: dict[str, NDArray[np.float64]] = {}
        distances: dict[str, float] = {}
        n_atoms = 0
        for chunk in arrays:
            for z in np.asarray(chunk["elements"]).tolist():
                key = f"fp_{int(z)}"
                if key not in chunk:
                    return None
                fp = np.asarray(chunk[key])
                if len(fp) == 0:
                    continue
                el = chemical_symbols[int(z)]
                lo, hi = fp.min(axis=0), fp.max(axis=0)
                if el in low and len(low[el]) == len(lo):
                    lo, hi = np.minimum(low[el], lo), np.maximum(high[el], hi)
                low[el], high[el] = lo, hi
            _chunk_distances(chunk, distances)
            n_atoms += int(np.sum(chunk["natoms"]))
        if not low:
            return None
        elements = sorted(low)
        for a in range(len(elements)):
            for b in range(a, len(elements)):
                distances.setdefault(_pair(elements[a], elements[b]), SEARCH)
        return cls(low, high, distances, n_atoms)

    def todict(self) -> dict[str, Any]:
        """Return the JSON record stored in ``potential.json`` (key ``training_range``)."""
        return {"features": {el: {"min": self.low[el].tolist(), "max": self.high[el].tolist()} for el in sorted(self.low)},
                "min_distance": dict(sorted(self.min_distance.items())), "search": SEARCH, "n_atoms": self.n_atoms}

    @classmethod
    def fromdict(cls, record: Mapping[str, Any]) -> TrainingRange:
        """Rebuild from :meth:`todict`.

        Raises:
            ValueError: a malformed record (the loader reports it naming the file).
        """
        try:
            features = record["features"]
            low = {str(el): np.asarray(v["min"], dtype=np.float64) for el, v in features.items()}
            high = {str(el): np.asarray(v["max"], dtype=np.float64) for el, v in features.items()}
            distances = {str(k): float(v) for k, v in record["min_distance"].items()}
            n_atoms = int(record.get("n_atoms", 0))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed training_range record: {type(exc).__name__}: {exc}") from exc
        for el in low:
            if low[el].ndim != 1 or low[el].shape != high[el].shape:
                raise ValueError(f"malformed training_range record: element {el} has min and max of "
                                 f"shapes {low[el].shape} and {high[el].shape}")
        return cls(low, high, distances, n_atoms)

    def check(self, atoms: Any, values: NDArray[np.float64] | None) -> Extrapolation:
        """Flag the atoms of ``atoms`` outside this range.

        Args:
            atoms: the structure.
            values: (n_atoms, F) float64 its fingerprints (zero-padded per element), or ``None``
                to check distances only.
        """
        symbols = atoms.get_chemical_symbols()
        flagged: set[int] = set()
        features: dict[int, NDArray[np.int64]] = {}
        unknown = {i: s for i, s in enumerate(symbols) if s not in self.low}
        flagged.update(unknown)
        if values is not None:
            numbers = np.asarray(atoms.numbers)
            for z in np.unique(numbers).tolist():
                el = chemical_symbols[int(z)]
                if el not in self.low:
                    continue
                rows = np.flatnonzero(numbers == z)
                lo, hi = self.low[el], self.high[el]
                slack = FEATURE_TOLERANCE * (hi - lo) + 1e-12
                block = values[rows, : len(lo)]
                outside = (block < lo - slack) | (block > hi + slack)
                for r in np.flatnonzero(outside.any(axis=1)).tolist():
                    features[int(rows[r])] = np.flatnonzero(outside[r]).astype(np.int64)
            flagged.update(features)
        close = self._close(atoms)
        flagged.update(close)
        return Extrapolation(np.array(sorted(flagged), dtype=np.int64), features, close, unknown)

    def _close(self, atoms: Any) -> dict[int, tuple[int, float, float]]:
        """Atoms with a neighbour closer than the training minimum of their element pair."""
        known = [d for d in self.min_distance.values() if d > 0]
        if not known or len(atoms) < 2 and not np.any(atoms.pbc):
            return {}
        i, j, d = _pairs(np.asarray(atoms.positions), np.asarray(atoms.cell.array), np.asarray(atoms.pbc),
                         max(known))
        numbers = np.asarray(atoms.numbers)
        present = np.unique(numbers)
        table = np.zeros((int(present.max()) + 1,) * 2)  # shortest training distance by atomic numbers
        for za in present.tolist():
            for zb in present.tolist():
                table[za, zb] = self.min_distance.get(_pair(chemical_symbols[za], chemical_symbols[zb]), 0.0)
        limit = table[numbers[i], numbers[j]]
        close: dict[int, tuple[int, float, float]] = {}
        for k in np.flatnonzero(d < limit)[np.argsort(d[d < limit])].tolist():
            for a, b in ((int(i[k]), int(j[k])), (int(j[k]), int(i[k]))):
                close.setdefault(a, (b, float(d[k]), float(limit[k])))
        return close


def _chunk_distances(chunk: Mapping[str, NDArray[Any]], distances: dict[str, float]) -> None:
    """Lower ``distances`` (pair -> shortest) with the chunk's images, searching within :data:`SEARCH`."""
    numbers, positions = np.asarray(chunk["numbers"]), np.asarray(chunk["positions"])
    starts = np.concatenate([[0], np.cumsum(chunk["natoms"])])
    for k in range(len(starts) - 1):
        sl = slice(int(starts[k]), int(starts[k + 1]))
        i, j, d = _pairs(positions[sl], np.asarray(chunk["cell"][k]), np.asarray(chunk["pbc"][k]), SEARCH)
        if len(d) == 0:
            continue
        z = numbers[sl]
        a, b = np.minimum(z[i], z[j]), np.maximum(z[i], z[j])
        for za, zb in set(zip(a.tolist(), b.tolist())):
            mask = (a == za) & (b == zb)
            key = _pair(chemical_symbols[za], chemical_symbols[zb])
            distances[key] = min(distances.get(key, SEARCH), float(d[mask].min()))


def _pairs(positions: NDArray[np.float64], cell: NDArray[np.float64], pbc: NDArray[np.bool_],
           cutoff: float) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """Every pair (i, j, distance) closer than ``cutoff``, each once, periodic images included (vesin)."""
    from vesin import NeighborList

    if len(positions) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0)
    box = np.array(cell, dtype=np.float64)
    box[~np.asarray(pbc, dtype=bool)] = 0.0
    search = NeighborList(cutoff=float(cutoff), full_list=False, sorted=False, n_threads=1)
    i, j, d = search.compute(np.ascontiguousarray(positions, dtype=np.float64), box,
                             [bool(p) for p in pbc], "ijd")
    keep = d < cutoff
    return i[keep].astype(np.int64), j[keep].astype(np.int64), d[keep]
