"""The ``mpi`` backend under ``mpiexec`` (1, 2 and 3 ranks, oversubscribed is fine): bitwise agreement
with ``serial``, collective training, faults; and its probe without mpi4py.

The MPI runs are subprocesses with a timeout. They are skipped, with the reason, only when
mpi4py or ``mpiexec`` is missing; in CI (``AMP_REQUIRE_MPI=1``) such a skip fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from ase.io import write
from hypothesis import given, settings
from hypothesis import strategies as st

from amp_core import Potential, create_descriptor, create_model, evaluate_loss, train

ROOT = Path(__file__).resolve().parent.parent


def _mpiexec() -> str | None:
    """Return the mpiexec next to this Python (the ``mpich`` wheel's), else the one on PATH."""
    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.exists() else shutil.which("mpiexec")


def _missing() -> str | None:
    if importlib.util.find_spec("mpi4py") is None:
        return 'MPI test skipped: mpi4py is not installed (pip install ".[mpi]")'
    if _mpiexec() is None:
        return "MPI test skipped: no mpiexec found (the mpich wheel or a system MPI provides one)"
    return None


needs_mpi = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


def _run(script: str, ranks: int, tmp_path: Path, timeout: float = 240, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"script{ranks}.py"
    path.write_text(textwrap.dedent(script))
    command = [_mpiexec(), "-n", str(ranks)]
    if "Open MPI" in subprocess.run([_mpiexec(), "--version"], capture_output=True, text=True).stdout:
        command.append("--oversubscribe")
    return subprocess.run([*command, sys.executable, str(path), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=tmp_path)


def _config(tmp_path: Path, backend: dict, directory: str, maxiter: int = 20) -> dict:
    return {
        "descriptor": {"name": "gaussian", "elements": ["Cu", "Pt"], "cutoff": 5.0},
        "model": {"name": "neuralnetwork", "hiddenlayers": [4, 3]},
        "backend": backend,
        "data": {"train": str(tmp_path / "train.xyz")},
        "training": {"maxiter": maxiter, "force_coefficient": 0.04, "directory": str(tmp_path / directory),
                     "convergence": {"energy_rmse": 1e-12}},
    }


CHECK = """
    import amp_core.chunks
    from amp_core import create_backend

    amp_core.chunks.CHUNK_ATOMS = 16  # 4 chunks of the small check structures
    from amp_core.testing import check_backend

    with create_backend("mpi") as backend:
        check_backend(backend, rtol=0)
    print(f"rank {backend.rank} of {backend.size}: check_backend passed", flush=True)
"""


@needs_mpi
@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_check_backend_passes_bitwise_under_mpiexec(tmp_path, ranks):
    done = _run(CHECK, ranks, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    for rank in range(ranks):
        assert f"rank {rank} of {ranks}: check_backend passed" in done.stdout


TRAIN = """
    import json, sys
    import numpy as np
    import amp_core.chunks
    from amp_core import train

    amp_core.chunks.CHUNK_ATOMS = 64  # 6 chunks of the 12 slab images, to share among the ranks

    config = json.loads(open(sys.argv[1]).read())
    potential = train(config, echo=None)
    np.save(f"vector-{config['training']['directory'].split('/')[-1]}-rank.npy".replace("rank", str(
        __import__("mpi4py.MPI").MPI.COMM_WORLD.Get_rank())), potential.model.vector())
    print("trained", potential.training["iterations"], flush=True)
"""


@needs_mpi
def test_twenty_iterations_under_mpi_are_bitwise_identical_to_serial(tmp_path, slab_images, monkeypatch):
    monkeypatch.setattr("amp_core.chunks.CHUNK_ATOMS", 64)  # as in the script: 6 chunks
    write(tmp_path / "train.xyz", slab_images[:12])
    reference = train(_config(tmp_path, {"name": "serial"}, "serial"), echo=None)
    assert reference.training["iterations"] == 20
    scratch = tmp_path / "node-local"
    for ranks, backend in ((2, {"name": "mpi"}), (3, {"name": "mpi", "scratch": str(scratch)})):
        config = tmp_path / f"config{ranks}.json"
        config.write_text(json.dumps(_config(tmp_path, backend, f"mpi{ranks}")))
        done = _run(TRAIN, ranks, tmp_path, 300, str(config))
        assert done.returncode == 0, done.stdout + done.stderr
        for rank in range(ranks):  # every rank returns the trained potential
            vector = np.load(tmp_path / f"vector-mpi{ranks}-{rank}.npy")
            assert np.array_equal(vector, reference.model.vector()), f"{ranks} ranks, rank {rank} differs"
        head = (tmp_path / f"mpi{ranks}" / "train-log.txt").read_text()
        assert f"mpi: {ranks} rank(s) on 1 host(s); ranks per host: " in head.splitlines()[0]
        if not {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"} & set(os.environ) and ranks <= os.cpu_count() < ranks * 2:
            assert "run with OMP_NUM_THREADS=1" in head  # the ranks share the cores: say how to avoid oversubscription
    chunks = sorted(p.name for p in (tmp_path / "mpi3" / "arrays").iterdir())
    assert len(chunks) == 6
    assert sorted(p.name for p in (scratch / "amp-arrays").iterdir()) == chunks  # each chunk copied once


@needs_mpi
def test_an_ensemble_under_mpi_trains_bitwise_like_serial(tmp_path, slab_images, monkeypatch):
    monkeypatch.setattr("amp_core.chunks.CHUNK_ATOMS", 64)  # as in the script: 6 chunks
    write(tmp_path / "train.xyz", slab_images[:12])
    serial = _config(tmp_path, {"name": "serial"}, "serial", maxiter=8)
    serial["training"]["ensemble"] = 2
    reference = train(serial, echo=None)
    config = _config(tmp_path, {"name": "mpi"}, "mpi2", maxiter=8)
    config["training"]["ensemble"] = 2
    (tmp_path / "config.json").write_text(json.dumps(config))
    done = _run(TRAIN, 2, tmp_path, 300, str(tmp_path / "config.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    for rank in range(2):
        assert np.array_equal(np.load(tmp_path / f"vector-mpi2-{rank}.npy"), reference.model.vector())


def _fortran_missing() -> str | None:
    from amp_plugins.backends.fortran import probe

    return probe()


@needs_mpi
@pytest.mark.skipif(_fortran_missing() is not None, reason=f"fortran kernels not built: {_fortran_missing()}")
def test_compiled_kernels_inside_ranks_train_like_serial_compiled(tmp_path, slab_images, monkeypatch):
    monkeypatch.setattr("amp_core.chunks.CHUNK_ATOMS", 64)
    write(tmp_path / "train.xyz", slab_images[:12])
    reference = train(_config(tmp_path, {"name": "serial", "compiled": True}, "serial"), echo=None)
    config = tmp_path / "config2.json"
    config.write_text(json.dumps(_config(tmp_path, {"name": "mpi", "compiled": True}, "mpi2")))
    done = _run(TRAIN, 2, tmp_path, 300, str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    for rank in range(2):
        assert np.array_equal(np.load(tmp_path / f"vector-mpi2-{rank}.npy"), reference.model.vector())
    assert "compiled kernels loaded" in (tmp_path / "mpi2" / "train-log.txt").read_text()


EVALUATE = """
    import sys
    from ase.io import read
    from amp_core import Potential, create_descriptor, create_model, evaluate_loss, loss_function

    images = read(sys.argv[1], ":")
    potential = Potential(create_descriptor("gaussian", elements=["Cu", "Pt"], cutoff=5.0),
                          create_model("neuralnetwork", hiddenlayers=(3,), seed=2))
    result = evaluate_loss(images, potential, "mpi", forces=True)
    lines = [f"loss {result.loss.hex()}"]
    f = loss_function(images, potential, "mpi", forces=True)
    if f.drives:
        lines.append(f"f {f(potential.model.vector() * 1.01)[0].hex()}")
        f.close()
    lines.append(f"closed {f.session is None}")
    from mpi4py import MPI
    open(f"rank{MPI.COMM_WORLD.Get_rank()}.txt", "w").write("\\n".join(lines) + "\\n")  # no interleaved output
"""


@needs_mpi
def test_evaluate_loss_returns_the_same_result_on_every_rank(tmp_path, slab_images):
    from amp_core import Potential, create_descriptor, create_model, evaluate_loss, loss_function

    write(tmp_path / "train.xyz", slab_images[:6])
    done = _run(EVALUATE, 3, tmp_path, 240, str(tmp_path / "train.xyz"))
    assert done.returncode == 0, done.stdout + done.stderr
    potential = Potential(create_descriptor("gaussian", elements=["Cu", "Pt"], cutoff=5.0),
                          create_model("neuralnetwork", hiddenlayers=(3,), seed=2))
    expected = evaluate_loss(slab_images[:6], potential, "serial", forces=True).loss.hex()
    with loss_function(slab_images[:6], potential, "serial", forces=True) as f:
        value = f(potential.model.vector() * 1.01)[0].hex()
    for rank in range(3):
        lines = (tmp_path / f"rank{rank}.txt").read_text().splitlines()
        assert lines == [f"loss {expected}"] + ([f"f {value}"] if rank == 0 else []) + ["closed True"], lines


FAILING = """
    import json, sys
    from mpi4py import MPI
    from amp_plugins.models import neuralnetwork
    from amp_core import train

    if MPI.COMM_WORLD.Get_rank() == 1:  # chunk evaluators of rank 1 raise at the third evaluation
        original = neuralnetwork.NeuralNetwork.loss_evaluator
        def loss_evaluator(self, arrays, settings):
            evaluate, calls = original(self, arrays, settings), []
            def broken(vector):
                calls.append(1)
                if len(calls) == 3:
                    raise ZeroDivisionError("injected fault")
                return evaluate(vector)
            return broken
        neuralnetwork.NeuralNetwork.loss_evaluator = loss_evaluator
    train(json.loads(open(sys.argv[1]).read()), echo=None)
"""


@needs_mpi
def test_a_rank_that_raises_is_named_a_checkpoint_is_saved_and_the_job_ends(tmp_path, slab_images):
    write(tmp_path / "train.xyz", slab_images[:12])
    config = tmp_path / "config.json"
    config.write_text(json.dumps(_config(tmp_path, {"name": "mpi"}, "run")))
    t0 = time.monotonic()
    done = _run(FAILING, 3, tmp_path, 120, str(config))
    assert done.returncode != 0
    assert time.monotonic() - t0 < 60
    assert "rank 1" in done.stderr and "stage 'loss'" in done.stderr and "ZeroDivisionError" in done.stderr
    assert "injected fault" in done.stderr
    log = (tmp_path / "run" / "train-log.txt").read_text()
    assert "failed at iteration" in log
    assert json.loads((tmp_path / "run" / "checkpoint.json").read_text())["iteration"] >= 0


ONE_RANK_FAILS = """
    import json, sys
    from mpi4py import MPI
    import amp_core.loss
    from amp_core import train

    if MPI.COMM_WORLD.Get_rank() == int(sys.argv[2]):  # this rank alone fails before its first collective call
        def broken(*args, **kwargs):
            raise OSError("injected: data file unreadable on this node")
        amp_core.loss.load_dataset = broken
    train(json.loads(open(sys.argv[1]).read()), echo=None)
"""


@needs_mpi
@pytest.mark.parametrize("rank", [0, 2])
def test_a_rank_failing_outside_the_backend_ends_the_job(tmp_path, slab_images, rank):
    write(tmp_path / "train.xyz", slab_images[:6])
    config = tmp_path / "config.json"
    config.write_text(json.dumps(_config(tmp_path, {"name": "mpi"}, "run")))
    done = _run(ONE_RANK_FAILS, 3, tmp_path, 120, str(config), str(rank))
    assert done.returncode != 0
    assert "injected: data file unreadable on this node" in done.stderr
    if rank == 2:
        assert "rank 2 (" in done.stderr and "left the run" in done.stderr, done.stderr


KILLED = """
    import json, os, sys
    from mpi4py import MPI
    from amp_core import train

    open(f"rank{MPI.COMM_WORLD.Get_rank()}.pid", "w").write(str(os.getpid()))
    train(json.loads(open(sys.argv[1]).read()), echo=None)
"""


@needs_mpi
def test_a_rank_killed_during_training_ends_the_job_within_30_seconds(tmp_path, slab_images):
    write(tmp_path / "train.xyz", slab_images[:12])
    config = tmp_path / "config.json"
    config.write_text(json.dumps(_config(tmp_path, {"name": "mpi"}, "run", maxiter=100000)))
    (tmp_path / "script.py").write_text(textwrap.dedent(KILLED))
    process = subprocess.Popen([_mpiexec(), "-n", "2", sys.executable, "script.py", str(config)], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        log = tmp_path / "run" / "train-log.txt"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not (log.exists() and "     3 " in log.read_text()):
            time.sleep(0.2)  # until training runs (iteration rows appear)
        assert process.poll() is None, process.communicate()[0]
        os.kill(int((tmp_path / "rank1.pid").read_text()), signal.SIGKILL)
        killed = time.monotonic()
        output = process.communicate(timeout=30)[0]
        assert time.monotonic() - killed < 30
        assert process.returncode != 0, output
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_plugins_lists_mpi_as_unavailable_without_mpi4py(monkeypatch, capsys):
    from amp_core.cli import main
    from amp_plugins.backends import mpi

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mpi4py" else real(name, *a))
    assert mpi.probe() == mpi.INSTALL
    assert 'pip install ".[mpi]"' in mpi.INSTALL and "amp-core[mpi]" not in mpi.INSTALL  # installs from a checkout
    assert main(["plugins", "--kind", "backend"]) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if line.split()[1:2] == ["mpi"]]
    assert row and row[0].rstrip().endswith(f"  unavailable: {mpi.INSTALL}"), row


def test_the_mpi_module_imports_without_mpi4py():
    code = ("import sys; sys.modules['mpi4py'] = None; import amp_plugins.backends.mpi as m; "
            "assert m.probe() is not None or True; print('imported')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "imported" in done.stdout, done.stderr


@needs_mpi
def test_without_mpiexec_it_runs_as_one_rank_and_says_so(tmp_path, slab_images):
    write(tmp_path / "train.xyz", slab_images[:4])
    script = ("import json, sys; from amp_core import train; "
              "train(json.loads(open(sys.argv[1]).read()), echo=None)")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(_config(tmp_path, {"name": "mpi"}, "run", maxiter=2)))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI", "HYDRA", "OMPI", "PMIX", "MPI_"))}
    done = subprocess.run([sys.executable, "-c", script, str(config)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    head = (tmp_path / "run" / "train-log.txt").read_text().splitlines()[:3]
    assert head[0].startswith("mpi: 1 rank(s) on 1 host(s)")
    assert "not launched by mpiexec or srun: running as one rank" in head[1]


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@given(st.lists(st.tuples(st.lists(finite, min_size=5, max_size=5), st.integers(0, 2**40)), max_size=4),
       st.integers(0, 7), st.data())
@settings(max_examples=60, deadline=None)
def test_loss_records_pack_and_unpack_bit_for_bit(records, n, data):
    from amp_core.data import LossParts
    from amp_plugins.backends.mpi import pack, unpack

    parts = [LossParts(*scalars, count, np.array(data.draw(st.lists(finite, min_size=n, max_size=n))))
             for scalars, count in records]
    buffer = pack(parts, n)
    assert buffer.dtype == np.float64 and buffer.shape == (len(parts) * (6 + n),)
    back = unpack(buffer.copy(), n, len(parts))
    assert back is not None and len(back) == len(parts)
    for got, sent in zip(back, parts):
        assert [got.loss, got.energy_loss, got.force_loss, got.energy_maxresid, got.force_maxresid] == \
            [sent.loss, sent.energy_loss, sent.force_loss, sent.energy_maxresid, sent.force_maxresid]
        assert got.n_images == sent.n_images and isinstance(got.n_images, int)
        assert got.gradient.tobytes() == sent.gradient.tobytes()


def test_ensemble_loss_records_pack_and_unpack_with_their_members():
    from amp_core.data import LossParts
    from amp_plugins.backends.mpi import pack, unpack

    rng = np.random.default_rng(1)
    chunks = [LossParts.stack([LossParts(*rng.random(5), 3, rng.normal(size=size)) for size in (4, 2, 4)])
              for _ in range(3)]
    back = unpack(pack(chunks, 10).copy(), 10, 3)
    assert back is not None and len(back) == 3
    for got, sent in zip(back, chunks):
        assert len(got.members) == 3 and got.gradient.tobytes() == sent.gradient.tobytes()
        for a, b in zip(got.members, sent.members):
            assert (a.loss, a.energy_loss, a.force_loss, a.energy_maxresid, a.force_maxresid, a.n_images) == \
                (b.loss, b.energy_loss, b.force_loss, b.energy_maxresid, b.force_maxresid, b.n_images)
            assert a.gradient.tobytes() == b.gradient.tobytes()
    assert unpack(pack(chunks, 10), 10, 2) is None and unpack(pack(chunks, 10), 9, 3) is None


def test_unpack_refuses_a_buffer_of_another_size():
    from amp_core.data import LossParts
    from amp_plugins.backends.mpi import pack, unpack

    buffer = pack([LossParts(1.0, 2.0, 3.0, 4.0, 5.0, 6, np.arange(3.0))] * 2, 3)
    assert unpack(buffer, 3, 2) is not None
    assert unpack(buffer, 3, 1) is None  # the rank holds other chunks
    assert unpack(buffer, 4, 2) is None  # another parameter count
    assert unpack(buffer[:-1], 3, 2) is None


def test_mpi_params_reject_bad_values():
    from amp_plugins.backends.mpi import MpiParams

    with pytest.raises(ValueError, match="compiled"):
        MpiParams(compiled="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scratch"):
        MpiParams(scratch="  ")


@needs_mpi
def test_amp_train_under_mpiexec_with_the_example_config(tmp_path):
    from amp_core.config import load_config

    shutil.copytree(ROOT / "examples" / "mpi", tmp_path / "mpi")
    shutil.copytree(ROOT / "examples" / "data", tmp_path / "data")
    config = tmp_path / "mpi" / "config.toml"
    text = config.read_text().replace("maxiter = 2000", "maxiter = 3")
    config.write_text(text.replace('"../data/ptcu-train.xyz"', '"../data/ptcu-train.xyz@0:8"'))
    assert load_config(config).backend["name"] == "mpi"
    amp = Path(sys.executable).parent / "amp"
    done = subprocess.run([_mpiexec(), "-n", "2", str(amp), "train", str(config), "--quiet"], capture_output=True,
                          text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr  # 1: stopped by maxiter, on every rank
    assert done.stdout.count("NOT converged after 3 iterations") == 2, done.stdout  # both ranks return it
    log = (tmp_path / "mpi" / "run" / "train-log.txt").read_text()
    assert log.startswith("mpi: 2 rank(s) on 1 host(s)")
    assert (tmp_path / "mpi" / "run" / "potential.json").is_file()
    # With validation the ranks serve two sessions (training and validation) until rank 0 closes both.
    config.write_text(config.read_text().replace('[data]\n', '[data]\nvalidation_fraction = 0.25\n')
                      .replace("maxiter = 3", "maxiter = 4\nvalidation_interval = 2"))
    validated = subprocess.run([_mpiexec(), "-n", "2", str(amp), "train", str(config), "--quiet"],
                               capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert validated.returncode == 1, validated.stdout + validated.stderr
    log = (tmp_path / "mpi" / "run" / "train-log.txt").read_text()
    assert "validation: 2 images, every 2 iteration(s)" in log and "best validation at iteration" in log
    rows = [line.split() for line in log.splitlines() if line.split() and line.split()[0].isdigit()]
    assert [row[7] != "-" for row in rows] == [True, False, True, False, True]


@needs_mpi
def test_sigterm_to_mpiexec_saves_a_checkpoint_and_exits_130(tmp_path, slab_images):
    write(tmp_path / "train.xyz", slab_images[:8])
    config = tmp_path / "config.json"
    config.write_text(json.dumps(_config(tmp_path, {"name": "mpi"}, "run", maxiter=100000)))
    toml = tmp_path / "config.toml"
    toml.write_text("\n".join(
        f"[{table}]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items() if not isinstance(v, dict))
        + "".join(f"\n[{table}.{k}]\n" + "\n".join(f"{a} = {json.dumps(b)}" for a, b in v.items())
                  for k, v in values.items() if isinstance(v, dict))
        for table, values in json.loads(config.read_text()).items()) + "\n")
    amp = Path(sys.executable).parent / "amp"
    process = subprocess.Popen([_mpiexec(), "-n", "2", str(amp), "train", str(toml), "--quiet"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        log = tmp_path / "run" / "train-log.txt"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not (log.exists() and "    10 " in log.read_text()):
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)  # mpiexec forwards it to every rank
        output = process.communicate(timeout=30)[0]
        assert process.returncode == 130, output
        assert output.count("amp train: interrupted (SIGTERM)") == 2, output
        assert "checkpoint saved to" in log.read_text()
        assert json.loads((tmp_path / "run" / "checkpoint.json").read_text())["iteration"] >= 10
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


RESUME = """
    import json, sys
    import numpy as np
    from mpi4py import MPI
    from amp_core import train

    config = json.loads(open(sys.argv[1]).read())
    train(config, echo=None)
    config["training"]["maxiter"] = 6
    potential = train(config, resume=True, echo=None)
    np.save(f"resumed-{MPI.COMM_WORLD.Get_rank()}.npy", potential.model.vector())
"""


@needs_mpi
def test_resume_under_mpi_continues_like_serial(tmp_path, slab_images):
    write(tmp_path / "train.xyz", slab_images[:8])
    serial = _config(tmp_path, {"name": "serial"}, "serial", maxiter=3)
    train(serial, echo=None)
    serial["training"]["maxiter"] = 6
    reference = train(serial, resume=True, echo=None).model.vector()
    config = tmp_path / "config.json"
    config.write_text(json.dumps(_config(tmp_path, {"name": "mpi"}, "mpi", maxiter=3)))
    done = _run(RESUME, 2, tmp_path, 240, str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    for rank in range(2):
        assert np.array_equal(np.load(tmp_path / f"resumed-{rank}.npy"), reference)
    assert "resumed from" in (tmp_path / "mpi" / "train-log.txt").read_text()


BUDGET = """
    import socket, sys
    from mpi4py import MPI
    import amp_core.chunks
    import amp_core.memory

    amp_core.chunks.CHUNK_ATOMS = 64  # 6 chunks of the 12 slab images
    rank = MPI.COMM_WORLD.Get_rank()
    if sys.argv[1] == "hosts":  # every rank on a host of its own, as on a cluster
        socket.gethostname = lambda: f"node{rank}"
    from ase.io import read
    from amp_core import ConfigError, Potential, create_backend, create_descriptor, create_model, evaluate_loss

    potential = Potential(create_descriptor("gaussian", elements=["Cu", "Pt"], cutoff=5.0),
                          create_model("neuralnetwork", hiddenlayers=(3,)))
    lines = []
    with create_backend("mpi") as backend:
        try:
            result = evaluate_loss(read("train.xyz", ":"), potential, backend, forces=True, log=lines.append)
            print(f"rank {rank}: loss {result.loss!r}", flush=True)
        except ConfigError as exc:
            print(f"rank {rank}: refused: {exc}", flush=True)
    for line in lines:
        if line.startswith("fingerprint data on"):
            print(f"rank {rank}: {line}", flush=True)
"""


@needs_mpi
def test_the_memory_budget_is_per_host_under_mpi(tmp_path, slab_images, monkeypatch):
    import amp_core.memory

    monkeypatch.setattr("amp_core.chunks.CHUNK_ATOMS", 64)
    write(tmp_path / "train.xyz", slab_images[:12])
    needs = []
    monkeypatch.setattr(amp_core.memory, "check", lambda need, *args: needs.append(need))
    potential = Potential(create_descriptor("gaussian", elements=["Cu", "Pt"], cutoff=5.0),
                          create_model("neuralnetwork", hiddenlayers=(3,)))
    evaluate_loss(slab_images[:12], potential, forces=True)
    (whole,) = needs  # serial: the whole data set on one machine
    monkeypatch.setenv("AMP_MAX_MEMORY", str(int(0.75 * whole)))  # each of two hosts holds about half

    done = _run(BUDGET, 2, tmp_path, 180, "hosts")
    assert done.returncode == 0, done.stdout + done.stderr
    # two ranks write to one pipe: lines may run into each other, so pick the numbers out
    losses = re.findall(r"rank \d: loss ([-+0-9.eE]+?)(?=rank|\s|$)", done.stdout)
    assert len(losses) == 2 and len(set(losses)) == 1, done.stdout
    assert "rank 0: fingerprint data on host node0 (rank 0):" in done.stdout
    assert "rank 0: fingerprint data on host node1 (rank 1):" in done.stdout and "3 of 6 chunks" in done.stdout

    done = _run(BUDGET, 2, tmp_path, 180, "one")  # both ranks on this host: the whole data set on one node
    assert done.returncode == 0, done.stdout + done.stderr
    for rank in (0, 1):
        assert (f"rank {rank}: refused: force training on 12 images (6 of 6 chunks) needs about" in done.stdout
                and "ranks 0-1), more than that node's budget" in done.stdout), done.stdout


MAP_FAILS = """
    import sys
    from amp_core import BackendError, create_backend

    def task(k):
        if k == int(sys.argv[1]):
            raise ZeroDivisionError(f"injected in task {k}")
        return k

    with create_backend("mpi") as backend:
        try:
            results = backend.map(task, list(range(30)), stage="fingerprint")
        except BackendError as exc:
            print(f"rank {backend.rank}: failed: {exc}", flush=True)
            raise SystemExit(3)
        assert results == list(range(30)), results
        print(f"rank {backend.rank}: results in task order", flush=True)
"""


@needs_mpi
def test_a_task_that_raises_names_rank_and_task_and_ends_the_job(tmp_path):
    done = _run(MAP_FAILS, 3, tmp_path, 120, "-1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("results in task order") == 3
    t0 = time.monotonic()
    done = _run(MAP_FAILS, 2, tmp_path, 120, "7")  # task 7 runs on rank 1 (tasks go round in turn)
    assert done.returncode != 0
    assert time.monotonic() - t0 < 60
    assert "rank 0: failed: rank 1 (" in done.stdout and "stage 'fingerprint', task 7" in done.stdout, done.stdout
    assert "injected in task 7" in done.stdout
