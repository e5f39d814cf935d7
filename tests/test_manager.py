"""Plugin loading, registration checks and name lookup (synthetic entry points, STYLE G.33)."""

from __future__ import annotations

import importlib.metadata as md
import inspect
import sys
import types
from dataclasses import dataclass

import pytest

import amp_core
from amp_core import hookspecs
from amp_core.entries import BackendEntry, DescriptorEntry
from amp_core.errors import AmpPluginWarning, ConfigError, PluginError, UnknownPluginError
from amp_core.manager import build_params, make_plugin_manager


class FakeDist:
    def __init__(self, name: str, version: str = "1.2.3") -> None:
        self.name, self.version = name, version
        self.metadata = {"Name": name}


def entry_point(name: str, value: str, dist: str = "amp-thirdparty") -> md.EntryPoint:
    return md.EntryPoint(name, value, "amp")._for(FakeDist(dist))  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ToyParams:
    size: int = 3

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError("size must be >= 1")


def toy_module(module_name: str, entry_name: str = "toy") -> types.ModuleType:
    module = types.ModuleType(module_name)

    @hookspecs.hookimpl
    def amp_descriptors():
        return [DescriptorEntry(name=entry_name, params=ToyParams, factory=lambda p: ("toy", p), summary="Toy.")]

    module.amp_descriptors = amp_descriptors
    sys.modules[module_name] = module
    return module


def test_third_party_plugin_loads_with_provenance():
    toy_module("amp_toy_ok")
    manager = make_plugin_manager([entry_point("amp_toy_ok", "amp_toy_ok")])
    reg = manager.lookup("descriptor", "toy")
    assert (reg.distribution, reg.version, reg.plugin_name) == ("amp-thirdparty", "1.2.3", "amp_toy_ok")
    assert manager.records[0].status == "active"


def test_broken_third_party_plugin_warns_and_continues():
    with pytest.warns(AmpPluginWarning, match=r"amp_broken.*amp-thirdparty 1\.2\.3.*ModuleNotFoundError"):
        manager = make_plugin_manager([entry_point("amp_broken", "amp_no_such_module_xyz")])
    assert manager.records[0].status == "failed"
    assert "ModuleNotFoundError" in manager.records[0].error
    with pytest.raises(UnknownPluginError) as info:
        manager.lookup("descriptor", "anything")
    assert "amp_broken (amp-thirdparty) failed to load" in str(info.value)


def test_strict_mode_makes_a_broken_plugin_fatal(monkeypatch):
    monkeypatch.setenv("AMP_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="amp_broken"):
        make_plugin_manager([entry_point("amp_broken", "amp_no_such_module_xyz")])


def test_broken_builtin_is_fatal():
    with pytest.raises(PluginError, match="amp-core"):
        make_plugin_manager([entry_point("amp_plugins.nothing", "amp_plugins.nothing_here", dist="amp-core")])


def test_duplicate_names_name_every_provider():
    toy_module("amp_toy_a")
    toy_module("amp_toy_b")
    manager = make_plugin_manager([entry_point("amp_toy_a", "amp_toy_a", "dist-a"),
                                   entry_point("amp_toy_b", "amp_toy_b", "dist-b")])
    with pytest.raises(PluginError) as info:
        manager.registered("descriptor")
    assert "amp_toy_a (dist-a 1.2.3)" in str(info.value) and "amp_toy_b (dist-b 1.2.3)" in str(info.value)


def test_disabled_plugin_is_skipped_but_builtins_never(monkeypatch):
    toy_module("amp_toy_off")
    monkeypatch.setenv("AMP_DISABLE_PLUGINS", "amp_toy_off,amp_plugins.backends.serial")
    serial = entry_point("amp_plugins.backends.serial", "amp_plugins.backends.serial", dist="amp-core")
    manager = make_plugin_manager([entry_point("amp_toy_off", "amp_toy_off"), serial])
    assert manager.records[0].status == "disabled"
    assert "toy" not in manager.registered("descriptor")
    assert "serial" in manager.registered("backend")


@pytest.mark.parametrize("bad_name", ["Toy", "1toy", "to y", ""])
def test_bad_plugin_names_are_rejected(plugin_manager, bad_name):
    plugin_manager.register(toy_module("amp_toy_badname", bad_name), name="test-bad")
    with pytest.raises(PluginError, match="names must match"):
        plugin_manager.registered("descriptor")


def test_wrong_record_type_is_rejected(plugin_manager):
    class Wrong:
        @hookspecs.hookimpl
        def amp_backends(self):
            return [DescriptorEntry(name="x", params=ToyParams, factory=object, summary="")]

    plugin_manager.register(Wrong(), name="test-wrong")
    with pytest.raises(PluginError, match="expected BackendEntry"):
        plugin_manager.registered("backend")


def test_raising_hook_is_wrapped(plugin_manager):
    class Raising:
        @hookspecs.hookimpl
        def amp_models(self):
            raise RuntimeError("boom")

    plugin_manager.register(Raising(), name="test-raising")
    with pytest.raises(PluginError, match="test-raising.*RuntimeError: boom"):
        plugin_manager.registered("model")


def test_misspelt_hook_fails_loudly():
    module = types.ModuleType("amp_toy_typo")

    @hookspecs.hookimpl
    def amp_descriptor():  # missing the s
        return []

    module.amp_descriptor = amp_descriptor
    sys.modules["amp_toy_typo"] = module
    with pytest.raises(Exception, match="amp_descriptor"):
        make_plugin_manager([entry_point("amp_toy_typo", "amp_toy_typo")])


def test_unknown_name_message_lists_and_suggests(builtin_plugin_manager):
    with pytest.raises(UnknownPluginError) as info:
        builtin_plugin_manager.lookup("backend", "seral", "run.toml, [backend] name")
    error = info.value
    assert isinstance(error, ConfigError) and isinstance(error, LookupError)
    assert error.kind == "backend" and error.name == "seral" and "serial" in error.available
    message = str(error)
    assert "unknown backend 'seral' (run.toml, [backend] name)" in message
    assert "Did you mean 'serial'?" in message and "amp plugins" in message


def test_build_params_reports_unknown_missing_and_invalid(plugin_manager):
    plugin_manager.register(toy_module("amp_toy_params"), name="test-params")
    reg = plugin_manager.lookup("descriptor", "toy")
    with pytest.raises(ConfigError, match="unknown key.*'sise'.*Accepted keys: size"):
        build_params(reg, {"sise": 2}, "cfg.toml, [descriptor]")
    with pytest.raises(ConfigError, match=r"cfg.toml, \[descriptor\].*size must be >= 1"):
        build_params(reg, {"size": 0}, "cfg.toml, [descriptor]")
    assert build_params(reg, {"size": 2}).size == 2


def test_builtins_are_registered_through_entry_points(builtin_plugin_manager):
    assert "serial" in builtin_plugin_manager.registered("backend")
    assert "none" in builtin_plugin_manager.registered("descriptor")
    for record in builtin_plugin_manager.records:
        assert record.entry_point == record.value, "entry-point name must be the module path (STYLE A.3)"


def test_every_plugin_module_has_an_entry_point_and_vice_versa():
    import pathlib

    root = pathlib.Path(__file__).resolve().parent.parent / "plugins"
    # Each built-in plugin is one subpackage: plugins/<kind>/<name>/__init__.py.
    modules = {"amp_plugins." + ".".join(p.parent.relative_to(root).parts) for p in root.glob("*/*/__init__.py")}
    assert not [p for p in root.glob("*/*.py") if p.name != "__init__.py"], "plugin modules outside a subpackage"
    declared = {ep.value for ep in md.entry_points(group="amp") if ep.dist and ep.dist.name == "amp-core"}
    assert modules == declared


def test_every_hookspec_is_documented_and_has_example():
    for name in ("amp_descriptors", "amp_models", "amp_backends", "amp_optimizers"):
        spec = getattr(hookspecs, name)
        doc = inspect.getdoc(spec)
        assert "Called" in doc and "Returns:" in doc and "Example::" in doc and "versionadded" in doc
        assert inspect.signature(spec).parameters == {}


def test_public_api_exports():
    for name in ("create_descriptor", "create_model", "create_backend", "Potential", "load",
                 "evaluate_loss", "loss_function", "train", "hookimpl"):
        assert name in amp_core.__all__
        assert getattr(amp_core, name) is not None


def test_backend_entry_probe_reported(plugin_manager):
    @dataclass(frozen=True)
    class NoParams:
        pass

    class Unavailable:
        @hookspecs.hookimpl
        def amp_backends(self):
            return [BackendEntry(name="gpu", params=NoParams, factory=object, summary="", probe=lambda: "no GPU")]

    plugin_manager.register(Unavailable(), name="test-gpu")
    from amp_core.manager import create

    with pytest.raises(ConfigError, match="unavailable here.*no GPU"):
        create("backend", "gpu", {}, plugin_manager)


def test_docs_show_every_hookspec_with_its_signature():
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "plugins.md").read_text()
    for name in ("amp_descriptors", "amp_models", "amp_backends", "amp_optimizers"):
        spec = getattr(hookspecs, name)
        returns = inspect.signature(spec).return_annotation
        assert f"`{name}() -> {returns}`" in text
