"""Find and load a plugin's optional compiled (ctypes) library.

The package build (meson) places ``<stem>.so`` beside the plugin module that uses
it. ``AMP_KERNEL_DIR`` points at another folder first (tests use it to load a
bounds-checked ``-fcheck=all`` build).
"""

from __future__ import annotations

import copy
import ctypes
import functools
import importlib.resources
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from amp_core.errors import DataError, PropertyNotImplementedError

SUFFIXES = (".so", ".dylib", ".dll")
HOW_TO_GET = (
    "install a Fortran compiler (e.g. 'apt-get install gfortran') and reinstall amp-core "
    "('pip install .' in its source folder) so the kernels are built"
)


def find_library(package: str, stem: str) -> Path | None:
    """Return the path of ``<stem>.so`` for ``package``, or ``None`` when it was not built."""
    names = [f"{stem}{suffix}" for suffix in SUFFIXES]
    override = os.environ.get("AMP_KERNEL_DIR")
    if override:
        for name in names:
            if (Path(override) / name).is_file():
                return Path(override) / name
    try:
        # A Traversable, not a folder: editable installs keep built files elsewhere.
        root = importlib.resources.files(package)
    except (ModuleNotFoundError, TypeError):
        return None
    for name in names:
        candidate = root.joinpath(name)
        if candidate.is_file():
            return Path(str(candidate))
    return None


def wide_vectors() -> bool:
    """Whether this processor runs the ``x86-64-v3`` (AVX2 + FMA) builds.

    ``AMP_KERNEL_GENERIC=1`` forces the portable build.
    """
    if os.environ.get("AMP_KERNEL_GENERIC", "") not in ("", "0"):
        return False
    import importlib

    features: dict[str, bool] = {}
    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):  # numpy 2, numpy 1
        try:
            features = importlib.import_module(module).__cpu_features__
            break
        except (ImportError, AttributeError):
            continue
    return all(features.get(flag, False) for flag in ("AVX2", "FMA3"))


_LOADED: dict[tuple[str, str], Path] = {}


def loaded_libraries() -> list[Path]:
    """Return the compiled libraries :func:`load_library` has loaded in this process, in load order."""
    return list(_LOADED.values())


@functools.cache
def load_library(package: str, stem: str) -> ctypes.CDLL:
    """Load ``<stem>.so`` of ``package`` once per process (its AVX2/FMA build where it runs).

    Raises:
        PropertyNotImplementedError: the library was not built, with how to get it.
    """
    path = find_library(package, f"{stem}_x86_64_v3") if wide_vectors() else None
    path = path or find_library(package, stem)
    if path is None:
        raise PropertyNotImplementedError(
            f"the compiled kernels '{stem}' of {package} are not installed: {HOW_TO_GET}"
        )
    library = ctypes.CDLL(str(path))
    _LOADED[(package, stem)] = path
    return library


def bind(package: str, stem: str, abi_symbol: str, abi_version: int,
         routines: dict[str, list[Any]]) -> ctypes.CDLL:
    """Load a plugin's compiled library once, check its ABI version, declare its routines' arguments.

    Args:
        package, stem: as :func:`load_library`.
        abi_symbol: the library's function returning its ABI version (int64).
        abi_version: the version the calling module expects.
        routines: routine name -> ctypes argument types (each returns an int64 status).

    Raises:
        PropertyNotImplementedError: the library was not built, or for another ABI version.
    """
    library = load_library(package, stem)
    first = getattr(library, next(iter(routines)))
    if first.argtypes is None:
        version = getattr(library, abi_symbol)
        version.restype = ctypes.c_int64
        if version() != abi_version:
            raise PropertyNotImplementedError(
                f"the compiled kernels {library._name} have ABI version {version()}, the module using them "
                f"expects {abi_version}: reinstall amp-core so they are rebuilt"
            )
        for name, argtypes in routines.items():
            routine = getattr(library, name)
            routine.argtypes = argtypes
            routine.restype = ctypes.c_int64
    return library


def refused(kernel: str, stem: str, errors: dict[int, str], status: int, index: int) -> DataError:
    """Return the :class:`DataError` for a compiled kernel's error ``status`` (``errors`` maps codes to
    messages with an ``{index}`` field, filled with the kernel's reported ``index``)."""
    message = errors.get(status, f"unknown error code {status}").format(index=index)
    return DataError(f"{kernel} kernel ({stem}) refused its input: {message}")


def probe_kernels(load: Callable[[], object], package: str, stem: str) -> str | None:
    """Return why ``load()`` (a plugin's kernel loader) fails here and how to fix it, or ``None``.

    The probe a plugin registers in its entry record for its own compiled kernels.
    """
    try:
        load()
    except PropertyNotImplementedError as error:
        return str(error)
    except OSError as error:  # built, but the system cannot load it
        return f"the compiled kernels '{stem}' of {package} do not load ({error}); {HOW_TO_GET}"
    return None


P = TypeVar("P")


def compiled_twin(plugin: P, probe: Callable[[], str | None]) -> P:
    """Return a copy of ``plugin`` whose ``kernel`` attribute is ``"fortran"`` (the one ``compiled()`` mechanism).

    The plugin's methods read ``self.kernel`` to choose their compiled path.

    Raises:
        PropertyNotImplementedError: ``probe()`` says the kernels cannot run here.
    """
    why = probe()
    if why is not None:
        raise PropertyNotImplementedError(f"{getattr(plugin, 'name', type(plugin).__name__)}: {why}")
    twin: Any = copy.copy(plugin)
    twin.kernel = "fortran"
    return twin  # type: ignore[no-any-return]
