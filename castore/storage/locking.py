"""The store-wide maintenance lock: exclusivity for gc, prune and fsck repair, never correctness.

Writers never take this lock: a ``put`` is correct with no lock at all (DESIGN.md invariant 9),
and gc is ordered against writers by SQLite's write lock, not by this one. The lock only keeps
two maintenance runs (gc, prune, repair, catalogue rebuild) from working on the store at once.

It is a ``flock`` on ``STORE/locks/<name>.lock`` through :mod:`filelock`:

- The kernel releases it when the holder dies, even by ``kill -9``, so there is no stale lock to
  clean up and the existence of the file never means "held" (filelock #574, huggingface_hub).
- The lock file is never deleted: unlinking it while another process waits on its inode would
  let two processes "hold" two different files of the same name.
- A lock object is per process: after ``fork`` the child builds its own (an inherited ``flock``
  descriptor would be shared with the parent).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from castore.errors import LockTimeoutError

__all__ = ["DEFAULT_LOCK_TIMEOUT", "MAINTENANCE", "StoreLock", "maintenance_lock"]

#: Seconds a maintenance call waits for another one to finish before LockTimeoutError.
DEFAULT_LOCK_TIMEOUT = 60.0
#: The name of the lock gc, prune and fsck repair share.
MAINTENANCE = "maintenance"


class StoreLock:
    """An inter-process lock on ``locks/<name>.lock``, re-entrant within one thread.

    Args:
        locks_dir: the store's ``locks/`` directory.
        name: the lock's name (a file name without suffix).
        timeout: seconds to wait; ``None`` waits forever, ``0`` tries once.
    """

    def __init__(
        self,
        locks_dir: str | Path,
        name: str = MAINTENANCE,
        *,
        timeout: float | None = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        self.path = Path(locks_dir) / f"{name}.lock"
        self.timeout = timeout
        self._local = threading.local()
        self._guard = threading.Lock()
        self._pid = os.getpid()
        self._lock: object | None = None

    def _filelock(self) -> object:
        from filelock import FileLock

        with self._guard:
            if self._lock is None or self._pid != os.getpid():
                # After fork the parent's lock object (and its fd) is not ours: build a new one.
                # thread_local: each thread opens its own descriptor, so flock also excludes
                # two threads of this process from each other.
                self._lock = FileLock(str(self.path), thread_local=True, is_singleton=False)
                self._pid = os.getpid()
            return self._lock

    def acquire(self, timeout: float | None = None) -> None:
        """Take the lock (waiting up to ``timeout``, default the lock's own).

        Raises:
            LockTimeoutError: another process held it for longer than the timeout.
        """
        from filelock import Timeout

        wait = self.timeout if timeout is None else timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self._filelock()
        try:
            lock.acquire(timeout=-1 if wait is None else wait)  # type: ignore[attr-defined]
        except Timeout as exc:
            raise LockTimeoutError(
                f"the store lock {str(self.path)!r} is held by another castore process (gc, "
                f"prune or repair) and was not released within {wait:g} s; wait for it to "
                "finish or pass a longer timeout",
                timeout=wait,
            ) from exc

    def release(self) -> None:
        """Release one level of the lock. The lock file stays (never delete it)."""
        lock = self._filelock()
        lock.release()  # type: ignore[attr-defined]

    @property
    def is_locked(self) -> bool:
        """True while this process holds the lock."""
        lock = self._lock
        held = lock is not None and self._pid == os.getpid() and lock.is_locked  # type: ignore[attr-defined]
        return bool(held)

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextmanager
def maintenance_lock(
    locks_dir: str | Path, *, timeout: float | None = DEFAULT_LOCK_TIMEOUT
) -> Iterator[StoreLock]:
    """Hold the store's maintenance lock for the block.

    Raises:
        LockTimeoutError: it was not granted within ``timeout`` seconds.
    """
    lock = StoreLock(locks_dir, MAINTENANCE, timeout=timeout)
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()
