"""Typed registration records returned by the registration hooks.

Each record is generic over its parameter dataclass ``P``, so that
``DescriptorEntry[GaussianParams]`` ties the factory's argument to ``params``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from amp_core.protocols import Backend, Descriptor, Model, Optimizer

P = TypeVar("P")


def _always_available() -> str | None:
    """Probe of a plugin that can always run."""
    return None


@dataclass(frozen=True)
class DescriptorEntry(Generic[P]):
    """One descriptor a plugin provides.

    Attributes:
        name: user-facing name, ``[a-z][a-z0-9_-]*`` (what a config's ``[descriptor] name`` says);
            the built object's ``name`` must be the same.
        params: frozen dataclass of the descriptor's parameters; ``params(**section)``
            validates a config section and raises ``ValueError`` on bad values.
        factory: ``factory(params) -> Descriptor``.
        summary: one line for ``amp plugins``.
        probe: ``probe() -> None | str``: ``None`` when the descriptor's compiled kernels
            (capability ``COMPILED``) are available here, otherwise why not and how to
            get them. Plugins without compiled kernels leave the default.
    """

    name: str
    params: type[P]
    factory: Callable[[P], Descriptor]
    summary: str
    probe: Callable[[], str | None] = _always_available


@dataclass(frozen=True)
class ModelEntry(Generic[P]):
    """One model a plugin provides.

    Attributes:
        name: user-facing name (the built object's ``name`` must be the same).
        params: frozen dataclass of the model's hyper-parameters.
        factory: ``factory(params) -> Model``.
        summary: one line for ``amp plugins``.
        loader: ``loader(document) -> Model``, rebuilding a model (trained
            parameters included) from the JSON document its ``todict()`` made.
        probe: as for :class:`DescriptorEntry`.
        readers: readers of foreign potential files this plugin understands (e.g.
            Amp's ``.amp``); the core chooses one by the file's content.
    """

    name: str
    params: type[P]
    factory: Callable[[P], Model]
    summary: str
    loader: Callable[[dict[str, Any]], Model]
    probe: Callable[[], str | None] = _always_available
    readers: tuple[FileReader, ...] = ()


@dataclass(frozen=True)
class BackendEntry(Generic[P]):
    """One compute backend a plugin provides.

    Attributes:
        name: user-facing name (the built object's ``name`` must be the same).
        params: frozen dataclass of the backend's settings (e.g. ``cores``).
        factory: ``factory(params) -> Backend``.
        summary: one line for ``amp plugins``.
        probe: ``probe() -> None | str``: ``None`` when the backend can run here,
            otherwise why not and how to get it (shown as ``unavailable: <why>``).
    """

    name: str
    params: type[P]
    factory: Callable[[P], Backend]
    summary: str
    probe: Callable[[], str | None] = _always_available


@dataclass(frozen=True)
class OptimizerEntry(Generic[P]):
    """One optimiser a plugin provides (``[training] optimizer`` names it).

    Attributes:
        name: user-facing name (the built object's ``name`` must be the same).
        params: frozen dataclass of the optimiser's settings.
        factory: ``factory(params) -> Optimizer``.
        summary: one line for ``amp plugins``.
    """

    name: str
    params: type[P]
    factory: Callable[[P], Optimizer]
    summary: str
    probe: Callable[[], str | None] = _always_available


@dataclass(frozen=True)
class FileReader:
    """A reader of a foreign potential file format, registered with a model entry.

    Attributes:
        format: short name for messages (``"Amp .amp"``).
        accepts: ``accepts(text) -> bool``: whether this reader understands a file
            whose content is ``text`` (called only on files that are not amp-core JSON).
        read: ``read(text, where) -> (descriptor name, descriptor params, model params)``
            (``where``: the file name for messages; raises ``ModelFileError``): what the
            core builds the potential from through the manager (the model is this
            entry's, its trained parameters inside its params).
    """

    format: str
    accepts: Callable[[str], bool]
    read: Callable[[str, str], tuple[str, dict[str, Any], dict[str, Any]]]
