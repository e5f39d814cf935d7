"""Data files: ASE's ``file@slice`` selection everywhere data is named, and a warning for repeated images."""

from __future__ import annotations

import pytest
from ase.io import write

from amp_core import Potential, create_descriptor, create_model, evaluate_loss, loss_function, train
from amp_core.cli import main
from amp_core.config import load_config
from amp_core.errors import ConfigError, DataError
from amp_core.images import data_source, duplicate_warning, read_images

CONFIG = """
[descriptor]
name = "none"
[model]
name = "pairpotential"
cutoff = 5.0
[data]
train = {train}
[training]
maxiter = 2
[training.convergence]
energy_rmse = 1e-12
"""


@pytest.fixture
def data(tmp_path, slab_images):
    """Six labelled slabs in ``train.xyz``; returns its path."""
    path = tmp_path / "train.xyz"
    write(path, slab_images[:6])
    return path


def potential():
    return Potential(create_descriptor("none"), create_model("pairpotential", cutoff=5.0))


# --- item 7: file@slice -------------------------------------------------------------------


@pytest.mark.parametrize(
    "selection, positions",
    [("0:3", [0, 1, 2]), ("::2", [0, 2, 4]), ("4", [4]), ("2:", [2, 3, 4, 5])],
)
def test_slice_selects_images_and_names_their_place_in_the_file(data, slab_images, selection, positions):
    images, origins = read_images(f"{data}@{selection}")
    assert [a.positions.tolist() for a in images] == [slab_images[k].positions.tolist() for k in positions]
    assert origins == [f"{data}, image {k}" for k in positions]


def test_negative_slice_counts_from_the_end(data, slab_images):
    images, origins = read_images(f"{data}@-2:")
    assert [a.positions.tolist() for a in images] == [a.positions.tolist() for a in slab_images[4:6]]
    assert origins == [f"{data}@-2:, image {k} of the selection" for k in (0, 1)]


@pytest.mark.parametrize("selection", ["a:b", "1:2:3:4", "", "first", "0:1.5"])
def test_bad_slice_is_a_config_error_naming_it(data, selection):
    with pytest.raises(ConfigError, match=f"bad selection {selection!r} after '@'"):
        read_images(f"{data}@{selection}")


def test_missing_file_with_a_selection_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"data file .*nope\.xyz \(from .*nope\.xyz@0:3.* does not exist"):
        read_images(str(tmp_path / "nope.xyz@0:3"))


def test_empty_selection_says_so(data):
    with pytest.raises(DataError, match="the selection picks no images"):
        read_images(f"{data}@10:")


def test_a_real_file_named_with_at_is_read_whole(tmp_path, slab_images):
    path = tmp_path / "run@2.xyz"
    write(path, slab_images[:3])
    assert data_source(str(path)) == (path, None)
    assert len(read_images(str(path))[0]) == 3
    assert len(read_images(f"{path}@1:")[0]) == 2
    assert data_source("/home/user@host/md.traj")[1] is None  # an '@' in a folder name selects nothing


def test_config_data_accepts_slices(tmp_path, data):
    path = tmp_path / "run.toml"
    path.write_text(CONFIG.format(train='["train.xyz@0:3", "train.xyz@-1:"]'))
    config = load_config(path)
    assert config.data.train == (f"{data}@0:3", f"{data}@-1:")
    assert train(config, echo=None).training is not None
    log = (tmp_path / "run" / "train-log.txt").read_text()
    assert "data: 4 images" in log, log


@pytest.mark.parametrize("train_value, message", [
    ('"train.xyz@1:x"', "bad selection '1:x' after '@'"),
    ('"missing.xyz@0:3"', "missing.xyz (from 'missing.xyz@0:3', read as file@selection) does not exist"),
])
def test_config_data_reports_bad_slices_and_missing_files(tmp_path, data, train_value, message):
    path = tmp_path / "run.toml"
    path.write_text(CONFIG.format(train=train_value))
    with pytest.raises(ConfigError, match="key 'train'") as info:
        load_config(path)
    assert message in str(info.value)


def test_config_data_reads_a_real_file_named_with_at(tmp_path, slab_images):
    write(tmp_path / "md@300K.xyz", slab_images[:2])
    path = tmp_path / "run.toml"
    path.write_text(CONFIG.format(train='"md@300K.xyz"'))
    assert load_config(path).data.train == (str(tmp_path / "md@300K.xyz"),)


def test_command_line_accepts_slices(tmp_path, data, capsys):
    path = tmp_path / "run.toml"
    path.write_text(CONFIG.format(train='"train.xyz@0:2"'))
    assert main(["train", str(path), "--quiet"]) == 1
    model = str(tmp_path / "run" / "potential.json")
    assert main(["evaluate", model, f"{data}@-3:"]) == 0
    assert "energy RMSE" in capsys.readouterr().out
    assert main(["evaluate", model, f"{data}@x"]) == 2
    assert "bad selection 'x' after '@'" in capsys.readouterr().err


def test_python_api_accepts_slices(data):
    lines: list[str] = []
    evaluate_loss(f"{data}@0:2", potential(), log=lines.append)
    assert lines[0].startswith("data: 2 images")


# --- item 8: repeated images --------------------------------------------------------------


def test_duplicate_warning_counts_and_names_a_pair():
    assert duplicate_warning(["a", "b", "c"], ["x, image 0", "x, image 1", "x, image 2"]) is None
    message = duplicate_warning(["a", "b", "a", "a", "b"], [f"o{k}" for k in range(5)])
    assert message is not None
    assert message.startswith("warning: 3 of 5 images duplicate an earlier one") and "e.g. o0 and o2" in message


def test_the_same_frames_twice_are_logged(tmp_path, data):
    lines: list[str] = []
    write(tmp_path / "copy.xyz", read_images(str(data))[0][:2])
    with loss_function([str(data), str(tmp_path / "copy.xyz")], potential(), log=lines.append):
        pass
    (warning,) = [line for line in lines if line.startswith("warning:")]
    assert "2 of 8 images duplicate an earlier one" in warning
    assert f"e.g. {data}, image 0 and {tmp_path / 'copy.xyz'}, image 0" in warning


def test_distinct_frames_are_not_warned_about(data):
    lines: list[str] = []
    with loss_function(str(data), potential(), log=lines.append):
        pass
    assert not [line for line in lines if "duplicate" in line]


def test_train_log_warns_about_data_given_twice(tmp_path, data, capsys):
    path = tmp_path / "run.toml"
    path.write_text(CONFIG.format(train='["train.xyz", "train.xyz@0:3"]'))
    assert main(["train", str(path)]) == 1
    assert "warning: 3 of 9 images duplicate an earlier one" in capsys.readouterr().out
    assert "warning: 3 of 9 images duplicate" in (tmp_path / "run" / "train-log.txt").read_text()


# --- constraints ----------------------------------------------------------------------------


def test_reference_forces_of_fixed_atoms_are_the_real_forces_not_zero(tmp_path, slab_images):
    """A relaxation's images hold FixAtoms: training and evaluation use the calculator's own forces on
    the fixed atoms (what the model predicts there), as Amp does, not the zeros of a constrained read."""
    import numpy as np
    from ase.constraints import FixAtoms
    from ase.io import read

    from amp_core.images import load_dataset

    images = [a.copy() for a in slab_images[:2]]
    for atoms, original in zip(images, slab_images[:2]):
        atoms.calc = original.calc
        raw = original.get_forces(apply_constraint=False)
        atoms.set_constraint(FixAtoms(indices=[0, 1, 2]))
        assert np.all(atoms.get_forces()[:3] == 0) and np.any(raw[:3] != 0)
    write(tmp_path / "fixed.traj", images)
    dataset = load_dataset(str(tmp_path / "fixed.traj"), forces=True)
    for (_, forces), original in zip(dataset.targets, slab_images[:2]):
        np.testing.assert_array_equal(forces, original.get_forces(apply_constraint=False))
    assert read(tmp_path / "fixed.traj", 0).constraints  # the file kept the constraint
