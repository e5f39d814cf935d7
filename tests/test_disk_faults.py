"""Disk faults during training: a clear error, exit 3, no partial files, the previous checkpoint intact."""

from __future__ import annotations

import errno
import json
import pathlib

from ase.io import write

from amp_core import cli


def _config(tmp_path) -> pathlib.Path:
    config = tmp_path / "run.toml"
    config.write_text('[descriptor]\nname = "gaussian"\nelements = ["Cu", "Pt"]\ncutoff = 4.0\n'
                      '[model]\nname = "neuralnetwork"\nhiddenlayers = [3]\n[data]\ntrain = "train.xyz"\n'
                      '[training]\nmaxiter = 40\ncheckpoint_interval = 2\n[training.convergence]\n'
                      'energy_rmse = 1e-12\n')
    return config


def test_disk_full_while_writing_a_checkpoint(tmp_path, slab_images, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # amp-error.log, if any, goes here
    write(tmp_path / "train.xyz", slab_images[:3])
    original = pathlib.Path.write_text
    calls = {"checkpoints": 0}

    def full_disk(self, data, *args, **kwargs):
        if self.name.startswith(".checkpoint.json"):
            calls["checkpoints"] += 1
            if calls["checkpoints"] > 2:  # the third checkpoint finds the disk full
                original(self, data[: len(data) // 3], *args, **kwargs)
                raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return original(self, data, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", full_disk)
    code = cli.main(["train", str(_config(tmp_path))])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "No space left on device" in err and "Traceback" not in err
    run = tmp_path / "run"
    assert not list(run.glob("*.partial")) and not list(run.glob(".*.partial"))
    checkpoint = json.loads((run / "checkpoint.json").read_text())  # the previous one, whole
    assert checkpoint["iteration"] == 4


def test_run_directory_removed_mid_run_is_a_clear_error(tmp_path, slab_images, monkeypatch, capsys):
    import shutil

    from amp_core import training

    monkeypatch.chdir(tmp_path)
    write(tmp_path / "train.xyz", slab_images[:3])
    original = training.save_checkpoint

    def remove_then_save(potential, run_dir, iteration, *journal):
        shutil.rmtree(run_dir)
        return original(potential, run_dir, iteration, *journal)

    monkeypatch.setattr(training, "save_checkpoint", remove_then_save)
    code = cli.main(["train", str(_config(tmp_path))])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "No such file or directory" in err and "Traceback" not in err
    assert "Traceback" in (tmp_path / "amp-error.log").read_text()  # the run folder is gone: here instead
