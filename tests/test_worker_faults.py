"""Fault injection in the process backends: stopped, killed and failing workers, too many workers.

Every fault must end the run with a clear error (stage, task or chunk, worker pid, cause)
within seconds, leave no process behind, and lose nothing finished: a training run saves
a checkpoint and says how to resume; the fingerprint store keeps every finished entry.
Helpers the workers import live in ``tests/support/mp_support.py`` (see
``tests/test_multiprocessing.py`` for why).
"""

from __future__ import annotations

import importlib
import json
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

import amp_core.cli as cli
import amp_plugins.backends.multiprocessing as mp_backend
from amp_core import ChunkHandle, ConfigError, LossSettings, create_backend, create_descriptor
from amp_core.errors import BackendError
from amp_core.images import load_dataset
from amp_core.pipeline import build_chunks, compute_fingerprints
from amp_core.reshape import build_arrays, save_arrays
from amp_core.store import FingerprintStore, descriptor_key
from amp_plugins.backends.multiprocessing import Multiprocessing, MultiprocessingParams

SUPPORT = Path(__file__).parent / "support"
DATA = Path(__file__).resolve().parent.parent / "examples" / "data" / "ptcu-train.xyz"
VECTOR = np.array([0.3, -0.2, 0.1, 0.05, -1.1])
TIMEOUT = 2.0  # the backends' silence timeout in these tests (seconds)


@pytest.fixture(scope="module")
def support() -> Iterator[ModuleType]:
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(SUPPORT))
        yield importlib.import_module("mp_support")


@pytest.fixture
def fresh(support: ModuleType) -> Iterator[Multiprocessing]:
    b = create_backend("multiprocessing", cores=2, timeout=TIMEOUT)
    yield b
    b.close()


@pytest.fixture(scope="module")
def chunks(tmp_path_factory: pytest.TempPathFactory) -> list[ChunkHandle]:
    """Four chunks of 1, 3, 2 and 4 images: with 2 workers, chunks 0, 3 go to one, 1, 2 to the other."""
    rng = np.random.default_rng(3)
    out = []
    for k, size in enumerate((1, 3, 2, 4)):
        images = [Atoms(numbers=[1, 8], positions=rng.normal(size=(2, 3))) for _ in range(size)]
        folder = tmp_path_factory.mktemp(f"chunk{k}")
        save_arrays(build_arrays(images, [(float(rng.normal()), None) for _ in images], None), folder)
        out.append(ChunkHandle(k, str(folder), size, 2 * size, float(size)))
    return out


def _gone(pids: list[int]) -> bool:
    """Whether none of ``pids`` is still a child or a process (zombies and stopped ones included)."""
    assert pids
    children = {c.pid for c in multiprocessing.active_children()}
    return not children & set(pids) and not any(os.path.exists(f"/proc/{p}") for p in pids)


@contextmanager
def watchdog(pids: list[int], seconds: float = 15.0) -> Iterator[None]:
    """SIGKILL ``pids`` after ``seconds``: a regression then fails the test instead of hanging the suite."""

    def kill() -> None:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    timer = threading.Timer(seconds, kill)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _stop_later(pid: int, delay: float = 0.3) -> threading.Timer:
    timer = threading.Timer(delay, os.kill, (pid, signal.SIGSTOP))
    timer.start()
    return timer


CONFIG = """
[descriptor]
name = "none"
[model]
name = "pairpotential"
cutoff = 5.0
[backend]
name = "multiprocessing"
cores = {cores}
timeout = {timeout}
[data]
train = "{data}"
[training]
maxiter = 100000
[training.convergence]
energy_rmse = 1e-12
"""


def _config(folder: Path, cores: int = 2, timeout: float = 30) -> Path:
    path = folder / "run.toml"
    path.write_text(CONFIG.format(cores=cores, timeout=timeout, data=DATA))
    return path


# ---------------------------------------------------------------- a worker that stops answering


def test_stopped_worker_during_map(fresh: Multiprocessing, support: ModuleType) -> None:
    fresh.map(abs, [1], stage="fingerprint")
    pids = fresh.pids
    _stop_later(pids[1])  # `kill -STOP` while task 1 runs on worker 1
    began = time.monotonic()
    with watchdog(pids), pytest.raises(BackendError, match="stopped answering") as info:
        fresh.map(support.delayed_square, [(1.0, 20.0), (2.0, 20.0), (3.0, 0.0)], stage="fingerprint")
    took = time.monotonic() - began
    assert TIMEOUT < took < TIMEOUT + 5.0  # not before the timeout, and not the 20 s of the tasks
    message = str(info.value)
    assert message.startswith(f"stage 'fingerprint', task 1: worker process {pids[1]} stopped answering")
    assert "the process is stopped" in message and "timeout of the [backend] table (now 2 s)" in message
    assert (info.value.stage, info.value.shard) == ("fingerprint", 1)
    assert _gone(pids) and fresh.pids == []
    assert fresh.map(abs, [-2, -3], stage="fingerprint") == [2, 3]  # the next call starts a new pool


def test_worker_stopping_itself_in_a_task(fresh: Multiprocessing, support: ModuleType) -> None:
    fresh.map(abs, [1], stage="fingerprint")
    pids = fresh.pids
    began = time.monotonic()
    with watchdog(pids), pytest.raises(BackendError, match=r"task 3: worker process \d+ stopped answering") as info:
        fresh.map(support.stop_self_on, [1, 2, 3, 13, 5, 6], stage="fingerprint")
    assert time.monotonic() - began < TIMEOUT + 5.0
    assert info.value.shard == 3
    assert _gone(pids)


def test_busy_worker_is_not_mistaken_for_a_stopped_one(fresh: Multiprocessing, support: ModuleType) -> None:
    # Each task takes twice the timeout; the heartbeat keeps both workers alive.
    results = fresh.map(support.delayed_square, [(1.0, 2 * TIMEOUT), (2.0, 2 * TIMEOUT)], stage="fingerprint")
    assert [r[0] for r in results] == [1.0, 4.0]


SUSPENDED_RUN = """
import sys
sys.path.insert(0, {support!r})
import mp_support
from amp_core import create_backend
with create_backend("multiprocessing", cores=2, timeout={timeout}) as backend:
    backend.map(abs, [1], stage="warm-up")
    print("ready", flush=True)
    results = backend.map(mp_support.delayed_square, [(1.0, 3.0), (2.0, 3.0)], stage="fingerprint")
    print("done", [r[0] for r in results], flush=True)
"""


def test_suspending_the_whole_run_is_not_a_stopped_worker() -> None:
    # Ctrl-Z then `fg`: parent and workers stop together, for longer than the timeout.
    script = SUSPENDED_RUN.format(support=str(SUPPORT), timeout=TIMEOUT)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        time.sleep(0.5)
        os.killpg(process.pid, signal.SIGSTOP)
        time.sleep(2 * TIMEOUT)
        os.kill(process.pid, signal.SIGCONT)  # the parent first, the harder case: it sees no heartbeat yet
        time.sleep(0.1)
        os.killpg(process.pid, signal.SIGCONT)
        out, err = process.communicate(timeout=30)
    finally:
        os.killpg(process.pid, signal.SIGKILL) if process.poll() is None else None
        process.wait(timeout=10)
    assert process.returncode == 0, err
    assert out == "done [1.0, 4.0]\n"


def test_large_request_to_a_stopped_worker_does_not_block(fresh: Multiprocessing, support: ModuleType) -> None:
    fresh.map(abs, [1], stage="fingerprint")
    pids = fresh.pids
    os.kill(pids[0], signal.SIGSTOP)  # stopped while idle; task 0 (1 MB) goes to it and fills its pipe
    began = time.monotonic()
    with watchdog(pids), pytest.raises(BackendError, match=r"task 0: worker process \d+ stopped answering \(it did not take"):
        fresh.map(support.length, [b"x" * 1_000_000, b"y"], stage="fingerprint")
    assert time.monotonic() - began < TIMEOUT + 5.0
    assert _gone(pids)


def test_stopped_worker_between_training_steps(
    fresh: Multiprocessing, support: ModuleType, chunks: list[ChunkHandle]
) -> None:
    with fresh.start(support.ToyModel(), chunks, LossSettings()) as session:
        session.evaluate(VECTOR)
        pids = fresh.pids
        os.kill(pids[0], signal.SIGSTOP)
        began = time.monotonic()
        with watchdog(pids), pytest.raises(BackendError, match="stopped answering") as info:
            session.evaluate(VECTOR)
        assert time.monotonic() - began < TIMEOUT + 5.0
        assert str(info.value).startswith(f"stage 'loss', chunks 0, 3: worker process {pids[0]} stopped answering")
        with pytest.raises(BackendError, match="start a new session"):
            session.evaluate(VECTOR)
    assert _gone(pids)


def test_worker_stopping_during_evaluate(fresh: Multiprocessing, support: ModuleType, chunks: list[ChunkHandle]) -> None:
    session = fresh.start(support.ToyModel(stop_images=3), chunks, LossSettings())
    pids = fresh.pids
    began = time.monotonic()
    with watchdog(pids), pytest.raises(
        BackendError, match=r"stage 'loss', chunks 1, 2: worker process \d+ stopped answering"
    ) as info:
        session.evaluate(VECTOR)
    assert time.monotonic() - began < TIMEOUT + 5.0
    assert (info.value.stage, info.value.shard) == ("loss", 1)
    assert _gone(pids)
    session.close()


def test_slow_evaluate_is_waited_for(fresh: Multiprocessing, support: ModuleType, chunks: list[ChunkHandle]) -> None:
    with fresh.start(support.ToyModel(slow_images=4, sleep=1.5 * TIMEOUT), chunks, LossSettings()) as session:
        assert len(session.evaluate(VECTOR)) == 4


@pytest.mark.parametrize("timeout", [0, 0.5, -1, math.nan, "2", True])
def test_params_reject_bad_timeout(timeout: object) -> None:
    with pytest.raises(ValueError, match="timeout must be a number of seconds >= 1"):
        MultiprocessingParams(timeout=timeout)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="timeout"):
        create_backend("multiprocessing", timeout=timeout)


def test_params_timeout_default_and_forever() -> None:
    assert MultiprocessingParams().timeout_seconds == 30.0
    assert MultiprocessingParams(timeout=5).timeout_seconds == 5.0
    assert MultiprocessingParams(timeout=math.inf).timeout_seconds == math.inf


# ---------------------------------------------------------------- how many workers


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mp_backend, "detect_cores", lambda: 2)


def test_cores_beyond_four_per_core_need_oversubscribe(two_cores: None) -> None:
    assert MultiprocessingParams(cores=8).cores == 8  # up to 4 per core: allowed
    with pytest.raises(ValueError, match=r"cores = 9 is more than 4 workers per core: this process may run on 2 "
                       r"core\(s\).*Use cores = 8 or fewer .* or set oversubscribe = true to start 9 workers"):
        MultiprocessingParams(cores=9)
    with pytest.raises(ConfigError, match=r"cores = 1000 is more than 4 workers per core"):
        create_backend("multiprocessing", cores=1000)
    forced = create_backend("multiprocessing", cores=1000, oversubscribe=True)
    assert forced.cores == 1000 and forced.pids == []  # nothing started yet
    with pytest.raises(ConfigError, match="oversubscribe must be true or false"):
        create_backend("multiprocessing", oversubscribe="yes")


def test_too_many_cores_from_the_command_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, cores=1)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", str(config), "--cores", "1000", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cores = 1000 is more than 4 workers per core" in err and "oversubscribe = true" in err
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- failures that name the image or chunk


@pytest.mark.parametrize("backend_name", ["serial", "multiprocessing"])
def test_memory_error_names_the_image(
    tmp_path: Path, support: ModuleType, slab_images: list[Atoms], backend_name: str
) -> None:
    piece = slab_images[0][:4]
    piece.calc = SinglePointCalculator(piece, energy=-1.0)
    write(tmp_path / "data.xyz", [*slab_images[:3], piece, *slab_images[3:5]])
    data = load_dataset(str(tmp_path / "data.xyz"), forces=False)
    inner = create_descriptor("gaussian", elements=["Cu", "Pt"])
    store = FingerprintStore(tmp_path / "fp", descriptor_key("gaussian", "1", inner.todict()))
    options = {"cores": 2} if backend_name == "multiprocessing" else {}
    with create_backend(backend_name, **options) as backend, pytest.raises(BackendError) as info:
        compute_fingerprints(data, support.FlakyDescriptor(inner, 4), backend, store, False)
    first = str(info.value).splitlines()[0]
    origin = f"{tmp_path / 'data.xyz'}, image 3"
    assert first.startswith("stage 'fingerprint', task ")
    assert f"fingerprinting {origin}: MemoryError: cannot allocate" in first
    assert ("in worker process" in first) == (backend_name == "multiprocessing")
    assert info.value.stage == "fingerprint"
    assert "Traceback" in str(info.value)


def test_unexpected_reshape_error_names_the_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slab_images: list[Atoms]
) -> None:
    import amp_core.pipeline

    def broken(*args: object) -> None:
        raise MemoryError("no room for the arrays")

    monkeypatch.setattr(amp_core.pipeline, "build_arrays", broken)
    data = load_dataset(slab_images[:4], forces=False)
    with pytest.raises(BackendError, match=r"stage 'reshape', task 0 \(chunk 0: images 0 to 1\) "
                       r"failed: reshaping chunk 0: images 0 to 1: MemoryError: no room") as info:
        build_chunks(data, [[0, 1], [2, 3]], [1.0] * 4, tmp_path / "arrays", None, False, create_backend("serial"))
    assert (info.value.stage, info.value.chunk) == ("reshape", 0)


def test_stopped_worker_during_fingerprinting_keeps_finished_entries(
    tmp_path: Path, fresh: Multiprocessing, support: ModuleType, slab_images: list[Atoms]
) -> None:
    piece = slab_images[0][:4]
    piece.calc = SinglePointCalculator(piece, energy=-1.0)
    data = load_dataset([piece, *slab_images[:5]], forces=False)  # the worker that gets image 0 stops
    inner = create_descriptor("gaussian", elements=["Cu", "Pt"])
    store = FingerprintStore(tmp_path / "fp", descriptor_key("gaussian", "1", inner.todict()))
    fresh.map(abs, [1], stage="warm-up")
    pids = fresh.pids
    began = time.monotonic()
    with watchdog(pids), pytest.raises(
        BackendError, match=r"stage 'fingerprint', task 0 \(image 0\): worker process \d+ stopped"
    ):
        compute_fingerprints(data, support.FlakyDescriptor(inner, 4, "stop"), fresh, store, False)
    assert time.monotonic() - began < TIMEOUT + 5.0
    assert _gone(pids)
    assert [store.has(h, False) for h in data.hashes] == [False] + [True] * 5  # the other worker's work is kept
    assert not list(store.tmp.glob("*.npz"))


# ---------------------------------------------------------------- training: exit code 3, checkpoint, log


def _train_until_row(folder: Path, row: int) -> tuple[subprocess.Popen[str], list[int]]:
    """Start ``amp train`` on the shipped data in a subprocess; return it and its workers once row ``row`` is logged."""
    log = folder / "run" / "train-log.txt"
    process = subprocess.Popen([sys.executable, "-m", "amp_core.cli", "train", str(folder / "run.toml"), "--quiet"],
                               cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (log.is_file() and f"\n{row:6d} " in log.read_text()):
        assert process.poll() is None and time.monotonic() < deadline, "training did not start"
        time.sleep(0.05)
    listing = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    if not listing.is_file():
        process.kill()
        pytest.skip("needs Linux /proc/PID/task/PID/children to find the workers")
    children = listing.read_text().split()
    workers = [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
    assert len(workers) == 2, children
    return process, workers


def _check_failed_run(folder: Path, err: str, cause: str) -> None:
    assert "amp train: error: stage 'loss'" in err and cause in err and "Traceback" not in err
    checkpoint = json.loads((folder / "run" / "checkpoint.json").read_text())
    assert checkpoint["iteration"] >= 3
    text = (folder / "run" / "train-log.txt").read_text()
    line = next(x for x in text.splitlines() if x.startswith("failed at iteration"))
    assert line.startswith(f"failed at iteration {checkpoint['iteration']} (BackendError: stage 'loss'")
    assert cause in line
    assert line.endswith(f"checkpoint of the last good parameters saved to {folder / 'run' / 'checkpoint.json'}; "
                         "continue with 'amp train CONFIG --resume'")
    assert "error (" in text and "Traceback" in text  # the full traceback follows, from the command line


def test_killed_worker_in_training_saves_a_checkpoint_and_exits_3(tmp_path: Path) -> None:
    _config(tmp_path)
    process, workers = _train_until_row(tmp_path, 3)
    try:
        os.kill(workers[1], signal.SIGKILL)
        began = time.monotonic()
        _, err = process.communicate(timeout=30)
        took = time.monotonic() - began
    finally:
        process.kill()
        process.wait(timeout=10)
    assert process.returncode == 3, err
    assert took < 10.0
    _check_failed_run(tmp_path, err, f"worker process {workers[1]} was killed by SIGKILL")
    assert _gone_after_exit(workers)
    # The checkpoint resumes: two more iterations, then maxiter stops the run (exit 1).
    done = json.loads((tmp_path / "run" / "checkpoint.json").read_text())["iteration"]
    config = tmp_path / "run.toml"
    config.write_text(config.read_text().replace("maxiter = 100000", f"maxiter = {done + 2}"))
    resumed = subprocess.run([sys.executable, "-m", "amp_core.cli", "train", str(config), "--resume", "--quiet"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 1, resumed.stderr
    text = (tmp_path / "run" / "train-log.txt").read_text()
    assert f"at iteration {done}" in text and f"NOT converged after {done + 2} iterations" in text


def test_stopped_worker_in_training_saves_a_checkpoint_and_exits_3(tmp_path: Path) -> None:
    _config(tmp_path, timeout=TIMEOUT)
    process, workers = _train_until_row(tmp_path, 3)
    try:
        os.kill(workers[0], signal.SIGSTOP)
        began = time.monotonic()
        _, err = process.communicate(timeout=30)
        took = time.monotonic() - began
    finally:
        process.kill()
        process.wait(timeout=10)
        for pid in workers:  # never leave a stopped process behind, even when the test fails
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert process.returncode == 3, err
    assert took < TIMEOUT + 8.0
    _check_failed_run(tmp_path, err, f"worker process {workers[0]} stopped answering")
    assert _gone_after_exit(workers)


def _gone_after_exit(pids: list[int]) -> bool:
    """Whether the workers of a finished subprocess are gone (orphans are reaped by init: allow a moment)."""
    deadline = time.monotonic() + 5
    while any(os.path.exists(f"/proc/{p}") for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
