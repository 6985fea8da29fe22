"""A fresh checkout: the whole tree built in one staging directory, then put in place at once.

The careful path of :mod:`castore.worktree.engine` stages every file under a number in a flat
directory inside the root and renames each into place, then stats it for the stat cache: per
file, one more directory entry, one rename and one stat, all in one directory while staging.
A root that does not exist yet (or exists and is empty) has nothing to be careful about, so
here every file is written at its final relative path inside a staging directory, and:

- a root that does not exist: the staging directory is made *beside* it (same parent, so the
  same filesystem) and renamed to the root's name once, after the marker is written into it.
  A kill at any moment leaves the root absent or complete; the staging directory it leaves is
  named after the process (``.castore-staging-<pid>-<random>-<root name>``), and the next fresh
  checkout of that root removes it once that process is gone.
- an existing empty root: the staging directory is made inside it (as on the careful path, whose
  stale-staging sweep also covers it); the marker is written on the root, then each top-level
  entry is renamed into the root (one rename per top-level name, not per file).

The containment rules are the careful path's (:mod:`castore.worktree.containment`): every
directory is made and opened through :class:`~castore.worktree.containment.DirCursor`
(``O_NOFOLLOW | O_DIRECTORY``), every file is created ``O_EXCL | O_NOFOLLOW`` relative to its
directory's descriptor, and the final rename never follows a link (a link or a non-empty
directory that appeared at the root's name makes it fail: :class:`UnsafeTargetError`).
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

from castore import _faults
from castore._process import hostname, is_gone
from castore._progress import Progress
from castore.errors import UnsafeTargetError
from castore.worktree import containment as _c
from castore.worktree import staging as _s
from castore.worktree.entries import Entry
from castore.worktree.staging import (
    COPIES,
    Job,
    Planner,
    Pool,
    batches,
    replay,
    stage,
    write_marker,
)
from castore.worktree.stat_cache import (
    NoStatCache,
    StatCache,
    StatColumns,
    StatRowBatches,
    slim_stat,
)

if TYPE_CHECKING:
    from castore.storage.blobs import BlobStore

__all__ = ["build"]

#: The part of the root's name kept in a staging directory's name (names stop at 255 bytes).
_NAME_KEPT = 180


def _staging_name(target: Path) -> str:
    return f"{_c.STAGING_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{target.name[:_NAME_KEPT]}"


def _sweep(parent_fd: int, target: Path) -> None:
    """Remove the staging directories killed fresh checkouts of ``target`` left beside it."""
    suffix = "-" + target.name[:_NAME_KEPT]
    host = hostname()
    for name in os.listdir(parent_fd):
        if not (name.startswith(_c.STAGING_PREFIX) and name.endswith(suffix)):
            continue
        pid = name[len(_c.STAGING_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and is_gone(host, int(pid), None):
            with suppress(OSError):  # another checkout swept it first
                _c.remove_entry(parent_fd, name, is_dir=True)


def build(
    blobs: BlobStore,
    entries: Iterable[Entry],
    stat_cache: StatCache,
    target: Path,
    root_fd: int,
    *,
    count: int,
    mode: str,
    exact: bool,
    tracker: Progress,
    pool: Pool,
) -> None:
    """Write the ``count`` ``entries`` into the new (``root_fd < 0``) or empty root ``target``.

    The entries are read twice, a batch at a time: to write them, then (once the tree is in
    place) to record the stat-cache rows of the files written as copies (links share the
    blob's inode), whose stats were kept meanwhile as numbers (:class:`StatColumns`).

    Raises:
        UnsafeTargetError: something appeared at the root's name while the tree was built.
        IntegrityError: a content is damaged or missing (the root is left as it was).
    """
    beside = root_fd < 0
    if beside:
        os.makedirs(target.parent, exist_ok=True)  # as the careful path's open_root does
        home_fd, _ = _c.open_root(target.parent, create=False)
        staging = _staging_name(target)
    else:
        home_fd, staging = root_fd, _c.STAGING_PREFIX + secrets.token_hex(6)
    staging_fd = -1
    placed = False
    try:
        if beside:
            _sweep(home_fd, target)
        os.mkdir(staging, 0o777 if beside else 0o700, dir_fd=home_fd)
        staging_fd = _c.open_subdir(home_fd, staging, create=False)
        stats = _fill(blobs, entries, count, target, home_fd, staging_fd, mode, tracker, pool)
        _faults.point("checkout.tmp_written")
        if beside:
            if exact:
                write_marker(staging_fd)
            _rename_root(home_fd, staging, target)
        else:
            if exact:
                write_marker(root_fd)
            _move_top(target, root_fd, staging_fd)
            os.rmdir(staging, dir_fd=home_fd)
        placed = True
        _faults.point("checkout.renamed")
    finally:
        if not placed:
            pool.close()  # no thread still writing while the staging directory goes
        if staging_fd >= 0:
            os.close(staging_fd)
        if not placed:
            with suppress(OSError):
                _c.remove_entry(home_fd, staging, is_dir=True)
        if beside:
            os.close(home_fd)
    _record(entries, count, stats, target, None if beside else root_fd, stat_cache)


def _fill(
    blobs: BlobStore,
    entries: Iterable[Entry],
    count: int,
    target: Path,
    home_fd: int,
    staging_fd: int,
    mode: str,
    tracker: Progress,
    pool: Pool,
) -> StatColumns:
    """Place every file at its path inside the staging directory, a batch at a time.

    Returns the stat of each file written as a copy, by position (None for a link).
    """
    stats = StatColumns()
    planner = Planner(mode, target, home_fd, staging_fd)
    cursors = _c.ThreadCursors(staging_fd)

    def place(item: tuple[int, Job]) -> None:
        i, job = item
        fd = cursors.get().dir_of(job.entry.path)
        stage(blobs, job, fd, tracker, target)
        if job.how in COPIES:
            # Stat here, in the pool: renaming the root keeps every inode, mtime and ctime
            # below it. Straight into the columns: a stat_result per file of a batch is ~1 KiB.
            stats.put(i, os.stat(job.name, dir_fd=fd, follow_symlinks=False))

    try:
        with _c.DirCursor(staging_fd, create=True) as maker:
            parts = batches(replay(entries, count), _s.BATCH)
            for batch in parts:
                # the directories first (each component made and opened, never a link)
                for directory in sorted(
                    {p for _, e in batch for p in _c.iter_parents(e.path)}, key=_c.sort_key
                ):
                    maker.dir_of(directory + "/")
                missing: list[tuple[str, str]] = []
                raws = _s.sources(blobs, (e for _, e in batch), missing)
                if missing:  # name every one: look at the rest, writing nothing more
                    for rest in parts:
                        _s.sources(blobs, (e for _, e in rest), missing)
                    raise _s.missing_error(missing)
                # In path order, a directory's files are contiguous (but for names that sort
                # before "/", such as "a.txt" between "a" and "a/b"), so each worker slice
                # mostly stays in one directory and its thread's cursor opens it once.
                jobs = [(i, planner.job(e, raws, e.path.rsplit("/", 1)[-1])) for i, e in batch]
                stats.grow(len(jobs))
                pool.map(place, jobs)
                _faults.point("checkout.batch_placed")
    finally:
        cursors.close()
    return stats


def _record(
    entries: Iterable[Entry],
    count: int,
    stats: StatColumns,
    target: Path,
    root_fd: int | None,
    stat_cache: StatCache,
) -> None:
    """Record the copies' stat-cache rows once the tree is in place, a batch at a time.

    ``root_fd``: the root the top-level entries were moved into (their ctime changed, so
    those files are looked at again), or None when the whole tree was renamed at once.
    """
    if isinstance(stat_cache, NoStatCache):
        return
    rows = StatRowBatches(stat_cache, _s.BATCH)
    for i, entry in replay(entries, count):
        st = stats.get(i)
        if st is None:
            continue
        if root_fd is not None and "/" not in entry.path:
            st = slim_stat(os.stat(entry.path, dir_fd=root_fd, follow_symlinks=False))
        rows.add((f"{target}/{entry.path}", st, entry.digest or ""))
    rows.flush()


def _rename_root(parent_fd: int, staging: str, target: Path) -> None:
    """Rename the staging directory to the root's name; never over a link or a non-empty dir."""
    try:
        os.rename(staging, target.name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
            raise UnsafeTargetError(
                f"{str(target)!r} appeared while the checkout ran (a link, a file or a "
                "non-empty directory); nothing was written into it",
                path=target,
            ) from exc
        raise


def _move_top(target: Path, root_fd: int, staging_fd: int) -> None:
    """Rename each top-level entry of the staging directory into the (empty) root.

    A renamed file's ctime changes: :func:`_record` takes the stat of top-level files again.
    """
    for name in sorted(os.listdir(staging_fd)):
        try:
            os.rename(name, name, src_dir_fd=staging_fd, dst_dir_fd=root_fd)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise UnsafeTargetError(
                    f"{name!r} appeared in {str(target)!r} while the checkout ran; nothing was "
                    "written through it",
                    path=target / name,
                ) from exc
            raise
