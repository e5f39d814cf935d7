"""Damaged caches are detected and rebuilt in one run; nothing corrupt is ever trained on."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from amp_core import Potential, create_descriptor, create_model, evaluate_loss
from amp_core.reshape import save_arrays, verify_arrays


def _potential() -> Potential:
    return Potential(create_descriptor("gaussian", elements=["Cu", "Pt"], cutoff=5.0),
                     create_model("neuralnetwork", hiddenlayers=(4,), seed=2))


def _evaluate(images, run_dir: Path, vector=None):
    lines: list[str] = []
    potential = _potential()
    result = evaluate_loss(images, potential, "serial", forces=True, run_dir=run_dir, log=lines.append)
    return result, lines


@pytest.fixture
def reference(tmp_path, slab_images):
    """A clean run's result, and its run folder (fingerprints and arrays cached)."""
    run = tmp_path / "run"
    result, _ = _evaluate(slab_images[:12], run)
    return result, run


def _array_files(run: Path, prefix: str) -> list[Path]:
    return sorted((run / "arrays").glob(f"*/{prefix}_*.npy"))


def test_a_changed_row_of_a_cached_array_is_detected_and_rebuilt(reference, slab_images):
    clean, run = reference
    target = _array_files(run, "fp")[0]
    values = np.load(target)
    values[0] += 0.5  # a plausible-looking, wrong fingerprint row
    np.save(target, values)
    again, lines = _evaluate(slab_images[:12], run)
    assert any("fails its checksum; rebuilt" in line for line in lines), lines
    assert again.loss == clean.loss and np.array_equal(again.gradient, clean.gradient)


def test_a_truncated_cached_array_is_rebuilt(reference, slab_images):
    clean, run = reference
    target = _array_files(run, "dfp")[0]
    target.write_bytes(target.read_bytes()[:1000])
    again, lines = _evaluate(slab_images[:12], run)
    assert any("unreadable" in line and "rebuilt" in line for line in lines), lines
    assert again.loss == clean.loss and np.array_equal(again.gradient, clean.gradient)
    assert verify_arrays(target.parent) is None


def test_every_damaged_store_entry_is_recomputed_in_one_run(reference, slab_images):
    clean, run = reference
    shutil.rmtree(run / "arrays")  # so the entries are read again
    entries = sorted((run / "fingerprints").glob("*/*.npz"))
    assert len(entries) == 12
    for path in entries[::3]:  # 4 of 12 damaged: flipped bytes in the middle of the file
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    again, lines = _evaluate(slab_images[:12], run)
    repaired = [line for line in lines if "recomputed" in line]
    assert len(repaired) == 4, lines
    assert again.loss == clean.loss and np.array_equal(again.gradient, clean.gradient)
    third, lines = _evaluate(slab_images[:12], run)  # everything intact now: nothing to repair
    assert not [line for line in lines if "warning" in line]
    assert third.loss == clean.loss


def test_a_deleted_store_entry_is_recomputed(reference, slab_images):
    clean, run = reference
    shutil.rmtree(run / "arrays")
    sorted((run / "fingerprints").glob("*/*.npz"))[5].unlink()
    again, lines = _evaluate(slab_images[:12], run)
    assert again.loss == clean.loss


def test_an_array_folder_of_an_older_format_is_rebuilt(tmp_path):
    save_arrays({"x": np.arange(3.0)}, tmp_path / "a")
    assert verify_arrays(tmp_path / "a") is None
    (tmp_path / "a" / "ok").write_text("x")  # the marker an earlier amp-core wrote
    assert "unreadable" in verify_arrays(tmp_path / "a")
    assert verify_arrays(tmp_path / "missing") == "incomplete (no marker)"
