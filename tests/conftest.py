"""Shared fixtures: plugin managers (STYLE G.32) and small labelled data sets."""

from __future__ import annotations

from pathlib import Path

import pytest

from amp_core.manager import make_plugin_manager

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


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
