"""The fortran backend: availability probe, unavailable message, compiled-capability plumbing."""

from __future__ import annotations

import pytest

import amp_plugins.backends.fortran as fortran_module
from amp_core import create_backend, create_descriptor, create_model
from amp_core.cli import main
from amp_core.errors import ConfigError
from amp_core.manager import create, make_plugin_manager
from amp_core.pipeline import use_compiled


def test_unavailable_fortran_is_listed_and_refused_before_work(monkeypatch, capsys):
    monkeypatch.setattr(fortran_module, "probe", lambda: "amp-core was built without a Fortran compiler; install")
    manager = make_plugin_manager()
    with pytest.raises(ConfigError, match=r"backend 'fortran' is unavailable here \(run.toml, \[backend\]\).*without"):
        create("backend", "fortran", {"cores": 1}, manager, where="run.toml, [backend]")
    monkeypatch.setattr("amp_core.manager.make_plugin_manager", lambda: manager)
    assert main(["plugins", "--kind", "backend"]) == 0
    assert "unavailable: amp-core was built without a Fortran compiler" in capsys.readouterr().out


def test_probe_reports_the_build():
    assert fortran_module.probe() is None or "Fortran" in fortran_module.probe()


def test_use_compiled_asks_plugins_and_notes_those_without():
    lines: list[str] = []
    serial = create_backend("serial")
    descriptor = create_descriptor("gaussian", elements=["Cu"])
    assert use_compiled(descriptor, serial, lines.append) is descriptor
    if fortran_module.probe() is not None:
        pytest.skip("no Fortran build here: nothing compiled to hand out")
    backend = create_backend("fortran", cores=1)
    compiled = use_compiled(descriptor, backend, lines.append)
    assert compiled is not descriptor and compiled.todict() == descriptor.todict()
    pair = create_model("pairpotential")
    assert use_compiled(pair, backend, lines.append) is pair
    assert lines == ["notice: 'pairpotential' has no compiled kernel; it runs its Python code under backend 'fortran'"]
