"""Amp's cutoff functions ``Cosine`` and ``Polynomial`` (``amp.descriptor.cutoffs``), as parameter records.

They only carry Amp's parameters; the descriptor plugins evaluate the functions
(Cosine: 0.5 (cos(pi r / Rc) + 1); Polynomial: 1 + gamma x^(gamma + 1) - (gamma + 1) x^gamma,
x = r / Rc; both 0 beyond Rc).
"""

from __future__ import annotations

from typing import Any

from amp_core.errors import ConfigError


class Cosine:
    """Behler's cosine cutoff with radius ``Rc`` (Angstrom)."""

    def __init__(self, Rc: float) -> None:  # noqa: N803 - Amp's keyword
        self.Rc = Rc

    def todict(self) -> dict[str, Any]:
        """Return Amp's dictionary form ``{'name': 'Cosine', 'kwargs': {'Rc': Rc}}``."""
        return {"name": "Cosine", "kwargs": {"Rc": self.Rc}}

    def __repr__(self) -> str:
        return f"Cosine(Rc={self.Rc!r})"


class Polynomial:
    """The polynomial cutoff of Khorshidi and Peterson with radius ``Rc`` (Angstrom) and exponent ``gamma``."""

    def __init__(self, Rc: float, gamma: float = 4) -> None:  # noqa: N803 - Amp's keyword
        self.Rc = Rc
        self.gamma = gamma

    def todict(self) -> dict[str, Any]:
        """Return Amp's dictionary form ``{'name': 'Polynomial', 'kwargs': {'Rc': Rc, 'gamma': gamma}}``."""
        return {"name": "Polynomial", "kwargs": {"Rc": self.Rc, "gamma": self.gamma}}

    def __repr__(self) -> str:
        return f"Polynomial(Rc={self.Rc!r}, gamma={self.gamma!r})"


DEFAULT_CUTOFF = Cosine(6.5)
"""Amp's default cutoff of its descriptors: ``Cosine(6.5)``."""


def plugin_cutoff(cutoff: Any, where: str) -> Any:
    """Return the ``cutoff`` parameter amp-core's descriptors take for an Amp cutoff.

    A number or :class:`Cosine` gives the radius (Cosine), :class:`Polynomial` gives
    ``{'name': 'Polynomial', 'Rc': ..., 'gamma': ...}``; Amp's dictionary form
    (``{'name': ..., 'kwargs': {...}}``) and amp-core's (``{'name': ..., 'Rc': ...}``) are read too.

    Raises:
        ConfigError: anything else (naming ``where``).
    """
    if isinstance(cutoff, (Cosine, Polynomial)):
        cutoff = cutoff.todict()
    if isinstance(cutoff, dict) and "kwargs" in cutoff and isinstance(cutoff["kwargs"], dict):
        name, kwargs = cutoff.get("name"), cutoff["kwargs"]
        if name == "Cosine" and set(kwargs) == {"Rc"}:
            return kwargs["Rc"]
        if name == "Polynomial" and "Rc" in kwargs and set(kwargs) <= {"Rc", "gamma"}:
            return {"name": "Polynomial", "Rc": kwargs["Rc"], "gamma": kwargs.get("gamma", 4)}
    elif isinstance(cutoff, dict) and set(cutoff) <= {"name", "Rc", "gamma"} and "Rc" in cutoff:
        if cutoff.get("name", "Cosine") == "Cosine" and "gamma" not in cutoff:
            return cutoff["Rc"]  # amp-core's own form, as descriptors' todict() give it
        if cutoff.get("name") == "Polynomial":
            return dict(cutoff)
    elif isinstance(cutoff, (int, float)) and not isinstance(cutoff, bool):
        return cutoff
    raise ConfigError(
        f"{where}: cutoff must be a radius, Cosine(Rc) or Polynomial(Rc, gamma) "
        f"(from amp_core.amp.descriptor.cutoffs), or Amp's dict form; got {cutoff!r}"
    )
