"""Target safety for checkout and download: refuse dangerous roots, never follow a link.

Every operation inside a checkout root goes through directory file descriptors opened with
``O_NOFOLLOW | O_DIRECTORY`` and ``dir_fd=``-relative calls (``openat``-style), so a symlink
found in the root, or swapped in while a checkout runs, is never followed (reliability.md
§3.7 tests 35–37; the tarfile CVE-2025-4517 family shows what path-string checks miss).

Policy, documented in ``docs/checkout.md``:

- a symlink (or any non-directory) where a directory is needed is *replaced*: the link itself is
  unlinked and a real directory made; the link's target is never touched. If it keeps coming back
  (an attacker racing us), the operation stops with :class:`UnsafeTargetError`.
- a symlink at a file's path is replaced by the rename that places the file.
- extra entries are removed with ``unlink(name, dir_fd=)`` (a link is removed as a link) and
  extra directories with ``shutil.rmtree(name, dir_fd=)``, which is symlink-attack safe on Linux.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from castore.errors import UnsafeTargetError

__all__ = [
    "MARKER_NAME",
    "MARKER_XATTR",
    "STAGING_PREFIX",
    "DirCursor",
    "Scan",
    "ThreadCursors",
    "check_target",
    "open_root",
    "open_subdir",
    "remove_entry",
    "scan_tree",
]

#: Extended attribute a checkout sets on its root; extra files are only removed in a root that
#: carries it (the root then holds exactly the version's files, nothing of castore's own).
MARKER_XATTR = "user.castore.checkout"
#: The marker as a file, where the filesystem has no user extended attributes.
MARKER_NAME = ".castore-checkout"
#: Prefix of the private staging directory a checkout writes into before renaming files.
STAGING_PREFIX = ".castore-staging-"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: How often a directory replaced by a link is replaced again before we call it an attack.
_MAX_RETRIES = 3


def check_target(root: str | os.PathLike[str], store_root: str | os.PathLike[str]) -> Path:
    """Resolve ``root`` and refuse targets that are unsafe to write into.

    Refused: ``/``, the home directory itself, the store's directory, anything inside it, and
    any directory that contains the store.

    Returns:
        The absolute, resolved root.

    Raises:
        UnsafeTargetError: the root is one of the above, or exists and is not a directory.
    """
    resolved = Path(os.path.realpath(os.fspath(root)))
    store = Path(os.path.realpath(os.fspath(store_root)))
    if resolved == Path(resolved.anchor):
        raise UnsafeTargetError(
            f"refusing to materialize into the filesystem root {str(resolved)!r}; "
            "choose a dedicated directory",
            path=resolved,
        )
    try:
        home = Path(os.path.realpath(Path.home()))
    except (KeyError, RuntimeError):  # no home directory known
        home = None
    if home is not None and resolved == home:
        raise UnsafeTargetError(
            f"refusing to materialize into the home directory {str(resolved)!r} itself "
            "(a checkout removes extra files); choose a subdirectory",
            path=resolved,
        )
    if resolved == store or resolved.is_relative_to(store) or store.is_relative_to(resolved):
        raise UnsafeTargetError(
            f"the target {str(resolved)!r} overlaps the store at {str(store)!r}; "
            "choose a directory outside the store that does not contain it",
            path=resolved,
        )
    if os.path.lexists(resolved) and not resolved.is_dir():
        raise UnsafeTargetError(
            f"the target {str(resolved)!r} exists and is not a directory; remove it or choose "
            "another directory",
            path=resolved,
        )
    return resolved


def open_root(root: Path, *, create: bool) -> tuple[int, bool]:
    """Open the (resolved) root directory without following a final symlink.

    Returns:
        ``(fd, created)``: the directory's descriptor and whether this call created it.
    """
    created = False
    if create and not os.path.lexists(root):
        try:
            os.makedirs(root)
            created = True
        except FileExistsError:
            pass
    try:
        return os.open(root, _DIR_FLAGS), created
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeTargetError(
                f"the target {str(root)!r} was replaced by a link or a file while in use",
                path=root,
            ) from exc
        raise


def _is_dir_fd_entry(parent_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def open_subdir(parent_fd: int, name: str, *, create: bool, where: str = "") -> int:
    """Open directory ``name`` inside ``parent_fd`` without following a symlink.

    Args:
        parent_fd: the parent directory's descriptor.
        name: one path component.
        create: make the directory if it is missing, and replace a symlink or file that stands
            where it should be (the link is unlinked as a link; its target is untouched).
        where: the relative path, for messages.

    Raises:
        FileNotFoundError: the directory is missing and ``create`` is False.
        UnsafeTargetError: a link or file is in the way and cannot be replaced (``create`` is
            False, or it came back ``_MAX_RETRIES`` times: someone is racing us).
    """
    for _attempt in range(_MAX_RETRIES):
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        except FileNotFoundError:
            if not create:
                raise
            try:
                os.mkdir(name, 0o777, dir_fd=parent_fd)
            except FileExistsError:
                pass  # raced with someone; open it (or replace it) on the next turn
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            if not create:
                raise UnsafeTargetError(
                    f"{where or name!r} in the target is a symlink or a file where a directory "
                    "should be; refusing to follow it",
                    path=where or name,
                ) from exc
            st = _is_dir_fd_entry(parent_fd, name)
            if st is not None and not stat.S_ISDIR(st.st_mode):
                try:
                    os.unlink(name, dir_fd=parent_fd)  # removes a link as a link
                except FileNotFoundError:
                    pass
    raise UnsafeTargetError(
        f"{where or name!r} in the target keeps being replaced by a link or a file while the "
        "checkout runs; stopped without following it",
        path=where or name,
    )


def remove_entry(parent_fd: int, name: str, *, is_dir: bool) -> None:
    """Remove ``name`` inside ``parent_fd``: a file or link with ``unlink``, a tree with rmtree.

    Never follows links: ``unlink`` removes a symlink itself, and ``shutil.rmtree`` with
    ``dir_fd`` walks by descriptors (``avoids_symlink_attacks`` is true on Linux).
    """
    try:
        if is_dir:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(name, dir_fd=parent_fd)
                return
        os.unlink(name, dir_fd=parent_fd)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        shutil.rmtree(name, dir_fd=parent_fd)


@dataclass
class Scan:
    """What a root holds: non-directories (files, links, others) with their lstat, and dirs."""

    files: dict[str, os.stat_result] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)


def scan_tree(root_fd: int, *, skip_top: frozenset[str] = frozenset()) -> Scan:
    """List everything under ``root_fd`` by descriptors, never following a link.

    Args:
        root_fd: the root directory's descriptor.
        skip_top: names at the top level to leave out (the marker, staging directories are
            filtered by the caller).

    Returns:
        A :class:`Scan` with relative POSIX paths.
    """
    result = Scan()
    stack: list[tuple[int, str, bool]] = [(root_fd, "", False)]
    while stack:
        fd, prefix, owned = stack.pop()
        try:
            with os.scandir(fd) as it:
                entries = list(it)
            for entry in entries:
                if not prefix and entry.name in skip_top:
                    continue
                rel = prefix + entry.name
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    result.files[rel] = st
                    continue
                try:
                    child = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    # swapped for a link between listing and opening: report it as a non-dir
                    st2 = _is_dir_fd_entry(fd, entry.name)
                    if st2 is not None:
                        result.files[rel] = st2
                    continue
                result.dirs.add(rel)
                stack.append((child, rel + "/", True))
        finally:
            if owned:
                os.close(fd)
    return result


def sort_key(path: str) -> list[str]:
    """Sort key that keeps every directory's contents contiguous (depth-first order)."""
    return path.split("/")


class DirCursor:
    """Walks sorted relative paths, holding descriptors for the current directory chain only.

    ``cursor.dir_of("a/b/c.txt")`` returns the descriptor of ``a/b``, opening (and, with
    ``create``, making) each component by :func:`open_subdir`. Feed paths in :func:`sort_key`
    order so that each directory is opened once.
    """

    def __init__(self, root_fd: int, *, create: bool) -> None:
        self._root_fd = root_fd
        self._create = create
        self._parts: list[str] = []
        self._fds: list[int] = []

    def dir_of(self, path: str) -> int:
        """The descriptor of the directory holding ``path``."""
        parts = path.split("/")[:-1]
        common = 0
        while (
            common < len(parts)
            and common < len(self._parts)
            and parts[common] == self._parts[common]
        ):
            common += 1
        while len(self._parts) > common:
            self._parts.pop()
            os.close(self._fds.pop())
        for part in parts[common:]:
            parent = self._fds[-1] if self._fds else self._root_fd
            where = "/".join([*self._parts, part])
            fd = open_subdir(parent, part, create=self._create, where=where)
            self._parts.append(part)
            self._fds.append(fd)
        return self._fds[-1] if self._fds else self._root_fd

    def close(self) -> None:
        """Close every descriptor this cursor holds."""
        while self._fds:
            os.close(self._fds.pop())
        self._parts.clear()

    def __enter__(self) -> DirCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_parents(path: str) -> Iterator[str]:
    """``"a/b/c"`` → ``"a/b"``, ``"a"``: every ancestor directory of a relative path."""
    end = path.rfind("/")
    while end > 0:
        yield path[:end]
        end = path.rfind("/", 0, end)


class ThreadCursors:
    """One :class:`DirCursor` per worker thread (they hold open descriptors)."""

    def __init__(self, root_fd: int) -> None:
        self._root_fd = root_fd
        self._local = threading.local()
        self._all: list[DirCursor] = []
        self._lock = threading.Lock()

    def get(self) -> DirCursor:
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = DirCursor(self._root_fd, create=False)
            self._local.cursor = cursor
            with self._lock:
                self._all.append(cursor)
        return cursor

    def close(self) -> None:
        for cursor in self._all:
            cursor.close()
