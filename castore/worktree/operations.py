"""Materialize versions: checkout, download, verify, open and diff over manifest entries.

Pure functions over a :class:`~castore.storage.blobs.BlobStore` and any iterable of manifest
entries (:class:`~castore.models.ManifestEntry` records or the catalogue's plain
``(path, digest, size, ref)`` rows, kept as light :class:`~castore.worktree.entries.Entry`
tuples); the store and the handles compose them. The rules (``docs/checkout.md``):

1. Plan before acting: every path is validated again, every blob (or ``file://`` reference) must
   exist, and the target must be safe (:mod:`castore.worktree.containment`) before anything changes.
2. Stage, then commit: every file to write is placed in a private staging directory inside the
   root and checked (digest and size while streaming, for copies), and only when *all* of them
   are good are they renamed into place. A missing or corrupt blob leaves the target unchanged.
3. Never follow a link found in the root; a rename replaces a link or breaks a hardlink at a
   target path, so nothing outside the root is written (reliability.md §3.7 tests 35–39).
4. Skip files that are already correct: the stat cache first, then a hash.
"""

from __future__ import annotations

import os
import stat
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from castore.errors import IntegrityError, NotFoundError, UnsafeTargetError
from castore.models import Diff, DiffEntry, VerifyReport
from castore.storage.verify import verify_many
from castore.worktree import containment as _c
from castore.worktree import engine as _k
from castore.worktree import linking as _l
from castore.worktree.engine import ProgressArg
from castore.worktree.entries import Entry, EntryLike, EntryStream, iter_entries, replayable
from castore.worktree.reading import SPOOL_MEMORY, copy_verified, open_entry, read_bytes
from castore.worktree.stat_cache import (
    NO_STAT_CACHE,
    CachedDigests,
    MemoryStatCache,
    NoStatCache,
    StatCache,
)

if TYPE_CHECKING:
    from castore.storage.blobs import BlobStore

__all__ = [
    "NO_STAT_CACHE",
    "Entry",
    "EntryLike",
    "MemoryStatCache",
    "NoStatCache",
    "ProgressArg",
    "StatCache",
    "SPOOL_MEMORY",
    "checkout",
    "copy_verified",
    "diff",
    "download",
    "open_entry",
    "read_bytes",
    "verify_blobs",
    "verify_dir",
]


def checkout(
    blobs: BlobStore,
    entries: Iterable[EntryLike],
    root: str | os.PathLike[str],
    *,
    link: str = "auto",
    store_root: str | os.PathLike[str],
    force: bool = False,
    stat_cache: StatCache | None = None,
    progress: ProgressArg = None,
    workers: int | None = None,
) -> Path:
    """Make ``root`` hold exactly ``entries``: write what differs, remove everything else.

    Args:
        blobs: the store's blobs.
        entries: the version's manifest entries: an
            :class:`~castore.worktree.entries.EntryStream` (read anew for each pass, a batch
            at a time, never held whole: what the handles pass), or any iterable of
            ``ManifestEntry`` records or ``(path, digest, size, ref)`` rows, read once into a
            sorted list.
        root: the target directory (created if missing).
        link: ``"auto"``, ``"copy"``, ``"hardlink"``, ``"symlink"`` or ``"reflink"``.
        store_root: the store's directory (targets overlapping it are refused).
        force: allow deleting or overwriting files in a non-empty directory that castore did
            not check out before (it carries no ``user.castore.checkout`` attribute and no
            ``.castore-checkout`` marker file).
        stat_cache: skip re-hashing files whose stat is unchanged since castore wrote them;
            what this checkout learns is recorded a batch at a time (one transaction each),
            once the files are in place. None: no cache (:data:`NO_STAT_CACHE`).
        progress: ``(done_bytes, total_bytes)`` callable, or True for a stderr bar.
        workers: threads for reading and writing (default: 8 per CPU, at most 32).

    Returns:
        The resolved root.

    Raises:
        IntegrityError: a blob is missing or damaged; the target is left unchanged.
        UnsafeTargetError: the root is unsafe, or links keep being swapped in while it runs.
        InvalidPathError: a manifest path is not canonical (a tampered catalogue).
        ConfigurationError: the link mode cannot work here (reflink unsupported, hardlink
            across filesystems).
    """
    return _k.materialize(
        blobs,
        entries,
        root,
        link=link,
        store_root=store_root,
        exact=True,
        force=force,
        stat_cache=stat_cache or NO_STAT_CACHE,
        progress=progress,
        workers=workers,
    )


def download(
    blobs: BlobStore,
    entries: Iterable[EntryLike],
    root: str | os.PathLike[str],
    *,
    path_prefix: str | None = None,
    link: str = "auto",
    store_root: str | os.PathLike[str],
    stat_cache: StatCache | None = None,
    progress: ProgressArg = None,
    workers: int | None = None,
) -> Path:
    """Write ``entries`` (those whose path starts with ``path_prefix``) into ``root``.

    Files not in the selection are left alone. Same safety and arguments as :func:`checkout`.
    """
    selected: Iterable[EntryLike] = entries
    if path_prefix is not None:
        kept = replayable(entries)
        selected = EntryStream(lambda: (e for e in kept if e.path.startswith(path_prefix)))
    return _k.materialize(
        blobs,
        selected,
        root,
        link=link,
        store_root=store_root,
        exact=False,
        force=True,
        stat_cache=stat_cache or NO_STAT_CACHE,
        progress=progress,
        workers=workers,
    )


# -- verify and diff ---------------------------------------------------------------------------


def verify_dir(
    blobs: BlobStore,
    entries: Iterable[EntryLike],
    root: str | os.PathLike[str],
    *,
    stat_cache: StatCache | None = None,
    workers: int | None = None,
) -> VerifyReport:
    """Compare a directory with ``entries``: which files are missing, modified or extra.

    Regular files are checked by the stat cache, then by hashing; a file whose executable bit
    differs from the entry's is modified (as in git). A symlink castore made into the
    store counts as the entry when it points at this entry's blob and the blob is intact; a
    hardlink shares the blob's inode, so editing it damages the store: it is reported as
    modified here (and by ``fsck`` as a damaged blob). Nothing is followed out of the root.
    """
    wanted_list = _k.validate_entries(entries)
    target = Path(os.path.realpath(os.fspath(root)))
    try:
        root_fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        missing = sorted(e.path for e in wanted_list)
        return VerifyReport(ok=not missing, missing=missing)
    try:
        wanted = {e.path for e in wanted_list}
        scan = _c.scan_tree(root_fd, skip_top=frozenset({_c.MARKER_NAME} - wanted))
        extra = sorted(
            p for p in scan.files if p not in wanted and not p.startswith(_c.STAGING_PREFIX)
        )
        present = [e for e in wanted_list if e.path in scan.files]
        cached = CachedDigests(stat_cache or NO_STAT_CACHE, scan, present)
        missing = sorted(e.path for e in wanted_list if e.path not in scan.files)
        cursors = _c.ThreadCursors(root_fd)

        def good(entry: Entry) -> bool:
            st = scan.files[entry.path]
            try:
                dir_fd = cursors.get().dir_of(entry.path)
            except (OSError, UnsafeTargetError):
                return False
            if stat.S_ISLNK(st.st_mode):
                if entry.executable or entry.digest is None:
                    return False  # checkout copies executables: a link is not one
                if _k.links_to_blob(dir_fd, entry, blobs) is None:
                    return False
                try:
                    blobs.verify(entry.digest, size=entry.size)
                except (IntegrityError, NotFoundError, OSError):
                    return False
                return True
            if not stat.S_ISREG(st.st_mode) or st.st_size != entry.size:
                return False
            if _l.is_executable(st.st_mode) != entry.executable:
                return False  # a mode change is a modification, as in git
            if cached.says(entry, st):
                return True
            return _l.file_matches(dir_fd, entry.path.rsplit("/", 1)[-1], entry)[0]

        try:
            results = _k.run_pool(good, present, workers)
        finally:
            cursors.close()
    finally:
        os.close(root_fd)
    modified = sorted(e.path for e, r in zip(present, results, strict=True) if not r)
    return VerifyReport(
        ok=not (missing or modified or extra), missing=missing, modified=modified, extra=extra
    )


def verify_blobs(
    blobs: BlobStore, entries: Iterable[EntryLike], *, workers: int | None = None
) -> list[str]:
    """Re-hash the stored content of ``entries``; return the sorted paths whose content is bad.

    A missing blob counts as damaged (the blobs are checked by
    :func:`castore.storage.verify.verify_many`, as ``fsck`` checks them). ``file://``
    references with a recorded digest are re-hashed too; other references are skipped
    (nothing local to check).
    """
    blob_paths: dict[str, tuple[int, list[str]]] = {}
    ref_paths: dict[tuple[str, str], tuple[Entry, list[str]]] = {}
    bad: list[str] = []
    for entry in iter_entries(entries):
        if entry.ref is None and entry.digest is not None:
            blob_paths.setdefault(entry.digest, (entry.size, []))[1].append(entry.path)
        elif entry.ref is None:
            bad.append(entry.path)  # neither a digest nor a reference: nothing to read
        elif entry.digest is not None and urllib.parse.urlparse(entry.ref).scheme == "file":
            ref_paths.setdefault((entry.ref, entry.digest), (entry, []))[1].append(entry.path)
    damage = verify_many(
        blobs, ((d, size) for d, (size, _) in blob_paths.items()), workers=workers
    )
    for digest in damage.digests:
        bad += blob_paths[digest][1]

    def ref_damaged(entry: Entry) -> bool:
        try:
            with open_entry(blobs, entry) as fh:
                while fh.read(_l.CHUNK):
                    pass
        except (IntegrityError, NotFoundError, OSError):
            return True
        return False

    groups = list(ref_paths.values())
    flags = _k.run_pool(ref_damaged, [entry for entry, _ in groups], workers)
    bad += [p for (_, paths), damaged in zip(groups, flags, strict=True) if damaged for p in paths]
    return sorted(bad)


def diff(
    entries_a: Iterable[EntryLike],
    entries_b: Iterable[EntryLike],
    *,
    a: str = "a",
    b: str = "b",
) -> Diff:
    """What changed from ``entries_a`` to ``entries_b``: added, removed and modified paths.

    An entry is modified when its digest, size, reference or executable bit differs (a
    mode-only change is a modification, as in git). Lists are sorted by path.
    """
    left = {e.path: e for e in iter_entries(entries_a)}
    right = {e.path: e for e in iter_entries(entries_b)}
    added = [
        DiffEntry(path=p, size_b=right[p].size, digest_b=right[p].digest)
        for p in sorted(right.keys() - left.keys())
    ]
    removed = [
        DiffEntry(path=p, size_a=left[p].size, digest_a=left[p].digest)
        for p in sorted(left.keys() - right.keys())
    ]
    modified = [
        DiffEntry(
            path=p,
            size_a=left[p].size,
            size_b=right[p].size,
            digest_a=left[p].digest,
            digest_b=right[p].digest,
        )
        for p in sorted(left.keys() & right.keys())
        if (left[p].digest, left[p].size, left[p].ref, left[p].executable)
        != (right[p].digest, right[p].size, right[p].ref, right[p].executable)
    ]
    return Diff(a=a, b=b, added=added, removed=removed, modified=modified)
