"""Find and load a plugin's optional compiled (ctypes) library.

The package build (meson) places ``<stem>.so`` beside the plugin module that uses
it. ``AMP_KERNEL_DIR`` points at another folder first (tests use it to load a
bounds-checked ``-fcheck=all`` build).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.resources
import os
from pathlib import Path

from amp_core.errors import PropertyNotImplementedError

SUFFIXES = (".so", ".dylib", ".dll")
HOW_TO_GET = (
    "install a Fortran compiler (e.g. 'apt-get install gfortran') and reinstall amp-core "
    "('pip install .' in its source folder) so the kernels are built"
)


def find_library(package: str, stem: str) -> Path | None:
    """Return the path of ``<stem>.so`` for ``package``, or ``None`` when it was not built."""
    folders = []
    override = os.environ.get("AMP_KERNEL_DIR")
    if override:
        folders.append(Path(override))
    try:
        folders.append(Path(str(importlib.resources.files(package))))
    except (ModuleNotFoundError, TypeError):
        pass
    for folder in folders:
        for suffix in SUFFIXES:
            candidate = folder / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    return None


@functools.cache
def load_library(package: str, stem: str) -> ctypes.CDLL:
    """Load ``<stem>.so`` of ``package`` once per process.

    Raises:
        PropertyNotImplementedError: the library was not built, with how to get it.
    """
    path = find_library(package, stem)
    if path is None:
        raise PropertyNotImplementedError(
            f"the compiled kernels '{stem}' of {package} are not installed: {HOW_TO_GET}"
        )
    return ctypes.CDLL(str(path))
