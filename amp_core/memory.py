"""The memory budget: estimates checked before the work that would need the memory.

The budget is ``AMP_MAX_MEMORY`` (bytes, or with a unit: ``"8G"``, ``"512M"``; ``amp
--max-memory`` sets it), by default half of this machine's physical memory. It applies per
node: a backend whose workers span several nodes (``mpi``) reports, through its optional
``memory_nodes``, which chunks each node holds and that node's budget (:func:`nodes`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

from amp_core.errors import ConfigError

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def physical_memory() -> int:
    """Return this machine's physical memory in bytes (0 when unknown)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 0


def parse_size(text: str, where: str = "AMP_MAX_MEMORY") -> int:
    """Return the bytes of ``"8G"``, ``"512M"``, ``"1.5T"`` or a plain number of bytes.

    Raises:
        ConfigError: not a positive size.
    """
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)i?B?\s*", str(text), re.IGNORECASE)
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"{where}: expected a memory size such as 8G or 512M, got {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def budget() -> int:
    """Return the memory budget in bytes."""
    value = os.environ.get("AMP_MAX_MEMORY", "").strip()
    if value:
        return parse_size(value)
    return physical_memory() // 2 or 2**63


def human(size: float) -> str:
    """Return ``size`` bytes as ``"1.2 GB"``."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"  # pragma: no cover


def check(need: float, what: str, limit: int | None = None, where: str | None = None) -> None:
    """Raise :class:`ConfigError` when ``need`` bytes exceed the budget, saying what needs them.

    Args:
        need: bytes needed.
        what: what needs them, for the message.
        limit: the budget (default :func:`budget`, this machine's).
        where: the node whose budget it is (``None``: this machine).
    """
    limit = budget() if limit is None else limit
    if need <= limit:
        return
    if where is None:
        raise ConfigError(
            f"{what} needs about {human(need)} of memory, more than the budget of {human(limit)} "
            f"(half of this machine's {human(physical_memory())} unless AMP_MAX_MEMORY or amp --max-memory "
            "says otherwise). Use fewer or smaller images, fewer workers, or raise the budget if the "
            "machine really has the memory."
        )
    raise ConfigError(
        f"{what} needs about {human(need)} of memory on {where}, more than that node's budget of "
        f"{human(limit)} (half of its physical memory unless AMP_MAX_MEMORY or amp --max-memory says "
        "otherwise). Spread the ranks over more nodes, use fewer or smaller images, or raise the budget "
        "if the node really has the memory."
    )


def nodes(backend: Any, chunk_costs: Sequence[float]) -> list[tuple[str | None, list[int], int]]:
    """Return, per node that holds chunks during training: its name, its chunks' indices and its budget.

    The backend's optional ``memory_nodes(chunk_costs)`` answers (collective under MPI: every
    process gets the same list); without it every chunk lives on this machine, whose name is
    ``None`` and whose budget is :func:`budget`.
    """
    method = getattr(backend, "memory_nodes", None)
    if method is None:
        return [(None, list(range(len(chunk_costs))), budget())]
    return [(str(name), [int(k) for k in held], int(limit)) for name, held, limit in method(list(chunk_costs))]
