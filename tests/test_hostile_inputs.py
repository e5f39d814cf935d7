"""Inputs that point the wrong way or would exhaust the machine get a clear error before any work."""

from __future__ import annotations

import os

import pytest

from amp_core import ConfigError, create_descriptor
from amp_core.config import from_dict
from amp_core.images import read_images


@pytest.mark.parametrize(("make", "pattern"), [
    (lambda tmp: tmp, "is a directory"),
    (lambda tmp: "/dev/null", r"is not a regular file \(a device, pipe or socket\)"),
    (lambda tmp: (os.mkfifo(tmp / "pipe.xyz"), tmp / "pipe.xyz")[1], "is not a regular file"),
    (lambda tmp: "/proc/cpuinfo", "virtual file of the operating system"),
    (lambda tmp: tmp / "missing.xyz", "does not exist"),
])
def test_data_paths_that_are_not_files_are_named_for_what_they_are(tmp_path, make, pattern):
    path = make(tmp_path)
    with pytest.raises(ConfigError, match=pattern):
        read_images(str(path))
    with pytest.raises(ConfigError, match=rf"\[data\] key 'train': data file .* {pattern}"):
        from_dict({"descriptor": {"name": "none"}, "model": {"name": "pairpotential"},
                   "data": {"train": str(path)}}, tmp_path / "run.toml")


def test_too_many_symmetry_functions_are_refused():
    functions = [{"type": "G2", "element": "Cu", "eta": 0.05 + k * 1e-3} for k in range(100_020)]
    with pytest.raises(ConfigError, match="100,020 symmetry functions; at most 2,000"):
        create_descriptor("gaussian", Gs={"Cu": functions})


@pytest.mark.parametrize(("value", "pattern"), [
    (1000, "at most 30 Angstrom"), (float("inf"), "finite"), ("5", "number"),
])
def test_absurd_cutoffs_are_refused(value, pattern):
    with pytest.raises(ConfigError, match=pattern):
        create_descriptor("gaussian", elements=["Cu"], cutoff=value)
