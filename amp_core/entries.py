"""Typed registration records returned by the registration hooks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DescriptorEntry:
    """One descriptor a plugin provides.

    Attributes:
        name: user-facing name, ``[a-z][a-z0-9_-]*`` (what a config's ``[descriptor] name`` says).
        params: frozen dataclass of the descriptor's parameters; ``params(**section)``
            validates a config section and raises ``ValueError`` on bad values.
        factory: ``factory(params) -> Descriptor``.
        summary: one line for ``amp plugins``.
    """

    name: str
    params: type
    factory: Callable[[Any], Any]
    summary: str


@dataclass(frozen=True)
class ModelEntry:
    """One model a plugin provides.

    Attributes:
        name: user-facing name.
        params: frozen dataclass of the model's hyper-parameters.
        factory: ``factory(params) -> Model``.
        summary: one line for ``amp plugins``.
        loader: ``loader(document) -> Model``, rebuilding a model (trained
            parameters included) from the JSON document its ``todict()`` made.
    """

    name: str
    params: type
    factory: Callable[[Any], Any]
    summary: str
    loader: Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class BackendEntry:
    """One compute backend a plugin provides.

    Attributes:
        name: user-facing name.
        params: frozen dataclass of the backend's settings (e.g. ``cores``).
        factory: ``factory(params) -> Backend``.
        summary: one line for ``amp plugins``.
        probe: ``probe() -> None | str``: ``None`` when the backend can run here,
            otherwise why not and how to get it (shown as ``unavailable: <why>``).
    """

    name: str
    params: type
    factory: Callable[[Any], Any]
    summary: str
    probe: Callable[[], str | None] = lambda: None
