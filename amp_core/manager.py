"""Entry-point loader, plugin manager and lookup by name.

This is the only module that calls hooks (``pm.hook``).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.metadata as md
import os
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pluggy

from amp_core import hookspecs
from amp_core.entries import BackendEntry, DescriptorEntry, ModelEntry, OptimizerEntry
from amp_core.errors import AmpPluginWarning, ConfigError, PluginError, UnknownPluginError

OWN_DISTRIBUTION = "amp-core"
KINDS = ("descriptor", "model", "backend", "optimizer")
_HOOKS = {"descriptor": "amp_descriptors", "model": "amp_models", "backend": "amp_backends",
          "optimizer": "amp_optimizers"}
_RECORDS: dict[str, type[Any]] = {"descriptor": DescriptorEntry, "model": ModelEntry, "backend": BackendEntry,
                                  "optimizer": OptimizerEntry}
_NAME = re.compile(r"[a-z][a-z0-9_-]*\Z")


@dataclass
class PluginRecord:
    """What happened to one entry point: loaded, failed or disabled."""

    entry_point: str
    value: str
    distribution: str
    version: str
    status: str = "active"
    error: str = ""
    module_file: str = ""


@dataclass(frozen=True)
class Registered:
    """One registered plugin name with its provider."""

    kind: str
    entry: Any
    plugin_name: str
    distribution: str
    version: str


class PluginManager:
    """The plugins of one run: a pluggy manager plus what our loader recorded.

    A value, passed to every public entry point (``manager=``); ``None`` there means
    :func:`default_manager`. ``PluginManager()`` loads the installed entry points of
    group ``amp``; ``PluginManager(entry_points=())`` starts empty. Objects registered
    in process with :meth:`register` (tests, notebooks) work end to end like
    installed plugins.

    Args:
        entry_points: entry points to load; ``None`` reads the environment's.
        strict: make a failing third-party plugin fatal; ``None`` reads
            ``AMP_STRICT_PLUGINS``.

    Raises:
        PluginError: an entry point of amp-core itself failed to load, or (strict)
            any did.
    """

    def __init__(self, entry_points: Iterable[md.EntryPoint] | None = None, *, strict: bool | None = None) -> None:
        if strict is None:
            strict = os.environ.get("AMP_STRICT_PLUGINS", "") not in ("", "0")
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.records: list[PluginRecord] = []
        self._cache: dict[str, dict[str, Registered]] = {}
        if entry_points is None:
            entry_points = md.entry_points(group=hookspecs.PROJECT)
        disabled = {x.strip() for x in os.environ.get("AMP_DISABLE_PLUGINS", "").split(",") if x.strip()}
        seen: set[str] = set()
        for ep in entry_points:
            if ep.name in seen:
                continue
            seen.add(ep.name)
            _load_one(self, ep, disabled, strict)
        self.pm.check_pending()
        if os.environ.get("AMP_TRACE_PLUGINS", "") not in ("", "0"):
            self.pm.trace.root.setwriter(print)
            self.pm.enable_tracing()

    def registered(self, kind: str) -> dict[str, Registered]:
        """Return every registered name of ``kind`` (sorted), validating records once."""
        if kind not in self._cache:
            self._cache[kind] = _collect(self, kind)
        return self._cache[kind]

    def lookup(self, kind: str, name: str, where: str = "") -> Registered:
        """Return the plugin ``name`` of ``kind`` or raise :class:`UnknownPluginError`."""
        table = self.registered(kind)
        if name in table:
            return table[name]
        names = tuple(table)
        lines = [f"unknown {kind} {name!r}" + (f" ({where})" if where else "") + "."]
        lines.append(f"Available {kind}s: {', '.join(names) or '(none)'}.")
        close = difflib.get_close_matches(str(name), names, n=1)
        if close:
            lines.append(f"Did you mean {close[0]!r}?")
        lines.append("Run 'amp plugins' to see providers.")
        for record in self.records:
            if record.status.startswith("failed"):
                lines.append(f"Plugin {record.entry_point} ({record.distribution}) failed to load: {record.error}")
        raise UnknownPluginError(" ".join(lines[:4]) + "".join("\n" + x for x in lines[4:]),
                                 kind=kind, name=str(name), available=names)

    def provider(self, kind: str, name: str) -> tuple[str, str]:
        """Return (distribution, version) of the registered plugin ``name`` of ``kind``.

        ``("(unregistered)", "")`` for a plugin object that was built without this manager.
        """
        table = self.registered(kind)
        if name in table:
            return table[name].distribution, table[name].version
        return "(unregistered)", ""

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register an in-process plugin object (a module or an object with ``@hookimpl`` methods)."""
        self.pm.register(plugin, name=name)
        self._cache.clear()

    def create(self, kind: str, name: str, params: dict[str, Any], where: str = "") -> Any:
        """Look up ``name`` of ``kind``, validate ``params`` and build the plugin object.

        Raises:
            UnknownPluginError: no such name. ConfigError: bad parameters, or the backend
                is unavailable here. PluginError: the factory built an object whose
                ``name`` is not the registered one.
        """
        registered = self.lookup(kind, name, where)
        if kind == "backend":
            why = registered.entry.probe()
            if why:
                raise ConfigError(f"backend {name!r} is unavailable here" + (f" ({where})" if where else "")
                                  + f": {why}")
        built = registered.entry.factory(build_params(registered, params, where))
        if getattr(built, "name", None) != name:
            raise PluginError(
                f"{kind} {name!r} of plugin {registered.plugin_name!r} ({registered.distribution} "
                f"{registered.version}) built an object whose name is {getattr(built, 'name', None)!r}; "
                "the entry's name and the object's name must be the same",
                entry_point=registered.plugin_name, distribution=registered.distribution)
        return built


AmpPluginManager = PluginManager
"""Former name of :class:`PluginManager`."""


def make_plugin_manager(
    entry_points: Iterable[md.EntryPoint] | None = None, *, strict: bool | None = None
) -> PluginManager:
    """Build a :class:`PluginManager` (see there for the arguments)."""
    return PluginManager(entry_points, strict=strict)


def _load_one(manager: PluginManager, ep: md.EntryPoint, disabled: set[str], strict: bool) -> None:
    dist = ep.dist.name if ep.dist is not None else "(unknown)"
    version = ep.dist.version if ep.dist is not None else ""
    own = dist == OWN_DISTRIBUTION
    record = PluginRecord(ep.name, ep.value, dist, version)
    manager.records.append(record)
    if ep.name in disabled and not own:
        record.status = "disabled"
        return
    try:
        module = ep.load()
        manager.pm.register(module, name=ep.name)
        record.module_file = str(getattr(module, "__file__", "") or "")
    except Exception as exc:  # noqa: BLE001 - any import failure is reported, not hidden
        record.status = "failed"
        record.error = f"{type(exc).__name__}: {exc}"
        message = f"plugin entry point {ep.name!r} of {dist} {version} failed to load: {record.error}"
        if own or strict:
            raise PluginError(message, entry_point=ep.name, distribution=dist) from exc
        warnings.warn(AmpPluginWarning(message + " (continuing without it)"), stacklevel=2)


def _provider(manager: PluginManager, plugin_name: str) -> tuple[str, str]:
    for record in manager.records:
        if record.entry_point == plugin_name:
            return record.distribution, record.version
    return "(registered in process)", ""


def _collect(manager: PluginManager, kind: str) -> dict[str, Registered]:
    hook = getattr(manager.pm.hook, _HOOKS[kind])
    found: dict[str, list[Registered]] = {}
    for impl in hook.get_hookimpls():
        dist, version = _provider(manager, impl.plugin_name)
        try:
            # The registration hooks take no arguments, so calling directly is safe.
            entries = impl.function()
        except Exception as exc:  # noqa: BLE001
            raise PluginError(
                f"{_HOOKS[kind]}() of plugin {impl.plugin_name!r} ({dist} {version}) raised "
                f"{type(exc).__name__}: {exc}",
                entry_point=impl.plugin_name,
                distribution=dist,
            ) from exc
        for entry in entries or ():
            _check_entry(kind, entry, impl.plugin_name, dist)
            found.setdefault(entry.name, []).append(Registered(kind, entry, impl.plugin_name, dist, version))
    duplicates = {n: regs for n, regs in found.items() if len(regs) > 1}
    if duplicates:
        lines = [
            f"{kind} {n!r} is registered by " + ", ".join(f"{r.plugin_name} ({r.distribution} {r.version})" for r in regs)
            for n, regs in duplicates.items()
        ]
        raise PluginError(
            "duplicate plugin names: " + "; ".join(lines) + ". Uninstall or disable one "
            "(AMP_DISABLE_PLUGINS=<entry point>)."
        )
    return {n: found[n][0] for n in sorted(found)}


def _check_entry(kind: str, entry: Any, plugin: str, dist: str) -> None:
    expected = _RECORDS[kind]
    if not isinstance(entry, expected):
        raise PluginError(
            f"plugin {plugin!r} ({dist}) returned {type(entry).__name__} from {_HOOKS[kind]}(); "
            f"expected {expected.__name__}",
            entry_point=plugin,
            distribution=dist,
        )
    if not isinstance(entry.name, str) or not _NAME.match(entry.name):
        raise PluginError(
            f"plugin {plugin!r} ({dist}) registers the {kind} name {entry.name!r}; names must match "
            "[a-z][a-z0-9_-]*",
            entry_point=plugin,
            distribution=dist,
        )
    if not dataclasses.is_dataclass(entry.params):
        raise PluginError(
            f"{kind} {entry.name!r} of plugin {plugin!r} ({dist}): params must be a dataclass",
            entry_point=plugin,
            distribution=dist,
        )


def build_params(registered: Registered, values: dict[str, Any], where: str = "") -> Any:
    """Build the entry's parameter dataclass, turning every problem into :class:`ConfigError`.

    Lists become tuples first, so frozen params stay hashable.
    """
    entry = registered.entry
    fields = {f.name: f for f in dataclasses.fields(entry.params)}
    prefix = f"{where}: " if where else ""
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"{prefix}unknown key(s) {', '.join(map(repr, unknown))} for {registered.kind} "
            f"{entry.name!r} ({registered.distribution}). Accepted keys: {', '.join(fields) or '(none)'}."
        )
    missing = sorted(
        n
        for n, f in fields.items()
        if n not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    if missing:
        raise ConfigError(
            f"{prefix}missing key(s) {', '.join(map(repr, missing))} for {registered.kind} {entry.name!r}."
        )
    try:
        return entry.params(**{k: _freeze(v) for k, v in values.items()})
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{prefix}invalid parameters for {registered.kind} {entry.name!r} "
            f"({registered.distribution} {registered.version}): {exc}"
        ) from exc


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


_DEFAULT: PluginManager | None = None


def default_manager() -> PluginManager:
    """Return the manager that ``manager=None`` means: the installed entry points, loaded once."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = PluginManager()
    return _DEFAULT


def resolve(manager: PluginManager | None) -> PluginManager:
    """Return ``manager``, or :func:`default_manager` for ``None`` (public entry points call this once)."""
    return default_manager() if manager is None else manager


def create(kind: str, name: str, params: dict[str, Any], manager: PluginManager | None = None,
           where: str = "") -> Any:
    """Build plugin ``name`` of ``kind`` with ``params`` through ``manager`` (see :meth:`PluginManager.create`)."""
    return resolve(manager).create(kind, name, params, where)
