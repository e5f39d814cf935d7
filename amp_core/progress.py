"""Progress lines for long stages: done/total, rate and time left, on a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Report ``done/total`` for one stage; silent unless ``stream`` is a terminal or forced.

    Args:
        label: what is being counted ("fingerprinting", ...).
        total: how many units there are.
        unit: what one unit is ("images").
        stream: where to write (default stderr).
        enabled: force on/off; ``None`` means "when ``stream`` is a terminal".
    """

    def __init__(
        self, label: str, total: int, unit: str = "images", stream: TextIO | None = None,
        enabled: bool | None = None,
    ) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.start = time.perf_counter()
        self._last = 0.0

    def __call__(self, done: int) -> None:
        """Show that ``done`` units are finished (rate-limited to a few updates a second)."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if done < self.total and now - self._last < 0.2:
            return
        self._last = now
        elapsed = max(now - self.start, 1e-9)
        rate = done / elapsed
        left = (self.total - done) / rate if rate > 0 else float("inf")
        end = "\n" if done >= self.total else ""
        self.stream.write(
            f"\r{self.label}: {done}/{self.total} {self.unit}, {rate:.1f} {self.unit}/s, "
            f"{_duration(left)} left   {end}"
        )
        self.stream.flush()


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
