"""The names of a draft: which paths and directories it holds, and which would collide.

Two checks keep a draft's names sound (``API.md`` "Paths"): a path is never both a file and a
directory, and no two names differ only in case or Unicode normalisation (they would land on
one file on macOS and Windows).

- :class:`DraftNames` holds every name of a draft in memory: what ``add_file``, ``add_bytes``,
  ``remove`` and an ``add_dir`` into a draft that already has files check against. A draft
  loads it from the catalogue on first use.
- :class:`WalkNames` checks the names of one ``add_dir`` into an empty draft as the walk yields
  them, in bounded memory, so a million-file tree is never held as a list of names: exact
  maps for directories (a few per thousand files) and for the files of the directory being
  walked (the walk yields one directory's files together), and one 64-bit hash per file for
  the only other case, a file and a directory of one spelling. On a hash match the file's
  spelling is found again by listing its directory on disk.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import xxhash

from castore.errors import InvalidPathError
from castore.manifest import ManifestRow
from castore.paths import collision_key

__all__ = ["DraftNames", "WalkNames", "collision_error", "parents"]


def parents(path: str) -> Iterator[str]:
    """The directories above ``path``, shallowest first: ``a``, ``a/b`` for ``a/b/c``."""
    end = path.find("/")
    while end >= 0:
        yield path[:end]
        end = path.find("/", end + 1)


def collision_error(path: str, name: str, other: str) -> InvalidPathError:
    """The error for adding ``path`` whose name (or directory) ``name`` collides with ``other``."""
    return InvalidPathError(
        path,
        f"{name!r} and {other!r} differ only in case or Unicode normalisation and "
        "would collide on macOS and Windows; rename one",
    )


class DraftNames:
    """Every file, directory and collision key of a draft, in memory."""

    def __init__(self) -> None:
        self.entries: dict[str, ManifestRow] = {}
        self.dirs: dict[str, int] = {}  # directory -> number of files below it
        self.keys: dict[str, str] = {}  # collision key -> spelling (files and directories)

    def add(self, row: ManifestRow) -> None:
        """Record (or replace) one entry."""
        path = row[0]
        if path not in self.entries:
            for parent in parents(path):
                self.dirs[parent] = self.dirs.get(parent, 0) + 1
                self.keys[collision_key(parent)] = parent
            self.keys[collision_key(path)] = path
        self.entries[path] = row

    def remove(self, path: str) -> None:
        """Forget one entry (and directories left empty)."""
        del self.entries[path]
        self.keys.pop(collision_key(path), None)
        for parent in parents(path):
            left = self.dirs[parent] - 1
            if left:
                self.dirs[parent] = left
            else:
                del self.dirs[parent]
                self.keys.pop(collision_key(parent), None)


class WalkNames:
    """Collision checks for the files one walk adds to an empty draft, in bounded memory.

    ``check`` must see a directory's files one after another (as ``walk_tree`` yields them).
    ``prefix`` is the artifact prefix of the walk and ``root`` the local directory walked: an
    artifact directory ``prefix + rel`` is ``root/rel`` on disk.
    """

    def __init__(self, prefix: str, root: str) -> None:
        self._prefix = prefix
        self._root = root
        self._dirs: dict[str, str] = {}  # collision key -> spelling, every directory seen
        self._file_hashes: set[int] = set()  # 64-bit hashes of every file's collision key
        self._current = "\0"  # the directory whose files are arriving
        self._siblings: dict[str, str] = {}  # collision key -> spelling, its files so far

    def check(self, path: str) -> None:
        """Raise :class:`InvalidPathError` if ``path`` collides with a name seen before."""
        parent = path.rpartition("/")[0]
        if parent != self._current:
            self._current = parent
            self._siblings = {}
            if parent:
                for directory in parents(path):
                    self._check_dir(path, directory)
        key = collision_key(path)
        other = self._dirs.get(key) or self._siblings.get(key)
        if other is not None:
            raise collision_error(path, path, other)
        self._siblings[key] = path
        self._file_hashes.add(xxhash.xxh3_64_intdigest(key.encode()))

    def _check_dir(self, path: str, directory: str) -> None:
        key = collision_key(directory)
        other = self._dirs.get(key)
        if other is None:
            if xxhash.xxh3_64_intdigest(key.encode()) in self._file_hashes:
                file = self._file_spelled(directory, key)
                if file is not None:
                    raise collision_error(path, directory, file)
            self._dirs[key] = directory
        elif other != directory:
            raise collision_error(path, directory, other)

    def _file_spelled(self, directory: str, key: str) -> str | None:
        """The file added earlier whose collision key is ``key``, found on disk (or None on
        a hash collision: no such file)."""
        head, _, _ = directory.rpartition("/")
        local = os.path.join(self._root, (head + "/")[len(self._prefix):]) if head else self._root
        base = head + "/" if head else ""
        try:
            names = os.listdir(local)
        except OSError:
            return None
        for name in sorted(names):
            candidate = base + name
            if candidate != directory and collision_key(candidate) == key:
                return candidate
        return None
