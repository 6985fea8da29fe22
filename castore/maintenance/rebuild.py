"""Rebuild a lost or damaged catalogue from the manifest blobs (git, restic and borg keep their
metadata in the object store for the same reason).

Every finalized version stores its manifest as a canonical JSON blob. When ``catalog.db`` is
damaged, :func:`rebuild_catalog` sets it aside (``catalog.db.damaged-<time>``, never deleted,
with its ``-wal`` and ``-shm``), creates a fresh catalogue and inserts every version whose
manifest it finds: collection, type, number, digest, entries, metadata, and ``latest`` on the
highest number of each collection. What the manifests do not hold is lost: user aliases (they
move after finalize), tags and TTL changes made later, drafts, lineage. A version deleted
since its manifest was written comes back until gc removes its manifest blob.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from castore.errors import CastoreError
from castore.index.catalog import Catalog
from castore.manifest import FORMAT_KEY, ManifestDecodeError, decode_manifest
from castore.models import Finding

if TYPE_CHECKING:
    from castore.storage.blobs import BlobStore
    from castore.storage.layout import Layout

__all__ = ["rebuild_catalog"]

#: Manifest documents larger than this are not considered (a bound on memory).
MAX_MANIFEST_BYTES = 512 * 1024 * 1024
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


def rebuild_catalog(
    layout: Layout, blobs: BlobStore, *, durable: bool = True
) -> tuple[Catalog, list[Finding]]:
    """Set the catalogue aside, create a new one and fill it from the manifest blobs.

    The caller must hold the maintenance lock and have closed its catalogue connections.

    Returns:
        The new catalogue and findings describing what was done.
    """
    kept = _set_aside(layout.catalog_path)
    catalog = Catalog(layout.catalog_path, durable=durable)
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    rejected: list[str] = []
    for digest in blobs.iter_digests():
        if not _looks_like_manifest(blobs, digest):
            continue
        try:
            if blobs.stat(digest).size > MAX_MANIFEST_BYTES:
                continue
            parsed = decode_manifest(blobs.read_bytes(digest), algorithm=blobs.algorithm)
        except ManifestDecodeError as exc:
            rejected.append(f"{digest}: {exc}")
            continue
        except (CastoreError, OSError):
            continue
        found.setdefault(parsed["id"], (digest, parsed))
    with catalog.write_txn():
        for manifest_digest, doc in sorted(found.values(), key=lambda item: item[1]["number"]):
            coll = catalog.ensure_collection(doc["collection"], doc["type"])
            taken = catalog.execute(
                "SELECT 1 FROM versions WHERE collection_id = ? AND number = ?",
                (coll["id"], doc["number"]),
            ).fetchone()
            if taken:
                continue
            created = doc["created_at"]
            ttl = doc["ttl"]
            catalog.execute(
                "INSERT INTO versions (id, collection_id, number, state, digest, size, "
                "file_count, description, metadata, created_at, updated_at, ttl, expires_at, "
                "manifest_blob) VALUES (?, ?, ?, 'COMMITTED', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    doc["id"],
                    coll["id"],
                    doc["number"],
                    doc["digest"],
                    doc["size"],
                    doc["file_count"],
                    doc["description"],
                    json.dumps(doc["metadata"], sort_keys=True),
                    created,
                    created,
                    ttl,
                    None if ttl is None else created + int(ttl * 1_000_000),
                    manifest_digest,
                ),
            )
            catalog.put_entries(doc["id"], doc["entries"])
            catalog.add_tags(doc["id"], doc["tags"])
            catalog.execute(
                "UPDATE collections SET next_number = MAX(next_number, ?) WHERE id = ?",
                (doc["number"] + 1, coll["id"]),
            )
        for coll in catalog.list_collections():
            catalog.repoint_latest(coll["id"])
    notes = [
        Finding(
            kind="catalogue_integrity",
            severity="warning",
            path=str(layout.catalog_path),
            message=f"rebuilt the catalogue from {len(found)} manifest blob(s)"
            + (f"; the damaged one is kept as {kept.name}" if kept else "")
            + "; user aliases, later tag and TTL changes, drafts and lineage are not in "
            "manifests and must be set again",
            repaired=True,
        )
    ]
    notes.extend(
        Finding(
            kind="catalogue_integrity",
            severity="warning",
            path=reason.partition(":")[0],
            message=f"a blob that looks like a version document was not trusted: {reason}",
        )
        for reason in rejected
    )
    return catalog, notes
