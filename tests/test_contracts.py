"""Contracts v2: explicit plugin manager, a core free of plugin imports, chunked bitwise reduction."""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ase.io import write

import amp_core
from amp_core import (
    DescriptorEntry,
    ImageFingerprints,
    PluginError,
    PluginManager,
    Potential,
    evaluate_loss,
    hookimpl,
    load,
    loss_function,
    train,
)
from amp_core.chunks import assign, make_chunks, split_tasks
from amp_plugins.backends.fortran import probe as fortran_probe

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- the core never imports a plugin


def test_no_core_module_imports_amp_plugins():
    offenders = []
    for path in sorted((ROOT / "amp_core").rglob("*.py")):  # amp_core.amp (Amp's API) too
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}:{node.lineno} imports {n}" for n in names if n.split(".")[0] == "amp_plugins"]
    assert not offenders, offenders


# ---------------------------------------------------------------- an in-process plugin, end to end


@dataclass(frozen=True)
class PairCountParams:
    """Radii (Angstrom) of the smooth neighbour counts."""

    radii: tuple[float, ...] = (3.0, 4.5)


class PairCount:
    """Per atom and radius: sum over neighbours of a smooth cutoff (a test descriptor, never installed)."""

    name = "paircount"
    implemented = frozenset({amp_core.protocols.FINGERPRINTS})
    elements = None

    def __init__(self, params: PairCountParams) -> None:
        self.params = params

    def cost(self, atoms: Any) -> float:
        return float(len(atoms))

    def todict(self) -> dict[str, Any]:
        return {"radii": list(self.params.radii)}

    def compute(self, atoms: Any, derivatives: bool = False) -> ImageFingerprints:
        from ase.neighborlist import neighbor_list

        rc = np.array(self.params.radii)
        i, d = neighbor_list("id", atoms, float(rc.max()))
        fc = np.where(d[:, None] < rc, 0.5 * (np.cos(np.pi * d[:, None] / rc) + 1.0), 0.0)
        values = np.zeros((len(atoms), len(rc)))
        np.add.at(values, i, fc)
        return ImageFingerprints(atoms.numbers.astype(np.int64), values, np.full(len(atoms), len(rc), dtype=np.int64))


class InProcessPlugin:
    """Registered with ``manager.register``: no package, no entry point."""

    @hookimpl
    def amp_descriptors(self) -> list[DescriptorEntry[PairCountParams]]:
        return [DescriptorEntry("paircount", PairCountParams, PairCount, "Smooth neighbour counts (test).")]


def test_in_process_descriptor_trains_and_loads_through_its_manager(tmp_path, slab_images):
    manager = PluginManager()
    manager.register(InProcessPlugin(), name="test-paircount")
    write(tmp_path / "train.xyz", slab_images[:4])
    config = {
        "descriptor": {"name": "paircount", "radii": [3.0, 5.0]},
        "model": {"name": "neuralnetwork", "hiddenlayers": [3]},
        "backend": {"name": "serial"},
        "data": {"train": str(tmp_path / "train.xyz")},
        "training": {"maxiter": 5, "directory": str(tmp_path / "run")},
    }
    potential = train(config, echo=None, manager=manager)
    saved = json.loads((tmp_path / "run" / "potential.json").read_text())
    assert saved["descriptor"]["name"] == "paircount"
    assert saved["descriptor"]["provider"] == "(registered in process)"
    with pytest.raises(amp_core.UnknownPluginError, match="unknown descriptor 'paircount'"):
        load(tmp_path / "run" / "potential.json")  # the installed plugins do not have it
    again = load(tmp_path / "run" / "potential.json", manager=manager)
    assert Potential.load(tmp_path / "run" / "potential.json", manager=manager).model.vector().tolist() == \
        again.model.vector().tolist()
    atoms = slab_images[3].copy()  # a training image: an unseen one would be flagged as extrapolation
    atoms.calc = again
    expected = potential.get_potential_energy(slab_images[3].copy())
    assert atoms.get_potential_energy() == pytest.approx(expected, rel=1e-12)
    result = evaluate_loss(slab_images[:2], again, "serial", manager=manager)
    assert np.isfinite(result.loss)
    created = amp_core.create_descriptor("paircount", manager=manager, radii=[2.0])
    assert created.params.radii == (2.0,)


def test_entry_whose_object_has_another_name_is_an_error():
    class Misnamed(PairCount):
        name = "something-else"

    class Plugin:
        @hookimpl
        def amp_descriptors(self):
            return [DescriptorEntry("paircount", PairCountParams, Misnamed, "misnamed")]

    manager = PluginManager(entry_points=())
    manager.register(Plugin())
    with pytest.raises(PluginError, match="'something-else'.*must be the same"):
        manager.create("descriptor", "paircount", {})


# ---------------------------------------------------------------- chunks


def test_chunks_depend_on_the_data_alone():
    costs = [float(c) for c in np.random.default_rng(1).uniform(1, 3, 500)]
    chunks = make_chunks(costs, [36] * 500)  # 18,000 atoms: 18 ideal -> 12 chunks
    assert [i for c in chunks for i in c] == list(range(500))
    assert len(chunks) == 12
    assert len(make_chunks(costs[:200], [36] * 200)) == 6  # 8 ideal -> 6, shared evenly by 2, 3 and 6
    assert len(make_chunks(costs[:50], [36] * 50)) == 2
    assert len(make_chunks(costs[:5], [2] * 5)) == 2  # small sets still use two workers
    assert len(make_chunks(costs[:1], [2])) == 1  # never more chunks than images
    parts = np.array([sum(costs[i] for i in c) for c in make_chunks(costs[:200], [36] * 200)])
    assert parts.max() / parts.min() < 1.1  # one image (cost <= 3 of ~67) is the granularity


def test_fingerprint_tasks_split_chunks_without_crossing_them():
    chunks = [[0, 1, 2, 3], [4, 5], [6, 7, 8, 9, 10, 11]]
    tasks = split_tasks(chunks, [1.0] * 12, 8)
    assert [i for t in tasks for i in t] == list(range(12)) and len(tasks) >= 8
    owner = {i: k for k, c in enumerate(chunks) for i in c}
    assert all(len({owner[i] for i in t}) == 1 for t in tasks)


def test_assignment_balances_cost_and_covers_every_chunk():
    costs = [5.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    placement = assign(costs, 2)
    assert sorted(k for ks in placement for k in ks) == list(range(6))
    assert sorted(sum(costs[k] for k in ks) for ks in placement) == [5.0, 5.0]
    assert assign(costs, 8)[6:] == [[], []]


# ---------------------------------------------------------------- bitwise reproducibility


def _fortran_missing() -> str | None:
    return fortran_probe()


def _backends() -> list[tuple[str, dict[str, Any]]]:
    return [("serial", {}), ("multiprocessing", {"cores": 1}), ("multiprocessing", {"cores": 2}),
            ("multiprocessing", {"cores": 3})]


def _config(tmp_path: Path, backend: str, options: dict[str, Any], directory: str) -> dict[str, Any]:
    return {
        "descriptor": {"name": "gaussian", "elements": ["Cu", "Pt"], "cutoff": 5.0},
        "model": {"name": "neuralnetwork", "hiddenlayers": [4, 3]},
        "backend": {"name": backend, **options},
        "data": {"train": str(tmp_path / "train.xyz")},
        "training": {"maxiter": 30, "force_coefficient": 0.04, "directory": str(tmp_path / directory),
                     "convergence": {"energy_rmse": 1e-9}},
    }


def _trained(tmp_path: Path, backends: list[tuple[str, dict[str, Any]]]) -> list[np.ndarray]:
    vectors = []
    for k, (name, options) in enumerate(backends):
        potential = train(_config(tmp_path, name, options, f"run{k}"), echo=None)
        assert potential.training["iterations"] == 30
        assert "chunks: 4 (" in (tmp_path / f"run{k}" / "train-log.txt").read_text()
        vectors.append(potential.model.vector())
    return vectors


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of ~100 atoms, so that 12 slab images make 4 chunks for 1 to 3 workers to share."""
    monkeypatch.setattr("amp_core.chunks.CHUNK_ATOMS", 100)


def test_thirty_training_iterations_are_bitwise_identical_for_any_worker_count(tmp_path, slab_images, small_chunks):
    write(tmp_path / "train.xyz", slab_images[:12])  # 12 images, 432 atoms: 4 chunks
    vectors = _trained(tmp_path, _backends())
    for (name, options), vector in zip(_backends()[1:], vectors[1:]):
        assert np.array_equal(vector, vectors[0]), f"{name} {options} differs from serial after 30 iterations"


@pytest.mark.skipif(_fortran_missing() is not None, reason=f"fortran kernels not built: {_fortran_missing()}")
def test_compiled_kernels_train_bitwise_identically_with_one_and_two_workers(tmp_path, slab_images, small_chunks):
    write(tmp_path / "train.xyz", slab_images[:12])
    backends = [("fortran", {"cores": 1}), ("fortran", {"cores": 2}), ("serial", {"compiled": True})]
    one, two, serial = _trained(tmp_path, backends)
    assert np.array_equal(one, two)
    assert np.array_equal(one, serial)


def test_loss_and_gradient_bitwise_identical_across_backends(slab_images, small_chunks):
    potential = Potential(amp_core.create_descriptor("gaussian", elements=["Cu", "Pt"], cutoff=5.0),
                          amp_core.create_model("neuralnetwork", hiddenlayers=(4,), seed=1))
    results = []
    for name, options in _backends():
        with amp_core.create_backend(name, **options) as backend, \
                loss_function(slab_images[:10], potential, backend, forces=True) as f:
            vector = potential.model.vector() * 1.1
            results.append(f.evaluate(vector))
    for result in results[1:]:
        assert result.loss == results[0].loss
        assert np.array_equal(result.gradient, results[0].gradient)
        assert (result.energy_rmse, result.force_rmse) == (results[0].energy_rmse, results[0].force_rmse)
