"""Per-file error statistics of amp evaluate, checked against the loss pipeline (an independent path)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from amp_core import Potential, create_descriptor, create_model, evaluate_loss
from amp_core.evaluation import file_errors

DATA = Path(__file__).resolve().parent.parent / "examples" / "data"


@pytest.fixture(scope="module")
def saved(tmp_path_factory, slab_images):
    potential = Potential(create_descriptor("gaussian", elements=["Cu", "Pt"], cutoff=5.0),
                          create_model("neuralnetwork", hiddenlayers=(4,), seed=5))
    evaluate_loss(slab_images[:3], potential)
    return potential, potential.save(tmp_path_factory.mktemp("p") / "potential.json")


def test_file_rmse_matches_the_loss_pipeline(saved):
    potential, _ = saved
    source = f"{DATA / 'ptcu-validation.xyz'}@0:6"
    errors = file_errors(potential, source, forces=True)
    reference = evaluate_loss(source, potential, forces=True)
    assert (errors.images, errors.atoms) == (6, 216)
    assert errors.energy_rmse == pytest.approx(reference.energy_rmse, rel=1e-10)
    assert errors.energy_max == pytest.approx(reference.energy_maxresid, rel=1e-10)
    assert errors.force_rmse == pytest.approx(reference.force_rmse, rel=1e-10)
    assert errors.force_max == pytest.approx(reference.force_maxresid, rel=1e-10)
    assert errors.energy_mae <= errors.energy_rmse <= errors.energy_max
    assert errors.force_mae <= errors.force_rmse <= errors.force_max


@pytest.fixture
def asked(monkeypatch):
    """The properties of every calculator call, in order."""
    calls: list[tuple[str, ...]] = []
    original = Potential.calculate

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        calls.append(tuple(properties))
        return original(self, atoms, properties, system_changes)

    monkeypatch.setattr(Potential, "calculate", calculate)
    return calls


def test_each_image_is_computed_once_for_energy_and_forces(saved, asked):
    potential, _ = saved
    file_errors(potential, f"{DATA / 'ptcu-validation.xyz'}@0:3", forces=True)
    assert asked == [("forces",)] * 3  # the energy comes from the same pass
    asked.clear()
    file_errors(potential, f"{DATA / 'ptcu-validation.xyz'}@0:3", forces=False)
    assert asked == [("energy",)] * 3


def test_amp_evaluate_prints_a_row_per_file(saved):
    _, path = saved
    run = subprocess.run([sys.executable, "-m", "amp_core.cli", "evaluate", str(path),
                          f"{DATA / 'ptcu-validation.xyz'}@0:4", f"{DATA / 'ptcu-train.xyz'}@0:2"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split()[:4] == ["file", "images", "atoms", "E"]
    assert lines[1].split()[1:3] == ["4", "144"] and lines[2].split()[1:3] == ["2", "72"]
    assert lines[3].startswith("energy RMSE") and lines[4].startswith("force  RMSE")


def test_the_prediction_stage_shows_progress_on_a_terminal(saved, capsys):
    potential, _ = saved
    file_errors(potential, f"{DATA / 'ptcu-validation.xyz'}@0:3", forces=True, progress=True)
    err = capsys.readouterr().err
    assert "predicting ptcu-validation.xyz@0:3: 3/3 images" in err
    file_errors(potential, f"{DATA / 'ptcu-validation.xyz'}@0:3", forces=True, progress=False)
    assert capsys.readouterr().err == ""


def test_the_parity_plot_computes_each_image_once(saved, asked, tmp_path):
    pytest.importorskip("matplotlib")
    from amp_core.plotting import parity_plot

    _, path = saved
    out = parity_plot(path, [f"{DATA / 'ptcu-validation.xyz'}@0:3"], str(tmp_path / "p.png"))
    assert asked == [("forces",)] * 3  # the energy comes from the same pass
    assert out.stat().st_size > 1000


def test_amp_evaluate_summary_equals_the_loss_pipeline_without_running_it(saved, monkeypatch, capsys):
    import amp_core
    from amp_core.cli import main

    potential, path = saved
    sources = [f"{DATA / 'ptcu-validation.xyz'}@0:4", f"{DATA / 'ptcu-train.xyz'}@0:2"]
    reference = evaluate_loss(sources, potential, forces=True)

    def forbidden(*args, **kwargs):
        raise AssertionError("a single model's amp evaluate needs no loss-pipeline pass")

    monkeypatch.setattr(amp_core, "evaluate_loss", forbidden)
    assert main(["evaluate", str(path), *sources]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[3] == (f"energy RMSE {reference.energy_rmse:.6e} eV/atom   "
                        f"max |dE|/N {reference.energy_maxresid:.6e} eV/atom")
    assert lines[4] == f"force  RMSE {reference.force_rmse:.6e} eV/A      max |dF|   {reference.force_maxresid:.6e} eV/A"


def test_the_summary_of_two_files_equals_the_errors_of_one_file_holding_both(saved, tmp_path):
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.io import read, write

    from amp_core.evaluation import summary

    potential, _ = saved
    small = []  # 8-atom cells beside the 36-atom slabs: per-image and per-atom weights differ
    for seed in range(3):
        atoms = bulk("Cu", "fcc", a=3.7, cubic=True).repeat((2, 1, 1))
        atoms.symbols[::3] = "Pt"
        atoms.rattle(0.1, seed=seed)
        atoms.calc = EMT()
        atoms.get_forces()
        small.append(atoms)
    write(tmp_path / "small.xyz", small)
    first, second = f"{DATA / 'ptcu-validation.xyz'}@0:4", str(tmp_path / "small.xyz")
    write(tmp_path / "both.xyz", read(DATA / "ptcu-validation.xyz", ":4") + small)
    together = summary([file_errors(potential, first, True), file_errors(potential, second, True)])
    one = file_errors(potential, str(tmp_path / "both.xyz"), True)
    assert (together.images, together.atoms) == (one.images, one.atoms) == (7, 4 * 36 + 3 * 8)
    for key in ("energy_mae", "energy_rmse", "energy_max", "force_mae", "force_rmse", "force_max"):
        assert getattr(together, key) == pytest.approx(getattr(one, key), rel=1e-12), key
