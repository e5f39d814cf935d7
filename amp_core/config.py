"""TOML config -> validated, frozen parameter objects (all checks before any work starts).

A config has five tables::

    [descriptor]            # name = "<registered descriptor>", then its parameters
    [model]                 # name = "<registered model>", then its parameters
    [backend]               # name = "serial" | "multiprocessing" | ..., then its settings
    [data]                  # train = "file" or ["files"] (file@slice selects images), validation
    [training]              # optimizer, maxiter, coefficients, checkpoints, seed, directory
    [training.convergence]  # energy_rmse, energy_maxresid, force_rmse, force_maxresid

Relative paths are relative to the config file.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amp_core.data import FORCE_COEFFICIENT
from amp_core.errors import ConfigError
from amp_core.images import checked_source

if TYPE_CHECKING:
    from amp_core.manager import PluginManager

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

LEGACY_OPTIMIZERS = {"L-BFGS-B": "lbfgs", "BFGS": "bfgs", "CG": "cg"}
"""SciPy method names that earlier configs (and Amp users) give for the built-in optimisers."""
TABLES = ("descriptor", "model", "backend", "data", "training")


@dataclass(frozen=True)
class Convergence:
    """Stop when every criterion that is set is met (Amp's defaults); ``None`` = not checked."""

    energy_rmse: float | None = 0.001
    energy_maxresid: float | None = None
    force_rmse: float | None = None
    force_maxresid: float | None = None

    @property
    def forces(self) -> bool:
        """Whether a force criterion is set."""
        return self.force_rmse is not None or self.force_maxresid is not None


@dataclass(frozen=True)
class Training:
    """The ``[training]`` table."""

    optimizer: str = "lbfgs"
    maxiter: int | None = None
    energy_coefficient: float = 1.0
    force_coefficient: float | None = None
    forces: bool | None = None
    overfit: float = 0.0
    max_time: float | None = None
    validation_interval: int | None = None
    patience: int | None = None
    checkpoint_interval: int = 100
    seed: int = 0
    directory: str = "run"
    ensemble: int = 1
    """Members trained together (:mod:`amp_core.ensemble`): model seeds ``s, s+1, ...``."""
    convergence: Convergence = field(default_factory=Convergence)
    optimizer_options: dict[str, Any] = field(default_factory=dict)
    """``[training.optimizer_options]``: the optimiser's settings (``amp plugins -v`` names them)."""


@dataclass(frozen=True)
class Data:
    """The ``[data]`` table: training files and optional validation files (absolute paths).

    A file name may select images with ASE's ``file@slice`` syntax (``"md.traj@0:100"``);
    the selection is kept after the resolved path.
    """

    train: tuple[str, ...]
    validation: tuple[str, ...] = ()
    validation_fraction: float | None = None


@dataclass(frozen=True)
class Config:
    """A validated config. Plugin tables keep their raw options (validated by :func:`build`)."""

    path: str
    descriptor: dict[str, Any]
    model: dict[str, Any]
    backend: dict[str, Any]
    data: Data
    training: Training

    @property
    def folder(self) -> Path:
        """The folder relative paths refer to."""
        return Path(self.path).parent

    @property
    def run_dir(self) -> Path:
        """Where results, logs, the store and checkpoints go."""
        return (self.folder / self.training.directory).resolve()

    @property
    def forces(self) -> bool:
        """Whether forces are trained: ``[training] forces`` when set, else when a
        ``force_coefficient`` or a force criterion is given (:func:`settle` sets it from
        the data before training: true when every training image has forces)."""
        if self.training.forces is not None:
            return self.training.forces
        return self.training.force_coefficient is not None or self.training.convergence.forces

    @property
    def maxiter(self) -> int:
        """``[training] maxiter``; by default 1000, or no limit but ``max_time`` when that is set."""
        if self.training.maxiter is not None:
            return self.training.maxiter
        return DEFAULT_MAXITER if self.training.max_time is None else INTEGER_MAXIMUM

    @property
    def force_coefficient(self) -> float:
        """c_F: as given, else the default (:data:`amp_core.data.FORCE_COEFFICIENT`)."""
        if self.training.force_coefficient is not None:
            return self.training.force_coefficient
        return FORCE_COEFFICIENT


def _check(value: Any, kinds: tuple[type, ...], where: str, what: str) -> Any:
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise ConfigError(f"{where}: expected {what}, got {value!r} ({type(value).__name__})")
    return value


def _fields(cls: type, table: dict[str, Any], where: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    known = [f.name for f in dataclasses.fields(cls) if f.name not in skip]
    unknown = sorted(set(table) - set(known) - set(skip))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}. Accepted keys: "
                          f"{', '.join(known)}.")
    return {k: v for k, v in table.items() if k not in skip}


DEFAULT_FORCE_RMSE = 0.01
"""eV/A: the force criterion added to Amp's default energy criterion when forces are trained."""
DEFAULT_MAXITER = 1000
"""Iterations when neither ``maxiter`` nor ``max_time`` is given."""
MAXIMUM = 1e6
"""Largest coefficient or convergence target accepted (larger ones are typos or fuzz)."""
INTEGER_MAXIMUM = 10**9
"""Largest maxiter, checkpoint_interval or seed accepted."""


def _number(value: Any, where: str, minimum: float = 0.0) -> float:
    _check(value, (int, float), where, "a number")
    if isinstance(value, int) and abs(value) > 10**18 or not math.isfinite(float(value)):
        raise ConfigError(f"{where}: must be a finite number, got {value!r}")
    if value < minimum or value > MAXIMUM:
        raise ConfigError(f"{where}: must be between {minimum:g} and {MAXIMUM:g}, got {value!r}")
    return float(value)


def duration(value: Any, where: str) -> float:
    """Return seconds from a number of seconds or a text such as ``"90s"``, ``"10m"``, ``"1h30m"``, ``"2d"``.

    Raises:
        ConfigError: not a positive, finite duration.
    """
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        parts = re.findall(r"\s*([0-9]*\.?[0-9]+)\s*([smhd]?)", value.lower())
        if parts and re.fullmatch(r"(\s*[0-9]*\.?[0-9]+\s*[smhd]?)+\s*", value.lower()):
            seconds = sum(float(n) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[u] for n, u in parts)
    if seconds is None or not math.isfinite(seconds) or not 0 < seconds <= 1e9:
        raise ConfigError(f"{where}: expected a duration such as 600, \"10m\" or \"1h30m\", got {value!r}")
    return seconds


def _training(table: dict[str, Any], where: str) -> Training:
    values = _fields(Training, table, where)
    conv_table = values.pop("convergence", {})
    _check(conv_table, (dict,), f"{where} convergence", "a table")
    conv_where = where.replace("[training]", "[training.convergence]")
    conv = {k: None if v is None else _number(v, f"{conv_where} key '{k}'")
            for k, v in _fields(Convergence, conv_table, conv_where).items()}
    _check(values.get("optimizer_options", {}), (dict,), f"{where} optimizer_options", "a table")
    for key in ("energy_coefficient", "force_coefficient", "overfit"):
        if key in values:
            values[key] = _number(values[key], f"{where} key '{key}'")
    for key, minimum in (("maxiter", 1), ("checkpoint_interval", 0), ("seed", 0), ("validation_interval", 1),
                         ("patience", 1)):
        if key in values:
            _check(values[key], (int,), f"{where} key '{key}'", "an integer")
            if not minimum <= values[key] <= INTEGER_MAXIMUM:
                raise ConfigError(f"{where} key '{key}': must be between {minimum} and {INTEGER_MAXIMUM:,}, "
                                  f"got {values[key]}")
    if "ensemble" in values:
        from amp_core.ensemble import MAX_MEMBERS

        _check(values["ensemble"], (int,), f"{where} key 'ensemble'", "an integer (the number of members)")
        if not 1 <= values["ensemble"] <= MAX_MEMBERS:
            raise ConfigError(f"{where} key 'ensemble': must be between 1 and {MAX_MEMBERS}, got {values['ensemble']}")
    if "max_time" in values:
        values["max_time"] = duration(values["max_time"], f"{where} key 'max_time'")
    if "forces" in values:
        _check(values["forces"], (bool,), f"{where} key 'forces'", "true or false")
    for key in ("optimizer", "directory"):
        if key in values:
            _check(values[key], (str,), f"{where} key '{key}'", "a string")
    if "optimizer" in values:  # looked up among the registered optimisers by build_optimizer
        values["optimizer"] = LEGACY_OPTIMIZERS.get(values["optimizer"], values["optimizer"])
    return Training(**values, convergence=Convergence(**conv))


def _data(table: dict[str, Any], folder: Path, where: str) -> Data:
    values = _fields(Data, table, where)
    if "train" not in values:
        raise ConfigError(f"{where}: missing key 'train' (the training data file or list of files)")
    out: dict[str, Any] = {}
    fraction = values.pop("validation_fraction", None)
    if fraction is not None:
        _check(fraction, (int, float), f"{where} key 'validation_fraction'", "a number")
        if not 0 < fraction < 1:
            raise ConfigError(f"{where} key 'validation_fraction': must be between 0 and 1 (exclusive), "
                              f"got {fraction!r}")
        if "validation" in values:
            raise ConfigError(f"{where}: give either 'validation' (files) or 'validation_fraction', not both")
        out["validation_fraction"] = float(fraction)
    for key, value in values.items():
        items = [value] if isinstance(value, str) else value
        _check(items, (list,), f"{where} key '{key}'", "a file name or a list of file names")
        paths = []
        for item in items:
            _check(item, (str,), f"{where} key '{key}'", "a file name")
            path, selection, _ = checked_source(item, folder, resolve=True, prefix=f"{where} key '{key}': ",
                                                label=f"{where} key '{key}', {item!r}")
            paths.append(str(path) if selection is None else f"{path}@{selection}")
        out[key] = tuple(paths)
    return Data(**out)


def load_config(path: str | Path, overrides: dict[str, dict[str, Any]] | None = None) -> Config:
    """Read and check a TOML config file.

    Args:
        path: the TOML file.
        overrides: per-table keys that replace the file's (e.g. ``{"backend": {"cores": 2}}``).

    Raises:
        ConfigError: naming file, table and key of the first problem found.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    for table, values in (overrides or {}).items():
        raw.setdefault(table, {}).update(values)
    return from_dict(raw, path)


def from_dict(raw: dict[str, Any], path: str | Path = "<config>") -> Config:
    """Check a config given as a dictionary (as parsed from TOML)."""
    path = Path(path)
    unknown = sorted(set(raw) - set(TABLES))
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {', '.join(f'[{t}]' for t in unknown)}. "
                          f"Accepted tables: {', '.join(f'[{t}]' for t in TABLES)}.")
    plugins = {}
    for table in ("descriptor", "model", "backend"):
        values = raw.get(table, {"name": "serial"} if table == "backend" else None)
        if values is None:
            raise ConfigError(f"{path}: missing table [{table}] (with at least name = \"...\")")
        _check(values, (dict,), f"{path}, [{table}]", "a table")
        if "name" not in values:
            raise ConfigError(f"{path}, [{table}]: missing key 'name'; run 'amp plugins' to see the names")
        _check(values["name"], (str,), f"{path}, [{table}] key 'name'", "a string")
        plugins[table] = dict(values)
    if "data" not in raw:
        raise ConfigError(f"{path}: missing table [data] (train = \"file\")")
    return Config(
        path=str(path),
        descriptor=plugins["descriptor"],
        model=plugins["model"],
        backend=plugins["backend"],
        data=_data(raw["data"], path.parent, f"{path}, [data]"),
        training=_training(raw.get("training", {}), f"{path}, [training]"),
    )


def build(config: Config, manager: PluginManager | None = None) -> tuple[Any, Any, Any]:
    """Build (descriptor, model, backend) from a config through ``manager``.

    Every error names file, table and key. A model whose parameters have a ``seed``
    field gets ``[training] seed`` unless its table sets one. With ``[training] ensemble = N``
    (N > 1) the model is an :class:`~amp_core.ensemble.Ensemble` of N members, member k with
    model seed ``seed + k``.
    """
    from amp_core.manager import resolve

    manager = resolve(manager)
    made = []
    for kind in ("descriptor", "model", "backend"):
        if kind == "model":
            made.append(build_model(config, manager))
            continue
        options = dict(getattr(config, kind))
        name = options.pop("name")
        made.append(manager.create(kind, name, options, where=f"{config.path}, [{kind}]"))
    build_optimizer(config, manager)  # checked here too: every config error before any work
    if config.training.ensemble > 1:
        from amp_core.ensemble import Ensemble, member_models

        members = member_models(made[1], config.training.ensemble, lambda seed: build_model(config, manager, seed),
                                f"{config.path}, [training] ensemble")
        made[1] = Ensemble(members)
    return made[0], made[1], made[2]


def build_model(config: Config, manager: PluginManager | None = None, seed: int | None = None) -> Any:
    """Build the ``[model]`` (with model seed ``seed`` when given; see :func:`build`)."""
    from amp_core.manager import resolve

    manager = resolve(manager)
    options = dict(config.model)
    name = options.pop("name")
    where = f"{config.path}, [model]"
    params = manager.lookup("model", name, f"{where} name").entry.params
    if "seed" in {f.name for f in dataclasses.fields(params)}:
        if seed is not None:
            options["seed"] = seed
        elif "seed" not in options:
            options["seed"] = config.training.seed
    return manager.create("model", name, options, where=where)


def build_optimizer(config: Config, manager: PluginManager | None = None) -> Any:
    """Build the optimiser ``[training] optimizer`` names (registered optimisers; ``amp plugins`` lists them)."""
    from amp_core.manager import resolve

    return resolve(manager).create("optimizer", config.training.optimizer, dict(config.training.optimizer_options),
                                   where=f"{config.path}, [training] optimizer")


def settle(config: Config, has_forces: Callable[[], bool]) -> Config:
    """Return the config with the defaults that depend on the data filled in.

    ``[training] forces`` left unset (and no ``force_coefficient`` or force criterion)
    becomes true when ``has_forces()`` (every training image has reference forces); then,
    when ``[training.convergence]`` is all defaults (Amp's energy RMSE 0.001 alone), the
    criteria also ask a force RMSE of :data:`DEFAULT_FORCE_RMSE`, so that a run does not
    stop on its energies while its forces are still poor. (An explicit ``forces`` or
    ``force_coefficient`` keeps Amp's criteria.)
    """
    training = config.training
    if training.forces is not None or config.forces or not has_forces():
        return config
    convergence = training.convergence
    if convergence == Convergence():
        convergence = Convergence(force_rmse=DEFAULT_FORCE_RMSE)
    return dataclasses.replace(config, training=dataclasses.replace(training, forces=True, convergence=convergence))


def resolved(config: Config, descriptor: Any, model: Any, backend: Any) -> dict[str, Any]:
    """Return the config with defaults filled in, as saved with results."""
    training = dataclasses.asdict(config.training)
    training["force_coefficient"] = config.force_coefficient
    training["forces"] = config.forces
    training["maxiter"] = config.maxiter
    return {
        "path": config.path,
        "descriptor": {"name": descriptor.name, **descriptor.todict()},
        "model": model_settings(model),
        "backend": {"name": backend.name, "cores": backend.cores, **config.backend},
        "data": dataclasses.asdict(config.data),
        "training": training,
    }


def model_settings(model: Any) -> dict[str, Any]:
    """The ``model`` table of :func:`resolved`: the model's name and its scalar-like parameters."""
    return {"name": model.name, **_simple_fields(model.params)}


def _simple_fields(params: Any) -> dict[str, Any]:
    """Return the scalar-like fields of a parameter dataclass (large arrays are saved elsewhere)."""
    out = {}
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        flat = value if isinstance(value, tuple) else (value,)
        if all(v is None or isinstance(v, (int, float, str, bool)) for v in flat):
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out
