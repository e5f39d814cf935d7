"""amp-core: a plugin framework for machine-learning interatomic potentials."""

from __future__ import annotations

import importlib
from typing import Any

from amp_core.chunks import ChunkHandle, detect_cores
from amp_core.data import FORCE_COEFFICIENT, Dataset, ImageFingerprints, LossParts, LossResult, LossSettings
from amp_core.entries import BackendEntry, DescriptorEntry, FileReader, ModelEntry, OptimizerEntry
from amp_core.errors import (
    AmpError,
    AmpPluginWarning,
    BackendError,
    ConfigError,
    DataError,
    ExtrapolationWarning,
    ModelFileError,
    PluginError,
    PropertyNotImplementedError,
    RunError,
    UnknownPluginError,
    UsageError,
)
from amp_core.hookspecs import PROJECT, hookimpl
from amp_core.manager import PluginManager, create, make_plugin_manager
from amp_core.protocols import Backend, Descriptor, Model, Optimizer
from amp_core.residuals import ResidualRequest, Residuals

__version__ = "0.1.0"

__all__ = [
    "FORCE_COEFFICIENT",
    "PROJECT",
    "AmpError",
    "AmpPluginWarning",
    "Backend",
    "BackendEntry",
    "BackendError",
    "ChunkHandle",
    "ConfigError",
    "DataError",
    "Dataset",
    "Descriptor",
    "DescriptorEntry",
    "ExtrapolationWarning",
    "FileReader",
    "ImageFingerprints",
    "LossParts",
    "LossResult",
    "LossSettings",
    "Model",
    "ModelEntry",
    "ModelFileError",
    "Optimizer",
    "OptimizerEntry",
    "PluginError",
    "PluginManager",
    "Potential",
    "PropertyNotImplementedError",
    "ResidualRequest",
    "Residuals",
    "RunError",
    "UnknownPluginError",
    "UsageError",
    "create_backend",
    "create_descriptor",
    "create_model",
    "detect_cores",
    "evaluate_loss",
    "hookimpl",
    "load",
    "loss_function",
    "make_plugin_manager",
    "train",
]


def create_descriptor(name: str, *, manager: PluginManager | None = None, **params: Any) -> Descriptor:
    """Build the descriptor registered as ``name`` with ``params``.

    Args:
        name: the registered name (``amp plugins`` lists them).
        manager: the :class:`PluginManager` to look ``name`` up in (``None``: the installed plugins).
        **params: the descriptor's parameters.

    Raises:
        UnknownPluginError: no descriptor of that name is registered.
        ConfigError: a parameter is unknown, missing or invalid.
    """
    descriptor: Descriptor = create("descriptor", name, params, manager)
    return descriptor


def create_model(name: str, *, manager: PluginManager | None = None, **params: Any) -> Model:
    """Build the model registered as ``name`` with ``params`` (see :func:`create_descriptor`)."""
    model: Model = create("model", name, params, manager)
    return model


def create_backend(name: str, *, manager: PluginManager | None = None, **params: Any) -> Backend:
    """Build the backend registered as ``name`` with ``params`` (see :func:`create_descriptor`)."""
    backend: Backend = create("backend", name, params, manager)
    return backend


_LAZY = {
    "Potential": "amp_core.calculator",
    "load": "amp_core.calculator",
    "evaluate_loss": "amp_core.loss",
    "loss_function": "amp_core.loss",
    "train": "amp_core.training",
}


def __getattr__(name: str) -> Any:
    # The heavy modules (ASE calculator, pipeline, SciPy) load on first use.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'amp_core' has no attribute {name!r}")
