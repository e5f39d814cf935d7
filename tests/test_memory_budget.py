"""The memory budget: large inputs are refused before the work, with the numbers and what to do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from amp_core import ConfigError, Potential, create_descriptor, create_model, evaluate_loss
from amp_core.images import read_images
from amp_core.memory import budget, parse_size, physical_memory

DATA = Path(__file__).resolve().parent.parent / "examples" / "data" / "ptcu-train.xyz"


@pytest.mark.parametrize(("text", "size"), [("8G", 8 * 2**30), ("512M", 512 * 2**20), ("1.5k", 1536),
                                            ("100", 100), ("2GiB", 2 * 2**30)])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "12x", "-1G", "0", "G"])
def test_bad_sizes(text):
    with pytest.raises(ConfigError, match="expected a memory size"):
        parse_size(text)


def test_default_budget_is_half_the_machine(monkeypatch):
    monkeypatch.delenv("AMP_MAX_MEMORY", raising=False)
    assert budget() == physical_memory() // 2 > 0


def test_a_data_file_too_large_for_the_budget_is_refused_before_reading(monkeypatch):
    monkeypatch.setenv("AMP_MAX_MEMORY", "100K")
    with pytest.raises(ConfigError, match=r"reading data file .*ptcu-train.xyz \(240.1 KB\) needs about .* budget"):
        read_images(str(DATA))


def test_a_sparse_5_gb_file_is_refused_at_once(tmp_path):
    sparse = tmp_path / "huge.xyz"
    with open(sparse, "wb") as handle:
        handle.truncate(5 * 2**30)  # 5 GB of holes: no disk used
    with pytest.raises(ConfigError, match=r"huge.xyz \(5.0 GB\) needs about 20.0 GB"):
        read_images(str(sparse))


def test_fingerprint_data_estimate_is_logged_and_checked(monkeypatch, slab_images):
    potential = Potential(create_descriptor("gaussian", elements=["Cu", "Pt"]),
                          create_model("neuralnetwork", hiddenlayers=(3,)))
    lines: list[str] = []
    evaluate_loss(slab_images[:4], potential, forces=True, log=lines.append)
    (line,) = [x for x in lines if x.startswith("fingerprint data (estimated")]
    assert "per image on average" in line
    monkeypatch.setenv("AMP_MAX_MEMORY", "1M")
    with pytest.raises(ConfigError, match="force training on 4 images needs about .* MB of memory"):
        evaluate_loss(slab_images[:4], potential, forces=True)


def test_amp_max_memory_option(tmp_path):
    run = subprocess.run([sys.executable, "-m", "amp_core.cli", "evaluate", "missing.json", str(DATA),
                          "--max-memory", "12x"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert run.returncode == 2 and "--max-memory: expected a memory size" in run.stderr


def _needs(monkeypatch, images, potential, backend="serial"):
    """Run evaluate_loss and return the (need, limit, where) of every memory check it made."""
    import amp_core.memory

    checks: list[tuple[float, int | None, str | None]] = []
    real = amp_core.memory.check

    def recording(need, what, limit=None, where=None):
        checks.append((need, limit, where))
        real(need, what, limit, where)

    monkeypatch.setattr(amp_core.memory, "check", recording)
    evaluate_loss(images, potential, backend, forces=True)
    return checks


def test_the_budget_is_per_node_when_the_backend_spreads_chunks_over_nodes(monkeypatch, slab_images):
    """A backend with ``memory_nodes`` (as ``mpi``) has each node's chunks weighed against that node's budget."""
    from amp_core import create_backend

    monkeypatch.setattr("amp_core.chunks.CHUNK_ATOMS", 64)  # 6 chunks of 12 slab images
    potential = Potential(create_descriptor("gaussian", elements=["Cu", "Pt"], cutoff=5.0),
                          create_model("neuralnetwork", hiddenlayers=(3,)))
    ((whole, limit, where),) = _needs(monkeypatch, slab_images[:12], potential)
    assert where is None and limit == budget()  # one machine: the whole data set against its budget

    seen: list[list[float]] = []

    def two_nodes(chunk_costs):
        seen.append(chunk_costs)
        return [("node a", [0, 2, 4], int(0.6 * whole)), ("node b", [1, 3, 5], 10 * int(whole))]

    backend = create_backend("serial")
    backend.memory_nodes = two_nodes
    checks = _needs(monkeypatch, slab_images[:12], potential, backend)
    (costs,) = seen
    assert len(costs) == 6
    shares = [sum(costs[k] for k in (0, 2, 4)) / sum(costs), sum(costs[k] for k in (1, 3, 5)) / sum(costs)]
    assert [(w, lim) for _, lim, w in checks] == [("node a", int(0.6 * whole)), ("node b", 10 * int(whole))]
    assert [need / whole for need, _, _ in checks] == pytest.approx(shares, rel=1e-12)

    backend.memory_nodes = lambda costs: [("node a", [0, 1, 2, 3], int(0.6 * whole)), ("node b", [4, 5], 2**62)]
    with pytest.raises(ConfigError, match=r"force training on 12 images \(4 of 6 chunks\) needs about .* of memory "
                                          r"on node a, more than that node's budget of .*Spread the ranks"):
        evaluate_loss(slab_images[:12], potential, backend, forces=True)
