"""Amp's ``amp.descriptor.gaussian``: :class:`Gaussian` and its symmetry-function helpers.

``Gaussian(...)`` builds amp-core's ``gaussian`` plugin (Behler-Parrinello symmetry
functions in Amp's conventions; same fingerprints as Amp). Without ``Gs`` it uses Amp's
default set for the sorted elements (:func:`make_default_symmetry_functions`), always
passed to the plugin written out, so the set is Amp's whatever the plugin's own default.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from amp_core.amp.descriptor import AmpDescriptor, check_mode, check_version
from amp_core.amp.descriptor.cutoffs import DEFAULT_CUTOFF, plugin_cutoff
from amp_core.errors import ConfigError
from amp_core.manager import PluginManager


def make_symmetry_functions(elements: list[str], type: str, etas: Any, offsets: Any = None,  # noqa: A002
                            zetas: Any = None, gammas: Any = None) -> list[dict[str, Any]]:
    """Return Amp's list of symmetry-function dicts of one ``type`` (``'G2'``, ``'G4'`` or ``'G5'``).

    G2: for each eta, each element, each offset (default ``[0.]``). G4/G5: for each eta,
    zeta, gamma and each unordered element pair (``elements[i] <= elements[j]`` by
    position, the pair sorted by symbol). The order is Amp's, so fingerprints match.
    """
    if type == "G2":
        return [{"type": "G2", "element": el, "eta": float(eta), "offset": float(offset)}
                for eta in etas for el in elements for offset in ([0.0] if offsets is None else offsets)]
    if type in ("G4", "G5"):
        if zetas is None or gammas is None:
            raise ConfigError(f"make_symmetry_functions: a {type} needs zetas and gammas")
        return [{"type": type, "elements": sorted([a, b]), "eta": float(eta), "gamma": float(gamma),
                 "zeta": float(zeta)}
                for eta in etas for zeta in zetas for gamma in gammas
                for i, a in enumerate(elements) for b in elements[i:]]
    raise ConfigError(f"make_symmetry_functions: unknown type {type!r}; use 'G2', 'G4' or 'G5'")


def make_default_symmetry_functions(elements: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Return Amp's default ``Gs`` for ``elements``: G2 with four etas from 0.05 to 5 (log-spaced)
    and G4 with eta 0.005, zeta 1 and 4, gamma +1 and -1, the same list for every element."""
    etas = [float(x) for x in np.logspace(np.log10(0.05), np.log10(5.0), num=4)]  # Amp's numbers, to the bit
    functions = make_symmetry_functions(elements, "G2", etas)
    functions += make_symmetry_functions(elements, "G4", [0.005], zetas=[1.0, 4.0], gammas=[1.0, -1.0])
    return {el: copy.deepcopy(functions) for el in elements}


class Gaussian(AmpDescriptor):
    """Gaussian symmetry functions, as Amp's ``Gaussian`` (amp-core plugin ``gaussian``).

    Args:
        cutoff: a radius (Cosine), ``Cosine(Rc)`` or ``Polynomial(Rc, gamma)`` from
            :mod:`amp_core.amp.descriptor.cutoffs`, or Amp's cutoff dict.
        Gs: Amp's ``{element: [symmetry function dicts]}``, or one list for every
            element; ``None``: Amp's default set for the elements.
        dblabel: accepted for Amp scripts; amp-core keeps fingerprints in the run folder.
        elements: symbols; ``None``: from ``Gs`` or the training images (sorted), as Amp.
        version: Amp's parameter version (``'2015.12'`` or ``None``).
        fortran: accepted for Amp scripts; amp-core uses its compiled kernels whenever
            they are built (same numbers to 1e-10).
        mode: ``'atom-centered'`` only.
        manager: the plugin manager (``None``: the installed plugins); an amp-core addition.
    """

    plugin = "gaussian"
    amp_name = "Gaussian"

    def __init__(self, cutoff: Any = DEFAULT_CUTOFF, Gs: Any = None, dblabel: str | None = None,  # noqa: N803
                 elements: Any = None, version: str | None = None, fortran: bool = True,
                 mode: str = "atom-centered", manager: PluginManager | None = None) -> None:
        check_mode(mode, self.amp_name)
        check_version(version, ("2015.12",), self.amp_name)
        if elements is None and isinstance(Gs, dict):
            elements = list(Gs)
        super().__init__(elements, manager)
        self.cutoff = plugin_cutoff(cutoff, self.amp_name)
        self.Gs = Gs
        self.dblabel, self.fortran = dblabel, fortran
        if self.elements is not None:
            self.build()  # bad parameters fail here, as early as possible

    def plugin_params(self, elements: list[str] | None) -> dict[str, Any]:
        """Return ``cutoff`` and ``Gs`` (written out: Amp's default set when none was given)."""
        gs = self.Gs
        if gs is None:
            gs = make_default_symmetry_functions(self._elements(elements))
        elif isinstance(gs, (list, tuple)):
            gs = {el: copy.deepcopy(list(gs)) for el in self._elements(elements)}
        return {"cutoff": self.cutoff, "Gs": gs}
