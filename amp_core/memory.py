"""The memory budget: estimates checked before the work that would need the memory.

The budget is ``AMP_MAX_MEMORY`` (bytes, or with a unit: ``"8G"``, ``"512M"``; ``amp
--max-memory`` sets it), by default half of this machine's physical memory.
"""

from __future__ import annotations

import os
import re

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


def check(need: float, what: str) -> None:
    """Raise :class:`ConfigError` when ``need`` bytes exceed the budget, saying what needs them."""
    limit = budget()
    if need > limit:
        raise ConfigError(
            f"{what} needs about {human(need)} of memory, more than the budget of {human(limit)} "
            f"(half of this machine's {human(physical_memory())} unless AMP_MAX_MEMORY or amp --max-memory "
            "says otherwise). Use fewer or smaller images, fewer workers, or raise the budget if the "
            "machine really has the memory."
        )
