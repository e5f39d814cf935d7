"""amp-core: a plugin framework for machine-learning interatomic potentials."""

from __future__ import annotations

import importlib
from typing import Any

from amp_core.data import ImageFingerprints, LossParts, LossResult, LossSettings
from amp_core.entries import BackendEntry, DescriptorEntry, ModelEntry
from amp_core.errors import (
    AmpError,
    AmpPluginWarning,
    BackendError,
    ConfigError,
    DataError,
    ModelFileError,
    PluginError,
    PropertyNotImplementedError,
    RunError,
    UnknownPluginError,
    UsageError,
)
from amp_core.hookspecs import PROJECT, hookimpl
from amp_core.manager import create, make_plugin_manager
from amp_core.protocols import Backend, Descriptor, Model

__version__ = "0.1.0"

__all__ = [
    "PROJECT",
    "AmpError",
    "AmpPluginWarning",
    "Backend",
    "BackendEntry",
    "BackendError",
    "ConfigError",
    "DataError",
    "Descriptor",
    "DescriptorEntry",
    "ImageFingerprints",
    "LossParts",
    "LossResult",
    "LossSettings",
    "Model",
    "ModelEntry",
    "ModelFileError",
    "PluginError",
    "Potential",
    "PropertyNotImplementedError",
    "RunError",
    "UnknownPluginError",
    "UsageError",
    "create_backend",
    "create_descriptor",
    "create_model",
    "evaluate_loss",
    "hookimpl",
    "load",
    "loss_function",
    "make_plugin_manager",
    "train",
]


def create_descriptor(name: str, **params: Any) -> Any:
    """Build the descriptor registered as ``name`` with ``params``.

    Raises:
        UnknownPluginError: no descriptor of that name is registered.
        ConfigError: a parameter is unknown, missing or invalid.
    """
    return create("descriptor", name, params)


def create_model(name: str, **params: Any) -> Any:
    """Build the model registered as ``name`` with ``params`` (see :func:`create_descriptor`)."""
    return create("model", name, params)


def create_backend(name: str, **params: Any) -> Any:
    """Build the backend registered as ``name`` with ``params`` (see :func:`create_descriptor`)."""
    return create("backend", name, params)


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
