"""Amp's ``amp.descriptor.bispectrum``: :class:`Bispectrum` (amp-core plugin ``bispectrum``)."""

from __future__ import annotations

from typing import Any

from amp_core.amp.descriptor import AmpDescriptor, check_mode, check_version
from amp_core.amp.descriptor.cutoffs import DEFAULT_CUTOFF, plugin_cutoff
from amp_core.manager import PluginManager


class Bispectrum(AmpDescriptor):
    """Bispectrum fingerprints, as Amp's ``Bispectrum``: built as the amp-core descriptor plugin ``bispectrum``.

    Constructing one raises a :class:`~amp_core.ConfigError` saying the plugin is not
    installed when no ``bispectrum`` descriptor is registered.

    Args:
        cutoff: a radius, ``Cosine(Rc)`` or ``Polynomial(Rc, gamma)``, or Amp's cutoff dict.
        Gs: Amp's ``{element: {neighbour element: weight}}``; ``None``: the plugin's default.
        jmax: the largest angular momentum j (integer or half-integer).
        dblabel: accepted for Amp scripts, without effect (fingerprints are kept in the run folder).
        elements: symbols; ``None``: from ``Gs`` or the training images (sorted).
        version: Amp's parameter version (``'2016.02'`` or ``None``); mode: ``'atom-centered'``.
    """

    plugin = "bispectrum"
    amp_name = "Bispectrum"

    def __init__(self, cutoff: Any = DEFAULT_CUTOFF, Gs: Any = None, jmax: float = 5, dblabel: str | None = None,  # noqa: N803
                 elements: Any = None, version: str | None = "2016.02", mode: str = "atom-centered",
                 manager: PluginManager | None = None) -> None:
        super().__init__(elements if elements is not None or not isinstance(Gs, dict) else list(Gs), manager)
        check_mode(mode, self.amp_name)
        check_version(version, ("2016.02",), self.amp_name)
        self.cutoff = plugin_cutoff(cutoff, self.amp_name)
        self.Gs, self.jmax = Gs, jmax
        self.dblabel = dblabel

    def plugin_params(self, elements: list[str] | None) -> dict[str, Any]:
        """Return ``cutoff``, ``Gs``, ``jmax`` and the (sorted) ``elements``."""
        return {"cutoff": self.cutoff, "Gs": self.Gs, "jmax": self.jmax, "elements": self._elements(elements)}
