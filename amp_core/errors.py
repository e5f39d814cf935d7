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
    """Raised when an input structure is unusable (missing target, NaN, unknown element).

    Attributes:
        origin: which structure (``"file.xyz, image 3"``), when the error is about one.
        missing: the reference property it lacks (``"energy"``, ``"forces"``), if that is the problem;
            a command can then suggest its own way to do without it.
    """

    def __init__(self, message: str, *, origin: str = "", missing: str = "") -> None:
        super().__init__(message)
        self.origin = origin
        self.missing = missing


class PluginError(AmpError):
    """Raised when a plugin fails to load, validate or register."""

    def __init__(self, message: str, *, entry_point: str = "", distribution: str = "") -> None:
        super().__init__(message)
        self.entry_point = entry_point
        self.distribution = distribution


class BackendError(AmpError, RuntimeError):
    """Raised when a worker raises, dies or stops answering during a pipeline stage.

    Attributes:
        stage: the pipeline stage (``"fingerprint"``, ``"reshape"``, ``"start"``, ``"loss"``, ...).
        chunk: the chunk (or task) index the failure is about, when known; ``shard`` is
            the same number under its former name.
    """

    def __init__(self, message: str, *, stage: str = "", chunk: int | None = None, shard: int | None = None) -> None:
        super().__init__(message)
        self.stage = stage
        self.chunk = chunk if chunk is not None else shard
        self.shard = self.chunk


class RunError(AmpError, RuntimeError):
    """Raised when a run fails after it started for a reason outside the plugins (disk, store, run folder)."""


class UsageError(AmpError, RuntimeError):
    """Raised when the API is used in a way that cannot work at run time (e.g. a closed loss function)."""


class PropertyNotImplementedError(AmpError, NotImplementedError):
    """Raised when a plugin is asked for a property or capability it does not implement."""


class ModelFileError(AmpError, ValueError):
    """Raised when a saved model file cannot be read (wrong format, version or content)."""


class AmpPluginWarning(UserWarning):
    """Warned when a third-party plugin fails to load and the run goes on without it."""


class ExtrapolationWarning(UserWarning):
    """Warned (rate-limited) when a potential evaluates atoms outside the range of its training data."""
