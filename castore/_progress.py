"""Progress reporting for long operations: ``progress=`` takes a callable or ``True``.

The library prints nothing unless asked: a callable receives ``(done_bytes, total_bytes)``;
``True`` draws a one-line bar on stderr.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

__all__ = ["Progress", "ProgressArg", "stderr_bar"]

ProgressArg = Callable[[int, int], None] | bool | None


class Progress:
    """Thread-safe byte counter that reports to a callable or a stderr bar (at most 20/s)."""

    def __init__(self, progress: ProgressArg, total: int) -> None:
        self.total = total
        self.done = 0
        self._lock = threading.Lock()
        self._last = 0.0
        if progress is True:
            self._cb: Callable[[int, int], None] | None = stderr_bar
        elif callable(progress):
            self._cb = progress
        else:
            self._cb = None
        if self._cb:
            self._cb(0, total)

    def add(self, n: int) -> None:
        """Count ``n`` more bytes done."""
        if self._cb is None:
            return
        with self._lock:
            self.done += n
            now = time.monotonic()
            if now - self._last < 0.05 and self.done < self.total:
                return
            self._last = now
            self._cb(min(self.done, self.total), self.total)

    def finish(self) -> None:
        """Report completion (once) if the counted bytes fell short of the total."""
        if self._cb is not None and self.done < self.total:
            self.done = self.total
            self._cb(self.total, self.total)


def stderr_bar(done: int, total: int) -> None:
    """A one-line progress bar on stderr (``progress=True``)."""
    frac = done / total if total else 1.0
    width = 30
    bar = "#" * int(frac * width)
    sys.stderr.write(
        f"\rcastore [{bar:<{width}}] {frac:6.1%} {done / 1e6:,.1f}/{total / 1e6:,.1f} MB"
    )
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()
