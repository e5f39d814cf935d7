"""Amp's ``amp.descriptor`` package: the descriptors an Amp script names, built as amp-core plugins.

Each class keeps Amp's arguments and builds the amp-core descriptor plugin of the same
fingerprints by name through the installed plugin manager once the elements are known
(given, from ``Gs``, or from the training images, as Amp does):
:class:`~amp_core.amp.descriptor.gaussian.Gaussian` -> ``gaussian``,
:class:`~amp_core.amp.descriptor.zernike.Zernike` -> ``zernike``,
:class:`~amp_core.amp.descriptor.bispectrum.Bispectrum` -> ``bispectrum``.
"""

from __future__ import annotations

from typing import Any

from amp_core.errors import ConfigError
from amp_core.manager import PluginManager, resolve


class AmpDescriptor:
    """Base of the mirror's descriptors: Amp's arguments, and the amp-core plugin they stand for.

    Attributes:
        plugin: the amp-core descriptor plugin name.
        elements: the elements as given (``None``: from ``Gs`` or the training images).
        built: the amp-core descriptor object once built (after training or loading), else ``None``.
    """

    plugin = ""
    amp_name = ""

    def __init__(self, elements: Any = None, manager: PluginManager | None = None) -> None:
        self.manager = manager
        require_plugin(self.plugin, self.amp_name, manager)
        self.elements = None if elements is None else sorted(elements)
        self.built: Any = None

    def plugin_params(self, elements: list[str] | None) -> dict[str, Any]:
        """Return the plugin's parameters; ``elements``: those of the training images (sorted)."""
        raise NotImplementedError  # each subclass defines it

    def build(self, elements: list[str] | None = None) -> Any:
        """Build (and keep in :attr:`built`) the amp-core descriptor; ``elements`` as for :meth:`plugin_params`."""
        from amp_core import create_descriptor

        self.built = create_descriptor(self.plugin, manager=self.manager, **self.plugin_params(elements))
        return self.built

    def _elements(self, elements: list[str] | None) -> list[str]:
        chosen = self.elements or (sorted(elements) if elements else None)
        if not chosen:
            raise ConfigError(f"{self.amp_name}: the elements are not known yet; give elements=[...] (or Gs), "
                              "or train on images first")
        return chosen

    def __repr__(self) -> str:
        return f"<{self.amp_name} descriptor: amp-core plugin {self.plugin!r}>"


def require_plugin(name: str, amp_name: str, manager: PluginManager | None) -> None:
    """Raise a :class:`ConfigError` naming the missing plugin when descriptor ``name`` is not installed."""
    available = resolve(manager).registered("descriptor")
    if name not in available:
        raise ConfigError(
            f"{amp_name}(...) needs the amp-core descriptor plugin {name!r}, which is not installed "
            f"(installed descriptors: {', '.join(available) or 'none'}); install the package that provides "
            f"it, then check with 'amp plugins'"
        )


def check_mode(mode: Any, amp_name: str) -> None:
    """Amp's descriptors work atom-centred only."""
    if mode not in (None, "atom-centered"):
        raise ConfigError(f"{amp_name}: mode {mode!r}; only 'atom-centered' exists (as in Amp)")


def check_version(version: Any, known: tuple[str, ...], amp_name: str) -> None:
    """Refuse an Amp parameter version this mirror does not know."""
    if version is not None and version not in known:
        raise ConfigError(f"{amp_name}: version {version!r} is not supported (known: {', '.join(known)})")


def from_plugin(descriptor: Any, manager: PluginManager | None = None) -> AmpDescriptor:
    """Return the mirror object of an amp-core descriptor (after loading a potential), keeping it as built."""
    from amp_core.amp.descriptor.bispectrum import Bispectrum
    from amp_core.amp.descriptor.gaussian import Gaussian
    from amp_core.amp.descriptor.zernike import Zernike

    classes: dict[str, type[AmpDescriptor]] = {"gaussian": Gaussian, "zernike": Zernike, "bispectrum": Bispectrum}
    spec: AmpDescriptor
    try:
        spec = classes[descriptor.name](**descriptor.todict(), manager=manager)
    except (KeyError, TypeError):  # another plugin, or parameters Amp's class has no argument for
        spec = PluginDescriptor(descriptor.name, descriptor.todict(), manager=manager)
    spec.built = descriptor
    return spec


class PluginDescriptor(AmpDescriptor):
    """Any amp-core descriptor plugin by name and parameters (an amp-core extension; Amp has no such class)."""

    def __init__(self, name: str, params: dict[str, Any], manager: PluginManager | None = None) -> None:
        self.plugin = self.amp_name = name
        self.params = dict(params)
        super().__init__(params.get("elements"), manager)

    def plugin_params(self, elements: list[str] | None) -> dict[str, Any]:
        """Return the parameters as given."""
        return dict(self.params)
