"""Pipeline stages one at a time: split, fingerprint + store, reshape; end-to-end training."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amp_core import Potential, create_backend, create_descriptor, create_model, evaluate_loss
from amp_core.chunks import balanced_split
from amp_core.data import FORCE_COEFFICIENT, ImageFingerprints
from amp_core.errors import BackendError
from amp_core.images import load_dataset
from amp_core.pipeline import build_chunks, compute_fingerprints
from amp_core.store import FingerprintStore, _checksum, descriptor_key, read_entry, write_entry

pytest.importorskip("amp_coordination", reason="install examples/amp-coordination (README test command)")


@given(st.lists(st.floats(0.1, 100.0), min_size=1, max_size=60), st.integers(1, 8))
@settings(max_examples=60, deadline=None)
def test_balanced_split_is_contiguous_cover(costs, parts):
    shards = balanced_split(costs, parts)
    assert [i for s in shards for i in s] == list(range(len(costs)))
    assert all(shards) and len(shards) == min(parts, len(costs))


def test_balanced_split_balances():
    shards = balanced_split([1.0] * 100, 4)
    assert [len(s) for s in shards] == [25, 25, 25, 25]
    shards = balanced_split([10.0] + [1.0] * 10, 2)
    assert shards[0] == [0]


@pytest.fixture
def descriptor():
    return create_descriptor("coordination", elements=["Cu", "Pt"], radii=[3.0, 5.0])


def store_for(tmp_path, descriptor):
    return FingerprintStore(tmp_path / "fp", descriptor_key(descriptor.name, "1", descriptor.todict()))


def test_store_reuse_and_invalidation(tmp_path, slab_images, descriptor):
    data = load_dataset(slab_images[:6], forces=True)
    backend = create_backend("serial")
    store = store_for(tmp_path, descriptor)
    assert compute_fingerprints(data, descriptor, backend, store, True) == 6
    assert compute_fingerprints(data, descriptor, backend, store, True) == 0
    assert compute_fingerprints(data, descriptor, backend, store, False) == 0  # derivatives serve values
    changed = create_descriptor("coordination", elements=["Cu", "Pt"], radii=[3.0, 5.5])
    other = store_for(tmp_path, changed)
    assert other.folder != store.folder
    assert compute_fingerprints(data, changed, backend, other, True) == 6
    fp = store.get(data.hashes[0], True)
    assert np.array_equal(fp.values, descriptor.compute(data.images[0], derivatives=True).values)


def test_corrupt_entry_is_detected_and_recomputed(tmp_path, slab_images, descriptor):
    data = load_dataset(slab_images[:3], forces=False)
    backend = create_backend("serial")
    store = store_for(tmp_path, descriptor)
    compute_fingerprints(data, descriptor, backend, store, False)
    path = store.path(data.hashes[1], False)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # truncated write
    with pytest.warns(RuntimeWarning, match="removing it"):
        assert store.get(data.hashes[1], False) is None
    assert compute_fingerprints(data, descriptor, backend, store, False) == 1


def test_a_flipped_byte_in_an_entry_fails_its_crc(tmp_path, slab_images, descriptor):
    fp = descriptor.compute(slab_images[0], derivatives=True)
    path = tmp_path / "x.npz"
    write_entry(fp, path)
    assert np.array_equal(read_entry(path).derivatives, fp.derivatives)
    raw = bytearray(path.read_bytes())
    assert fp.derivatives.nbytes > 0.8 * len(raw)  # so the middle byte is derivative data
    raw[len(raw) // 2] ^= 0x10
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="CRC"):
        read_entry(path)


def test_an_older_entry_is_still_checked_by_its_checksum_member(tmp_path, slab_images, descriptor):
    fp = descriptor.compute(slab_images[0])
    arrays = {k: getattr(fp, k) for k in ("numbers", "values", "lengths")}
    path = tmp_path / "x.npz"
    with open(path, "wb") as handle:  # the earlier format: a CRC of its own as a member
        np.savez(handle, checksum=np.array(_checksum(arrays)), **arrays)
    assert np.array_equal(read_entry(path).values, fp.values)
    with open(path, "wb") as handle:
        np.savez(handle, checksum=np.array(_checksum(arrays)), **{**arrays, "values": arrays["values"] + 1e-9})
    with pytest.raises(ValueError, match="checksum"):
        read_entry(path)


def test_an_npz_that_is_not_an_entry_is_refused(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, weights=np.zeros(3))
    with pytest.raises(ValueError, match="not a fingerprint entry"):
        read_entry(path)


class FailingDescriptor:
    """Wraps a descriptor; raises on one image (to interrupt fingerprinting)."""

    def __init__(self, inner, bad_index_position):
        self.inner, self.bad = inner, bad_index_position
        self.name, self.implemented, self.elements = inner.name, inner.implemented, inner.elements

    def cost(self, atoms):
        return 1.0

    def compute(self, atoms, derivatives=False):
        if np.allclose(atoms.positions, self.bad):
            raise RuntimeError("simulated failure")
        return self.inner.compute(atoms, derivatives)


def test_failed_batch_keeps_finished_ones(tmp_path, slab_images, descriptor):
    data = load_dataset(slab_images[:12], forces=False)
    store = store_for(tmp_path, descriptor)
    failing = FailingDescriptor(descriptor, slab_images[9].positions)
    with pytest.raises(BackendError, match=r"stage 'fingerprint', task \d+ \(images 9 to 11\) "
                       r"failed: fingerprinting image 9: RuntimeError: simulated"):
        compute_fingerprints(data, failing, create_backend("serial"), store, False)
    kept = sum(store.has(h, False) for h in data.hashes)
    assert 0 < kept < 12
    assert compute_fingerprints(data, descriptor, create_backend("serial"), store, False) == 12 - kept


def test_reshaped_chunks_cover_every_atom(tmp_path, slab_images, descriptor):
    data = load_dataset(slab_images[:5], forces=True)
    store = store_for(tmp_path, descriptor)
    compute_fingerprints(data, descriptor, create_backend("serial"), store, True)
    serial = create_backend("serial")
    chunks = balanced_split([1.0] * 5, 2)
    handles = build_chunks(data, chunks, [1.0] * 5, tmp_path / "arrays", store, True, serial)
    assert [(h.index, h.n_images, h.cost) for h in handles] == [(0, 3, 3.0), (1, 2, 2.0)]
    arrays = [h.load() for h in handles]
    assert sum(len(a["natoms"]) for a in arrays) == 5
    for a in arrays:
        n = int(a["natoms"].sum())
        covered = np.sort(np.concatenate([a[f"atoms_{z}"] for z in a["elements"]]))
        assert np.array_equal(covered, np.arange(n))
        for z in a["elements"]:
            assert a[f"fp_{z}"].shape == (len(a[f"atoms_{z}"]), 4)
            assert a[f"dfp_{z}"].shape == (len(a[f"dcentre_{z}"]), 3, 4)
    again = build_chunks(data, chunks, [1.0] * 5, tmp_path / "arrays", store, True, serial)
    assert again == handles


def test_evaluate_loss_with_pair_potential_is_backend_and_shard_independent(slab_images):
    potential = Potential(create_descriptor("none"), create_model("pairpotential", cutoff=5.0))
    one = evaluate_loss(slab_images[:8], potential, force_coefficient=0.04, overfit=0.01)
    again = evaluate_loss(slab_images[:8], potential, create_backend("serial"), force_coefficient=0.04, overfit=0.01)
    assert one.loss == again.loss and np.array_equal(one.gradient, again.gradient)
    assert one.force_rmse > 0 and one.energy_rmse == pytest.approx(np.sqrt(one.energy_loss / 8))
    energy_only = evaluate_loss(slab_images[:8], potential)
    assert energy_only.force_loss == 0.0 and energy_only.loss == pytest.approx(energy_only.energy_loss)


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
checkpoint_interval = 2
[training.convergence]
energy_rmse = 1e-9
force_rmse = 1e-9
"""


def write_config(tmp_path, slab_images, maxiter):
    from ase.io import write

    write(tmp_path / "train.xyz", slab_images[:6])
    path = tmp_path / "run.toml"
    path.write_text(CONFIG.format(data="train.xyz", maxiter=maxiter))
    return path


def test_train_writes_log_model_checkpoint_and_resumes(tmp_path, slab_images):
    from amp_core import load, train

    path = write_config(tmp_path, slab_images, maxiter=4)
    potential = train(path, echo=None)
    run = tmp_path / "run"
    log = (run / "train-log.txt").read_text().splitlines()
    assert log[0] == f"cores detected: {len(os.sched_getaffinity(0))}, used: 1"
    assert "backend: serial" in log[1] and "model pairpotential (amp-core" in log[2]
    outcome = potential.training.pop("outcome")  # the final log line (SciPy's words inside vary by version)
    assert potential.training == {"converged": False, "iterations": 4}
    assert outcome == log[-1] and outcome.startswith("NOT converged after 4 iterations (")
    assert outcome.endswith(f"potential saved to {run / 'potential.json'}")
    saved = json.loads((run / "potential.json").read_text())
    assert saved["config"]["training"]["force_coefficient"] == FORCE_COEFFICIENT
    assert json.loads((run / "checkpoint.json").read_text())["iteration"] == 4
    loaded = load(run / "potential.json")
    assert np.array_equal(loaded.model.vector(), potential.model.vector())
    path.write_text(path.read_text().replace("maxiter = 4", "maxiter = 7"))
    resumed = train(path, resume=True, echo=None)
    assert resumed.training["iterations"] == 7
    assert "resumed from" in (run / "train-log.txt").read_text()
    atoms = slab_images[10].copy()
    atoms.calc = loaded
    assert np.isfinite(atoms.get_potential_energy()) and atoms.get_forces().shape == (36, 3)


def test_ctrl_c_saves_a_checkpoint(tmp_path, slab_images, monkeypatch):
    from amp_core import train
    from amp_core.loss import LossFunction

    path = write_config(tmp_path, slab_images, maxiter=50)
    calls = {"n": 0}
    original = LossFunction.evaluate

    def interrupting(self, vector=None):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return original(self, vector)

    monkeypatch.setattr(LossFunction, "evaluate", interrupting)
    with pytest.raises(KeyboardInterrupt):
        train(path, echo=None)
    run = tmp_path / "run"
    assert json.loads((run / "checkpoint.json").read_text())["iteration"] >= 1
    assert "interrupted at iteration" in (run / "train-log.txt").read_text()
    shutil.rmtree(run)


@settings(max_examples=30, deadline=None)
@given(n_atoms=st.integers(0, 4), n_features=st.integers(0, 3), n_pairs=st.integers(0, 5),
       derivatives=st.booleans(), transposed=st.booleans())
def test_store_entries_round_trip_bit_for_bit(tmp_path_factory, n_atoms, n_features, n_pairs, derivatives, transposed):
    """Any shape, zero sizes and non-contiguous arrays included, reads back as written (np.load reads it too)."""
    rng = np.random.default_rng(n_atoms * 100 + n_features * 10 + n_pairs)
    values = rng.normal(size=(n_features, n_atoms)).T if transposed else rng.normal(size=(n_atoms, n_features))
    fp = ImageFingerprints(
        numbers=rng.integers(1, 90, n_atoms), values=values, lengths=np.full(n_atoms, n_features),
        pairs=rng.integers(0, 4, (n_pairs, 2)) if derivatives else None,
        derivatives=rng.normal(size=(n_pairs, 3, n_features)) if derivatives else None)
    path = tmp_path_factory.mktemp("entry") / "x.npz"
    write_entry(fp, path)
    back = read_entry(path)
    for key in ("numbers", "values", "lengths", "pairs", "derivatives"):
        a, b = getattr(fp, key), getattr(back, key)
        assert (a is None and b is None) or (a.dtype == b.dtype and np.array_equal(a, b)), key
    with np.load(path) as data:
        assert np.array_equal(data["values"], values)
