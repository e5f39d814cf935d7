"""Hyper-parameters of the ``pairpotential`` model and their validation."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ase.data import atomic_numbers


def pair_key(a: str, b: str) -> str:
    """Return the canonical name ``"A-B"`` of an element pair (lower atomic number first)."""
    first, second = sorted((a, b), key=lambda s: atomic_numbers[s])
    return f"{first}-{second}"


@dataclass(frozen=True)
class PairPotentialParams:
    """Settings of the Morse pair potential.

    Attributes:
        cutoff: pair cutoff radius rc, Angstrom (> 0).
        elements: chemical symbols the model covers, or ``None`` to take them from
            the training data; stored sorted by atomic number.
        D: initial well depth of every pair type, eV (> 0).
        a: initial Morse stiffness of every pair type, 1/Angstrom (> 0).
        r0: initial equilibrium distance of every pair type, Angstrom (0 < r0 < cutoff).
        parameters: trained values, ``None`` before training. Shape:
            ``{"pairs": {"Cu-Pt": {"D": eV, "a": 1/A, "r0": A}, ...}, "e0": {"Cu": eV, ...}}``
            with every unordered pair of the elements (lower atomic number first, either
            order accepted) and every element's constant energy e0.

    Raises:
        ValueError: any value is out of range, an element is unknown or repeated, or
            ``parameters`` is incomplete or inconsistent with ``elements``.
    """

    cutoff: float = 6.0
    elements: tuple[str, ...] | None = None
    D: float = 0.1
    a: float = 1.5
    r0: float = 2.5
    parameters: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        _check_positive("cutoff", self.cutoff)
        _check_positive("D", self.D)
        _check_positive("a", self.a)
        _check_positive("r0", self.r0)
        if self.r0 >= self.cutoff:
            raise ValueError(f"r0={self.r0} must be smaller than cutoff={self.cutoff} Angstrom")
        if self.elements is not None:
            object.__setattr__(self, "elements", _check_elements(self.elements))
        if self.parameters is not None:
            parameters, elements = _check_parameters(self.parameters, self.elements)
            object.__setattr__(self, "parameters", parameters)
            object.__setattr__(self, "elements", elements)

    def __hash__(self) -> int:
        return hash(json.dumps(asdict(self), sort_keys=True))

    def todict(self) -> dict[str, Any]:
        """Return the hyper-parameters (without ``parameters``) as JSON-ready values."""
        out = asdict(self)
        del out["parameters"]
        out["elements"] = None if self.elements is None else list(self.elements)
        return out


def _check_positive(name: str, value: Any) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")


def _check_elements(elements: Any) -> tuple[str, ...]:
    if isinstance(elements, str) or not isinstance(elements, (list, tuple)) or not elements:
        raise ValueError(f"elements must be a non-empty list of chemical symbols or None; got {elements!r}")
    for symbol in elements:
        if not isinstance(symbol, str) or symbol not in atomic_numbers or symbol == "X":
            raise ValueError(f"elements: {symbol!r} is not a chemical symbol (e.g. 'Cu', 'Pt')")
    if len(set(elements)) != len(elements):
        raise ValueError(f"elements lists a symbol twice: {list(elements)}")
    return tuple(sorted(elements, key=lambda s: atomic_numbers[s]))


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"parameters: {where} must be a finite number; got {value!r}")
    return float(value)


def _check_parameters(
    parameters: Mapping[str, Any], elements: tuple[str, ...] | None
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Validate trained parameters; return them normalised and the elements they cover."""
    if not isinstance(parameters, Mapping) or set(parameters) != {"pairs", "e0"}:
        raise ValueError("parameters must be a mapping with exactly the keys 'pairs' and 'e0'")
    e0, pairs = parameters["e0"], parameters["pairs"]
    if not isinstance(e0, Mapping) or not isinstance(pairs, Mapping):
        raise ValueError("parameters['e0'] and parameters['pairs'] must be mappings")
    found = _check_elements(list(e0))
    if elements is not None and found != elements:
        raise ValueError(f"parameters cover elements {list(found)} but elements={list(elements)}")
    out_pairs: dict[str, dict[str, float]] = {}
    for key, values in pairs.items():
        symbols = str(key).split("-")
        if len(symbols) != 2 or any(s not in found for s in symbols):
            raise ValueError(f"parameters: pair {key!r} is not 'A-B' with A, B among {list(found)}")
        if not isinstance(values, Mapping) or set(values) != {"D", "a", "r0"}:
            raise ValueError(f"parameters: pair {key!r} must map exactly 'D', 'a', 'r0' to numbers")
        canonical = pair_key(*symbols)
        if canonical in out_pairs:
            raise ValueError(f"parameters: pair {canonical!r} given twice")
        out_pairs[canonical] = {k: _number(f"{key}.{k}", values[k]) for k in ("D", "a", "r0")}
    expected = {pair_key(a, b) for k, a in enumerate(found) for b in found[k:]}
    if set(out_pairs) != expected:
        raise ValueError(f"parameters: pairs {sorted(expected - set(out_pairs))} missing")
    out_e0 = {s: _number(f"e0.{s}", e0[s]) for s in found}
    return {"pairs": {k: out_pairs[k] for k in sorted(out_pairs)}, "e0": out_e0}, found
