"""Tests of the ``multiprocessing`` backend: order, progress, faults, sessions, clean shutdown.

Worker processes are started with ``spawn`` and unpickle functions and classes by
module name. Test files run under ``--import-mode=importlib`` are not importable
by name, so the functions and the toy model the workers run live in
``tests/support/mp_support.py``; the ``support`` fixture puts that folder on
``sys.path`` before any worker starts, and ``spawn`` gives every worker the
parent's ``sys.path``. Backends are module-scoped (each start costs ~0.3 s).
"""

from __future__ import annotations

import functools
import importlib
import multiprocessing
import operator
import os
import pickle
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from ase import Atoms

from amp_core import Backend, ChunkHandle, ConfigError, DataError, LossSettings, create_backend
from amp_core.errors import BackendError
from amp_core.reshape import build_arrays, save_arrays
from amp_plugins.backends.multiprocessing import Multiprocessing, MultiprocessingParams
from amp_plugins.backends.serial import Serial

SUPPORT = Path(__file__).parent / "support"
SHARD_SIZES = (1, 3, 2, 4)  # images per shard, deliberately uneven
VECTOR = np.array([0.3, -0.2, 0.1, 0.05, -1.1])


@pytest.fixture(scope="module")
def support() -> Iterator[ModuleType]:
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(SUPPORT))
        yield importlib.import_module("mp_support")


@pytest.fixture(scope="module", params=[1, 2, 3])
def backend(request: pytest.FixtureRequest, support: ModuleType) -> Iterator[Multiprocessing]:
    with create_backend("multiprocessing", cores=request.param) as b:
        yield b


@pytest.fixture
def fresh(support: ModuleType) -> Iterator[Multiprocessing]:
    b = create_backend("multiprocessing", cores=2)
    yield b
    b.close()


@pytest.fixture(scope="module")
def shard_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[ChunkHandle]:
    rng = np.random.default_rng(7)
    dirs = []
    for k, size in enumerate(SHARD_SIZES):
        images = [
            Atoms(numbers=rng.choice([1, 8, 29], n), positions=rng.normal(size=(n, 3)) * 2)
            for n in rng.integers(1, 6, size)
        ]
        targets = [(float(rng.normal()), None) for _ in images]
        folder = tmp_path_factory.mktemp(f"shard{k}")
        save_arrays(build_arrays(images, targets, None), folder)
        dirs.append(ChunkHandle(k, str(folder), len(images), sum(len(a) for a in images), float(size)))
    return dirs


def _gone(pids: list[int]) -> bool:
    """Whether none of ``pids`` is still a child or a process (zombies included)."""
    assert pids
    children = {c.pid for c in multiprocessing.active_children()}
    return not children & set(pids) and not any(os.path.exists(f"/proc/{p}") for p in pids)


def _kill_later(pid: int, delay: float = 0.3) -> threading.Timer:
    timer = threading.Timer(delay, os.kill, (pid, signal.SIGKILL))
    timer.start()
    return timer


# ---------------------------------------------------------------- parameters and registration


@pytest.mark.parametrize("cores", [0, -2, 1.5, "2", True])
def test_params_reject_bad_cores(cores: object) -> None:
    with pytest.raises(ValueError, match="cores"):
        MultiprocessingParams(cores=cores)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="cores"):
        create_backend("multiprocessing", cores=cores)


def test_default_uses_every_allowed_core() -> None:
    b = create_backend("multiprocessing")
    assert isinstance(b, Backend)
    assert b.cores == len(os.sched_getaffinity(0))
    assert b.pids == []  # nothing started until first use
    assert pickle.loads(pickle.dumps(b)).cores == b.cores


# ---------------------------------------------------------------- map


def test_map_order_and_progress(backend: Multiprocessing, support: ModuleType) -> None:
    # Later tasks sleep less, so they finish first; results must still come in task order.
    tasks = [(float(k), 0.04 * (5 - k)) for k in range(6)]
    seen: list[int] = []
    results = backend.map(support.delayed_square, tasks, stage="fingerprint", progress=seen.append)
    assert [r[0] for r in results] == [k * k for k in range(6)]
    assert seen == [1, 2, 3, 4, 5, 6]
    assert {r[1] for r in results} <= set(backend.pids)
    assert len(backend.pids) == backend.cores


def test_map_reuses_workers_and_handles_more_workers_than_tasks(backend: Multiprocessing) -> None:
    assert backend.map(abs, [-5], stage="fingerprint") == [5]
    pids = backend.pids
    assert backend.map(functools.partial(operator.mul, 3), [1, 2], stage="fingerprint") == [3, 6]
    assert backend.map(abs, [], stage="fingerprint") == []
    assert backend.pids == pids


def test_task_exception_names_stage_task_and_traceback(backend: Multiprocessing, support: ModuleType) -> None:
    pids = backend.pids
    with pytest.raises(BackendError) as info:
        backend.map(support.fail_on_negative, [1.0, 2.0, -3.0, 4.0], stage="fingerprint")
    assert info.value.stage == "fingerprint"
    assert info.value.shard == 2
    message = str(info.value)
    assert "task 2" in message and "ValueError: negative task -3.0" in message
    assert "Traceback" in message and "fail_on_negative" in message
    # The pool survives a raising task, abandoned replies are discarded.
    assert backend.map(support.fail_on_negative, [7.0, 8.0, 9.0], stage="fingerprint") == [7.0, 8.0, 9.0]
    assert backend.pids == pids


def test_deliberate_amp_error_passes_through_like_serial(
    backend: Multiprocessing, support: ModuleType
) -> None:
    with pytest.raises(DataError, match="image 1 has no energy") as info:
        backend.map(support.data_error, [1], stage="fingerprint")
    assert "data_error" in str(info.value.__cause__)  # the worker's traceback
    with pytest.raises(DataError):
        Serial().map(support.data_error, [1], stage="fingerprint")


def test_unpicklable_function_is_a_clear_error(backend: Multiprocessing) -> None:
    with pytest.raises(BackendError, match="must pickle"):
        backend.map(lambda x: x, [1], stage="fingerprint")
    assert backend.map(abs, [-1], stage="fingerprint") == [1]


def test_worker_killed_during_map_from_outside(fresh: Multiprocessing, support: ModuleType) -> None:
    fresh.map(abs, [1], stage="fingerprint")
    pids = fresh.pids
    _kill_later(pids[1])
    began = time.monotonic()
    with pytest.raises(BackendError, match="SIGKILL") as info:
        fresh.map(support.delayed_square, [(1.0, 20.0), (2.0, 20.0), (3.0, 0.0)], stage="fingerprint")
    assert time.monotonic() - began < 5.0  # the 20 s tasks were not waited for
    assert info.value.stage == "fingerprint" and info.value.shard in (0, 1)
    assert _gone(pids) and fresh.pids == []
    # The next call starts a new pool.
    assert fresh.map(abs, [-2, -3], stage="fingerprint") == [2, 3]


def test_worker_killing_itself_in_a_task(fresh: Multiprocessing, support: ModuleType) -> None:
    fresh.map(abs, [1], stage="fingerprint")
    pids = fresh.pids
    began = time.monotonic()
    with pytest.raises(BackendError, match=r"task 3: worker process \d+ was killed by SIGKILL") as info:
        fresh.map(support.kill_self_on, [1, 2, 3, 13, 5], stage="fingerprint")
    assert time.monotonic() - began < 5.0
    assert info.value.shard == 3
    assert _gone(pids)


def test_ctrl_c_in_parent_stops_workers(fresh: Multiprocessing, support: ModuleType) -> None:
    fresh.map(abs, [1], stage="fingerprint")
    pids = fresh.pids
    for pid in pids:  # workers ignore SIGINT: Ctrl-C is the parent's to handle
        os.kill(pid, signal.SIGINT)
    assert fresh.map(abs, [-1, -2], stage="fingerprint") == [1, 2] and fresh.pids == pids
    # The signal lands in the timer thread, the harder case: the waiting main thread
    # is not woken by it and must notice the pending KeyboardInterrupt by itself.
    threading.Timer(0.3, signal.raise_signal, (signal.SIGINT,)).start()
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        fresh.map(support.delayed_square, [(1.0, 20.0), (2.0, 20.0)], stage="fingerprint")
    assert time.monotonic() - began < 5.0
    assert _gone(pids)


def test_interrupt_from_progress_callback_stops_workers(fresh: Multiprocessing, support: ModuleType) -> None:
    fresh.map(abs, [1], stage="fingerprint")
    pids = fresh.pids

    def interrupt(done: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fresh.map(
            support.delayed_square, [(1.0, 0.0), (2.0, 20.0), (3.0, 20.0)], stage="x", progress=interrupt
        )
    assert _gone(pids)


def test_close_is_idempotent_and_finalizer_reaps_forgotten_backends(support: ModuleType) -> None:
    b = create_backend("multiprocessing", cores=2)
    b.map(abs, [1, 2], stage="fingerprint")
    pids = b.pids
    del b  # never closed: the weakref finalizer must stop the workers
    assert _gone(pids)
    with create_backend("multiprocessing", cores=1) as b:
        b.map(abs, [1], stage="fingerprint")
        pids = b.pids
    b.close()
    assert _gone(pids)


# ---------------------------------------------------------------- training sessions


def test_session_matches_serial(backend: Multiprocessing, support: ModuleType, shard_dirs: list[ChunkHandle]) -> None:
    model = support.ToyModel()
    settings = LossSettings(energy_coefficient=2.0)
    expected = Serial().start(model, shard_dirs, settings).evaluate(VECTOR)
    with backend.start(model, shard_dirs, settings) as session:
        for vector in (VECTOR, -VECTOR, VECTOR):  # resident workers answer step after step
            got = session.evaluate(vector)
            reference = Serial().start(model, shard_dirs, settings).evaluate(vector)
            assert [p.n_images for p in got] == list(SHARD_SIZES)
            for a, b in zip(got, reference):
                assert a.energy_loss == pytest.approx(b.energy_loss, rel=1e-12, abs=0)
                assert a.energy_maxresid == pytest.approx(b.energy_maxresid, rel=1e-12, abs=0)
                np.testing.assert_allclose(a.gradient, b.gradient, rtol=1e-12, atol=0)
    assert got[0].energy_loss == pytest.approx(expected[0].energy_loss, rel=1e-12)


def test_session_total_against_direct_sum(
    backend: Multiprocessing, support: ModuleType, shard_dirs: list[ChunkHandle]
) -> None:
    # Independent reference: loop over every image of every shard in plain Python.
    from amp_core.reshape import load_arrays

    total = 0.0
    for chunk in shard_dirs:
        a = load_arrays(chunk.folder, mmap=False)
        start = 0
        for n, e in zip(a["natoms"], a["energy"]):
            pred = sum(
                VECTOR @ [1, *a["positions"][i], a["numbers"][i] / 10] for i in range(start, start + n)
            )
            total += ((pred - e) / n) ** 2
            start += n
    with backend.start(support.ToyModel(), shard_dirs, LossSettings()) as session:
        parts = session.evaluate(VECTOR)
    assert sum(p.energy_loss for p in parts) == pytest.approx(total, rel=1e-12)


def test_session_more_workers_than_shards(
    backend: Multiprocessing, support: ModuleType, shard_dirs: list[ChunkHandle]
) -> None:
    with backend.start(support.ToyModel(), shard_dirs[:1], LossSettings()) as session:
        (part,) = session.evaluate(VECTOR)
    assert part.n_images == SHARD_SIZES[0]
    with pytest.raises(BackendError, match="closed"):
        session.evaluate(VECTOR)


def test_session_errors_name_stage_and_shard(
    backend: Multiprocessing, support: ModuleType, shard_dirs: list[ChunkHandle]
) -> None:
    with pytest.raises(BackendError, match="cannot prepare this shard") as info:
        backend.start(support.ToyModel(bad_load_images=2), shard_dirs, LossSettings())
    assert (info.value.stage, info.value.shard) == ("start", 2)
    with backend.start(support.ToyModel(fail_images=4), shard_dirs, LossSettings()) as session:
        for _ in range(2):  # the session stays usable after a raising evaluator
            with pytest.raises(BackendError, match="failed on purpose") as info:
                session.evaluate(VECTOR)
            assert (info.value.stage, info.value.shard) == ("loss", 3)
            assert "Traceback" in str(info.value)


def test_worker_dying_in_session(fresh: Multiprocessing, support: ModuleType, shard_dirs: list[ChunkHandle]) -> None:
    session = fresh.start(support.ToyModel(die_images=3), shard_dirs, LossSettings())
    pids = fresh.pids
    began = time.monotonic()
    with pytest.raises(BackendError, match="SIGKILL") as info:
        session.evaluate(VECTOR)
    assert time.monotonic() - began < 5.0
    assert (info.value.stage, info.value.shard) == ("loss", 1)  # shard 1 holds 3 images
    assert _gone(pids)
    with pytest.raises(BackendError, match="stopped"):
        session.evaluate(VECTOR)
    session.close()


def test_worker_killed_from_outside_between_steps(
    fresh: Multiprocessing, support: ModuleType, shard_dirs: list[ChunkHandle]
) -> None:
    with fresh.start(support.ToyModel(), shard_dirs, LossSettings()) as session:
        session.evaluate(VECTOR)
        pids = fresh.pids
        os.kill(pids[0], signal.SIGKILL)
        began = time.monotonic()
        with pytest.raises(BackendError, match="killed by SIGKILL"):
            session.evaluate(VECTOR)
        assert time.monotonic() - began < 5.0
    assert _gone(pids)
    # A new session on the same backend starts new workers and works.
    with fresh.start(support.ToyModel(), shard_dirs, LossSettings()) as session:
        assert len(session.evaluate(VECTOR)) == len(SHARD_SIZES)


# ---------------------------------------------------------------- binding workers to cores


def test_workers_are_pinned_when_they_fill_the_allowed_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    from amp_plugins.backends.multiprocessing import worker_cpus

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {5, 3, 9})
    assert worker_cpus(3, None) == [3, 5, 9]  # all allowed cores in use: pinned, in core order
    assert worker_cpus(2, None) == [None, None]  # fewer workers than cores: the scheduler decides
    assert worker_cpus(2, True) == [3, 5]
    assert worker_cpus(4, True) == [3, 5, 9, 3]  # more workers than cores: round robin
    assert worker_cpus(3, False) == [None, None, None]


@pytest.mark.parametrize("pin", ["yes", 1, 0.5])
def test_params_reject_bad_pin(pin: object) -> None:
    with pytest.raises(ConfigError, match="pin must be true, false"):
        create_backend("multiprocessing", cores=1, pin=pin)


def test_pinned_worker_runs_on_its_core() -> None:
    first = min(os.sched_getaffinity(0))
    with create_backend("multiprocessing", cores=1, pin=True) as b:
        assert b.map(abs, [-1], stage="warm-up") == [1]
        assert os.sched_getaffinity(b.pids[0]) == {first}
    with create_backend("multiprocessing", cores=1, pin=False) as b:
        b.map(abs, [-1], stage="warm-up")
        assert os.sched_getaffinity(b.pids[0]) == os.sched_getaffinity(0)


# ---------------------------------------------------------------- work estimates in the workers


def test_image_costs_in_workers_match_the_parent_and_name_bad_images(slab_images: list[Atoms]) -> None:
    from amp_core import create_descriptor
    from amp_core.images import load_dataset
    from amp_core.pipeline import image_costs

    descriptor = create_descriptor("gaussian", elements=["Cu", "Pt"])
    data = load_dataset(slab_images[:7], forces=False)
    expected = image_costs(data, descriptor)
    assert len(expected) == 7 and all(c > 36 for c in expected)  # neighbour pairs count too
    with create_backend("multiprocessing", cores=2) as b:
        assert image_costs(data, descriptor, b) == expected  # same values, in image order


def test_image_costs_error_names_the_image(support: ModuleType, slab_images: list[Atoms]) -> None:
    from ase.calculators.singlepoint import SinglePointCalculator

    from amp_core.images import load_dataset
    from amp_core.pipeline import image_costs

    piece = slab_images[0][:4]
    piece.calc = SinglePointCalculator(piece, energy=-1.0)
    data = load_dataset([*slab_images[:5], piece], forces=False)
    with create_backend("multiprocessing", cores=2) as b, pytest.raises(DataError, match="image 5: 4 atoms"):
        image_costs(data, support.ShortStructureCost(bad=4), b)
