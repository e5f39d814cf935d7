"""What ``amp`` prints for a new user: options blamed as options, quiet and sparse logs, warnings, hints."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

import amp_core.chunks
import amp_core.training
from amp_core import DescriptorEntry, hookimpl, load, train
from amp_core.chunks import oversubscription
from amp_core.cli import main, plugin_rows
from amp_core.errors import DataError
from amp_core.protocols import COMPILED, FINGERPRINTS

CONFIG = """
[descriptor]
name = "none"
[model]
name = "pairpotential"
cutoff = 5.0
[backend]
name = "{backend}"
[data]
train = "train.xyz"
[training]
maxiter = {maxiter}
[training.convergence]
energy_rmse = {target}
"""


def setup_run(folder, images, *, maxiter=200, target=0.02, backend="serial"):
    """Write ``images`` and a quick pair-potential config into ``folder``; return the config path."""
    write(folder / "train.xyz", images)
    path = folder / "run.toml"
    path.write_text(CONFIG.format(maxiter=maxiter, target=target, backend=backend))
    return path


def rows(text):
    """Return the iteration numbers of the log rows in ``text``."""
    return [int(line.split()[0]) for line in text.splitlines() if line.split() and line.split()[0].isdigit()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, slab_images):
    """A pair potential trained briefly on Cu/Pt slabs: (model file, folder)."""
    folder = tmp_path_factory.mktemp("trained")
    assert main(["train", str(setup_run(folder, slab_images[:4], maxiter=3, target=1e-12)), "--quiet"]) == 1
    return folder / "run" / "potential.json", folder


# --- item 3: --cores for a backend without workers ---------------------------------------


def test_cores_option_on_serial_blames_the_option_not_the_config(tmp_path, slab_images, capsys):
    path = setup_run(tmp_path, slab_images[:2])
    assert main(["train", str(path), "--cores", "2"]) == 2
    err = capsys.readouterr().err
    assert "option --cores 2: backend 'serial'" in err and "has no cores" in err, err
    assert "unknown key" not in err and "multiprocessing" in err
    assert not (tmp_path / "run").exists()


def test_cores_in_the_config_of_serial_still_blames_the_config(tmp_path, slab_images, capsys):
    path = setup_run(tmp_path, slab_images[:2])
    path.write_text(path.read_text().replace('name = "serial"', 'name = "serial"\ncores = 2'))
    assert main(["train", str(path)]) == 2
    assert "[backend]: unknown key(s) 'cores'" in capsys.readouterr().err


def test_evaluate_cores_on_serial_blames_the_option(trained, capsys):
    model, folder = trained
    assert main(["evaluate", str(model), str(folder / "train.xyz"), "--cores", "2"]) == 2
    err = capsys.readouterr().err
    assert "option --cores 2: backend 'serial' (--backend)" in err and "unknown key" not in err


# --- item 4: --quiet prints the outcome line ----------------------------------------------


def test_quiet_prints_only_the_outcome_when_not_converged(tmp_path, slab_images, capsys):
    path = setup_run(tmp_path, slab_images[:4], maxiter=3, target=1e-12)
    assert main(["train", str(path), "--quiet"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("NOT converged after 3 iterations"), out
    assert str(tmp_path / "run" / "potential.json") in out[0]


def test_quiet_prints_only_the_outcome_when_converged(tmp_path, slab_images, capsys):
    assert main(["train", str(setup_run(tmp_path, slab_images[:6])), "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("converged at iteration"), out


# --- item 5: --log-every N ----------------------------------------------------------------


def test_log_every_shows_every_nth_row_and_the_first_and_last(tmp_path, slab_images, capsys):
    path = setup_run(tmp_path, slab_images[:4], maxiter=12, target=1e-12)
    assert main(["train", str(path), "--log-every", "5"]) == 1
    shown = rows(capsys.readouterr().out)
    logged = rows((tmp_path / "run" / "train-log.txt").read_text())
    assert logged == list(range(len(logged))) and logged[-1] == 12
    assert shown == [0, 5, 10, 12]


def test_log_every_keeps_the_last_row_shown_once(tmp_path, slab_images):
    stream = io.StringIO()
    path = setup_run(tmp_path, slab_images[:4], maxiter=10, target=1e-12)
    train(path, echo=stream, log_every=5)
    assert rows(stream.getvalue()) == [0, 5, 10]


@pytest.mark.parametrize("value", [0, -3])
def test_log_every_must_be_positive(tmp_path, slab_images, capsys, value):
    path = setup_run(tmp_path, slab_images[:2])
    assert main(["train", str(path), "--log-every", str(value)]) == 2
    assert "--log-every" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# --- item 9: more workers than cores ------------------------------------------------------


def test_oversubscription_message():
    assert oversubscription(2, 2) is None and oversubscription(1, 4) is None
    message = oversubscription(4, 2)
    assert message is not None and message.startswith("warning: 4 workers on 2 core(s)")
    assert "--cores" in message


def test_train_log_header_warns_about_more_workers_than_cores(tmp_path, slab_images, monkeypatch):
    monkeypatch.setattr(amp_core.training, "detect_cores", lambda: 1)
    path = setup_run(tmp_path, slab_images[:4], maxiter=1, backend="multiprocessing")
    stream = io.StringIO()
    train(path, overrides={"backend": {"cores": 2}}, echo=stream)
    header = stream.getvalue().splitlines()[:3]
    assert header[0] == "cores detected: 1, used: 2"
    assert header[1].startswith("warning: 2 workers on 1 core(s)")
    assert "warning: 2 workers" in (tmp_path / "run" / "train-log.txt").read_text()


def test_train_log_header_is_quiet_when_workers_fit(tmp_path, slab_images):
    stream = io.StringIO()
    train(setup_run(tmp_path, slab_images[:2], maxiter=1), echo=stream)
    assert "warning" not in stream.getvalue()


def test_evaluate_warns_about_more_workers_than_cores(trained, monkeypatch, capsys):
    monkeypatch.setattr(amp_core.chunks, "detect_cores", lambda: 1)
    model, folder = trained
    args = ["evaluate", str(model), str(folder / "train.xyz"), "--backend", "multiprocessing", "--cores", "2"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "amp evaluate: warning: 2 workers on 1 core(s)" in captured.err and "energy RMSE" in captured.out


# --- item 10: evaluate's own hints --------------------------------------------------------


def test_evaluate_without_reference_forces_suggests_no_forces(trained, tmp_path, slab_images, capsys):
    model, _ = trained
    images = []
    for atoms in slab_images[:2]:
        atoms = atoms.copy()
        atoms.calc = SinglePointCalculator(atoms, energy=1.0)
        images.append(atoms)
    write(tmp_path / "energies.xyz", images)
    assert main(["evaluate", str(model), str(tmp_path / "energies.xyz")]) == 2
    err = capsys.readouterr().err
    assert "energies.xyz, image 0: no reference forces" in err and "--no-forces" in err, err
    assert "train energies only" not in err
    assert main(["evaluate", str(model), str(tmp_path / "energies.xyz"), "--no-forces"]) == 0


def test_unknown_element_on_a_trained_potential_says_retrain(trained, tmp_path, capsys):
    model, _ = trained
    atoms = Atoms("CuAu", positions=[[0, 0, 0], [0, 0, 2.5]], cell=[8, 8, 8], pbc=True)
    atoms.calc = SinglePointCalculator(atoms, energy=1.0, forces=np.zeros((2, 3)))
    write(tmp_path / "gold.xyz", atoms)
    assert main(["evaluate", str(model), str(tmp_path / "gold.xyz")]) == 2
    err = capsys.readouterr().err
    assert "element(s) Au unknown to model 'pairpotential'" in err and "retrain it with such images" in err
    assert "add them to its parameters" not in err
    atoms.calc = load(model)
    with pytest.raises(DataError, match="retrain it with such images in the training data"):
        atoms.get_potential_energy()


def test_unknown_element_before_training_still_says_add_it(slab_images):
    from amp_core import Potential, create_descriptor, create_model, evaluate_loss

    potential = Potential(create_descriptor("gaussian", elements=["Cu"]), create_model("neuralnetwork"))
    with pytest.raises(DataError, match=r"element\(s\) Pt unknown to descriptor 'gaussian'.*add them to its param"):
        evaluate_loss(slab_images[:1], potential)


# --- amp plugins: the kernels column --------------------------------------------------------


@dataclass(frozen=True)
class NoParams:
    """No parameters at all."""


@dataclass(frozen=True)
class NeedsElements:
    """A required parameter: no object can be built with defaults."""

    elements: tuple[str, ...]


class Fake:
    """A descriptor that is only ever listed."""

    implemented = frozenset({FINGERPRINTS, COMPILED})
    elements = None

    def __init__(self, name: str, implemented: frozenset[str]) -> None:
        self.name, self.implemented = name, implemented


class Declared:
    """A descriptor class declaring ``COMPILED``, which needs parameters to be built."""

    name = "declared"
    implemented = frozenset({FINGERPRINTS, COMPILED})

    def __init__(self, params: NeedsElements) -> None:
        self.params = params


class KernelPlugins:
    @hookimpl
    def amp_descriptors(self):
        compiled = frozenset({FINGERPRINTS, COMPILED})
        return [
            DescriptorEntry("built", NoParams, lambda p: Fake("built", compiled), "compiled, built"),
            DescriptorEntry("missing", NoParams, lambda p: Fake("missing", compiled), "compiled, not built",
                            probe=lambda: "no Fortran compiler at install; install gfortran, reinstall"),
            DescriptorEntry("plain", NoParams, lambda p: Fake("plain", frozenset({FINGERPRINTS})), "no kernels"),
            DescriptorEntry("declared", NeedsElements, Declared, "compiled, needs elements"),
        ]


def test_plugin_rows_report_compiled_kernels(plugin_manager):
    plugin_manager.register(KernelPlugins(), name="test-kernels")
    kernels = {r["name"]: r["kernels"] for r in plugin_rows("descriptor", manager=plugin_manager)}
    assert kernels == {"built": "built", "declared": "built", "plain": "",
                       "missing": "unavailable: no Fortran compiler at install; install gfortran, reinstall"}


def test_plugins_json_has_kernels_and_table_shows_them_only_verbose(capsys):
    assert main(["plugins", "--json"]) == 0
    rows_ = json.loads(capsys.readouterr().out)
    assert all("kernels" in r for r in rows_)
    by_name = {(r["kind"], r["name"]): r["kernels"] for r in rows_}
    assert by_name[("descriptor", "none")] == "" and by_name[("backend", "serial")] == ""
    assert by_name[("model", "pairpotential")] == ""
    for compiled in (("descriptor", "gaussian"), ("model", "neuralnetwork")):
        assert by_name[compiled] == "built" or by_name[compiled].startswith("unavailable: ")
    assert main(["plugins"]) == 0
    assert "KERNELS" not in capsys.readouterr().out
    assert main(["plugins", "-v"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split()[:5] == ["KIND", "NAME", "PROVIDER", "STATUS", "KERNELS"]
