"""What the worktree needs of a stat cache, a do-nothing one, and one in memory.

A stat cache remembers the digest of a file by its stat, so an unchanged file is not re-read
(DVC's ``state``, git's index). The catalogue's ``castore.index.statcache.StatCache`` satisfies
:class:`StatCache` without knowing of it; where there is none (a read-only store, a one-off
call) the worktree gets :data:`NO_STAT_CACHE` instead of ``None`` checks (dvc-data's
``StateNoop``).
"""

from __future__ import annotations

import os
import threading
from array import array
from collections.abc import Iterable
from typing import Protocol

from castore.worktree import containment as _c
from castore.worktree.entries import Entry

__all__ = [
    "NO_STAT_CACHE",
    "CachedDigests",
    "MemoryStatCache",
    "NoStatCache",
    "StatCache",
    "StatColumns",
    "StatRow",
    "StatRowBatches",
    "slim_stat",
]

#: ``(absolute path, stat, digest)``: one file state to remember.
StatRow = tuple[str, os.stat_result, str]


def slim_stat(st: os.stat_result) -> os.stat_result:
    """``st`` keeping only what a stat cache keys on: device, inode, size, mtime_ns, ctime_ns.

    A checkout keeps one stat per file it writes until it records them all in one transaction;
    a full ``stat_result`` holds ~14 number objects (~580 bytes), 58 MiB at 100,000 files.
    """
    return os.stat_result(
        (0, st.st_ino, st.st_dev, 0, 0, 0, st.st_size, 0, 0, 0),
        {"st_mtime_ns": st.st_mtime_ns, "st_ctime_ns": st.st_ctime_ns},
    )


def _zeros(n: int, code: str) -> array[int]:
    return array(code, bytes(n * array(code).itemsize))


class StatRowBatches:
    """Stat-cache rows recorded ``size`` at a time: a checkout never holds a row per file."""

    def __init__(self, cache: StatCache, size: int) -> None:
        self._cache, self._size = cache, size
        self._rows: list[StatRow] = []

    def add(self, row: StatRow) -> None:
        """Queue one row; record the queue once it holds a batch."""
        self._rows.append(row)
        if len(self._rows) >= self._size:
            self.flush()

    def flush(self) -> None:
        """Record the queued rows."""
        if self._rows:
            self._cache.record_many(self._rows)
            self._rows = []


class StatColumns:
    """The stat-cache fields of many files, by position, in arrays: 40 bytes a file.

    A fresh checkout learns the stat of every file it copies while the tree is still in its
    staging directory, and may record them only once the tree is in place; the paths and
    digests are read again from the entries then, so only these numbers are kept meanwhile
    (a ``stat_result`` and a row tuple per file cost ~470 bytes).
    """

    __slots__ = ("_ctime", "_dev", "_ino", "_mtime", "_size")

    def __init__(self) -> None:
        self._dev, self._ino = array("Q"), array("Q")
        self._size, self._mtime, self._ctime = array("q"), array("q"), array("q")

    def __len__(self) -> int:
        return len(self._size)

    def grow(self, n: int) -> None:
        """Make room for ``n`` more files, each with nothing to remember until :meth:`put`."""
        self._dev.extend(_zeros(n, "Q"))
        self._ino.extend(_zeros(n, "Q"))
        self._size.extend(array("q", [-1]) * n)
        self._mtime.extend(_zeros(n, "q"))
        self._ctime.extend(_zeros(n, "q"))

    def put(self, i: int, st: os.stat_result) -> None:
        """Remember the ``i``-th file's stat (threads may put different positions at once)."""
        self._dev[i], self._ino[i], self._size[i] = st.st_dev, st.st_ino, st.st_size
        self._mtime[i], self._ctime[i] = st.st_mtime_ns, st.st_ctime_ns

    def get(self, i: int) -> os.stat_result | None:
        """The ``i``-th file's stat, as :func:`slim_stat` keeps it (None: nothing kept)."""
        size = self._size[i]
        if size < 0:
            return None
        return os.stat_result(
            (0, self._ino[i], self._dev[i], 0, 0, 0, size, 0, 0, 0),
            {"st_mtime_ns": self._mtime[i], "st_ctime_ns": self._ctime[i]},
        )


class StatCache(Protocol):
    """Remembers the digest of a file by its stat, so unchanged files are not re-read."""

    def lookup_many(
        self, stats: Iterable[os.stat_result], /
    ) -> dict[tuple[int, int], str]:
        """The digests recorded for these exact file states, keyed by ``(st_dev, st_ino)``."""
        ...

    def record_many(self, rows: list[StatRow], /) -> None:
        """Remember ``(path, stat, digest)`` rows, in one write (one transaction)."""
        ...


class NoStatCache:
    """A :class:`StatCache` that knows nothing and remembers nothing."""

    def lookup_many(self, stats: Iterable[os.stat_result], /) -> dict[tuple[int, int], str]:
        return {}

    def record_many(self, rows: list[StatRow], /) -> None:
        pass


NO_STAT_CACHE = NoStatCache()


def _key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class MemoryStatCache:
    """A :class:`StatCache` in a dict (tests, benchmarks, one-off scripts).

    Keyed like the catalogue's: ``(device, inode)``, every stat field must match.
    """

    def __init__(self) -> None:
        self._data: dict[tuple[int, int], tuple[tuple[int, int, int, int, int], str]] = {}
        self._lock = threading.Lock()

    def lookup_many(self, stats: Iterable[os.stat_result], /) -> dict[tuple[int, int], str]:
        found: dict[tuple[int, int], str] = {}
        with self._lock:
            for st in stats:
                row = self._data.get((st.st_dev, st.st_ino))
                if row is not None and row[0] == _key(st):
                    found[st.st_dev, st.st_ino] = row[1]
        return found

    def record_many(self, rows: list[StatRow], /) -> None:
        with self._lock:
            for _, st, digest in rows:
                self._data[st.st_dev, st.st_ino] = (_key(st), digest)


class CachedDigests:
    """What the stat cache already knows of the files a scan found (one batched lookup)."""

    def __init__(self, stat_cache: StatCache, scan: _c.Scan, entries: Iterable[Entry]) -> None:
        present = [scan.files[e.path] for e in entries if e.path in scan.files]
        self._known = stat_cache.lookup_many(present) if present else {}

    def says(self, entry: Entry, st: os.stat_result) -> bool:
        """True when the cache records ``entry``'s digest for this exact file state."""
        digest = entry.digest
        return digest is not None and self._known.get((st.st_dev, st.st_ino)) == digest
