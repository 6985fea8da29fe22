"""Progress bars on stderr, and only when stderr is a terminal.

``research/ecosystem.md`` §2.4: ``click.progressbar`` writes to stdout unless told otherwise and
prints its label even into a pipe, so the bar is created only when stderr is a TTY, ``--json``
and ``-q`` are off, ``--no-progress`` was not given and ``CASTORE_DISABLE_PROGRESS_BARS`` is
unset. Otherwise the API receives ``progress=None`` and nothing is written at all.
"""

from __future__ import annotations

import os
import sys
import threading
from types import TracebackType
from typing import Any

import click

__all__ = ["ProgressBar", "progress_enabled"]

_DISABLE_ENV = "CASTORE_DISABLE_PROGRESS_BARS"


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def progress_enabled(*, requested: bool = True) -> bool:
    """Whether a bar may be drawn: requested, stderr a terminal, not disabled by environment."""
    if not requested:
        return False
    if os.environ.get(_DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        return False
    return _stderr_is_tty()


class ProgressBar:
    """A ``(done_bytes, total_bytes)`` callback drawing a click bar on stderr.

    Use as a context manager; when disabled, :attr:`callback` is None (pass it straight to the
    API's ``progress=``), and nothing is ever written.

    Example:
        >>> with ProgressBar("checkout", enabled=False) as bar:
        ...     bar.callback is None
        True
    """

    def __init__(self, label: str, *, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled
        self._bar: Any = None
        self._done = 0
        self._lock = threading.Lock()

    @property
    def callback(self) -> ProgressBar | None:
        """This object when the bar is enabled, else None."""
        return self if self.enabled else None

    def __call__(self, done: int, total: int) -> None:
        with self._lock:
            if self._bar is None:
                self._bar = click.progressbar(
                    length=max(int(total), 1), label=self.label, file=sys.stderr, width=30
                )
                self._bar.__enter__()
            elif total and total != self._bar.length:
                self._bar.length = int(total)
            step = int(done) - self._done
            if step > 0:
                self._bar.update(step)
                self._done = int(done)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.__exit__(exc_type, exc, tb)
                self._bar = None
