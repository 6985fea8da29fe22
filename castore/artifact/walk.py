"""Walking a directory for ``add_dir``: ignore rules, symlinks, special files, the store.

Ignore rules come first, for links too (a link to ``/etc`` in a CPython
standard library tree could not be ignored, because the link check ran before the rules).
Then, as ``API.md`` states, a symbolic link whose target is a file inside the directory is
stored as that file's content, a link to a directory inside it is skipped (following it could
loop), and a link whose target lies outside is refused with :class:`InvalidPathError` naming
it, unless ``follow_symlinks=True``: the outside file's content is stored, and directories are
still not followed. A dangling link or a loop is refused either way (it has no content).
FIFOs, sockets and devices are refused too.

A store inside the directory is never walked into (``castore --store .castore
add .`` took the live ``catalog.db`` and grew on every run). It is recognised by its device and
inode, not by its name; a source that is the store or lies inside it is refused by
:func:`check_source`.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
from collections.abc import Iterable, Iterator
from pathlib import Path

from castore.errors import InvalidPathError, UnsafeTargetError
from castore.ignore import IgnoreRules

__all__ = ["check_source", "walk_tree"]


def check_source(root: str | os.PathLike[str], store_root: str | os.PathLike[str]) -> None:
    """Refuse a directory to add that is the store or lies inside it.

    Matched by identity (device and inode of the directory and each of its parents), so a
    bind mount or a link to the store is caught as well as its own path.

    Raises:
        UnsafeTargetError: ``root`` is the store's directory or inside it.
    """
    try:
        store_st = os.stat(store_root)
    except OSError:
        return
    store_id = (store_st.st_dev, store_st.st_ino)
    resolved = Path(os.path.realpath(root))
    for candidate in (resolved, *resolved.parents):
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == store_id:
            raise UnsafeTargetError(
                f"the directory {str(resolved)!r} to add is inside the store at "
                f"{str(os.path.realpath(store_root))!r}; add a directory outside the store",
                path=resolved,
            )


def walk_tree(
    root: Path,
    rules: IgnoreRules,
    *,
    follow_symlinks: bool = False,
    exclude: Iterable[str | os.PathLike[str]] = (),
) -> Iterator[tuple[str, str, os.stat_result]]:
    """Yield ``(relative path, absolute path, stat)`` of every file to add under ``root``.

    Args:
        root: the directory to add.
        rules: its ignore rules (applied before anything else, links included).
        follow_symlinks: store the content of files that links outside ``root`` point to.
        exclude: directories never walked into (the store), matched by device and inode;
            links that resolve into them are skipped.

    Raises:
        InvalidPathError: a link (not ignored) points outside ``root`` (without
            ``follow_symlinks``), dangles or loops.
        ValueError: a FIFO, socket or device that is not ignored.
    """
    real_root = os.path.realpath(root)
    skip_ids: set[tuple[int, int]] = set()
    skip_real: list[str] = []
    for path in exclude:
        try:
            st = os.stat(path)
        except OSError:
            continue
        skip_ids.add((st.st_dev, st.st_ino))
        skip_real.append(os.path.realpath(path))
    stack = [("", str(root))]
    while stack:
        rel_dir, abs_dir = stack.pop()
        with os.scandir(abs_dir) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            rel = rel_dir + entry.name
            st = entry.stat(follow_symlinks=False)
            mode = st.st_mode
            if stat_mod.S_ISLNK(mode):
                target_st = _stat_target(entry.path)
                is_dir = isinstance(target_st, os.stat_result) and stat_mod.S_ISDIR(
                    target_st.st_mode
                )
                # a link matches a pattern as a file, and as a directory if it points to one
                if rules.matches(rel, is_dir=False) or (is_dir and rules.matches(rel, is_dir=True)):
                    continue
                resolved = _resolve_link(
                    entry.path,
                    rel,
                    real_root,
                    target_st,
                    skip_real,
                    follow_symlinks=follow_symlinks,
                )
                if resolved is None:
                    continue
                st = resolved
                mode = st.st_mode
            elif stat_mod.S_ISDIR(mode):
                if (st.st_dev, st.st_ino) in skip_ids:
                    continue  # the store: never added, whatever its name
                if not rules.matches(rel, is_dir=True):
                    stack.append((rel + "/", entry.path))
                continue
            elif rules.matches(rel, is_dir=False):
                continue
            if not stat_mod.S_ISREG(mode):
                raise ValueError(
                    f"cannot add {entry.path!r}: it is {_kind(mode)}; remove it or add it to "
                    "ignore="
                )
            yield rel, entry.path, slim_stat(st)


def slim_stat(st: os.stat_result) -> os.stat_result:
    """``st`` keeping only what adding a file reads: mode, device, inode, size, mtime, ctime.

    add_dir holds one stat per file from the walk until its batch is recorded; a full
    ``stat_result`` holds ~14 number objects (~580 bytes, 58 MiB at 100,000 files).
    """
    return os.stat_result(
        (st.st_mode, st.st_ino, st.st_dev, 0, 0, 0, st.st_size, 0, 0, 0),
        {"st_mtime_ns": st.st_mtime_ns, "st_ctime_ns": st.st_ctime_ns},
    )


def _stat_target(path: str) -> os.stat_result | int:
    """The stat of what the link ``path`` points to, or the errno if it dangles or loops."""
    try:
        return os.stat(path)
    except OSError as exc:
        return exc.errno or errno.ENOENT


def _resolve_link(
    path: str,
    rel: str,
    real_root: str,
    target_st: os.stat_result | int,
    skip_real: list[str],
    *,
    follow_symlinks: bool,
) -> os.stat_result | None:
    """Decide what a (not ignored) link stands for: its target's stat, or None to skip it."""
    if target_st == errno.ELOOP:
        raise InvalidPathError(rel, "it is a symlink loop; remove it or add it to ignore=")
    if not isinstance(target_st, os.stat_result):
        raise InvalidPathError(rel, "it is a dangling symlink; remove it or add it to ignore=")
    target = os.path.realpath(path)
    if any(_inside(target, skip) for skip in skip_real):
        return None  # into the store: never added
    is_dir = stat_mod.S_ISDIR(target_st.st_mode)
    if not follow_symlinks and not _inside(target, real_root):
        what = "the directory" if is_dir else "the file"
        raise InvalidPathError(
            rel,
            f"it is a symlink to {what} {target!r}, outside the added directory; add it "
            "to ignore=, or pass follow_symlinks=True to "
            + ("skip links to directories" if is_dir else "store the file's content"),
        )
    if is_dir:
        return None  # never follow directory links: they may loop
    return target_st


def _inside(path: str, directory: str) -> bool:
    return os.path.commonpath([directory, path]) == directory


def _kind(mode: int) -> str:
    if stat_mod.S_ISFIFO(mode):
        return "a FIFO"
    if stat_mod.S_ISSOCK(mode):
        return "a socket"
    if stat_mod.S_ISCHR(mode) or stat_mod.S_ISBLK(mode):
        return "a device"
    return "not a regular file"
