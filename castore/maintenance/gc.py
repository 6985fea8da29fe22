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

Packs follow the same protocol per pack (:mod:`castore.maintenance.repack`): a mostly-dead
pack's live blobs are first copied into a new, published pack; the old pack is moved to
``trash/`` inside the transaction only if every blob in it that is needed then is held by a
pack or loose file that stays.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from castore import _faults
from castore._parts import Parts
from castore.errors import NotFoundError
from castore.index import catalog as _catalog
from castore.index import maintenance as _catalog_maint
from castore.maintenance import repack as _repack
from castore.maintenance.roots import scan_markers, unknown_roots
from castore.models import GCReport, Leftover, PruneReport, StoreStats
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
    "leftovers",
    "now_us",
    "prune",
    "stats",
    "wall_clock",
]

#: How old an unreferenced blob must be before gc deletes it (by mtime).
DEFAULT_GRACE = timedelta(hours=1)
#: Temp files younger than this are in-flight writes, whatever the blob grace: never swept.
TMP_GRACE = timedelta(hours=1)
#: Drafts of a process that cannot be checked (another host, no pid) are stale at this age;
#: a draft whose process is gone from this host is stale at once.
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


def _span(seconds: float) -> str:
    """``3600`` -> ``"1h"``: the largest unit that divides it (for reasons in reports)."""
    whole = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def _pid_gone(pid: int) -> bool:
    """True when no process ``pid`` runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # it exists, under another user
    return False


def _draft_leftover(row: dict[str, Any], now: int) -> Leftover:
    """Classify one draft: gc discards it once ``due``.

    A draft whose process is gone from this host is stale at once (after 67 kills,
    16 drafts held space and nothing said so); one whose process runs is never swept; one
    whose process cannot be checked (another host, or no pid) is stale at ``STALE_DRAFT_AGE``.
    """
    created = int(row["created_at"])
    started = datetime.fromtimestamp(created / 1_000_000, UTC)
    pid, host = row["pid"], row["host"]
    fields: dict[str, Any] = {
        "kind": "draft",
        "name": str(row["version_id"]),
        "collection": row["collection"],
        "size": int(row["size"] or 0),
        "age": max(0.0, (now - created) / 1_000_000),
    }
    if pid is not None and host == socket.gethostname():
        if _pid_gone(pid):
            return Leftover(**fields, due=started, reason=f"its process {pid} is gone")
        return Leftover(**fields, due=None, reason=f"when its process {pid} exits")
    where = f"on host {host}" if host else "by an unknown process"
    return Leftover(
        **fields,
        due=started + STALE_DRAFT_AGE,
        reason=f"at {_span(STALE_DRAFT_AGE.total_seconds())} old (started {where}, "
        "which cannot be checked from here)",
    )


def _is_due(item: Leftover, now: datetime) -> bool:
    return item.due is not None and item.due <= now


def _catalog_now() -> datetime:
    return datetime.fromtimestamp(now_us() / 1_000_000, UTC)


def _draft_leftovers(catalog: Catalog) -> list[Leftover]:
    now = now_us()
    return [_draft_leftover(row, now) for row in _catalog_maint.stale_drafts(catalog)]


def _tmp_leftovers(layout: Layout, *, grace_s: float) -> list[Leftover]:
    """Every file in ``tmp/`` (due ``grace_s`` after it was last written) and in ``trash/``
    (garbage already, see the module docstring: due at once)."""
    now = wall_clock()
    found: list[Leftover] = []
    span = _span(grace_s)

    def add(path: str, st: os.stat_result, due: float, reason: str) -> None:
        found.append(
            Leftover(
                kind="tmp_file", name=path, size=st.st_size, age=max(0.0, now - st.st_mtime),
                due=datetime.fromtimestamp(due, UTC), reason=reason,
            )
        )

    for entry in layout.iter_tmp_files():
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        due = st.st_mtime + grace_s
        reason = (
            f"older than the {span} grace period"
            if due <= now
            else f"after the {span} grace period"
        )
        add(entry.path, st, due, reason)
    if layout.trash.is_dir():
        with os.scandir(layout.trash) as it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                add(entry.path, st, st.st_mtime, "left in trash/ by an interrupted gc")
    return found


def leftovers(
    store: Parts, *, grace: timedelta | float | None = None
) -> tuple[list[Leftover], list[Leftover]]:
    """The temp files and unfinished drafts gc removes now, and those it removes later.

    Both fsck and gc use this one rule. Temp files are due once older than ``grace`` (at
    least ``TMP_GRACE``: a younger one may be an add in flight); drafts as
    :func:`_draft_leftover` says.

    Returns:
        ``(due, later)``: each list drafts first (oldest first), then temp files.
    """
    grace_s = max(_seconds(grace, TMP_GRACE), TMP_GRACE.total_seconds())
    items = _draft_leftovers(store.catalog)
    drafts_now = _catalog_now()
    due = [d for d in items if _is_due(d, drafts_now)]
    later = [d for d in items if not _is_due(d, drafts_now)]
    files_now = datetime.fromtimestamp(wall_clock(), UTC)
    for item in _tmp_leftovers(store.layout, grace_s=grace_s):
        (due if _is_due(item, files_now) else later).append(item)
    return due, later


def _blob_candidates(
    catalog: Catalog, blobs: BlobStore, *, cutoff: float, keep: set[str]
) -> list[tuple[str, int]]:
    """Unreferenced blobs last modified before ``cutoff``, found without any lock."""
    referenced = _catalog_maint.referenced_digest_sizes(catalog)
    found: list[tuple[str, int]] = []
    for digest in blobs.iter_loose():
        if digest in referenced or digest in keep:
            continue
        try:
            st = os.stat(blobs.path_of(digest))
        except (FileNotFoundError, KeyError, NotFoundError):
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
    tmp_grace_s = max(grace_s, TMP_GRACE.total_seconds())
    if dry_run:
        scan = scan_markers(store)
        return _gc_plan(
            store, grace_s=grace_s, tmp_grace_s=tmp_grace_s,
            keep=set() if discard_unknown else unknown_roots(store, scan.unknown),
        )
    with maintenance_lock(layout.locks, timeout=lock_timeout):
        # Left by a gc that died after its COMMIT: reported with the other leftovers.
        removed = [t for t in _tmp_leftovers(layout, grace_s=tmp_grace_s) if _in_trash(layout, t)]
        _empty_trash(layout)
        # 1. Expired versions and stale drafts: one transaction (latest is repointed inside).
        with catalog.write_txn():
            expired = catalog.expired_versions(now_us())
            for row in expired:
                catalog.delete_version(row["id"])
            drafts_now = _catalog_now()
            kept = []
            for draft in _draft_leftovers(catalog):
                if _is_due(draft, drafts_now):
                    # A commit killed after writing its marker leaves one for this draft:
                    # drop it first, or the discarded draft turns into an unknown version.
                    store.markers.remove(draft.name)
                    catalog.discard_draft(draft.name)
                    removed.append(draft)
                else:
                    kept.append(draft)
        discarded = len(removed) - sum(t.kind == "tmp_file" for t in removed)
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
        cutoff = wall_clock() - grace_s
        candidates = _blob_candidates(catalog, blobs, cutoff=cutoff, keep=keep)
        # Packs: dead ones go whole, mostly-dead ones are rewritten; the copies of their live
        # blobs are published here, before the transaction that moves the old packs aside.
        live = set(_catalog_maint.referenced_digest_sizes(catalog)) | keep
        plans = _repack.plan(blobs, live=live, cutoff=cutoff)
        rewritten = _repack.rewrite(blobs, plans)
        moved = 0
        freed = 0
        if candidates or plans:
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
                _, dead, old_bytes = _repack.apply(
                    blobs, plans, rewritten, live=set(referenced) | keep
                )
                moved += dead
                freed += max(0, old_bytes - sum(rewritten.new_packs.values()))
        # 4. After COMMIT: delete for good.
        _empty_trash(layout)
        # 5. Temp files old enough that no writer is still writing them.
        swept = sum(t.kind == "tmp_file" for t in removed)
        files_now = datetime.fromtimestamp(wall_clock(), UTC)
        for item in _tmp_leftovers(layout, grace_s=tmp_grace_s):
            if not _is_due(item, files_now):
                kept.append(item)
                continue
            try:
                os.unlink(item.name)
            except FileNotFoundError:
                continue
            swept += 1
            removed.append(item)
    return GCReport(
        versions_deleted=deleted_refs,
        blobs_deleted=moved,
        bytes_freed=freed,
        tmp_files_deleted=swept,
        drafts_discarded=discarded,
        leftovers_removed=removed,
        leftovers_kept=kept,
        dry_run=False,
    )


def _in_trash(layout: Layout, item: Leftover) -> bool:
    return Path(item.name).parent == layout.trash


def _gc_plan(
    store: Parts,
    *,
    grace_s: float,
    tmp_grace_s: float,
    keep: set[str],
) -> GCReport:
    """What :func:`gc` would do now, without changing anything."""
    catalog, blobs = store.catalog, store.blobs
    with catalog.read_txn():
        expired = catalog.expired_versions(now_us())
        due, later = leftovers(store, grace=tmp_grace_s)
        drafts = [d.name for d in due if d.kind == "draft"]
        going = [str(row["id"]) for row in expired] + drafts
        freed_by_delete = _catalog_maint.digests_used_only_by(catalog, going)
        cutoff = wall_clock() - grace_s
        candidates = _blob_candidates(catalog, blobs, cutoff=cutoff, keep=keep)
        live = (set(_catalog_maint.referenced_digest_sizes(catalog)) - freed_by_delete) | keep
        plans = _repack.plan(blobs, live=live, cutoff=cutoff)
    count = len(candidates) + sum(len(p.dead) for p in plans)
    size = sum(s for _, s in candidates) + sum(p.size - p.estimated_new_size for p in plans)
    for digest in freed_by_delete - keep:
        try:
            if not _repack.is_loose(blobs, digest):
                continue  # packed: counted with its pack's plan above
            st = os.stat(blobs.path_of(digest))
        except (FileNotFoundError, KeyError, NotFoundError):
            continue
        if st.st_mtime <= cutoff:
            count += 1
            size += st.st_size
    return GCReport(
        versions_deleted=[_ref(row) for row in expired],
        blobs_deleted=count,
        bytes_freed=size,
        tmp_files_deleted=len(due) - len(drafts),
        drafts_discarded=len(drafts),
        leftovers_removed=due,
        leftovers_kept=later,
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
    for digest in store.blobs.iter_loose():
        try:
            stored += os.stat(store.blobs.path_of(digest)).st_size
        except (FileNotFoundError, KeyError):
            continue
        blob_count += 1
    loose = blob_count
    blob_count += sum(1 for _ in store.blobs.iter_digests()) - loose
    for name in store.blobs.pack_index.packs():
        try:
            stored += os.stat(store.layout.packs / name).st_size
        except FileNotFoundError:
            continue
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
