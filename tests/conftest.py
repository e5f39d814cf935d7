"""Shared fixtures: plugin managers (STYLE G.32) and small labelled data sets."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from amp_core.manager import make_plugin_manager

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ROOT = Path(__file__).resolve().parent.parent
CHECK_FLAGS = ("-shared", "-fPIC", "-fcheck=all", "-g", "-O1")
"""gfortran flags of the bounds-checked test builds of the compiled kernels."""


@pytest.fixture
def plugin_manager():
    """A fresh manager with no entry points loaded."""
    return make_plugin_manager(entry_points=())


@pytest.fixture
def builtin_plugin_manager():
    """A manager holding only amp-core's own entry points."""
    import importlib.metadata as md

    own = [ep for ep in md.entry_points(group="amp") if ep.dist is not None and ep.dist.name == "amp-core"]
    return make_plugin_manager(entry_points=own)


@pytest.fixture(scope="session")
def slab_images():
    """The shipped example data: 40 EMT-labelled 36-atom Pt/Cu slab snapshots."""
    from ase.io import read

    return read(EXAMPLES / "data" / "ptcu-train.xyz", ":")



@pytest.fixture(scope="session")
def bounds_checked(tmp_path_factory):
    """``build(source, *flags)``: compile a kernel (a path under the repository) with :data:`CHECK_FLAGS`
    (and ``flags``) into a folder of its own, once per session; skipped without gfortran.
    ``build.loaded(folder, package, stem)``: a context in which amp-core loads that build
    (``AMP_KERNEL_DIR``, ``AMP_KERNEL_GENERIC=1``), checking on leaving that it was the one used."""
    return _BoundsChecked(tmp_path_factory)


class _BoundsChecked:
    def __init__(self, folders: pytest.TempPathFactory) -> None:
        self.folders = folders
        self.built: dict[tuple[str | Path, ...], Path] = {}

    def __call__(self, source: str | Path, *flags: str) -> Path:
        if shutil.which("gfortran") is None:
            pytest.skip(f"gfortran is not installed: {Path(source).stem} cannot be built (apt-get install gfortran)")
        key = (source, *flags)
        if key not in self.built:
            folder = self.folders.mktemp(f"{Path(source).stem}-checked")
            subprocess.run(["gfortran", *CHECK_FLAGS, *flags, str(ROOT / source), "-o",
                            str(folder / f"{Path(source).stem}.so")], check=True, cwd=folder)
            self.built[key] = folder
        return self.built[key]

    @contextlib.contextmanager
    def loaded(self, folder: Path, package: str, stem: str) -> Iterator[None]:
        from amp_core.compiled import load_library

        old = {name: os.environ.get(name) for name in ("AMP_KERNEL_DIR", "AMP_KERNEL_GENERIC")}
        os.environ["AMP_KERNEL_DIR"] = str(folder)
        os.environ["AMP_KERNEL_GENERIC"] = "1"
        load_library.cache_clear()
        try:
            yield
            used = load_library(package, stem)._name
            assert used.startswith(str(folder)), f"the tests ran {used}, not the bounds-checked build"
        finally:
            for name, value in old.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            load_library.cache_clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI a test skipped for want of Fortran (AMP_REQUIRE_FORTRAN=1) or of MPI (AMP_REQUIRE_MPI=1)
    fails instead."""
    import os

    outcome = yield
    report = outcome.get_result()
    if not report.skipped:
        return
    reason = str(report.longrepr).lower()
    if os.environ.get("AMP_REQUIRE_FORTRAN") and "fortran" in reason:
        report.outcome = "failed"
        report.longrepr = f"Fortran test skipped where Fortran is required (AMP_REQUIRE_FORTRAN=1): {reason}"
    elif os.environ.get("AMP_REQUIRE_MPI") and "mpi test skipped" in reason:
        report.outcome = "failed"
        report.longrepr = f"MPI test skipped where MPI is required (AMP_REQUIRE_MPI=1): {reason}"
