"""The range of the training data, stored with a potential, and the check of new structures against it.

A :class:`TrainingRange` is model-independent: per element the minimum and maximum of
every fingerprint feature over the training atoms, and per element pair the shortest
interatomic distance in the training structures. It is built once, from the chunk
arrays the training already reshaped (:mod:`amp_core.reshape`), and saved in
``potential.json``. :meth:`TrainingRange.check` flags the atoms of a structure whose
fingerprint leaves that range or whose nearest neighbour is closer than any seen.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase.data import atomic_numbers, chemical_symbols
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

    @functools.cached_property
    def contact_radius(self) -> float:
        """The largest recorded shortest distance (Angstrom): :meth:`check` looks at pairs closer than this;
        0 when no pair distance is recorded."""
        return max((d for d in self.min_distance.values() if d > 0), default=0.0)

    @functools.cached_property
    def _limits(self) -> NDArray[np.float64]:
        """(119, 119) float64 shortest training distance by atomic numbers (0: no limit), built once."""
        symbols = {s for key in self.min_distance for s in key.split("-") if s in atomic_numbers}
        table = np.zeros((len(chemical_symbols),) * 2)
        for a in symbols:
            for b in symbols:
                table[atomic_numbers[a], atomic_numbers[b]] = self.min_distance.get(_pair(a, b), 0.0)
        return table

    @functools.cached_property
    def _known(self) -> NDArray[np.bool_]:
        """(119,) bool: whether the training data had atoms of each atomic number."""
        known = np.zeros(len(chemical_symbols), dtype=bool)
        known[[atomic_numbers[el] for el in self.low if el in atomic_numbers]] = True
        return known

    @functools.cached_property
    def _tables(self) -> dict[int, tuple[NDArray[np.float64], NDArray[np.float64]]]:
        return {}

    def _bounds(self, width: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(119, width) float64 lower and upper feature bounds by atomic number, the slack included, built once
        per width (the record is read-only).

        Columns past an element's feature count, and elements without a record, have
        infinite bounds (never outside).
        """
        if width in self._tables:
            return self._tables[width]
        lower = np.full((len(chemical_symbols), width), -np.inf)
        upper = np.full((len(chemical_symbols), width), np.inf)
        for el, lo in self.low.items():
            if el not in atomic_numbers:
                continue
            hi = self.high[el]
            if len(lo) > width:
                raise ValueError(f"fingerprints have {width} features, fewer than the {len(lo)} of the training "
                                 f"range of {el}: the potential's descriptor and its record disagree")
            slack = FEATURE_TOLERANCE * (hi - lo) + 1e-12
            lower[atomic_numbers[el], : len(lo)] = lo - slack
            upper[atomic_numbers[el], : len(lo)] = hi + slack
        self._tables[width] = (lower, upper)
        return lower, upper

    def check(self, atoms: Any, values: NDArray[np.float64] | None, contacts: ContactList | None = None) -> Extrapolation:
        """Flag the atoms of ``atoms`` outside this range.

        One vectorised comparison with bounds tabulated once per record, so it can run
        at every MD step.

        Args:
            atoms: the structure.
            values: (n_atoms, F) float64 its fingerprints (zero-padded per element), or ``None``
                to check distances only.
            contacts: a :class:`ContactList` still valid for ``atoms`` (the caller checks), with
                a radius of at least :attr:`contact_radius`; ``None``: search the pairs anew.
        """
        numbers = np.asarray(atoms.numbers)
        checking = values is not None and values.size > 0
        unknown, lower, upper = self._atom_bounds(numbers, values.shape[1] if checking else 0)  # type: ignore[union-attr]
        features: dict[int, NDArray[np.int64]] = {}
        if checking:
            below, above = values < lower, values > upper
            if below.any() or above.any():
                outside = below | above
                rows = np.flatnonzero(outside.any(axis=1))
                for r in rows[np.argsort(numbers[rows], kind="stable")].tolist():  # by element, as listed
                    features[r] = np.flatnonzero(outside[r]).astype(np.int64)
        close = self._close(atoms, contacts)
        if not (unknown or features or close):
            return Extrapolation(np.zeros(0, dtype=np.int64))
        flagged = sorted(set(unknown) | set(features) | set(close))
        return Extrapolation(np.array(flagged, dtype=np.int64), features, close, dict(unknown))

    @functools.cached_property
    def _kept_atoms(self) -> dict[tuple[bytes, int], tuple[dict[int, str], Any, Any]]:
        return {}

    def _atom_bounds(self, numbers: NDArray[Any], width: int) -> tuple[dict[int, str], Any, Any]:
        """The atoms of unknown elements (index -> symbol) and (n_atoms, width) lower and upper feature bounds of
        each atom (infinite for unknown elements), kept for the last ``numbers`` (an MD run's are the same)."""
        key = (numbers.tobytes(), width)
        kept = self._kept_atoms.get(key)
        if kept is None:
            known = self._known[numbers]
            unknown = {int(i): chemical_symbols[int(numbers[i])] for i in np.flatnonzero(~known)}
            lower = upper = None
            if width:
                table_low, table_high = self._bounds(width)
                z = np.where(known, numbers, 0)  # row 0 (no element) is infinite
                lower, upper = table_low[z], table_high[z]
            kept = (unknown, lower, upper)
            self._kept_atoms.clear()
            self._kept_atoms[key] = kept
        return kept

    def _close(self, atoms: Any, contacts: ContactList | None) -> dict[int, tuple[int, float, float]]:
        """Atoms with a neighbour closer than the training minimum of their element pair."""
        radius = self.contact_radius
        if radius <= 0 or len(atoms) < 2 and not np.any(atoms.pbc):
            return {}
        numbers = np.asarray(atoms.numbers)
        if contacts is not None and contacts.radius >= radius:  # every candidate: limit <= radius
            i, j, d, limit = contacts.i, contacts.j, contacts.distances(atoms), contacts.limits(self._limits, numbers)
        else:
            i, j, d = _pairs(np.asarray(atoms.positions), np.asarray(atoms.cell.array), np.asarray(atoms.pbc), radius)
            limit = self._limits[numbers[i], numbers[j]]
        below = np.flatnonzero(d < limit)
        if not len(below):
            return {}
        close: dict[int, tuple[int, float, float]] = {}
        for k in below[np.argsort(d[below])].tolist():
            for a, b in ((int(i[k]), int(j[k])), (int(j[k]), int(i[k]))):
                close.setdefault(a, (b, float(d[k]), float(limit[k])))
        return close


class ContactList:
    """The pairs within ``radius + skin`` (Angstrom) of a structure, to find close contacts at every MD step.

    Built once at some positions; its candidate pairs (``i``, ``j``) then hold every pair within
    ``radius`` of the current positions (their :meth:`distances`) while no atom moved more than
    ``skin / 2`` and cell, pbc and numbers are unchanged (the caller checks, as for a
    descriptor's neighbour list).

    Args:
        positions: (n_atoms, 3) float64 Angstrom; cell: (3, 3) float64; pbc: (3,) bool.
        radius: the distance of a contact, Angstrom (at least :attr:`TrainingRange.contact_radius`).
        skin: the extra radius searched, Angstrom.
    """

    def __init__(self, positions: NDArray[np.float64], cell: NDArray[np.float64], pbc: NDArray[np.bool_],
                 radius: float, skin: float) -> None:
        self.radius, self.skin = float(radius), float(skin)
        self.i, self.j, shift = _pairs(positions, cell, pbc, self.radius + self.skin, shifts=True)
        self.offsets = shift @ np.asarray(cell, dtype=np.float64)
        self._limits: tuple[Any, bytes, NDArray[np.float64]] | None = None

    def distances(self, atoms: Any) -> NDArray[np.float64]:
        """The current distance (Angstrom) of every candidate pair (``i``, ``j``)."""
        positions = np.asarray(atoms.positions, dtype=np.float64)
        vectors = np.take(positions, self.j, axis=0)
        vectors += self.offsets
        vectors -= np.take(positions, self.i, axis=0)
        distances: NDArray[np.float64] = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))
        return distances

    def limits(self, table: NDArray[np.float64], numbers: NDArray[Any]) -> NDArray[np.float64]:
        """``table[numbers[i], numbers[j]]`` of every candidate pair, kept for the last table and numbers."""
        key = numbers.tobytes()
        if self._limits is None or self._limits[0] is not table or self._limits[1] != key:
            self._limits = (table, key, table[numbers[self.i], numbers[self.j]])
        return self._limits[2]


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
           cutoff: float, *, shifts: bool = False) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[Any]]:
    """Every pair (i, j, distance) closer than ``cutoff``, each once, periodic images included (vesin).

    With ``shifts``: (i, j, cell shift S (n, 3) float64) instead, the image of j being at
    ``positions[j] + S @ cell``.
    """
    from vesin import NeighborList

    if len(positions) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros((0, 3) if shifts else 0)
    box = np.array(cell, dtype=np.float64)
    box[~np.asarray(pbc, dtype=bool)] = 0.0
    search = NeighborList(cutoff=float(cutoff), full_list=False, sorted=False, n_threads=1)
    i, j, s, d = search.compute(np.ascontiguousarray(positions, dtype=np.float64), box,
                                [bool(p) for p in pbc], "ijSd")
    keep = d < cutoff
    return i[keep].astype(np.int64), j[keep].astype(np.int64), s[keep].astype(np.float64) if shifts else d[keep]
