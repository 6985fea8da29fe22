"""The checkout engine: plan, stage, commit (:mod:`castore.worktree.operations` has the rules).

Private: :mod:`castore.worktree.operations` holds the public functions; this module holds the
planning (validate, check sources, find already-correct files), staging (thread pool, verified
placement in a private staging directory inside the root) and commit (fd-relative renames and
removals).
"""

from __future__ import annotations

import os
import secrets
import stat
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from castore import _faults
from castore._progress import Progress, ProgressArg
from castore.errors import (
    CastoreError,
    InvalidPathError,
    UnsafeTargetError,
)
from castore.paths import validate_path
from castore.worktree import containment as _c
from castore.worktree import fresh as _f
from castore.worktree import linking as _l
from castore.worktree import staging as _s
from castore.worktree.entries import Entry, EntryLike, iter_entries, replayable
from castore.worktree.staging import (
    COPIES,
    Planner,
    Pool,
    batches,
    check_sources,
    has_marker,
    replay,
    run_pool,
    stage,
    write_marker,
)
from castore.worktree.stat_cache import (
    CachedDigests,
    StatCache,
    StatRow,
    StatRowBatches,
    slim_stat,
)

if TYPE_CHECKING:
    from castore.storage.blobs import BlobStore

__all__ = [
    "PathCheck",
    "ProgressArg",
    "check_existing",
    "check_sources",
    "links_to_blob",
    "materialize",
    "run_pool",
    "validate_entries",
]



# -- planning ------------------------------------------------------------------------------

class _Unsorted(Exception):
    """The entries are not sorted by path (the streamed checks need them sorted)."""


class PathCheck:
    """Checks paths one at a time, in code-point order, holding a few paths at most.

    Each must be canonical (defence in depth against a tampered catalogue row), listed once,
    and not also a directory of another path. Sorted, a duplicate is the previous path, and a
    file ``f`` that is also a directory comes before every ``f/...``: the paths in between all
    start with ``f`` (``f-x``, ``f.txt``: ``-`` and ``.`` sort before ``/``), so a stack of the
    files each path extends is all that is kept.
    """

    __slots__ = ("_files", "_prev")

    def __init__(self) -> None:
        self._prev: str | None = None
        self._files: list[str] = []

    def check(self, path: str) -> None:
        if validate_path(path) != path:
            raise InvalidPathError(path, "not in canonical form")
        prev = self._prev
        if prev is not None and path <= prev:
            if path == prev:
                raise InvalidPathError(path, "listed twice (collision)")
            raise _Unsorted(path)
        files = self._files
        while files and not path.startswith(files[-1]):
            files.pop()
        for f in files:
            if path[len(f)] == "/":
                raise InvalidPathError(f, f"collision: {f!r} is both a file and a directory")
        files.append(path)
        self._prev = path


def validate_entries(entries: Iterable[EntryLike]) -> list[Entry]:
    """Validate every path again (defence in depth against a tampered catalogue row).

    Returns the entries as light :class:`Entry` tuples, sorted by path, never a list of
    pydantic models.
    """
    out = sorted(iter_entries(entries), key=lambda e: e.path)
    check = PathCheck()
    for entry in out:
        check.check(entry.path)
    return out


def check_existing(
    entries: Sequence[Entry],
    root: Path,
    root_fd: int,
    scan: _c.Scan,
    blobs: BlobStore,
    mode: str,
    stat_cache: StatCache,
    pool: Pool,
) -> tuple[list[bool], list[StatRow]]:
    """For each entry: is the file at its path already right (content and link kind)?

    Also returns the stat-cache rows learned by hashing, for the caller to record.
    """
    present = [e for e in entries if e.path in scan.files]
    cached = CachedDigests(stat_cache, scan, present)
    cursors = _c.ThreadCursors(root_fd)
    learned: list[StatRow] = []
    lock = threading.Lock()

    def check(entry: Entry) -> bool:
        st = scan.files.get(entry.path)
        if st is None or entry.digest is None:
            return False
        if st.st_size != entry.size and not stat.S_ISLNK(st.st_mode):
            return False
        if any(p in scan.files for p in _c.iter_parents(entry.path)):
            return False
        # executables are copies in every mode (their blob is never made executable)
        mode_ = "copy" if entry.executable and mode in ("hardlink", "symlink") else mode
        if stat.S_ISLNK(st.st_mode):
            if mode_ != "symlink":
                return False
            try:
                dir_fd = cursors.get().dir_of(entry.path)
            except (OSError, UnsafeTargetError):
                return False
            return links_to_blob(dir_fd, entry, blobs) is not None
        if not stat.S_ISREG(st.st_mode) or _l.is_executable(st.st_mode) != entry.executable:
            return False  # a wrong x bit is rewritten, as git treats a mode change
        if mode_ in ("hardlink", "symlink") or st.st_nlink > 1:
            raw = blobs.raw_path(entry.digest)
            if raw is not None:
                if mode_ == "symlink":
                    return False  # a linkable blob: the user asked for a link
                is_blob = os.path.samestat(st, os.stat(raw))
                if mode_ == "hardlink" or is_blob:
                    # hardlink mode wants the blob itself; other modes must not keep it,
                    # so that an edit in the target cannot damage the store (dvc#859)
                    return is_blob and mode_ == "hardlink"
        abs_path = str(root / entry.path)
        if cached.says(entry, st):
            return True
        try:
            dir_fd = cursors.get().dir_of(entry.path)
        except (OSError, UnsafeTargetError):
            return False
        ok, st2 = _l.file_matches(dir_fd, entry.path.rsplit("/", 1)[-1], entry)
        if ok and st2 is not None:
            with lock:
                learned.append((abs_path, slim_stat(st2), entry.digest))
        return ok

    # the common case of an unchanged checkout, decided inline: a plain file the cache knows
    found: dict[str, bool] = {}
    if mode not in ("hardlink", "symlink"):
        for e in present:
            st = scan.files[e.path]
            if (
                st.st_nlink == 1
                and stat.S_ISREG(st.st_mode)
                and _l.is_executable(st.st_mode) == e.executable
                and st.st_size == e.size
                and cached.says(e, st)
            ):
                found[e.path] = True
    rest = [e for e in present if e.path not in found]
    try:
        found.update(zip((e.path for e in rest), pool.map(check, rest), strict=True))
    finally:
        cursors.close()
    return [found.get(e.path, False) for e in entries], learned


class _Survey:
    """The first pass: every entry checked, counted and sized; of the existing tree, only what
    it holds is kept (bounded by the files already there, not by the version)."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0
        self.good_bytes = 0
        #: per entry, by position: 0 to write, 1 already right (then 2 staged copy, 3 link)
        self.flags = bytearray()
        self.present: set[str] = set()  # entries with a file (or link) at their path
        self.needed: set[str] = set()  # existing directories some entry lies under
        self.rewrite: list[str] = []  # existing files that will be overwritten
        self.dir_clash: str | None = None  # an entry whose path is an existing directory

    @property
    def todo(self) -> int:
        return self.count - sum(self.flags)


def _survey(
    blobs: BlobStore,
    entries: Iterable[Entry],
    target: Path,
    root_fd: int,
    scan: _c.Scan,
    mode: str,
    stat_cache: StatCache,
    pool: Pool,
    *,
    contents: bool,
) -> _Survey:
    """Validate every path, check every content still to write is at hand, find the files
    already right: before anything is written, streaming the entries once.

    ``contents=False`` leaves the contents to the fresh path, which checks each batch's as it
    stages them into a directory that is removed if one is missing (a stat per file saved).

    Raises:
        InvalidPathError: a path is not canonical, listed twice, or a file and a directory.
        IntegrityError: (after the pass) naming every content that is missing.
    """
    survey = _Survey()
    paths = PathCheck()
    missing: list[tuple[str, str]] = []
    existing = bool(scan.files or scan.dirs)
    pending: list[tuple[int, Entry]] = []  # entries with a file at their path, to look at
    write: list[Entry] = []  # entries to write, whose content is checked a batch at a time

    def look() -> None:
        ok, learned = check_existing(
            [e for _, e in pending], target, root_fd, scan, blobs, mode, stat_cache, pool
        )
        if learned:  # files already in place: their rows are true now, whatever follows
            stat_cache.record_many(learned)
        for (i, entry), good in zip(pending, ok, strict=True):
            if good:
                survey.flags[i] = 1
                survey.good_bytes += entry.size
            else:
                write.append(entry)
                survey.rewrite.append(entry.path)
        pending.clear()

    for i, entry in enumerate(entries):
        path = entry.path
        paths.check(path)
        survey.flags.append(0)
        survey.count += 1
        survey.total += entry.size
        if existing:
            for parent in _c.iter_parents(path):
                if parent in scan.dirs:
                    survey.needed.add(parent)
            if path in scan.files:
                survey.present.add(path)
                pending.append((i, entry))
                if len(pending) >= _s.BATCH:
                    look()
                continue
            if path in scan.dirs and survey.dir_clash is None:
                survey.dir_clash = path
        if not contents:
            continue
        write.append(entry)
        if len(write) >= _s.BATCH:
            _s.sources(blobs, write, missing)
            write.clear()
    if pending:
        look()
    _s.sources(blobs, write, missing)
    if missing:
        raise _s.missing_error(missing)
    return survey


def links_to_blob(dir_fd: int, entry: Entry, blobs: BlobStore) -> Path | None:
    """The blob a symlink at ``entry.path`` points to, if it is this entry's raw blob."""
    if entry.digest is None:
        return None
    raw = blobs.raw_path(entry.digest)
    if raw is None:
        return None
    try:
        target = os.readlink(entry.path.rsplit("/", 1)[-1], dir_fd=dir_fd)
    except OSError:
        return None
    return raw if os.path.abspath(target) == os.path.abspath(raw) else None


# -- checkout and download -------------------------------------------------------------------


def _top_level(paths: set[str]) -> list[str]:
    """The members of ``paths`` that have no ancestor in ``paths``."""
    return sorted(p for p in paths if not any(q in paths for q in _c.iter_parents(p)))




def materialize(
    blobs: BlobStore,
    entries: Iterable[EntryLike],
    root: str | os.PathLike[str],
    *,
    link: str,
    store_root: str | os.PathLike[str],
    exact: bool,
    force: bool,
    stat_cache: StatCache,
    progress: ProgressArg,
    workers: int | None,
) -> Path:
    """Plan, stage and commit ``entries`` into ``root`` (``exact``: checkout, else download).

    ``entries`` is read in passes (an :class:`~castore.worktree.entries.EntryStream` is
    streamed anew each time, anything else is read once into a sorted list), a batch of
    :data:`~castore.worktree.staging.BATCH` at a time: check everything, write, put in place.
    """
    mode = _l.check_mode(link)
    stream = replayable(entries)
    target = _c.check_target(root, store_root)
    created = False
    root_fd = -1
    if os.path.isdir(target):
        root_fd, _ = _c.open_root(target, create=False)
    staging: str | None = None
    staging_fd = -1
    committing = False
    pool = Pool(workers)
    try:
        scan = _c.Scan()
        marker: os.stat_result | None = None
        if root_fd >= 0:
            scan = _c.scan_tree(root_fd, skip_top=frozenset({_c.MARKER_NAME}))
            # the marker file is no extra file, unless the version has a file of that name
            marker = _marker_file(root_fd)
            if marker is not None:
                scan.files[_c.MARKER_NAME] = marker
        stale = {d for d in scan.dirs if "/" not in d and d.startswith(_c.STAGING_PREFIX)}
        for d in stale:
            scan.dirs.difference_update({x for x in scan.dirs if x == d or x.startswith(d + "/")})
            for f in [x for x in scan.files if x.startswith(d + "/")]:
                del scan.files[f]
        # nothing there: every entry is written, by the fresh path if there is any
        fresh = root_fd < 0 or not (scan.files or scan.dirs or stale)
        try:
            survey = _survey(
                blobs, stream, target, root_fd, scan, mode, stat_cache, pool, contents=not fresh
            )
        except _Unsorted:  # not the catalogue's order: read once, sorted, and check again
            stream = validate_entries(stream)
            survey = _survey(
                blobs, stream, target, root_fd, scan, mode, stat_cache, pool, contents=not fresh
            )
        if marker is not None and _c.MARKER_NAME not in survey.present:
            del scan.files[_c.MARKER_NAME]
            fresh = not (scan.files or scan.dirs or stale)  # the contents were checked
        if not exact and survey.dir_clash is not None:
            raise UnsafeTargetError(
                f"a directory stands where the file {survey.dir_clash!r} goes in "
                f"{str(target)!r}; remove it or use checkout()",
                path=target / survey.dir_clash,
            )
        tracker = Progress(progress, survey.total)
        tracker.add(survey.good_bytes)
        todo = survey.todo
        if todo and fresh:
            # A new or empty root: build the tree in one staging directory and rename it into
            # place, instead of a rename and a stat per file (the fresh path).
            _f.build(
                blobs, stream, stat_cache, target, root_fd, count=survey.count,
                mode=mode, exact=exact, tracker=tracker, pool=pool,
            )
            tracker.finish()
            return target
        if root_fd < 0:
            root_fd, created = _c.open_root(target, create=True)
        removals: list[tuple[str, bool]] = []
        if exact:
            extra_dirs = _top_level(scan.dirs - survey.needed)
            under = set(extra_dirs)
            extra_files = [
                p
                for p in scan.files
                if p not in survey.present and not any(q in under for q in _c.iter_parents(p))
            ]
            if not force and not has_marker(root_fd):
                # empty directories are no loss; files (and links) are
                holding = {p for f in scan.files for p in _c.iter_parents(f)}
                doomed = sorted(
                    extra_files + [d for d in extra_dirs if d in holding] + survey.rewrite
                )
                if doomed:
                    raise UnsafeTargetError(
                        f"{str(target)!r} holds files that a checkout would delete or overwrite "
                        f"({', '.join(map(repr, doomed[:5]))}{' …' if len(doomed) > 5 else ''}) "
                        "and was not made by castore checkout; empty it, use download(), or "
                        "pass force=True",
                        path=target,
                    )
            removals = [(p, False) for p in extra_files] + [(d, True) for d in extra_dirs]
            removals += [(d, True) for d in sorted(stale)]
        if todo:
            staging = _c.STAGING_PREFIX + secrets.token_hex(6)
            os.mkdir(staging, 0o700, dir_fd=root_fd)
            staging_fd = _c.open_subdir(root_fd, staging, create=False)
            _stage_all(blobs, stream, survey, mode, target, root_fd, staging_fd, tracker, pool)
        committing = True
        if exact:
            write_marker(root_fd)
        with _c.DirCursor(root_fd, create=False) as cursor:
            for path, is_dir in sorted(removals, key=lambda r: _c.sort_key(r[0])):
                fd = cursor.dir_of(path)
                _c.remove_entry(fd, path.rsplit("/", 1)[-1], is_dir=is_dir)
        if todo:
            _commit(stream, survey, target, root_fd, staging_fd, stat_cache)
        tracker.finish()
    except BaseException as exc:
        pool.close()  # no thread still writing while the staging directory goes
        if staging is not None:
            _c.remove_entry(root_fd, staging, is_dir=True)
            staging = None
        if created and not committing:
            try:
                os.rmdir(target)
            except OSError:
                pass
        # making the staging or a parent directory, the marker, a rename: disk full
        if isinstance(exc, OSError) and not isinstance(exc, CastoreError):
            out = _l.out_of_space(exc, target, unchanged=not committing)
            if out is not exc:
                raise out from exc
        raise
    finally:
        pool.close()
        if staging_fd >= 0:
            os.close(staging_fd)
        if staging is not None:
            _c.remove_entry(root_fd, staging, is_dir=True)
        if root_fd >= 0:
            os.close(root_fd)
    return target


def _marker_file(root_fd: int) -> os.stat_result | None:
    try:
        st = os.stat(_c.MARKER_NAME, dir_fd=root_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return None if stat.S_ISDIR(st.st_mode) else st


def _stage_all(
    blobs: BlobStore,
    entries: Iterable[Entry],
    survey: _Survey,
    mode: str,
    target: Path,
    root_fd: int,
    staging_fd: int,
    tracker: Progress,
    pool: Pool,
) -> None:
    """Stage every entry still to write, a batch at a time, each under its position's number.

    Marks each in ``survey.flags``: 2 for a file of its own (a copy), 3 for a link.
    """
    planner = Planner(mode, target, root_fd, staging_fd)
    flags = survey.flags
    todo = ((i, e) for i, e in replay(entries, survey.count) if not flags[i])
    for batch in batches(todo, _s.BATCH):
        raws = check_sources(blobs, (e for _, e in batch))
        jobs = [planner.job(e, raws, str(i)) for i, e in batch]
        # links are one syscall each: a pool would cost more than it saves (split first:
        # a hardlink at the link limit turns into a copy as it is staged)
        data_jobs = [j for j in jobs if j.how not in ("hardlink", "symlink")]
        for job in jobs:
            if job.how in ("hardlink", "symlink"):
                stage(blobs, job, staging_fd, tracker, target)
        pool.map(lambda job: stage(blobs, job, staging_fd, tracker, target), data_jobs)
        for job in jobs:
            flags[int(job.name)] = 2 if job.how in COPIES else 3
        _faults.point("checkout.batch_placed")


def _commit(
    entries: Iterable[Entry],
    survey: _Survey,
    target: Path,
    root_fd: int,
    staging_fd: int,
    stat_cache: StatCache,
) -> None:
    """Rename every staged file into place, making directories (never following links).

    Records the stat-cache rows of the files written as copies (links share the blob's inode)
    a batch at a time, as soon as they are in place.
    """
    flags = survey.flags
    rows = StatRowBatches(stat_cache, _s.BATCH)
    with _c.DirCursor(root_fd, create=True) as cursor:
        for i, entry in replay(entries, survey.count):
            flag = flags[i]
            if flag < 2:
                continue
            fd = cursor.dir_of(entry.path)
            name = entry.path.rsplit("/", 1)[-1]
            try:
                os.rename(str(i), name, src_dir_fd=staging_fd, dst_dir_fd=fd)
            except (IsADirectoryError, NotADirectoryError, OSError) as exc:
                if isinstance(exc, (IsADirectoryError, NotADirectoryError)) or exc.errno in (
                    39,
                    21,
                ):
                    raise UnsafeTargetError(
                        f"a directory appeared at {entry.path!r} in {str(target)!r} while "
                        "the checkout ran; nothing was written through it",
                        path=target / entry.path,
                    ) from exc
                raise
            if flag == 2:
                st = slim_stat(os.stat(name, dir_fd=fd, follow_symlinks=False))
                rows.add((f"{target}/{entry.path}", st, entry.digest or ""))
    rows.flush()
