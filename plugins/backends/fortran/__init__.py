"""The ``fortran`` backend: the multiprocessing workers, running plugins' compiled kernels.

The backend knows no physics: the pipeline asks every plugin that declares the
``"compiled"`` capability for its compiled implementation (``plugin.compiled()``)
and hands that to the workers; plugins without one run their Python code, with a
notice in ``train-log.txt``.
"""

from __future__ import annotations

import importlib.resources
import json
from dataclasses import dataclass

from amp_core import BackendEntry, hookimpl
from amp_core.compiled import HOW_TO_GET
from amp_plugins.backends.multiprocessing import Multiprocessing, MultiprocessingParams


@dataclass(frozen=True)
class FortranParams(MultiprocessingParams):
    """The ``multiprocessing`` settings, with ``compiled`` on by default."""

    compiled: bool = True


class Fortran(Multiprocessing):
    """Worker processes (one per core) running compiled Fortran kernels: ``multiprocessing``
    with ``compiled = true``."""

    name = "fortran"

    def __init__(self, params: MultiprocessingParams | None = None) -> None:
        super().__init__(params or FortranParams())


def probe() -> str | None:
    """Return why this installation cannot run compiled kernels, or ``None`` when it can."""
    try:
        info = json.loads(importlib.resources.files("amp_plugins.backends.fortran").joinpath("build_info.json").read_text())
    except (FileNotFoundError, OSError, ValueError):
        return f"amp-core was not installed by its build (no build_info.json); {HOW_TO_GET}"
    if not info.get("fortran"):
        return f"amp-core was built without a Fortran compiler; {HOW_TO_GET}"
    return None


@hookimpl
def amp_backends() -> list[BackendEntry]:
    """Register ``fortran``."""
    return [
        BackendEntry(
            name="fortran",
            params=FortranParams,
            factory=Fortran,
            summary="Worker processes running the plugins' compiled Fortran kernels.",
            probe=probe,
        )
    ]
