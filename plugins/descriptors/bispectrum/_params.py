"""Parameters of the ``bispectrum`` descriptor: cutoff, jmax and per-element weights (Amp's meaning)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from amp_plugins.descriptors.gaussian._params import Cutoff

MAX_JMAX = 8.0
"""Largest jmax accepted: the work per atom grows about as jmax^5 (jmax 8 has 117 features)."""

Weights = tuple[tuple[str, tuple[tuple[str, float], ...]], ...]
"""Normalised ``Gs``: ((centre symbol, ((neighbour symbol, weight), ...)), ...)."""


def default_weights(elements: list[str] | tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Return Amp's default ``Gs``: every neighbour weighted by its atomic number, for every centre."""
    from ase.data import atomic_numbers

    row = {symbol: float(atomic_numbers[symbol]) for symbol in elements}
    return {symbol: dict(row) for symbol in elements}


@dataclass(frozen=True)
class BispectrumParams:
    """Parameters of the ``bispectrum`` descriptor (frozen, hashable).

    Attributes:
        cutoff: a radius in Angstrom (Cosine cutoff) or a dict such as ``{'name':
            'Cosine', 'Rc': 6.5}`` (Amp 1.0's ``{'name': ..., 'kwargs': {'Rc': ...}}``
            too; ``'Polynomial'`` with ``'gamma'`` is accepted as well, which Amp 1.0.1
            itself cannot compute); normalised to a :class:`Cutoff`.
        jmax: largest angular momentum, an integer or half-integer in [0, 8]; the
            features are B_{j1 j1 j} for 2 j1 = 0..2 jmax and integer j = 0..min(2 j1,
            jmax) (Amp's set; 51 for the default 5).
        Gs: Amp's per-element weights of the neighbour density, ``{centre symbol:
            {neighbour symbol: weight}}``, every centre naming every element; None: each
            neighbour weighted by its atomic number (Amp's default). Normalised to
            nested tuples.
        elements: symbols; with ``Gs`` None they select Amp's default weights for them.
            After normalisation the tuple of ``Gs`` keys, or None when neither is given
            (then any element is accepted, weighted by its atomic number).
    """

    cutoff: Any = 6.5
    Gs: Any = None
    jmax: Any = 5
    elements: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "cutoff", Cutoff.parse(self.cutoff))
        object.__setattr__(self, "jmax", _jmax(self.jmax))
        elements = self.elements
        if isinstance(elements, (set, frozenset)):  # Amp keeps a set when it finds the elements itself
            elements = sorted(elements)
        if isinstance(elements, str) or (elements is not None and not _is_sequence(elements)):
            raise ValueError(f"elements must be a list of symbols such as ['Cu', 'Pt'], got {elements!r}")
        if self.Gs is None:
            if elements is None:
                object.__setattr__(self, "elements", None)
                return
            gs = parse_weights(default_weights([_symbol(s, "elements") for s in elements]))
        else:
            gs = parse_weights(self.Gs)
        keys = tuple(symbol for symbol, _ in gs)
        if elements is not None and sorted(elements) != sorted(keys):
            raise ValueError(f"elements {list(elements)} differ from the elements of Gs {list(keys)}")
        object.__setattr__(self, "Gs", gs)
        object.__setattr__(self, "elements", keys)

    def todict(self) -> dict[str, Any]:
        """Return JSON-serialisable keyword arguments that rebuild these parameters."""
        return {
            "cutoff": self.cutoff.todict(),
            "Gs": None if self.Gs is None else {c: dict(row) for c, row in self.Gs},
            "jmax": self.jmax,
            "elements": None if self.elements is None else list(self.elements),
        }

    def weight(self, centre: str, neighbour: str) -> float:
        """Return the weight of a ``neighbour`` atom in the density around a ``centre`` atom."""
        if self.Gs is None:
            from ase.data import atomic_numbers

            return float(atomic_numbers[neighbour])
        return dict(dict(self.Gs)[centre])[neighbour]


def parse_weights(gs: Any) -> Weights:
    """Normalise Amp's ``Gs`` ``{centre: {neighbour: weight}}`` into nested tuples, order kept.

    Raises:
        ValueError: not a dict of dicts, a bad symbol or weight, or a centre whose row
            does not name exactly the elements of ``Gs``.
    """
    if isinstance(gs, tuple) and all(isinstance(x, tuple) and len(x) == 2 for x in gs):
        gs = {c: dict(row) for c, row in gs}
    if not isinstance(gs, Mapping) or not gs:
        raise ValueError(
            "Gs must be a non-empty dict {centre element: {neighbour element: weight}}, "
            f"e.g. {{'Cu': {{'Cu': 29.0, 'Pt': 78.0}}, 'Pt': {{...}}}}; got {gs!r}"
        )
    keys = [_symbol(c, "Gs") for c in gs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"Gs names an element twice: {keys}")
    out = []
    for centre, row in gs.items():
        if not isinstance(row, Mapping):
            raise ValueError(f"Gs[{centre!r}] must be a dict {{neighbour element: weight}}, got {row!r}")
        names = [_symbol(n, f"Gs[{centre!r}]") for n in row]
        if sorted(names) != sorted(keys):
            raise ValueError(
                f"Gs[{centre!r}] weights the elements {sorted(names)}; it must weight exactly the "
                f"elements of Gs, {sorted(keys)}"
            )
        weights = tuple((n, _number(w, f"Gs[{centre!r}][{n!r}]")) for n, w in row.items())
        out.append((str(centre), weights))
    return tuple(out)


def _jmax(value: Any) -> float:
    if isinstance(value, Mapping):
        raise ValueError(
            "jmax must be one number for all elements; Amp 1.0.1 documents a per-element dict "
            "but cannot compute fingerprints with one"
        )
    number = _number(value, "jmax")
    if not 0 <= number <= MAX_JMAX or 2 * number != round(2 * number):
        raise ValueError(f"jmax must be an integer or half-integer from 0 to {MAX_JMAX:g}, got {value!r}")
    return float(round(2 * number)) / 2.0


def _is_sequence(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _number(value: Any, what: str) -> float:
    if isinstance(value, (str, bytes)) or isinstance(value, bool):
        raise ValueError(f"{what} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return number


def _symbol(value: Any, where: str) -> str:
    from ase.data import atomic_numbers

    if not isinstance(value, str) or value not in atomic_numbers or value == "X":
        raise ValueError(f"{where}: {value!r} is not a chemical symbol such as 'Cu'")
    return value
