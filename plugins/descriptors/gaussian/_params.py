"""Parameter records of the ``gaussian`` descriptor: cutoff functions and symmetry functions.

Both records are frozen and hashable, so the descriptor's parameters can key the
fingerprint store. They read and write Amp's dictionary formats.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

CUTOFF_NAMES = ("Cosine", "Polynomial")
G_TYPES = ("G2", "G4", "G5")
_G2_KEYS = {"type", "element", "eta", "offset"}
_G4_KEYS = {"type", "elements", "eta", "zeta", "gamma"}


MAX_FUNCTIONS = 2000
"""Most symmetry functions per element accepted (Amp's default set has 20; 100,020 tried to allocate 74 GiB)."""
MAX_CUTOFF = 30.0
"""Largest cutoff radius accepted, Angstrom: neighbour counts grow as Rc^3 (Rc 1000 ran for minutes)."""


@dataclass(frozen=True)
class Cutoff:
    """A cutoff function fc(r) that goes smoothly to zero at ``Rc``.

    Attributes:
        name: ``"Cosine"``: fc = 0.5 (cos(pi r / Rc) + 1); ``"Polynomial"``: with
            x = r / Rc, fc = 1 + gamma x^(gamma + 1) - (gamma + 1) x^gamma. Both are 0
            for r >= Rc.
        Rc: cutoff radius, Angstrom (> 0).
        gamma: exponent of the polynomial cutoff (>= 1); ``None`` for ``Cosine``.
    """

    name: str
    Rc: float
    gamma: float | None = None

    def __post_init__(self) -> None:
        if self.name not in CUTOFF_NAMES:
            raise ValueError(f"unknown cutoff {self.name!r}; use one of {', '.join(CUTOFF_NAMES)}")
        rc = _number(self.Rc, "cutoff Rc")
        if not 0 < rc <= MAX_CUTOFF:
            raise ValueError(f"cutoff radius Rc must be positive and at most {MAX_CUTOFF:g} Angstrom, got {self.Rc!r}")
        object.__setattr__(self, "Rc", rc)
        if self.name == "Polynomial":
            gamma = 4.0 if self.gamma is None else _number(self.gamma, "polynomial cutoff gamma")
            if not gamma >= 1:
                raise ValueError(f"the polynomial cutoff's gamma must be >= 1, got {self.gamma!r}")
            object.__setattr__(self, "gamma", gamma)
        elif self.gamma is not None:
            raise ValueError("the Cosine cutoff takes no gamma; use {'name': 'Polynomial', ...} for one")

    @classmethod
    def parse(cls, value: Any) -> Cutoff:
        """Build a cutoff from a radius, an Amp-style dict or a :class:`Cutoff`.

        Accepted: ``6.5`` (Cosine), ``{'name': 'Cosine', 'Rc': 6.5}``,
        ``{'name': 'Polynomial', 'Rc': 6.5, 'gamma': 4}`` and Amp 1.0's
        ``{'name': 'Cosine', 'kwargs': {'Rc': 6.5}}``.

        Raises:
            ValueError: an unknown name, a missing or non-positive radius.
        """
        if isinstance(value, Cutoff):
            return value
        if isinstance(value, Mapping):
            fields = dict(value)
            kwargs = fields.pop("kwargs", None)
            if kwargs is not None:
                fields.update(dict(kwargs))
            name = fields.pop("name", "Cosine")
            unknown = set(fields) - {"Rc", "gamma"}
            if unknown or "Rc" not in fields:
                raise ValueError(
                    f"cutoff dict {dict(value)!r} must have 'name' and 'Rc' (and 'gamma' for Polynomial); "
                    f"unknown keys: {sorted(unknown)}"
                )
            return cls(str(name), fields["Rc"], fields.get("gamma"))
        return cls("Cosine", value)

    def todict(self) -> dict[str, Any]:
        """Return ``{'name', 'Rc'[, 'gamma']}`` (JSON-serialisable)."""
        out: dict[str, Any] = {"name": self.name, "Rc": self.Rc}
        if self.gamma is not None:
            out["gamma"] = self.gamma
        return out

    def evaluate(
        self, r: NDArray[np.float64], derivative: bool = True
    ) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
        """Return fc(r) and (if ``derivative``) dfc/dr in 1/Angstrom, each shaped like ``r`` (Angstrom)."""
        x = np.minimum(r * (1.0 / self.Rc), 1.0)
        if self.name == "Cosine":
            arg = math.pi * x
            value = 0.5 * (np.cos(arg) + 1.0)
            return value, (-0.5 * math.pi / self.Rc) * np.sin(arg) if derivative else None
        g = float(self.gamma)  # type: ignore[arg-type]
        xg1 = x ** (g - 1.0)
        xg = xg1 * x
        value = 1.0 + g * xg * x - (g + 1.0) * xg
        return value, (g * (g + 1.0) / self.Rc) * xg1 * (x - 1.0) if derivative else None


@dataclass(frozen=True)
class SymmetryFunction:
    """One Gaussian symmetry function of a centre element (Amp's definitions).

    Attributes:
        type: ``"G2"`` (radial), ``"G4"`` (angular, with the r_jk term) or ``"G5"``.
        elements: neighbour element(s): one symbol for G2, a sorted pair for G4/G5.
        eta: width; the exponent is eta * (...) / Rc^2 (dimensionless, >= 0).
        offset: G2 centre Rs, Angstrom (0 for G4/G5).
        zeta: angular exponent (> 0; G4/G5 only).
        gamma: angular sign lambda in [-1, 1] (G4/G5 only).
    """

    type: str
    elements: tuple[str, ...]
    eta: float
    offset: float = 0.0
    zeta: float = 1.0
    gamma: float = 1.0

    @classmethod
    def parse(cls, item: Mapping[str, Any], where: str) -> SymmetryFunction:
        """Read one Amp dictionary such as ``{'type': 'G2', 'element': 'Pt', 'eta': 0.05}``.

        Raises:
            ValueError: unknown type or keys, or a value out of range; ``where`` names it.
        """
        if not isinstance(item, Mapping):
            raise ValueError(f"{where}: expected a dict like {{'type': 'G2', ...}}, got {item!r}")
        kind = item.get("type")
        if kind not in G_TYPES:
            raise ValueError(
                f"{where}: unknown symmetry function type {kind!r}; use one of {', '.join(G_TYPES)}"
            )
        allowed = _G2_KEYS if kind == "G2" else _G4_KEYS
        unknown = set(item) - allowed
        missing = allowed - set(item) - {"offset"}
        if unknown or missing:
            raise ValueError(
                f"{where}: a {kind} needs keys {sorted(allowed - {'offset'})}"
                + (" (and optional 'offset')" if kind == "G2" else "")
                + (f"; unknown: {sorted(unknown)}" if unknown else "")
                + (f"; missing: {sorted(missing)}" if missing else "")
            )
        eta = _number(item["eta"], f"{where}: eta")
        if eta < 0:
            raise ValueError(f"{where}: eta must be >= 0, got {eta}")
        if kind == "G2":
            offset = _number(item.get("offset", 0.0), f"{where}: offset")
            return cls("G2", (_symbol(item["element"], where),), eta, offset)
        pair = item["elements"]
        if isinstance(pair, str) or len(pair) != 2:
            raise ValueError(f"{where}: 'elements' must be a pair of symbols, got {pair!r}")
        zeta = _number(item["zeta"], f"{where}: zeta")
        gamma = _number(item["gamma"], f"{where}: gamma")
        if not zeta > 0:
            raise ValueError(f"{where}: zeta must be positive (Amp accepts any zeta > 0), got {zeta}")
        if not -1 <= gamma <= 1:
            raise ValueError(f"{where}: gamma must lie in [-1, 1] (usually +1 or -1), got {gamma}")
        elements = tuple(sorted(_symbol(s, where) for s in pair))
        return cls(str(kind), elements, eta, 0.0, zeta, gamma)

    def todict(self) -> dict[str, Any]:
        """Return Amp's dictionary form."""
        if self.type == "G2":
            return {"type": "G2", "element": self.elements[0], "eta": self.eta, "offset": self.offset}
        return {
            "type": self.type,
            "elements": list(self.elements),
            "eta": self.eta,
            "zeta": self.zeta,
            "gamma": self.gamma,
        }


SymmetryFunctions = tuple[tuple[str, tuple[SymmetryFunction, ...]], ...]


def parse_gs(gs: Any) -> SymmetryFunctions:
    """Normalise Amp's ``Gs`` dict ``{centre symbol: [dict, ...]}`` into nested tuples.

    Raises:
        ValueError: not a dict of lists, an empty list, or a bad entry.
    """
    if isinstance(gs, tuple) and all(isinstance(x, tuple) and len(x) == 2 for x in gs):
        gs = dict(gs)
    if not isinstance(gs, Mapping) or not gs:
        raise ValueError(f"Gs must be a non-empty dict {{element: [symmetry function dicts]}}, got {gs!r}")
    out = []
    for centre, items in gs.items():
        symbol = _symbol(centre, "Gs")
        if isinstance(items, (str, Mapping)) or not isinstance(items, Iterable):
            raise ValueError(f"Gs[{centre!r}] must be a list of symmetry function dicts, got {items!r}")
        items = list(items)
        if len(items) > MAX_FUNCTIONS:
            raise ValueError(f"Gs[{centre!r}] has {len(items):,} symmetry functions; at most {MAX_FUNCTIONS:,} "
                             "per element are accepted (each costs memory for every atom and neighbour)")
        functions = tuple(
            x if isinstance(x, SymmetryFunction) else SymmetryFunction.parse(x, f"Gs[{centre!r}][{k}]")
            for k, x in enumerate(items)
        )
        if not functions:
            raise ValueError(f"Gs[{centre!r}] is empty; give at least one symmetry function")
        out.append((symbol, functions))
    return tuple(out)


def gs_todict(gs: SymmetryFunctions) -> dict[str, list[dict[str, Any]]]:
    """Return the Amp ``Gs`` dict of normalised symmetry functions."""
    return {symbol: [g.todict() for g in functions] for symbol, functions in gs}


def _number(value: Any, what: str) -> float:
    if isinstance(value, (str, bytes)):  # "6.5" in a config or file is a mistake, not a number
        raise ValueError(f"{what} must be a number, got the text {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return number


def _symbol(value: Any, where: str) -> str:
    from ase.data import atomic_numbers

    if not isinstance(value, str) or value not in atomic_numbers or value == "X":
        raise ValueError(f"{where}: {value!r} is not a chemical symbol such as 'Cu'")
    return value
