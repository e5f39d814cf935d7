"""Parameters of the ``zernike`` descriptor: cutoff, nmax and Amp's per-element weights ``Gs``."""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from amp_plugins.descriptors.gaussian._params import Cutoff, _number, _symbol

MAX_NMAX = 20
"""Largest ``nmax`` accepted (121 features). The radial polynomials, summed in Amp's monomial form,
lose digits to cancellation as n grows: ~1e-13 relative at n = 10, ~1e-9 at 20, ~1e-5 at 30."""

Weights = tuple[tuple[str, tuple[tuple[str, float], ...]], ...]


def default_weights(elements: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Return Amp's default ``Gs``: every neighbour weighs its atomic number, whatever the centre."""
    from ase.data import atomic_numbers

    return {centre: {other: float(atomic_numbers[other]) for other in elements} for centre in elements}


@dataclass(frozen=True)
class ZernikeParams:
    """Parameters of the ``zernike`` descriptor (frozen, hashable).

    Attributes:
        cutoff: a radius in Angstrom (Cosine cutoff) or a dict ``{'name': 'Cosine' |
            'Polynomial', 'Rc': ..., 'gamma': ...}`` (Amp 1.0's ``{'name': ..., 'kwargs':
            {...}}`` too); normalised to a :class:`~amp_plugins.descriptors.gaussian._params.Cutoff`.
        nmax: largest degree n of the Zernike functions (0 to :data:`MAX_NMAX`); every
            element gets one feature per (n, l) with 0 <= l <= n <= nmax, n - l even.
        Gs: Amp's weights of the atomic density, ``{centre: {neighbour: weight}}``, e.g.
            ``{'Cu': {'Cu': 29, 'Pt': 78}, 'Pt': {'Cu': 29, 'Pt': 78}}``; every centre needs
            a weight for every element. ``None``: each neighbour weighs its atomic number.
            Normalised to sorted nested tuples.
        elements: symbols; needed when ``Gs`` is None, otherwise it must name the same
            elements as ``Gs``. After normalisation the sorted tuple of ``Gs`` keys.
    """

    cutoff: Any = 6.5
    nmax: Any = 5
    Gs: Any = None
    elements: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "cutoff", Cutoff.parse(self.cutoff))
        object.__setattr__(self, "nmax", _nmax(self.nmax))
        elements = self.elements
        if elements is not None:
            if isinstance(elements, str) or not hasattr(elements, "__iter__"):
                raise ValueError(f"elements must be a list of symbols such as ['Cu', 'Pt'], got {elements!r}")
            elements = tuple(_symbol(e, "elements") for e in elements)
            if len(set(elements)) != len(elements):
                raise ValueError(f"elements names an element twice: {list(elements)}")
        if self.Gs is None:
            if not elements:
                raise ValueError(
                    "give either Gs (weights {centre: {neighbour: weight}}) or elements (for the default)"
                )
            gs = default_weights(tuple(sorted(elements)))
        else:
            gs = self.Gs
        weights = _parse_weights(gs)
        keys = tuple(symbol for symbol, _ in weights)
        if elements is not None and sorted(elements) != list(keys):
            raise ValueError(f"elements {list(elements)} differ from the elements of Gs {list(keys)}")
        object.__setattr__(self, "Gs", weights)
        object.__setattr__(self, "elements", keys)

    def todict(self) -> dict[str, Any]:
        """Return JSON-serialisable keyword arguments that rebuild these parameters."""
        return {
            "cutoff": self.cutoff.todict(),
            "nmax": self.nmax,
            "Gs": {centre: dict(row) for centre, row in self.Gs},
            "elements": list(self.elements),
        }


def _nmax(value: Any) -> int:
    if isinstance(value, Mapping):
        raise ValueError(
            f"nmax must be one integer for all elements, got the dict {dict(value)!r} "
            "(Amp's per-element nmax is not supported)"
        )
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise ValueError(f"nmax must be a whole number, got {value!r}")
    try:
        nmax = operator.index(value) if not isinstance(value, float) else int(value)
    except TypeError:
        raise ValueError(f"nmax must be a whole number such as 5, got {value!r}") from None
    if not 0 <= nmax <= MAX_NMAX:
        raise ValueError(f"nmax must lie between 0 and {MAX_NMAX}, got {nmax}")
    return nmax


def _parse_weights(gs: Any) -> Weights:
    """Normalise ``{centre: {neighbour: weight}}`` (or its nested-tuple form) into sorted nested tuples.

    Raises:
        ValueError: not a dict of dicts, an unknown symbol, a non-finite weight, or a
            centre without a weight for some element.
    """
    if isinstance(gs, tuple) and all(isinstance(x, tuple) and len(x) == 2 for x in gs):
        gs = {centre: dict(row) for centre, row in gs}
    if not isinstance(gs, Mapping) or not gs:
        raise ValueError(f"Gs must be a non-empty dict {{centre: {{neighbour: weight}}}}, got {gs!r}")
    rows: dict[str, dict[str, float]] = {}
    for centre, row in gs.items():
        symbol = _symbol(centre, "Gs")
        if not isinstance(row, Mapping):
            raise ValueError(
                f"Gs[{centre!r}] must be a dict {{neighbour symbol: weight}} such as {{'Cu': 29.0}}, got {row!r}"
            )
        rows[symbol] = {
            _symbol(other, f"Gs[{centre!r}]"): _number(weight, f"Gs[{centre!r}][{other!r}]")
            for other, weight in row.items()
        }
    elements = sorted(rows)
    for centre, row in rows.items():
        missing = sorted(set(elements) - set(row))
        extra = sorted(set(row) - set(elements))
        if missing or extra:
            raise ValueError(
                f"Gs[{centre!r}] must give a weight for each element of Gs ({', '.join(elements)})"
                + (f"; missing: {', '.join(missing)}" if missing else "")
                + (f"; not a centre in Gs: {', '.join(extra)} (add a Gs entry for it)" if extra else "")
            )
    return tuple((centre, tuple((other, rows[centre][other]) for other in elements)) for centre in elements)
