"""The amp-core error tree (setup errors versus run errors, as in ASE)."""

from __future__ import annotations


class AmpError(Exception):
    """Base class of every error amp-core raises on purpose."""


class ConfigError(AmpError, ValueError):
    """Raised when a config file, a parameter or the input data is invalid, before work starts."""


class UnknownPluginError(ConfigError, LookupError):
    """Raised when a descriptor, model or backend name is not registered."""

    def __init__(self, message: str, *, kind: str, name: str, available: tuple[str, ...]) -> None:
        super().__init__(message)
        self.kind = kind
        self.name = name
        self.available = available


class DataError(ConfigError):
    """Raised when an input structure is unusable (missing target, NaN, unknown element)."""


class PluginError(AmpError):
    """Raised when a plugin fails to load, validate or register."""

    def __init__(self, message: str, *, entry_point: str = "", distribution: str = "") -> None:
        super().__init__(message)
        self.entry_point = entry_point
        self.distribution = distribution


class BackendError(AmpError, RuntimeError):
    """Raised when a worker raises, dies or stops answering during a pipeline stage."""

    def __init__(self, message: str, *, stage: str = "", shard: int | None = None) -> None:
        super().__init__(message)
        self.stage = stage
        self.shard = shard


class RunError(AmpError, RuntimeError):
    """Raised when a run fails after work started for a reason outside the input (disk, stored state)."""


class UsageError(AmpError, RuntimeError):
    """Raised when the API is misused at run time (closed object, model without parameters, wrong shape)."""


class PropertyNotImplementedError(AmpError, NotImplementedError):
    """Raised when a plugin is asked for a property or capability it does not implement."""


class ModelFileError(AmpError, ValueError):
    """Raised when a saved model file cannot be read (wrong format, version or content)."""


class AmpPluginWarning(UserWarning):
    """Warned when a third-party plugin fails to load and the run goes on without it."""
