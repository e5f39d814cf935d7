"""Extrapolation warnings: the training range saved with a potential, flagged atoms, warnings, ``amp evaluate``.

The scenario of the issue: a potential trained on 32-atom cells run on a 108-atom cell
(another composition, thermal motion of a larger cell) collapses within a few dozen
steps; the warning must come before the collapse.
"""

from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import read, write
from ase.md.verlet import VelocityVerlet

from amp_core import ExtrapolationWarning, ModelFileError, load, train
from amp_core.extrapolation import SEARCH, TrainingRange

CONFIG = """
[descriptor]
name = "gaussian"
elements = ["Cu", "Pt"]
[model]
name = "neuralnetwork"
hiddenlayers = [5, 5]
[backend]
name = "serial"
[data]
train = "train.xyz"
[training]
maxiter = 60
force_coefficient = 0.04
"""


def _thermalise(atoms, temperature, seed):
    sigma = np.sqrt(units.kB * temperature / atoms.get_masses())[:, None]
    atoms.set_momenta(atoms.get_masses()[:, None] * sigma * np.random.default_rng(seed).normal(size=(len(atoms), 3)))


def _small_cells(count=12):
    """EMT snapshots of a 32-atom Cu/Pt cell (every 5th atom Pt) at 600 K, 5 fs apart x 5."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    atoms.symbols[::5] = "Pt"
    atoms.rattle(0.05, seed=0)
    atoms.calc = EMT()
    _thermalise(atoms, 600, 0)
    dyn = VelocityVerlet(atoms, 5 * units.fs)
    images = []
    for _ in range(count):
        dyn.run(5)
        image = atoms.copy()
        image.calc = EMT()
        image.get_forces()
        images.append(image)
    return images


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(potential file, training images) of a potential trained briefly on 32-atom cells."""
    folder = tmp_path_factory.mktemp("small-cells")
    images = _small_cells()
    write(folder / "train.xyz", images)
    (folder / "run.toml").write_text(CONFIG)
    train(folder / "run.toml", echo=None)
    return folder / "run" / "potential.json", read(folder / "train.xyz", ":")  # as training read them


def test_training_records_the_range_of_its_data(trained):
    path, images = trained
    record = json.loads(path.read_text())["training_range"]
    assert sorted(record["features"]) == ["Cu", "Pt"] and record["n_atoms"] == 32 * len(images)
    potential = load(path)
    fingerprints = [potential.descriptor.compute(a) for a in images]
    for el, z in (("Cu", 29), ("Pt", 78)):
        rows = np.concatenate([f.values[f.numbers == z] for f in fingerprints])
        np.testing.assert_allclose(potential.training_range.low[el], rows.min(axis=0), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(potential.training_range.high[el], rows.max(axis=0), rtol=1e-12, atol=1e-14)
    # shortest distances per pair, against ASE's all-pairs minimum-image distances
    expected = {}
    for atoms in images:
        d = atoms.get_all_distances(mic=True)
        symbols = atoms.get_chemical_symbols()
        for i in range(len(atoms)):
            for j in range(i + 1, len(atoms)):
                key = "-".join(sorted((symbols[i], symbols[j])))
                expected[key] = min(expected.get(key, SEARCH), d[i, j])
    assert potential.training_range.min_distance == pytest.approx(expected, rel=1e-12)


def test_training_structures_are_not_flagged(trained):
    path, images = trained
    potential = load(path)
    atoms = images[4].copy()
    atoms.calc = potential
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        atoms.get_forces()
    assert potential.results["extrapolating_atoms"].tolist() == []


def test_a_compressed_cell_is_flagged_with_a_warning_naming_atoms_and_features(trained):
    path, images = trained
    potential = load(path)
    atoms = images[0].copy()
    atoms.positions[5] = atoms.positions[6] + [1.6, 0.0, 0.0]  # far closer than any pair in training
    atoms.calc = potential
    with pytest.warns(ExtrapolationWarning, match=r"atom 6 \(Cu\): features [0-9, .]+ outside "
                      r"the training range and neighbour atom 5 at 1\.600 A \(training minimum Cu-Pt"):
        atoms.get_potential_energy()
    flagged = potential.results["extrapolating_atoms"]
    assert 5 in flagged and 6 in flagged
    found = potential.training_range.check(atoms, potential.descriptor.compute(atoms).values)
    assert 5 in found.features and found.close[5][:2] == (6, pytest.approx(1.6))
    np.testing.assert_array_equal(found.atoms, flagged)


def test_warnings_are_rate_limited(trained):
    path, images = trained
    potential = load(path)
    potential.warn_interval = 3600.0
    atoms = images[1].copy()
    atoms.calc = potential
    atoms.set_cell(atoms.cell.array * 0.9, scale_atoms=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(5):
            atoms.positions[0, 0] += 0.01
            atoms.get_forces()
            assert len(potential.results["extrapolating_atoms"]) == len(atoms)
    assert len([w for w in caught if w.category is ExtrapolationWarning]) == 1
    potential.warn_interval = 0.0
    with pytest.warns(ExtrapolationWarning, match=r"4 more extrapolating call\(s\) since the last warning"):
        atoms.positions[0, 0] += 0.01
        atoms.get_forces()


def test_a_file_without_the_record_loads_and_says_so_once(trained, tmp_path, caplog):
    path, images = trained
    document = json.loads(path.read_text())
    del document["training_range"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(document))
    potential = load(old)
    assert potential.training_range is None
    atoms = images[0].copy()
    atoms.set_cell(atoms.cell.array * 0.9, scale_atoms=True)
    atoms.calc = potential
    with caplog.at_level(logging.WARNING, logger="amp_core"), warnings.catch_warnings():
        warnings.simplefilter("error")
        atoms.get_forces()
        atoms.positions[0, 0] += 0.01
        atoms.get_forces()
    said = [r.getMessage() for r in caplog.records if "has no training range" in r.getMessage()]
    assert len(said) == 1 and str(old) in said[0]
    assert "extrapolating_atoms" not in potential.results


@pytest.mark.parametrize("record, problem", [
    ([1, 2], "must be an object or null"),
    ({"features": {"Cu": {"min": [0.0, 1.0], "max": [1.0]}}, "min_distance": {}}, "element Cu has min and max"),
    ({"min_distance": {}}, "malformed training_range record"),
])
def test_a_damaged_record_is_a_model_file_error(trained, tmp_path, record, problem):
    document = json.loads(trained[0].read_text())
    document["training_range"] = record
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(document))
    with pytest.raises(ModelFileError, match=problem):
        load(bad)


def test_range_round_trips_through_its_record(trained):
    record = load(trained[0]).training_range
    again = TrainingRange.fromdict(json.loads(json.dumps(record.todict())))
    assert again.min_distance == record.min_distance and again.n_atoms == record.n_atoms
    for el in record.low:
        np.testing.assert_array_equal(again.low[el], record.low[el])
        np.testing.assert_array_equal(again.high[el], record.high[el])


def test_amp_evaluate_reports_the_extrapolating_fraction(trained, tmp_path, capsys):
    from amp_core.cli import main

    path, images = trained
    squeezed = []
    for atoms in images[:2]:
        atoms = atoms.copy()
        atoms.set_cell(atoms.cell.array * 0.9, scale_atoms=True)
        atoms.calc = EMT()
        atoms.get_forces()
        squeezed.append(atoms)
    write(tmp_path / "same.xyz", images[:2])
    write(tmp_path / "squeezed.xyz", squeezed)
    code = main(["evaluate", str(path), str(tmp_path / "same.xyz"), str(tmp_path / "squeezed.xyz")])
    out = capsys.readouterr().out
    assert code == 0 and "extrap." in out
    rows = {line.split()[0].rsplit("/", 1)[-1]: line.split() for line in out.splitlines() if ".xyz" in line}
    assert float(rows["same.xyz"][-1]) == 0.0 and float(rows["squeezed.xyz"][-1]) == 1.0


def test_md_on_a_larger_cell_warns_before_the_collapse(trained):
    """The issue's failure: trained on 32-atom cells, NVE on a 108-atom cell; warned before it collapses."""
    path, _ = trained
    potential = load(path)
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((3, 3, 3))
    atoms.symbols[::10] = "Pt"
    atoms.rattle(0.05, seed=1)
    atoms.calc = potential
    _thermalise(atoms, 600, 1)
    dyn = VelocityVerlet(atoms, 1 * units.fs)
    warned, collapsed = None, None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step, _ in enumerate(dyn.irun(150)):
            if warned is None and any(w.category is ExtrapolationWarning for w in caught):
                warned = step
            distances = atoms.get_all_distances(mic=True) + 10 * np.eye(len(atoms))
            if distances.min() < 1.5 or atoms.get_temperature() > 5000:
                collapsed = step
                break
    assert warned is not None, "no extrapolation warning in the whole run"
    assert collapsed is None or warned < collapsed
    assert len(potential.results["extrapolating_atoms"]) > 0
