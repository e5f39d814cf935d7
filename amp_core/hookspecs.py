"""Hook specifications: the four registration hooks a plugin package implements (any of them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from amp_core.entries import BackendEntry, DescriptorEntry, ModelEntry, OptimizerEntry

PROJECT = "amp"
"""pluggy project name, hook prefix and entry-point group."""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def amp_descriptors() -> list[DescriptorEntry[Any]]:
    """Register descriptors (atom-environment fingerprints).

    Called once per process, when the plugin manager is built (before a run
    starts, and by ``amp plugins``); never inside worker processes.

    Returns:
        One :class:`~amp_core.entries.DescriptorEntry` per descriptor this
        plugin provides.

    Example::

        @hookimpl
        def amp_descriptors():
            return [DescriptorEntry(name="coordination", params=CoordinationParams,
                                    factory=Coordination, summary="Smooth coordination numbers.")]

    .. versionadded:: 0.1
    """
    return []


@hookspec
def amp_models() -> list[ModelEntry[Any]]:
    """Register models (fingerprints or structures -> energy and forces).

    Called once per process, when the plugin manager is built; never in workers.

    Returns:
        One :class:`~amp_core.entries.ModelEntry` per model this plugin provides.

    Example::

        @hookimpl
        def amp_models():
            return [ModelEntry(name="linear", params=LinearParams, factory=Linear,
                               summary="Linear model.", loader=Linear.from_dict)]

    .. versionadded:: 0.1
    """
    return []


@hookspec
def amp_backends() -> list[BackendEntry[Any]]:
    """Register compute backends (where pipeline stages run).

    Called once per process, when the plugin manager is built; never in workers.

    Returns:
        One :class:`~amp_core.entries.BackendEntry` per backend this plugin provides.

    Example::

        @hookimpl
        def amp_backends():
            return [BackendEntry(name="threads", params=ThreadParams, factory=Threads,
                                 summary="Run chunks in threads.", probe=lambda: None)]

    .. versionadded:: 0.1
    """
    return []


@hookspec
def amp_optimizers() -> list[OptimizerEntry[Any]]:
    """Register optimisers (what minimises the loss during training).

    Called once per process, when the plugin manager is built; never in workers.

    Returns:
        One :class:`~amp_core.entries.OptimizerEntry` per optimiser this plugin provides.

    Example::

        @hookimpl
        def amp_optimizers():
            return [OptimizerEntry(name="descent", params=DescentParams, factory=Descent,
                                   summary="Steepest descent with a fixed step.")]

    .. versionadded:: 0.2
    """
    return []
