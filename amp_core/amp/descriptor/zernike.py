"""Amp's ``amp.descriptor.zernike``: :class:`Zernike` (amp-core plugin ``zernike``)."""

from __future__ import annotations

from typing import Any

from amp_core.amp.descriptor import AmpDescriptor, check_mode, check_version
from amp_core.amp.descriptor.cutoffs import DEFAULT_CUTOFF, plugin_cutoff
from amp_core.manager import PluginManager


class Zernike(AmpDescriptor):
    """Zernike fingerprints, as Amp's ``Zernike``: built as the amp-core descriptor plugin ``zernike``.

    Constructing one raises a :class:`~amp_core.ConfigError` saying the plugin is not
    installed when no ``zernike`` descriptor is registered.

    Args:
        cutoff: a radius, ``Cosine(Rc)`` or ``Polynomial(Rc, gamma)``, or Amp's cutoff dict.
        Gs: Amp's ``{element: {neighbour element: weight}}``; ``None``: the plugin's default.
        nmax: the largest degree n of the Zernike polynomials.
        dblabel, fortran: accepted for Amp scripts, without effect (fingerprints are kept
            in the run folder; compiled kernels are used when the plugin has them).
        elements: symbols; ``None``: from ``Gs`` or the training images (sorted).
        version: Amp's parameter version (``'2016.02'`` or ``None``); mode: ``'atom-centered'``.
    """

    plugin = "zernike"
    amp_name = "Zernike"

    def __init__(self, cutoff: Any = DEFAULT_CUTOFF, Gs: Any = None, nmax: int = 5, dblabel: str | None = None,  # noqa: N803
                 elements: Any = None, version: str | None = "2016.02", mode: str = "atom-centered",
                 fortran: bool = True, manager: PluginManager | None = None) -> None:
        super().__init__(elements if elements is not None or not isinstance(Gs, dict) else list(Gs), manager)
        check_mode(mode, self.amp_name)
        check_version(version, ("2016.02",), self.amp_name)
        self.cutoff = plugin_cutoff(cutoff, self.amp_name)
        self.Gs, self.nmax = Gs, nmax
        self.dblabel, self.fortran = dblabel, fortran

    def plugin_params(self, elements: list[str] | None) -> dict[str, Any]:
        """Return ``cutoff``, ``Gs``, ``nmax`` and the (sorted) ``elements``."""
        return {"cutoff": self.cutoff, "Gs": self.Gs, "nmax": self.nmax, "elements": self._elements(elements)}
