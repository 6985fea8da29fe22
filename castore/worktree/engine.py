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

from castore._progress import Progress, ProgressArg
from castore.errors import (
    CastoreError,
    IntegrityError,
    InvalidPathError,
    UnsafeTargetError,
)
from castore.paths import validate_path
from castore.storage.external import is_remote
from castore.worktree import containment as _c
from castore.worktree import fresh as _f
from castore.worktree import linking as _l
from castore.worktree.entries import Entry, EntryLike, iter_entries
from castore.worktree.staging import (
    COPIES,
    Job,
    has_marker,
    plan_jobs,
    run_pool,
    stage,
    write_marker,
)
from castore.worktree.stat_cache import CachedDigests, StatCache, StatRow, slim_stat

if TYPE_CHECKING:
    from castore.storage.blobs import BlobStore

__all__ = [
    "ProgressArg",
    "check_existing",
    "check_sources",
    "links_to_blob",
    "materialize",
    "run_pool",
    "validate_entries",
]



# -- planning ------------------------------------------------------------------------------


def validate_entries(entries: Iterable[EntryLike]) -> list[Entry]:
    """Validate every path again (defence in depth against a tampered catalogue row).

    Returns the entries as light :class:`Entry` tuples, never a list of pydantic models.
    """
    out = list(iter_entries(entries))
    paths: set[str] = set()
    for entry in out:
        if validate_path(entry.path) != entry.path:
            raise InvalidPathError(entry.path, "not in canonical form")
        if entry.path in paths:
            raise InvalidPathError(entry.path, "listed twice (collision)")
        paths.add(entry.path)
    dirs: set[str] = set()
    for entry in out:
        for parent in _c.iter_parents(entry.path):
            if parent in dirs:
                break  # its ancestors are in already
            dirs.add(parent)
    both = paths & dirs
    if both:
        clash = min(both)
        raise InvalidPathError(clash, f"collision: {clash!r} is both a file and a directory")
    return out


def check_sources(blobs: BlobStore, entries: Sequence[Entry]) -> dict[str, str | None]:
    """Check that every entry's content is at hand; return each digest's raw blob (or None).

    Blob paths are kept as strings: a ``Path`` per file cost ~500 bytes at 100,000 files.

    Raises:
        IntegrityError: naming the paths and digests whose content is missing.
    """
    raws: dict[str, str | None] = {}
    missing: list[tuple[str, str]] = []
    for entry in entries:
        if entry.ref is not None:
            if is_remote(entry.ref):
                continue  # fetched and verified while staging (worktree.references checked it)
            if not _l.ref_path(entry).is_file():
                missing.append((entry.path, entry.ref))
            continue
        digest = entry.digest
        if digest is None:
            missing.append((entry.path, "<no digest>"))
            continue
        if digest not in raws:
            if blobs.in_pack(digest):  # packed (never linkable): no file to look at
                raws[digest] = None
                continue
            raw = blobs.raw_path(digest)
            if raw is None and not blobs.exists(digest):
                missing.append((entry.path, digest))
                continue
            raws[digest] = None if raw is None else os.fspath(raw)
    if missing:
        shown = ", ".join(f"{p!r} ({d})" for p, d in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise IntegrityError(
            f"cannot materialize: the content of {shown}{more} is missing from the store; "
            "nothing was changed (run castore fsck, or pull the version again)",
            digest=missing[0][1],
            paths=[p for p, _ in missing],
        )
    return raws



def check_existing(
    entries: Sequence[Entry],
    root: Path,
    root_fd: int,
    scan: _c.Scan,
    blobs: BlobStore,
    mode: str,
    stat_cache: StatCache,
    workers: int | None,
    progress: Progress | None = None,
) -> tuple[list[bool], list[StatRow]]:
    """For each entry: is the file at its path already right (content and link kind)?

    Also returns the stat-cache rows learned by hashing, for the caller to record with its
    own, in one transaction.
    """
    present = [e for e in entries if e.path in scan.files]
    cached = CachedDigests(stat_cache, scan, present)
    cursors = _c.ThreadCursors(root_fd)
    learned: list[StatRow] = []
    lock = threading.Lock()

    def check(entry: Entry) -> bool:
        ok = _entry_ok(entry)
        if ok and progress is not None:
            progress.add(entry.size)
        return ok

    def _entry_ok(entry: Entry) -> bool:
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
        if found and progress is not None:
            progress.add(sum(e.size for e in present if e.path in found))
    rest = [e for e in present if e.path not in found]
    try:
        found.update(zip((e.path for e in rest), run_pool(check, rest, workers), strict=True))
    finally:
        cursors.close()
    return [found.get(e.path, False) for e in entries], learned


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
    """Plan, stage and commit ``entries`` into ``root`` (``exact``: checkout, else download)."""
    mode = _l.check_mode(link)
    wanted_list = validate_entries(entries)
    target = _c.check_target(root, store_root)
    created = False
    root_fd = -1
    if os.path.isdir(target):
        root_fd, _ = _c.open_root(target, create=False)
    staging: str | None = None
    staging_fd = -1
    committing = False
    try:
        wanted = {e.path for e in wanted_list}
        scan = _c.Scan()
        if root_fd >= 0:
            scan = _c.scan_tree(root_fd, skip_top=frozenset({_c.MARKER_NAME} - wanted))
        stale = {d for d in scan.dirs if "/" not in d and d.startswith(_c.STAGING_PREFIX)}
        for d in stale:
            scan.dirs.difference_update({x for x in scan.dirs if x == d or x.startswith(d + "/")})
            for f in [x for x in scan.files if x.startswith(d + "/")]:
                del scan.files[f]
        tracker = Progress(progress, sum(e.size for e in wanted_list))
        ok, learned = check_existing(
            wanted_list, target, root_fd, scan, blobs, mode, stat_cache, workers, tracker
        )
        todo = [e for e, good in zip(wanted_list, ok, strict=True) if not good]
        # only the content still to write must be at hand (an already-right file needs no blob)
        raws = check_sources(blobs, todo)
        if todo and (root_fd < 0 or not (scan.files or scan.dirs or stale)):
            # A new or empty root: build the tree in one staging directory and rename it into
            # place, instead of a rename and a stat per file (the fresh path).
            learned += _f.build(
                blobs, todo, raws, target, root_fd,
                mode=mode, exact=exact, tracker=tracker, workers=workers,
            )
            if learned:
                stat_cache.record_many(learned)
            tracker.finish()
            return target
        if root_fd < 0:
            root_fd, created = _c.open_root(target, create=True)
        needed = {p for e in wanted_list for p in _c.iter_parents(e.path)}
        removals: list[tuple[str, bool]] = []
        if exact:
            extra_dirs = _top_level(scan.dirs - needed)
            under = set(extra_dirs)
            extra_files = [
                p
                for p in scan.files
                if p not in wanted and not any(q in under for q in _c.iter_parents(p))
            ]
            if not force and not has_marker(root_fd):
                # empty directories are no loss; files (and links) are
                holding = {p for f in scan.files for p in _c.iter_parents(f)}
                doomed = sorted(
                    extra_files
                    + [d for d in extra_dirs if d in holding]
                    + [e.path for e in todo if e.path in scan.files]
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
        else:
            for e in todo:
                if e.path in scan.dirs:
                    raise UnsafeTargetError(
                        f"a directory stands where the file {e.path!r} goes in {str(target)!r};"
                        " remove it or use checkout()",
                        path=target / e.path,
                    )
        if todo:
            staging = _c.STAGING_PREFIX + secrets.token_hex(6)
            os.mkdir(staging, 0o700, dir_fd=root_fd)
            staging_fd = _c.open_subdir(root_fd, staging, create=False)
            jobs = plan_jobs(blobs, todo, mode, target, root_fd, staging_fd, raws)
            # links are one syscall each: a pool would cost more than it saves (split first:
            # a hardlink at the link limit turns into a copy as it is staged)
            data_jobs = [j for j in jobs if j.how not in ("hardlink", "symlink")]
            for job in jobs:
                if job.how in ("hardlink", "symlink"):
                    stage(blobs, job, staging_fd, tracker, target)
            run_pool(
                lambda job: stage(blobs, job, staging_fd, tracker, target), data_jobs, workers
            )
        else:
            jobs = []
        committing = True
        if exact:
            write_marker(root_fd)
        with _c.DirCursor(root_fd, create=False) as cursor:
            for path, is_dir in sorted(removals, key=lambda r: _c.sort_key(r[0])):
                fd = cursor.dir_of(path)
                _c.remove_entry(fd, path.rsplit("/", 1)[-1], is_dir=is_dir)
        learned += _commit(jobs, target, root_fd, staging_fd)
        # one write transaction for what planning hashed and what was written: a checkout
        # only reads versions, and each transaction takes the catalogue's write lock
        if learned:
            stat_cache.record_many(learned)
        tracker.finish()
    except BaseException as exc:
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
        if staging_fd >= 0:
            os.close(staging_fd)
        if staging is not None:
            _c.remove_entry(root_fd, staging, is_dir=True)
        if root_fd >= 0:
            os.close(root_fd)
    return target


def _commit(jobs: Sequence[Job], target: Path, root_fd: int, staging_fd: int) -> list[StatRow]:
    """Rename every staged file into place, making directories (never following links).

    Returns the stat-cache rows of the files written as copies (links share the blob's inode).
    """
    learned: list[StatRow] = []
    with _c.DirCursor(root_fd, create=True) as cursor:
        for job in sorted(jobs, key=lambda j: _c.sort_key(j.entry.path)):
            fd = cursor.dir_of(job.entry.path)
            name = job.entry.path.rsplit("/", 1)[-1]
            try:
                os.rename(job.name, name, src_dir_fd=staging_fd, dst_dir_fd=fd)
            except (IsADirectoryError, NotADirectoryError, OSError) as exc:
                if isinstance(exc, (IsADirectoryError, NotADirectoryError)) or exc.errno in (
                    39,
                    21,
                ):
                    raise UnsafeTargetError(
                        f"a directory appeared at {job.entry.path!r} in {str(target)!r} while "
                        "the checkout ran; nothing was written through it",
                        path=target / job.entry.path,
                    ) from exc
                raise
            if job.how in COPIES:
                st = slim_stat(os.stat(name, dir_fd=fd, follow_symlinks=False))
                learned.append((f"{target}/{job.entry.path}", st, job.entry.digest or ""))
    return learned
