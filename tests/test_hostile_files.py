"""Hostile or damaged potential files: a clear ModelFileError naming file and field, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from amp_core import ModelFileError, Potential, create_descriptor, create_model, evaluate_loss, load


@pytest.fixture(scope="module")
def saved(tmp_path_factory, slab_images) -> Path:
    """A small trained-looking potential file (initialised on two images)."""
    potential = Potential(create_descriptor("gaussian", elements=["Cu", "Pt"], cutoff=4.0),
                          create_model("neuralnetwork", hiddenlayers=(3,)))
    evaluate_loss(slab_images[:2], potential)  # initialises the network
    return potential.save(tmp_path_factory.mktemp("saved") / "potential.json")


def _variant(tmp_path: Path, saved: Path, change) -> Path:
    document = json.loads(saved.read_text())
    change(document)
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(document))
    return path


def _set(path: list[str], value):
    def change(document):
        target = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


@pytest.mark.parametrize(("change", "pattern"), [
    (_set(["format_version"], True), r"format version True"),
    (_set(["format_version"], 2), r"format version 2"),
    (_set(["model", "document", "weights"], None), r"no trained parameters"),
    (_set(["descriptor", "params"], "cutoff"), r"field 'descriptor.params' must be an object"),
    (_set(["model", "name"], 7), r"field 'model.name' must be a string"),
    (_set(["model"], []), r"field 'model' must be an object"),
    (_set(["config"], 5), r"field 'config' must be an object or null"),
    (_set(["format"], "other"), r"not an amp-core potential file"),
])
def test_malformed_fields_are_named(tmp_path, saved, change, pattern):
    with pytest.raises(ModelFileError, match=pattern):
        load(_variant(tmp_path, saved, change))


@pytest.mark.parametrize(("content", "pattern"), [
    (b"[" * 5000 + b"]" * 5000, r"nested too deeply"),
    (b'{"format": ' + b"9" * 100_000 + b"}", r"not a valid potential file"),
    (b'{"format": "amp-core-potential", "format_v\xff\xfe', r"not a text file \(byte \d+ is not UTF-8\)"),
    (b"", r"not valid JSON"),
])
def test_hostile_content(tmp_path, content, pattern):
    path = tmp_path / "hostile.json"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=pattern):
        load(path)


def test_truncated_potential_is_reported_as_damaged_json_not_amp(tmp_path, saved):
    path = tmp_path / "truncated.json"
    path.write_text(saved.read_text()[:200])
    with pytest.raises(ModelFileError, match=r"not valid JSON.*readers: Amp \.amp") as info:
        load(path)
    assert "not an Amp .amp file" not in str(info.value)


def test_directory_and_fifo_are_not_called_missing(tmp_path):
    import os

    with pytest.raises(ModelFileError, match="not a regular file"):
        load(tmp_path)
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    with pytest.raises(ModelFileError, match="not a regular file"):
        load(fifo)  # never blocks on the pipe


def test_amp_evaluate_refuses_an_untrained_file_with_exit_2(tmp_path, saved):
    path = _variant(tmp_path, saved, _set(["model", "document", "weights"], None))
    data = Path(__file__).resolve().parent.parent / "examples" / "data" / "ptcu-validation.xyz"
    run = subprocess.run([sys.executable, "-m", "amp_core.cli", "evaluate", str(path), str(data)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert "no trained parameters" in run.stderr and "Traceback" not in run.stderr
