"""The run directory: one run at a time, a fresh log per run, resume only with the same configuration."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ase.io import write

from amp_core import ConfigError, RunError, train
from amp_core.rundir import RunLock


def _config(tmp_path: Path, **changes) -> dict:
    config = {
        "descriptor": {"name": "gaussian", "elements": ["Cu", "Pt"], "cutoff": 5.0},
        "model": {"name": "neuralnetwork", "hiddenlayers": [3]},
        "backend": {"name": "serial"},
        "data": {"train": str(tmp_path / "train.xyz")},
        "training": {"maxiter": 3, "directory": str(tmp_path / "run"), "checkpoint_interval": 1},
    }
    for table, values in changes.items():
        config[table] = {**config[table], **values}
    return config


@pytest.fixture
def data(tmp_path, slab_images):
    write(tmp_path / "train.xyz", slab_images[:3])
    return tmp_path


def test_a_second_run_into_a_locked_directory_is_refused_naming_the_holder(data):
    (data / "run").mkdir()
    with RunLock(data / "run"), pytest.raises(RunError, match=rf"in use by another amp run \(process {os.getpid()}\)"):
        train(_config(data), echo=None)
    train(_config(data), echo=None)  # released: the next run goes ahead


def test_concurrent_amp_train_processes(data, tmp_path):
    config = tmp_path / "slow.toml"
    config.write_text(f"""
[descriptor]
name = "gaussian"
elements = ["Cu", "Pt"]
[model]
name = "neuralnetwork"
hiddenlayers = [5, 5]
[data]
train = "{tmp_path / 'train.xyz'}"
[training]
maxiter = 100000
directory = "run"
[training.convergence]
energy_rmse = 1e-12
force_rmse = 1e-12
""")
    first = subprocess.Popen([sys.executable, "-m", "amp_core.cli", "train", str(config), "--quiet"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        log = tmp_path / "run" / "train-log.txt"
        deadline = time.monotonic() + 60
        while not (log.exists() and "iter" in log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.2)
        second = subprocess.run([sys.executable, "-m", "amp_core.cli", "train", str(config)],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 3, second.stderr
        assert f"process {first.pid}" in second.stderr and "Traceback" not in second.stderr
    finally:
        first.terminate()
        first.communicate(timeout=60)
    text = log.read_text()
    assert text.count("cores detected") == 1  # the refused run wrote nothing into the holder's log


def test_a_rerun_starts_a_new_log_and_keeps_the_old_one(data):
    train(_config(data), echo=None)
    train(_config(data), echo=None)
    run = data / "run"
    assert (run / "train-log.1.txt").read_text().count("cores detected") == 1
    current = (run / "train-log.txt").read_text()
    assert current.count("cores detected") == 1 and "moved to train-log.1.txt" in current
    train(_config(data), echo=None)
    assert (run / "train-log.2.txt").exists()


def test_resume_with_a_changed_configuration_lists_the_differences(data):
    train(_config(data), echo=None)
    changed = _config(data, descriptor={"cutoff": 4.0}, model={"hiddenlayers": [4]})
    with pytest.raises(ConfigError, match=r"(?s)cutoff.*hiddenlayers.*Restore those settings") as info:
        train(changed, resume=True, echo=None)
    assert "5.0" in str(info.value) and "4.0" in str(info.value)


def test_resume_with_the_same_configuration_continues(data):
    train(_config(data), echo=None)
    again = train(_config(data, training={"maxiter": 5}), resume=True, echo=None)
    assert again.training["iterations"] == 5
    log = (data / "run" / "train-log.txt").read_text()
    assert "resumed from" in log and log.count("cores detected") == 2  # a resumed run continues its log


def test_max_time_stops_a_run_cleanly_like_maxiter(data):
    config = _config(data, training={"maxiter": 100000, "max_time": 1.5, "checkpoint_interval": 0},
                     model={"hiddenlayers": [5, 5]})
    config["training"]["convergence"] = {"energy_rmse": 1e-12, "force_rmse": 1e-12}
    began = time.monotonic()
    potential = train(config, echo=None)
    assert time.monotonic() - began < 30
    assert not potential.training["converged"] and "max_time 1.5 s reached" in potential.training["outcome"]
    assert (data / "run" / "potential.json").exists() and (data / "run" / "checkpoint.json").exists()
