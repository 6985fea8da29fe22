"""fsck: check a store against its invariants, and repair what can be repaired.

Findings use a fixed vocabulary (``models.FindingKind``); errors make ``ok`` False:

| kind | severity | meaning |
| --- | --- | --- |
| ``catalogue_integrity`` | error | ``PRAGMA integrity_check`` / ``foreign_key_check`` failed |
| ``missing_blob`` | error | a committed or pending version needs a blob that is not stored |
| ``corrupt_blob`` | error | a stored blob does not hash to its name (or cannot be read) |
| ``dangling_ref`` | error | an entry with neither a blob digest nor an external reference |
| ``alias_to_missing`` | error | an alias points at a version that is not committed |
| ``orphan_blob`` | warning | a blob nothing references (gc removes it after the grace) |
| ``stale_tmp`` | warning | a temp file left by a crash, older than the grace (gc removes it) |
| ``recent_tmp`` | warning | a younger temp file: a write in flight or left by a crash |
| ``stale_draft`` | warning | a draft gc discards: its process is gone, or it is a day old |
| ``crashed_run`` | warning | a run still ``RUNNING`` whose process is gone (host, pid, start) |
| ``evicted_blob`` | info | a blob evicted under the budget that a remote holds (fetched on read) |

Leftovers are judged by the rule gc applies (``gc.leftovers``), and their findings carry
``size`` and ``age``: after 67 kills, 16 drafts and 926 temp files held space unreported.

``repair=True`` quarantines corrupt blobs (moved to ``quarantine/``, never deleted), flags the
versions that need a missing or corrupt blob as damaged (and clears the flag once their blobs
are whole again), stores ``CRASHED`` for runs whose process is gone, removes stale temp files
and rebuilds a damaged catalogue from the manifest blobs (the damaged file is kept beside it).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

from castore._parts import Parts
from castore.errors import CastoreError, NotFoundError
from castore.index import maintenance as _catalog_maint
from castore.maintenance.gc import leftovers
from castore.maintenance.rebuild import restore_unknown
from castore.maintenance.roots import scan_markers, unknown_roots
from castore.models import Finding, FsckReport, Leftover
from castore.storage.locking import DEFAULT_LOCK_TIMEOUT, maintenance_lock
from castore.storage.verify import verify_many

if TYPE_CHECKING:
    pass

__all__ = ["fsck"]

#: Threads re-hashing blobs at once (reads overlap; xxh3 and zstd release the GIL).
VERIFY_WORKERS = min(4, (os.cpu_count() or 2) * 2)
_MAX_NAMED = 10


def _names(refs: list[str]) -> str:
    shown = ", ".join(refs[:_MAX_NAMED])
    return shown + (f" and {len(refs) - _MAX_NAMED} more" if len(refs) > _MAX_NAMED else "")


def _catalogue_findings(store: Parts) -> list[Finding]:
    try:
        problems = _catalog_maint.integrity_problems(store.catalog)
    except (sqlite3.DatabaseError, CastoreError) as exc:
        problems = [str(exc)]
    return [
        Finding(
            kind="catalogue_integrity",
            severity="error",
            path=str(store.layout.catalog_path),
            message=f"the catalogue is damaged: {problem}; run fsck(repair=True) to rebuild "
            "it from the manifest blobs",
        )
        for problem in problems[:50]
    ]


def _size_words(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _age_words(seconds: float) -> str:
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{int(seconds // length)}{unit}"
    return f"{int(seconds)}s"


def _leftover_finding(item: Leftover, *, now: bool, repaired: bool = False) -> Finding:
    """A warning naming a leftover, the space it holds, its age and when gc removes it."""
    held = f"{_size_words(item.size)}, {_age_words(item.age)} old"
    if item.kind == "draft":
        return Finding(
            kind="stale_draft",
            severity="warning",
            ref=f"{item.collection}@draft:{item.name}",
            message=f"a draft of {item.collection!r} (id {item.name}, {held}) was never "
            f"finalized ({item.reason}); gc discards it, or `castore drafts --discard "
            f"{item.name}`",
            size=item.size,
            age=item.age,
        )
    if now:
        what = f"was left by an interrupted write or gc ({item.reason}); gc removes it"
    else:
        what = f"is a write in flight or was left by a crash; gc removes it {item.reason}"
    return Finding(
        kind="stale_tmp" if now else "recent_tmp",
        severity="warning",
        path=item.name,
        message=f"temp file {item.name} ({held}) {what}",
        size=item.size,
        age=item.age,
        repaired=repaired,
    )


def fsck(
    store: Parts,
    *,
    repair: bool = False,
    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
    rebuild: Callable[[], list[Finding]] | None = None,
) -> FsckReport:
    """Check every invariant of the store; with ``repair``, fix what can be fixed.

    Args:
        store: the store's parts.
        repair: quarantine corrupt blobs, flag damaged versions, remove stale temp files and,
            when the catalogue itself is damaged, call ``rebuild``.
        lock_timeout: seconds to wait for the maintenance lock (repair only).
        rebuild: rebuilds a damaged catalogue from the manifest blobs and returns findings
            describing what it did (supplied by ``Store``, which owns the catalogue).
    """
    if not repair:
        return _check(store, repair=False)
    with maintenance_lock(store.layout.locks, timeout=lock_timeout):
        report = _check(store, repair=True)
        broken = [f for f in report.findings if f.kind == "catalogue_integrity"]
        if not broken and _catalogue_lost(store):
            broken = [
                Finding(
                    kind="catalogue_integrity",
                    severity="error",
                    path=str(store.layout.catalog_path),
                    message="the catalogue holds no version but the store holds blobs: it "
                    "was lost or replaced; rebuilding it from the manifest blobs",
                )
            ]
        if broken and rebuild is not None:
            notes = rebuild()
            after = _check(store, repair=True)
            findings = [
                f.model_copy(update={"repaired": True}) for f in broken
            ] + notes + after.findings
            return FsckReport(
                ok=not any(f.severity == "error" and not f.repaired for f in findings),
                findings=findings,
                repaired=True,
            )
        return report


def _crashed_runs(store: Parts, *, repair: bool) -> list[Finding]:
    """Runs stored ``RUNNING`` whose process is gone: reported, and with repair stored
    ``CRASHED`` (never left ``RUNNING`` forever)."""
    catalog = store.catalog
    ids = catalog.crashed_running_ids()
    fixed = bool(ids) and repair and catalog.mark_crashed(ids) > 0
    findings = []
    for run_id in ids:
        row = catalog.get_run(run_id)
        assert row is not None
        findings.append(
            Finding(
                kind="crashed_run",
                severity="warning",
                ref=str(row["name"]),
                message=f"run {row['name']!r} is RUNNING but its process {row['pid']} on "
                f"{row['host']} is gone: it crashed"
                + ("; recorded as CRASHED" if fixed else "; fsck(repair=True) records it"),
                repaired=fixed,
            )
        )
    return findings


def _catalogue_lost(store: Parts) -> bool:
    """No version row at all (not even deleted ones) while blobs are stored."""
    row = store.catalog.execute("SELECT 1 FROM versions LIMIT 1").fetchone()
    # Count them all: leaving iter_digests half-way would leave its scandir open.
    return row is None and sum(1 for _ in store.blobs.iter_digests()) > 0


def _evicted(store: Parts, missing: list[str]) -> dict[str, str]:
    """Of the missing blobs, those a remote is known to hold (evicted, not lost): -> remote."""
    if not missing:
        return {}
    try:
        homes = store.catalog.blob_homes(missing)
    except CastoreError:  # a read-only catalogue from before step 9
        return {}
    return {d: places[0][0] for d, places in homes.items()}


def _check(store: Parts, *, repair: bool) -> FsckReport:
    catalog, blobs, layout = store.catalog, store.blobs, store.layout
    findings = _catalogue_findings(store)
    if findings:
        return FsckReport(ok=False, findings=findings)
    repaired = False

    # What the catalogue needs, and what is stored.
    with catalog.read_txn():
        sizes = _catalog_maint.referenced_digest_sizes(catalog)
        dangling = catalog._all_rows(
            "SELECT e.version_id, e.path, c.name AS collection, v.number FROM entries e "
            "JOIN versions v ON v.id = e.version_id JOIN collections c ON c.id = v.collection_id "
            "WHERE e.digest IS NULL AND e.ref IS NULL AND v.state IN ('COMMITTED', 'PENDING')"
        )
        aliases = _catalog_maint.bad_aliases(catalog)
        due, later = leftovers(store)
        damaged_before = _catalog_maint.damaged_version_ids(catalog)
    stored = set(blobs.iter_digests())
    missing = sorted(set(sizes) - stored)
    evicted = _evicted(store, missing)
    missing = [d for d in missing if d not in evicted]
    # A blob missing here was deleted meanwhile (gc): only what the listing lacks is missing.
    damage = verify_many(blobs, ((d, sizes.get(d)) for d in stored), workers=VERIFY_WORKERS)
    corrupt = dict(damage.corrupt)
    users = _catalog_maint.users_of_digests(catalog, [*missing, *corrupt, *evicted])

    for row in dangling:
        findings.append(
            Finding(
                kind="dangling_ref",
                severity="error",
                ref=f"{row['collection']}:v{row['number']}",
                path=row["path"],
                message=f"entry {row['path']!r} of {row['collection']}:v{row['number']} has "
                "neither a blob digest nor an external reference",
            )
        )
    for row in aliases:
        target = (
            "a version that does not exist"
            if row["state"] is None
            else f"a {row['state'].lower()} version"
        )
        findings.append(
            Finding(
                kind="alias_to_missing",
                severity="error",
                ref=f"{row['collection']}:{row['alias']}",
                message=f"alias {row['collection']}:{row['alias']} points at {target} "
                f"({row['version_id']}); move it with add_alias() or remove it",
            )
        )
    def users_of(digest: str) -> tuple[list[str], list[str]]:
        """The refs and paths of the versions that need ``digest``."""
        rows = users.get(digest, [])
        return [ref for _, ref, _ in rows], [p for _, _, p in rows if p]

    for digest in missing:
        refs, paths = users_of(digest)
        findings.append(
            Finding(
                kind="missing_blob",
                severity="error",
                digest=digest,
                ref=refs[0] if refs else None,
                path=paths[0] if paths else None,
                message=f"blob {digest} is missing; needed by {_names(refs) or 'a version'}"
                + (f" ({_names(paths)})" if paths else " (its manifest)")
                + "; restore it by importing or pulling a copy",
            )
        )
    for digest in sorted(evicted):
        refs, paths = users_of(digest)
        findings.append(
            Finding(
                kind="evicted_blob",
                severity="info",
                digest=digest,
                ref=refs[0] if refs else None,
                path=paths[0] if paths else None,
                size=sizes.get(digest),
                message=f"blob {digest} was evicted under the budget; remote "
                f"{evicted[digest]} holds it and a read fetches it back",
            )
        )
    quarantined: set[str] = set()
    for digest, problem in sorted(corrupt.items()):
        refs, paths = users_of(digest)
        fixed = False
        if repair:
            try:
                where = blobs.quarantine(digest)
            except (NotFoundError, OSError):
                pass
            else:
                fixed = True
                quarantined.add(digest)
                problem += f"; moved to {where}"
        findings.append(
            Finding(
                kind="corrupt_blob",
                severity="error",
                digest=digest,
                ref=refs[0] if refs else None,
                path=paths[0] if paths else None,
                message=f"blob {digest} is damaged ({problem}); "
                + (f"used by {_names(refs)}" if refs else "no version uses it"),
                repaired=fixed,
            )
        )
        repaired = repaired or fixed
    for pack in blobs.pack_index.damaged():
        findings.append(
            Finding(
                kind="corrupt_blob",
                severity="error",
                path=f"packs/{pack}",
                message=f"pack {pack} has no readable index, so its blobs cannot be found; "
                "it is kept as it is (gc never deletes it)",
            )
        )

    # Versions that markers know and the catalogue does not: roots until restored.
    scan = scan_markers(store)
    roots = unknown_roots(store, scan.unknown)
    if repair and not store.read_only and scan.unknown:
        restored = restore_unknown(store, scan.unknown)
        findings.extend(restored)
        repaired = repaired or any(f.repaired for f in restored)
    else:
        findings.extend(
            Finding(
                kind="unknown_version",
                severity="error",
                digest=digest,
                path=str(layout.manifests / version_id),
                message=f"version {version_id} has a stored document ({digest}) but no "
                "catalogue row (was catalog.db restored from an older copy?); its blobs are "
                "kept: `castore fsck --repair` restores it, `castore gc "
                "--discard-unknown` drops it",
            )
            for version_id, digest in sorted(scan.unknown.items())
        )
    for version_id, digest in scan.missing:
        fixed = False
        if repair and not store.read_only:
            store.markers.write(version_id, digest)
            fixed = repaired = True
        findings.append(
            Finding(
                kind="missing_marker",
                severity="warning",
                digest=digest,
                path=str(layout.manifests / version_id),
                message=f"committed version {version_id} has no marker naming its document, "
                "so a catalogue rebuild would miss it",
                repaired=fixed,
            )
        )

    # Orphans: stored, referenced by nothing committed or pending, and not damaged.
    for digest in sorted(stored - set(sizes) - set(corrupt) - roots):
        findings.append(
            Finding(
                kind="orphan_blob",
                severity="warning",
                digest=digest,
                message=f"blob {digest} is referenced by no version; gc removes it once it is "
                "older than the grace period",
            )
        )
    for item in due:
        fixed = False
        if repair and item.kind == "tmp_file":
            try:
                os.unlink(item.name)
                fixed = True
            except FileNotFoundError:
                fixed = True
            except OSError:
                pass
        repaired = repaired or fixed
        findings.append(_leftover_finding(item, now=True, repaired=fixed))
    findings.extend(
        _leftover_finding(item, now=False) for item in later if item.kind == "tmp_file"
    )

    findings.extend(_crashed_runs(store, repair=repair and not store.read_only))
    repaired = repaired or any(f.repaired for f in findings if f.kind == "crashed_run")

    if repair and not store.read_only:
        hurt = {vid for d in [*missing, *corrupt] for vid, _, _ in users.get(d, [])}
        if hurt - damaged_before:
            _catalog_maint.set_damaged(catalog, hurt - damaged_before, True)
            repaired = True
        healed = damaged_before - hurt
        if healed:
            _catalog_maint.set_damaged(catalog, healed, False)
            repaired = True
    return FsckReport(
        ok=not any(f.severity == "error" for f in findings),
        findings=findings,
        repaired=repaired,
    )
