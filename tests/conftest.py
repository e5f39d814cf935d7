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
