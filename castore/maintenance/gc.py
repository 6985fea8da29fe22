"""Care of a store: gc (TTL expiry, unreferenced blobs, stale temp files), prune and stats.

``fsck`` and catalogue rebuilds live in ``_fsck.py``. Every function here plans first and acts
second, and a dry run returns the plan (huggingface_hub's ``DeleteCacheStrategy``, dvc's
``gc(dry=)``).

The gc protocol (DESIGN.md invariant 6), which makes gc safe beside writers in other processes
even with ``grace=timedelta(0)``:

1. A writer stages its temp file without any lock, then, inside one ``BEGIN IMMEDIATE``
   transaction, records the digest on its ``PENDING`` draft and publishes the blob (a link
   whose "already exists" is the dedup hit).
2. gc lists candidate blobs outside any lock (the slow directory scan), then, inside its own
   ``BEGIN IMMEDIATE`` transaction, recomputes what committed and pending versions reference
   and renames the unreferenced candidates into ``trash/``. After COMMIT it empties the trash.

SQLite's write lock orders the two transactions: either the writer committed first (gc sees
the reference and keeps the blob) or gc did (the writer no longer finds the blob and publishes
its own copy). A crash anywhere leaves only garbage in ``trash/``: what was moved there was
unreferenced under the write lock, and no writer looks there.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from castore import _faults
from castore._parts import Parts
from castore.index import catalog as _catalog
from castore.index import maintenance as _catalog_maint
from castore.maintenance.roots import scan_markers, unknown_roots
from castore.models import GCReport, PruneReport, StoreStats
from castore.storage.locking import DEFAULT_LOCK_TIMEOUT, maintenance_lock

if TYPE_CHECKING:
    from castore.index.catalog import Catalog
    from castore.storage.blobs import BlobStore
    from castore.storage.layout import Layout

__all__ = [
    "DEFAULT_GRACE",
    "STALE_DRAFT_AGE",
    "TMP_GRACE",
    "gc",
    "now_us",
    "prune",
    "stats",
    "wall_clock",
]

#: How old an unreferenced blob must be before gc deletes it (by mtime).
DEFAULT_GRACE = timedelta(hours=1)
#: Temp files younger than this are in-flight writes, whatever the blob grace: never swept.
TMP_GRACE = timedelta(hours=1)
#: Drafts older than this whose process is gone are stale: fsck warns, gc discards them.
STALE_DRAFT_AGE = timedelta(days=1)


def now_us() -> int:
    """Catalogue time (µs since the epoch); tests move it by patching the catalogue's now_us."""
    return _catalog.now_us()


def wall_clock() -> float:
    """File-system time (seconds), compared with blob and temp file mtimes."""
    return time.time()


def _ref(row: dict[str, object]) -> str:
    return f"{row['collection']}:v{row['number']}"


def _seconds(value: timedelta | float | None, default: timedelta) -> float:
    if value is None:
        return default.total_seconds()
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ValueError(f"grace must not be negative, got {value!r}")
    return seconds


def _process_gone(pid: int | None, host: str | None) -> bool:
    """True when the draft's process surely no longer runs (same host, no such pid)."""
    if pid is None or host != socket.gethostname():
        return True  # another machine: we cannot know; rely on the age alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _stale_drafts(catalog: Catalog) -> list[dict[str, object]]:
    cutoff = now_us() - int(STALE_DRAFT_AGE.total_seconds() * 1_000_000)
    return [
        row
        for row in _catalog_maint.stale_drafts(catalog, cutoff)
        if _process_gone(row["pid"], row["host"])
    ]


def stale_tmp_files(layout: Layout, *, older_than: float) -> list[Path]:
    """Files in ``tmp/`` and leftovers in ``trash/`` last written before ``older_than``."""
    found: list[Path] = []
    for entry in layout.iter_tmp_files():
        try:
            mtime = entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue
        if mtime <= older_than:
            found.append(Path(entry.path))
    if layout.trash.is_dir():
        # Everything in trash/ is garbage already (see the module docstring).
        with os.scandir(layout.trash) as it:
            found.extend(Path(entry.path) for entry in it)
    return found


def _blob_candidates(
    catalog: Catalog, blobs: BlobStore, *, cutoff: float, keep: set[str]
) -> list[tuple[str, int]]:
    """Unreferenced blobs last modified before ``cutoff``, found without any lock."""
    referenced = _catalog_maint.referenced_digest_sizes(catalog)
    found: list[tuple[str, int]] = []
    for digest in blobs.iter_digests():
        if digest in referenced or digest in keep:
            continue
        try:
            st = os.stat(blobs.path_of(digest))
        except (FileNotFoundError, KeyError):
            continue
        if st.st_mtime <= cutoff:
            found.append((digest, st.st_size))
    return found


def _empty_trash(layout: Layout) -> int:
    count = 0
    if not layout.trash.is_dir():
        return 0
    for entry in os.scandir(layout.trash):
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            continue
        count += 1
        _faults.point("gc.deleted_one")
    return count


def gc(
    store: Parts,
    *,
    dry_run: bool = False,
    grace: timedelta | float | None = None,
    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
    discard_unknown: bool = False,
) -> GCReport:
    """Delete expired versions, unreferenced blobs older than ``grace`` and stale temp files.

    See ``Store.gc``. Runs under the maintenance lock (a dry run takes no lock and writes
    nothing). Versions whose markers the catalogue does not account for are roots: their
    documents and blobs are kept unless ``discard_unknown`` (then their markers go first).
    """
    catalog, blobs, layout = store.catalog, store.blobs, store.layout
    grace_s = _seconds(grace, DEFAULT_GRACE)
    tmp_cutoff = wall_clock() - max(grace_s, TMP_GRACE.total_seconds())
    if dry_run:
        scan = scan_markers(store)
        return _gc_plan(
            catalog, blobs, layout, grace_s=grace_s, tmp_cutoff=tmp_cutoff,
            keep=set() if discard_unknown else unknown_roots(store, scan.unknown),
        )
    with maintenance_lock(layout.locks, timeout=lock_timeout):
        _empty_trash(layout)  # left by a gc that died after its COMMIT
        # 1. Expired versions and stale drafts: one transaction (latest is repointed inside).
        with catalog.write_txn():
            expired = catalog.expired_versions(now_us())
            for row in expired:
                catalog.delete_version(row["id"])
            for draft in _stale_drafts(catalog):
                catalog.discard_draft(draft["version_id"])  # type: ignore[arg-type]
        deleted_refs = [_ref(row) for row in expired]
        # 2. Markers: a deleted version's row accounts for it, so its marker can go; an
        # unknown version's marker keeps its blobs (unless discarded on purpose).
        scan = scan_markers(store)
        keep: set[str]
        for version_id in scan.deleted:
            store.markers.remove(version_id)
        if discard_unknown:
            for version_id in scan.unknown:
                store.markers.remove(version_id)
            keep = set()
        else:
            keep = unknown_roots(store, scan.unknown)
        # 3. Blobs: scan without a lock, then re-check and move aside under the write lock.
        candidates = _blob_candidates(catalog, blobs, cutoff=wall_clock() - grace_s, keep=keep)
        moved = 0
        freed = 0
        if candidates:
            with catalog.write_txn():
                referenced = _catalog_maint.referenced_digest_sizes(catalog)
                _faults.point("gc.listed")
                for digest, _ in candidates:
                    if digest in referenced:
                        continue  # a writer registered it since the scan: keep it
                    size = blobs.move_to_trash(digest)
                    if size:
                        moved += 1
                        freed += size
        # 4. After COMMIT: delete for good.
        _empty_trash(layout)
        # 5. Temp files old enough that no writer is still writing them.
        swept = 0
        for path in stale_tmp_files(layout, older_than=tmp_cutoff):
            try:
                path.unlink()
                swept += 1
            except FileNotFoundError:
                pass
    return GCReport(
        versions_deleted=deleted_refs,
        blobs_deleted=moved,
        bytes_freed=freed,
        tmp_files_deleted=swept,
        dry_run=False,
    )


def _gc_plan(
    catalog: Catalog,
    blobs: BlobStore,
    layout: Layout,
    *,
    grace_s: float,
    tmp_cutoff: float,
    keep: set[str],
) -> GCReport:
    """What :func:`gc` would do now, without changing anything."""
    with catalog.read_txn():
        expired = catalog.expired_versions(now_us())
        drafts = _stale_drafts(catalog)
        going = [str(row["id"]) for row in expired] + [str(d["version_id"]) for d in drafts]
        freed_by_delete = _catalog_maint.digests_used_only_by(catalog, going)
        candidates = _blob_candidates(catalog, blobs, cutoff=wall_clock() - grace_s, keep=keep)
    cutoff = wall_clock() - grace_s
    count = len(candidates)
    size = sum(s for _, s in candidates)
    for digest in freed_by_delete - keep:
        try:
            st = os.stat(blobs.path_of(digest))
        except (FileNotFoundError, KeyError):
            continue
        if st.st_mtime <= cutoff:
            count += 1
            size += st.st_size
    return GCReport(
        versions_deleted=[_ref(row) for row in expired],
        blobs_deleted=count,
        bytes_freed=size,
        tmp_files_deleted=len(stale_tmp_files(layout, older_than=tmp_cutoff)),
        dry_run=True,
    )


def prune(
    store: Parts,
    collection: str | None = None,
    *,
    keep_last: int | None = None,
    only_unused: bool = False,
    dry_run: bool = False,
    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
) -> PruneReport:
    """Delete versions by retention policy (see ``Store.prune``); blobs are left to gc.

    Raises:
        ValueError: no policy (neither ``keep_last`` nor ``only_unused``), or a negative
            ``keep_last``.
        NotFoundError: ``collection`` does not exist.
    """
    if keep_last is None and not only_unused:
        raise ValueError(
            "prune needs a policy: pass keep_last=N (keep the newest N versions per "
            "collection) and/or only_unused=True (versions no run used or produced)"
        )
    if keep_last is not None and (not isinstance(keep_last, int) or keep_last < 0):
        raise ValueError(f"keep_last must be a non-negative integer, got {keep_last!r}")
    catalog = store.catalog
    if collection is not None and catalog.get_collection(collection) is None:
        from castore.errors import NotFoundError

        raise NotFoundError(f"no collection named {collection!r}", ref=collection)

    def plan() -> list[dict[str, object]]:
        return _catalog_maint.prune_candidates(
            catalog, collection=collection, keep_last=keep_last, only_unused=only_unused,
            now=now_us(),
        )

    if dry_run:
        return PruneReport(versions_deleted=[_ref(r) for r in plan()], dry_run=True)
    with maintenance_lock(store.layout.locks, timeout=lock_timeout), catalog.write_txn():
        rows = plan()  # re-planned under the write lock: aliases may have moved since
        for row in rows:
            catalog.delete_version(str(row["id"]))
    return PruneReport(versions_deleted=[_ref(r) for r in rows], dry_run=False)


def stats(store: Parts) -> StoreStats:
    """Counts and sizes of a store (see ``Store.stats``)."""
    counts = _catalog_maint.store_counts(store.catalog)
    blob_count = 0
    stored = 0
    for digest in store.blobs.iter_digests():
        try:
            stored += os.stat(store.blobs.path_of(digest)).st_size
        except (FileNotFoundError, KeyError):
            continue
        blob_count += 1
    unique = counts["unique_bytes"]
    ratio = counts["logical_bytes"] / unique if unique else 1.0
    return StoreStats(
        collections=counts["collections"],
        versions=counts["versions"],
        blobs=blob_count,
        logical_bytes=counts["logical_bytes"],
        stored_bytes=stored,
        dedup_ratio=round(ratio, 6),
    )
