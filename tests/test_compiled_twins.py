"""The ``compiled`` capability of the built-in plugins: one mechanism in ``gaussian``, ``zernike`` and ``neuralnetwork``.

``plugin.compiled()`` returns a twin (same class, name and parameters) with
``kernel == "fortran"``; each plugin's entry carries a probe that reports on its own
library.
"""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import pytest

import amp_core.compiled
from amp_core import create_descriptor, create_model
from amp_core.errors import PropertyNotImplementedError
from amp_core.manager import make_plugin_manager
from amp_core.pipeline import use_compiled
from amp_core.protocols import (
    COMPILED,
    DESCRIPTOR_CAPABILITIES,
    MODEL_CAPABILITIES,
    Compilable,
)

PLUGINS = {
    # name: (kind, build, library stem, capabilities a plugin of that kind may declare)
    "gaussian": ("descriptor", lambda: create_descriptor("gaussian", elements=["Cu", "Pt"]),
                 "gaussian_kernels", DESCRIPTOR_CAPABILITIES),
    "zernike": ("descriptor", lambda: create_descriptor("zernike", elements=["Cu", "Pt"]),
                "zernike_kernels", DESCRIPTOR_CAPABILITIES),
    "neuralnetwork": ("model", lambda: create_model("neuralnetwork", hiddenlayers=(3,)),
                      "neuralnetwork_kernels", MODEL_CAPABILITIES),
}  # fmt: skip


def _probe(name: str):
    kind = PLUGINS[name][0]
    return make_plugin_manager().lookup(kind, name).entry.probe


def _built_or_skip(name: str) -> None:
    why = _probe(name)()
    if why is not None:
        pytest.skip(f"no compiled kernels for {name} here: {why}")


@pytest.fixture()
def unbuilt(monkeypatch: pytest.MonkeyPatch):
    """Make ``load_library`` find no library whose stem is in the returned set (initially empty)."""
    missing: set[str] = set()
    real = amp_core.compiled.find_library

    def find(package: str, stem: str):
        return None if stem.removesuffix("_x86_64_v3") in missing else real(package, stem)

    monkeypatch.setattr(amp_core.compiled, "find_library", find)
    amp_core.compiled.load_library.cache_clear()
    yield missing
    amp_core.compiled.load_library.cache_clear()


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_capabilities_are_the_protocol_constants(name):
    plugin = PLUGINS[name][1]()
    assert COMPILED in plugin.implemented and plugin.implemented <= PLUGINS[name][3]
    assert isinstance(plugin, Compilable)
    assert plugin.kernel == "numpy"


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_twin_has_the_same_class_name_and_parameters_and_pickles(name):
    _built_or_skip(name)
    plugin = PLUGINS[name][1]()
    twin = plugin.compiled()
    assert type(twin) is type(plugin) and twin is not plugin
    assert (twin.name, twin.kernel, twin.params) == (name, "fortran", plugin.params)
    assert plugin.kernel == "numpy"  # the original is unchanged
    assert twin.todict() == plugin.todict()
    clone = pickle.loads(pickle.dumps(twin))
    assert (clone.name, clone.kernel, clone.params) == (name, "fortran", plugin.params)
    assert twin.compiled().kernel == "fortran"


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_use_compiled_hands_out_the_twin(name):
    _built_or_skip(name)
    plugin = PLUGINS[name][1]()
    backend = SimpleNamespace(name="stub", compiled=True)
    assert use_compiled(plugin, backend, print).kernel == "fortran"
    assert use_compiled(plugin, SimpleNamespace(name="serial", compiled=False), print) is plugin


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_probe_and_compiled_say_how_to_get_missing_kernels(name, unbuilt):
    plugin = PLUGINS[name][1]()
    unbuilt.add(PLUGINS[name][2])
    why = _probe(name)()
    assert why is not None and PLUGINS[name][2] in why and amp_core.compiled.HOW_TO_GET in why
    with pytest.raises(PropertyNotImplementedError, match=f"{name}: .*{PLUGINS[name][2]}") as info:
        plugin.compiled()
    assert amp_core.compiled.HOW_TO_GET in str(info.value)


def test_each_probe_reports_its_own_library(unbuilt):
    _built_or_skip("neuralnetwork")
    unbuilt.add("gaussian_kernels")
    assert _probe("gaussian")() is not None
    assert _probe("neuralnetwork")() is None
