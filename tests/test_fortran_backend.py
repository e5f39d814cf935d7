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


def _fortran_or_skip():
    if fortran_module.probe() is not None:
        pytest.skip(f"no Fortran build: {fortran_module.probe()}")


def test_killed_worker_during_training_is_a_backend_error():
    import os
    import signal
    import time

    from amp_core import Potential, loss_function
    from amp_core.errors import BackendError
    from amp_core.testing import labelled_structures

    _fortran_or_skip()
    potential = Potential(create_descriptor("gaussian", elements=["Cu", "Pt"]),
                          create_model("neuralnetwork", hiddenlayers=(3,)))
    with create_backend("fortran", cores=2) as backend, \
            loss_function(labelled_structures(), potential, backend, force_coefficient=0.04) as f:
        vector = potential.model.vector()
        f(vector)
        pids = backend.pids
        os.kill(pids[1], signal.SIGKILL)
        began = time.monotonic()
        with pytest.raises(BackendError, match="SIGKILL") as info:
            f(vector + 1e-3)
        assert time.monotonic() - began < 5.0 and info.value.stage == "loss"
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower()


def test_kernel_input_check_reaches_the_caller_as_data_error():
    from ase import Atoms

    from amp_core import Potential, evaluate_loss
    from amp_core.errors import DataError

    _fortran_or_skip()
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 0]], cell=[5, 5, 5], pbc=True)
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms.calc = SinglePointCalculator(atoms, energy=0.0, forces=[[0, 0, 0]] * 2)
    potential = Potential(create_descriptor("gaussian", elements=["Cu"]), create_model("neuralnetwork"))
    with create_backend("fortran", cores=1) as backend, pytest.raises(DataError, match="image 0: atoms 0 and 1 overlap"):
        evaluate_loss([atoms], potential, backend, force_coefficient=0.04)
