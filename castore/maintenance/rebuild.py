"""Rebuild a lost or damaged catalogue from the version documents (git, restic and borg keep
their metadata in the object store for the same reason); restore a lost ``castore.json``.

Every finalized version stores its document as a blob and a marker naming it
(:mod:`castore.storage.markers`). When ``catalog.db`` is damaged, :func:`rebuild_catalog` sets
it aside (``catalog.db.damaged-<time>``, never deleted, with its ``-wal`` and ``-shm``),
creates a fresh catalogue and inserts every version a marker vouches for, once its document
passes :func:`castore.manifest.decode_manifest`: collection, type, number, digest, entries,
metadata, and ``latest`` on the highest number of each collection. A blob that merely looks
like a version document (any user can add one) is never trusted. What the documents do not
hold is lost: user aliases, later tag and TTL changes, drafts, lineage.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from castore._parts import Parts
from castore.digest import ALGORITHMS
from castore.errors import (
    CastoreError,
    IntegrityError,
    StoreNotFoundError,
    UnsupportedFormatError,
)
from castore.index.catalog import Catalog
from castore.maintenance.roots import read_marked_manifest
from castore.manifest import FORMAT_KEY
from castore.models import CompressionConfig, Finding, StoreConfig
from castore.storage.blobs import BlobStore
from castore.storage.fsutil import durable_write
from castore.storage.layout import FORMAT, Layout, config_json
from castore.storage.locking import maintenance_lock
from castore.storage.markers import ManifestMarkers

__all__ = [
    "backfill_markers",
    "rebuild_in_place",
    "recover_config",
    "insert_version",
    "rebuild_catalog",
    "restore_config",
    "restore_unknown",
]

_PEEK = 64


def _looks_like_manifest(blobs: BlobStore, digest: str) -> bool:
    try:
        with blobs.open(digest) as fh:
            head = fh.read(_PEEK)
    except (CastoreError, OSError):
        return False
    return head.startswith(b'{"' + FORMAT_KEY.encode() + b'"')


def _set_aside(path: Path) -> Path | None:
    if not path.exists():
        return None
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.damaged-{stamp}-{os.getpid()}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(str(path) + suffix)
        if source.exists():
            os.rename(source, Path(str(target) + suffix))
    return target


def insert_version(catalog: Catalog, manifest_digest: str, doc: dict[str, Any]) -> int:
    """Insert a checked version document as a committed version; return its number.

    The document's number is kept unless another version of the collection holds it; then
    the version gets the next free number. The caller holds a write transaction.
    """
    coll = catalog.ensure_collection(doc["collection"], doc["type"])
    number = doc["number"]
    taken = catalog.execute(
        "SELECT 1 FROM versions WHERE collection_id = ? AND number = ?", (coll["id"], number)
    ).fetchone()
    if taken:
        row = catalog.execute(
            "SELECT MAX(MAX(COALESCE(number, -1)) + 1, ?) FROM versions v "
            "JOIN collections c ON c.id = v.collection_id WHERE c.id = ?",
            (coll["next_number"], coll["id"]),
        ).fetchone()
        number = int(row[0])
    created, ttl = doc["created_at"], doc["ttl"]
    catalog.execute(
        "INSERT INTO versions (id, collection_id, number, state, digest, size, file_count, "
        "description, metadata, created_at, updated_at, ttl, expires_at, manifest_blob, "
        "materializer) VALUES (?, ?, ?, 'COMMITTED', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            doc["id"], coll["id"], number, doc["digest"], doc["size"], doc["file_count"],
            doc["description"], json.dumps(doc["metadata"], sort_keys=True), created, created,
            ttl, None if ttl is None else created + int(ttl * 1_000_000), manifest_digest,
            doc.get("materializer"),
        ),
    )
    if doc.get("link_source"):
        catalog.execute(
            "UPDATE versions SET link_source = ? WHERE id = ?", (doc["link_source"], doc["id"])
        )
    catalog.put_entries(doc["id"], doc["entries"])
    catalog.add_tags(doc["id"], doc["tags"])
    catalog.execute(
        "UPDATE collections SET next_number = MAX(next_number, ?) WHERE id = ?",
        (number + 1, coll["id"]),
    )
    return int(number)


def _untrusted_lookalikes(blobs: BlobStore, trusted: set[str]) -> list[str]:
    """Blobs that start like a version document but that no marker vouches for."""
    found = []
    for digest in blobs.iter_digests():
        if digest in trusted:
            continue
        try:
            with blobs.open(digest) as fh:
                head = fh.read(_PEEK)
        except (CastoreError, OSError):
            continue
        if head.startswith(b'{"' + FORMAT_KEY.encode() + b'"'):
            found.append(str(digest))
    return found


def rebuild_catalog(
    layout: Layout, blobs: BlobStore, *, durable: bool = True
) -> tuple[Catalog, list[Finding]]:
    """Set the catalogue aside, create a new one and fill it from the marked documents.

    The caller must hold the maintenance lock and have closed its catalogue connections.

    Returns:
        The new catalogue and findings describing what was done.
    """
    kept = _set_aside(layout.catalog_path)
    catalog = Catalog(layout.catalog_path, durable=durable)
    parts = Parts(
        layout=layout, config=_placeholder_config(blobs), blobs=blobs, catalog=catalog,
        read_only=False, durable=durable,
    )
    found: list[tuple[str, dict[str, Any]]] = []
    notes: list[Finding] = []
    for version_id, digest in sorted(parts.markers):
        try:
            found.append((digest, read_marked_manifest(parts, version_id, digest)))
        except (CastoreError, OSError) as exc:
            notes.append(_untrusted(str(layout.manifests / version_id), str(exc)))
    lookalikes = _untrusted_lookalikes(blobs, {d for d, _ in found})
    with catalog.write_txn():
        for manifest_digest, doc in sorted(found, key=lambda item: item[1]["number"]):
            insert_version(catalog, manifest_digest, doc)
        for coll in catalog.list_collections():
            catalog.repoint_latest(coll["id"])
    notes.insert(
        0,
        Finding(
            kind="catalogue_integrity",
            severity="warning",
            path=str(layout.catalog_path),
            message=f"rebuilt the catalogue from {len(found)} version document(s)"
            + (f"; the damaged one is kept as {kept.name}" if kept else "")
            + "; user aliases, later tag and TTL changes, drafts and lineage are not in "
            "the documents and must be set again",
            repaired=True,
        ),
    )
    notes.extend(
        _untrusted(digest, "it looks like a version document but no marker in manifests/ "
                   "vouches for it (castore writes one for every version it commits)")
        for digest in lookalikes
    )
    return catalog, notes


def _untrusted(where: str, why: str) -> Finding:
    return Finding(
        kind="catalogue_integrity",
        severity="warning",
        path=where,
        message=f"not restored: {why}",
    )


def restore_unknown(parts: Parts, unknown: dict[str, str]) -> list[Finding]:
    """Bring back the versions whose markers the catalogue does not account for."""
    findings = []
    catalog = parts.catalog
    for version_id, digest in sorted(unknown.items()):
        try:
            doc = read_marked_manifest(parts, version_id, digest)
        except (CastoreError, OSError) as exc:
            findings.append(_untrusted(str(parts.layout.manifests / version_id), str(exc)))
            continue
        with catalog.write_txn():
            if catalog.get_version(version_id) is not None:
                continue  # restored meanwhile
            number = insert_version(catalog, digest, doc)
            coll = catalog.get_collection(doc["collection"])
            assert coll is not None
            catalog.repoint_latest(coll["id"])
        moved = "" if number == doc["number"] else f" (v{doc['number']} was taken)"
        findings.append(
            Finding(
                kind="unknown_version",
                severity="error",
                ref=f"{doc['collection']}:v{number}",
                message=f"restored version {version_id} of {doc['collection']!r} as "
                f"v{number}{moved} from its document {digest}",
                repaired=True,
            )
        )
    return findings


def backfill_markers(parts: Parts) -> int:
    """Write the markers of every committed version (stores made before markers existed)."""
    rows = parts.catalog.execute(
        "SELECT id, manifest_blob FROM versions WHERE state = 'COMMITTED' "
        "AND manifest_blob IS NOT NULL"
    ).fetchall()
    markers = ManifestMarkers(parts.layout.manifests, durable=parts.durable)
    staging = parts.layout.manifests.with_name("manifests.partial")
    staging.mkdir(exist_ok=True)
    partial = ManifestMarkers(staging, durable=parts.durable)
    for version_id, digest in rows:
        partial.write(version_id, digest)
    try:
        os.rename(staging, parts.layout.manifests)  # all at once: a crash leaves no half set
    except OSError:
        for version_id, digest in rows:  # another process won the race: fill in the gaps
            markers.write(version_id, digest)
    return len(rows)


def _placeholder_config(blobs: BlobStore) -> StoreConfig:
    return StoreConfig(
        format=FORMAT,
        store_id=str(uuid.uuid4()),
        hash=blobs.algorithm,
        compression=CompressionConfig(
            codec=blobs.compression,  # type: ignore[arg-type]
            level=blobs.level,
            min_saving=blobs.min_saving,
        ),
        created_at=datetime.now(UTC),
    )


def _algorithm_of(layout: Layout) -> tuple[str, str]:
    """The store's hash algorithm, from what the store holds, and how it was found."""
    for _, digest in ManifestMarkers(layout.manifests):
        return digest.partition(":")[0], "the manifest markers"
    if layout.catalog_path.is_file() and layout.catalog_path.stat().st_size:
        try:
            catalog = Catalog(layout.catalog_path, read_only=True, durable=False)
            try:
                row = catalog.execute(
                    "SELECT digest FROM entries WHERE digest IS NOT NULL LIMIT 1"
                ).fetchone()
            finally:
                catalog.close()
        except CastoreError:
            row = None
        if row and str(row[0]).partition(":")[0] in ALGORITHMS:
            return str(row[0]).partition(":")[0], "the catalogue's digests"
    # Last resort: re-hash one blob with each algorithm whose digest length fits its name.
    for algorithm in ALGORITHMS:
        probe = BlobStore(layout, algorithm=algorithm, compression="zstd", level=3,
                          durable=False, read_only=True)
        for digest in probe.iter_digests():
            try:
                probe.verify(digest)
            except (IntegrityError, CastoreError, OSError):
                break
            return algorithm, f"re-hashing blob {digest.partition(':')[2]}"
    return "xxh3-128", "nothing (the store holds no blob): the default"


def rebuild_in_place(parts: Parts) -> list[Finding]:
    """Set the damaged catalogue of open ``parts`` aside and swap in a rebuilt one."""
    with parts.lock:
        parts.catalog.close()
        parts.catalog, notes = rebuild_catalog(parts.layout, parts.blobs, durable=parts.durable)
    return notes


def recover_config(layout: Layout, *, durable: bool) -> tuple[StoreConfig, list[Finding]]:
    """Read ``castore.json``, restoring it first when it is lost or unreadable.

    Raises:
        StoreNotFoundError: no store is here at all.
        UnsupportedFormatError: the store has a newer format (its settings are never
            rewritten).
    """
    try:
        return layout.read_config(), []
    except StoreNotFoundError:
        if not layout.holds_data():
            raise
    except UnsupportedFormatError as exc:
        found = getattr(exc, "found", None)
        if isinstance(found, int) and found > FORMAT:
            raise
    with maintenance_lock(layout.locks):
        note = restore_config(layout, durable=durable)
    return layout.read_config(), [note]


def restore_config(layout: Layout, *, durable: bool = True) -> Finding:
    """Write a lost ``castore.json`` with the algorithm the store's content shows.

    The caller holds the maintenance lock. Compression settings only steer new writes (every
    blob names its own codec), so the defaults are safe; the store gets a new ``store_id``.
    """
    damaged = _set_aside(layout.config_path)
    algorithm, source = _algorithm_of(layout)
    config = StoreConfig(
        format=FORMAT,
        store_id=str(uuid.uuid4()),
        hash=algorithm,
        compression=CompressionConfig(codec="zstd", level=3),
        created_at=datetime.now(UTC),
    )
    durable_write(layout.config_path, config_json(config), overwrite=False, durable=durable)
    return Finding(
        kind="config_missing",
        severity="error",
        path=str(layout.config_path),
        message=("castore.json was missing" if damaged is None else
                 f"castore.json was unreadable (kept as {damaged.name})")
        + f"; restored it with hash={algorithm!r} (from {source}), zstd level 3 for new "
        "writes and a new store_id",
        repaired=True,
    )
