"""Exit codes of ``amp`` (0/1/2/3/130), short error messages, and where tracebacks go."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from ase.io import write

import amp_core.cli as cli
from amp_core import (
    BackendError,
    ConfigError,
    DataError,
    ModelFileError,
    PluginError,
    Potential,
    PropertyNotImplementedError,
    RunError,
    UnknownPluginError,
    UsageError,
    create_descriptor,
    create_model,
    loss_function,
)

TRACEBACK = "Traceback (most recent call last)"
CONFIG = """
[descriptor]
name = "none"
[model]
name = "pairpotential"
cutoff = 5.0
[data]
train = "{data}"
[training]
maxiter = {maxiter}
[training.convergence]
energy_rmse = {target}
"""


def amp(*args: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``amp ARGS`` in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "amp_core.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def config(folder: Path, images, *, maxiter: int = 200, target: float = 0.02, data: str = "train.xyz") -> Path:
    """Write ``images`` and a pairpotential config over them into ``folder``; return the config."""
    if images is not None:
        write(folder / data, images)
    path = folder / "run.toml"
    path.write_text(CONFIG.format(data=data, maxiter=maxiter, target=target))
    return path


@pytest.mark.parametrize(
    "error, code",
    [
        (ConfigError("x"), 2),
        (DataError("x"), 2),
        (UnknownPluginError("x", kind="model", name="n", available=()), 2),
        (ModelFileError("x"), 2),
        (PluginError("x"), 2),
        (PropertyNotImplementedError("x"), 2),
        (BackendError("x"), 3),
        (RunError("x"), 3),
        (UsageError("x"), 3),
        (OSError(28, "No space left on device"), 3),
        (PermissionError("x"), 3),
        (ZeroDivisionError("x"), 3),
        (KeyboardInterrupt(), 130),
    ],
)
def test_exit_code_table(error, code):
    assert cli.exit_code(error) == code


def test_run_time_types_are_amp_errors_and_runtime_errors():
    for kind in (RunError, UsageError):
        assert issubclass(kind, cli.AmpError) and issubclass(kind, RuntimeError)
        assert not issubclass(kind, ConfigError)


def test_closed_loss_function_raises_usage_error(slab_images):
    potential = Potential(create_descriptor("none"), create_model("pairpotential", cutoff=5.0))
    with loss_function(slab_images[:2], potential) as loss:
        assert np.isfinite(loss.evaluate().loss)
    with pytest.raises(UsageError, match="closed"):
        loss.evaluate()


def test_exit_0_converged(tmp_path, slab_images):
    result = amp("train", str(config(tmp_path, slab_images[:6])), "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and (tmp_path / "run" / "potential.json").is_file()


def test_exit_1_maxiter_saves_the_potential(tmp_path, slab_images):
    result = amp("train", str(config(tmp_path, slab_images[:6], maxiter=2, target=1e-12)), "--quiet", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert (tmp_path / "run" / "potential.json").is_file()
    assert "NOT converged after 2 iterations" in (tmp_path / "run" / "train-log.txt").read_text()


def test_exit_2_unknown_key_without_traceback_or_litter(tmp_path, slab_images):
    path = config(tmp_path, slab_images[:2])
    path.write_text(path.read_text().replace("cutoff", "cutof"))
    result = amp("train", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("amp train: error: ") and "unknown key(s) 'cutof'" in result.stderr
    assert TRACEBACK not in result.stderr
    assert not (tmp_path / cli.ERROR_LOG).exists() and not (tmp_path / "run").exists()
    debug = amp("train", str(path), "--debug", cwd=tmp_path)
    assert debug.returncode == 2 and TRACEBACK in debug.stderr and "ConfigError" in debug.stderr


def test_exit_2_missing_data_file(tmp_path):
    result = amp("train", str(config(tmp_path, None, data="missing.xyz")), cwd=tmp_path)
    assert result.returncode == 2
    assert "missing.xyz" in result.stderr and "does not exist" in result.stderr and TRACEBACK not in result.stderr


def test_exit_2_bad_model_file_and_usage(tmp_path, slab_images):
    write(tmp_path / "data.xyz", slab_images[:1])
    (tmp_path / "model.json").write_text('{"hello": "not a potential"}')
    result = amp("evaluate", "model.json", "data.xyz", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("amp evaluate: error: ") and TRACEBACK not in result.stderr
    assert amp("train", cwd=tmp_path).returncode == 2  # argparse: missing CONFIG
    plot = amp("plot", "parity", "model.json", cwd=tmp_path)
    assert plot.returncode == 2 and "amp plot: error: give MODEL and at least one DATA file" in plot.stderr


def test_exit_3_unwritable_run_folder_logs_the_traceback(tmp_path, slab_images):
    path = config(tmp_path, slab_images[:2])
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "arrays").write_text("a file where the reshaped arrays should go")  # works as root too
    result = amp("train", str(path), "--quiet", cwd=tmp_path)
    assert result.returncode == 3
    log = tmp_path / "run" / "train-log.txt"
    first, second = result.stderr.splitlines()
    assert first.startswith("amp train: error: ") and "NotADirectoryError: [Errno 20] Not a directory" in first
    assert second == f"amp train: the full traceback is in {log} (--debug prints it)"
    text = log.read_text()
    assert TRACEBACK in text and "NotADirectoryError" in text and "data: 2 images" in text
    for argv in (["--debug", "train", str(path)], ["train", str(path), "--debug"]):
        debug = amp(*argv, "--quiet", cwd=tmp_path)
        assert debug.returncode == 3 and TRACEBACK in debug.stderr and "save_arrays" in debug.stderr
        assert debug.stderr.rstrip().endswith(f"the full traceback is in {log}")


def test_exit_3_run_folder_is_a_file_falls_back_to_amp_error_log(tmp_path, slab_images):
    path = config(tmp_path, slab_images[:2])
    (tmp_path / "run").write_text("not a folder")
    result = amp("train", str(path), cwd=tmp_path)
    assert result.returncode == 3 and TRACEBACK not in result.stderr
    assert "amp train: error: cannot create the run directory" in result.stderr and "File exists" in result.stderr
    assert f"the full traceback is in {tmp_path / cli.ERROR_LOG}" in result.stderr
    assert TRACEBACK in (tmp_path / cli.ERROR_LOG).read_text()


def test_exit_3_internal_error_in_a_subprocess(tmp_path):
    script = ("import sys, amp_core.cli as c\n"
              "c.COMMANDS['plugins'] = lambda args: 1 / 0\n"
              "sys.exit(c.main(sys.argv[1:]))\n")
    run = [sys.executable, "-c", script, "plugins"]
    result = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert result.returncode == 3 and TRACEBACK not in result.stderr
    assert "amp plugins: internal error: ZeroDivisionError: division by zero" in result.stderr
    assert f"the full traceback is in {tmp_path / cli.ERROR_LOG}" in result.stderr
    logged = (tmp_path / cli.ERROR_LOG).read_text()
    assert logged.startswith("amp plugins: failed at") and TRACEBACK in logged and "in <lambda>" in logged
    debug = subprocess.run([*run, "--debug"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert debug.returncode == 3 and TRACEBACK in debug.stderr and "in <lambda>" in debug.stderr


def test_internal_error_in_train_goes_to_the_run_log(tmp_path, slab_images, monkeypatch, capsys):
    path = config(tmp_path, slab_images[:2])
    (tmp_path / "run").mkdir()

    def broken(args):
        raise ZeroDivisionError("boom")

    monkeypatch.setitem(cli.COMMANDS, "train", broken)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", str(path)]) == 3
    err = capsys.readouterr().err
    assert "amp train: internal error: ZeroDivisionError: boom" in err and TRACEBACK not in err
    assert TRACEBACK in (tmp_path / "run" / "train-log.txt").read_text()
    assert not (tmp_path / cli.ERROR_LOG).exists()


def test_unwritable_cwd_falls_back_to_a_temporary_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "plugins", lambda args: 1 / 0)
    monkeypatch.setattr(Path, "cwd", lambda: tmp_path / "gone")  # writing there fails, also as root
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert cli.main(["plugins"]) == 3
    err = capsys.readouterr().err
    logs = list(tmp_path.glob("amp-error-*.log"))
    assert len(logs) == 1 and f"the full traceback is in {logs[0]}" in err
    assert TRACEBACK in logs[0].read_text()


def test_sigterm_handler_is_restored(capsys):
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["plugins", "--json"]) == 0
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_stops_training_with_130_and_a_checkpoint(tmp_path, slab_images):
    path = config(tmp_path, slab_images, maxiter=100000, target=1e-12)  # 40 images: minutes to go
    log = tmp_path / "run" / "train-log.txt"
    process = subprocess.Popen([sys.executable, "-m", "amp_core.cli", "train", str(path), "--quiet"],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (log.is_file() and "\n     3 " in log.read_text()):
            assert process.poll() is None and time.monotonic() < deadline, "training did not start"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait(timeout=10)
    assert process.returncode == 130, err
    assert err.strip() == "amp train: interrupted (SIGTERM)"
    assert (tmp_path / "run" / "checkpoint.json").is_file()
    assert "checkpoint saved" in log.read_text()


def test_worker_traceback_stays_off_the_terminal(monkeypatch, capsys, tmp_path):
    def failing(args):
        raise BackendError("stage 'loss', shard 1 failed in worker process 7: ValueError: bad\n"
                           "Worker traceback:\nTraceback (most recent call last):\n  File \"x.py\", line 1\n",
                           stage="loss", shard=1)

    monkeypatch.setitem(cli.COMMANDS, "evaluate", failing)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["evaluate", "model.json", "data.xyz"]) == 3
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "amp evaluate: error: stage 'loss', shard 1 failed in worker process 7: ValueError: bad"
    assert TRACEBACK not in err and "Worker traceback" in (tmp_path / cli.ERROR_LOG).read_text()


def test_killed_worker_exits_3(tmp_path, slab_images):
    path = config(tmp_path, slab_images, maxiter=100000, target=1e-12)
    path.write_text(path.read_text().replace("[data]", '[backend]\nname = "multiprocessing"\ncores = 1\n[data]'))
    log = tmp_path / "run" / "train-log.txt"
    process = subprocess.Popen([sys.executable, "-m", "amp_core.cli", "train", str(path), "--quiet"],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (log.is_file() and "\n     3 " in log.read_text()):
            assert process.poll() is None and time.monotonic() < deadline, "training did not start"
            time.sleep(0.05)
        listing = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        if not listing.is_file():
            pytest.skip("needs Linux /proc/PID/task/PID/children to find the worker")
        children = listing.read_text().split()
        workers = [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert workers, children
        os.kill(workers[0], signal.SIGKILL)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait(timeout=10)
    assert process.returncode == 3, err
    assert "amp train: error: stage 'loss'" in err and "killed by SIGKILL" in err and TRACEBACK not in err
    assert "BackendError" in log.read_text()
