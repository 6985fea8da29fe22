"""Versions the markers know and the catalogue does not: gc roots, fsck findings, repair input.

A marker (``manifests/<version id>``) is written at finalize before the catalogue commit. Its
version is *accounted for* when the catalogue has a row for it in any state; otherwise (a
catalogue restored from an old backup, a commit rolled back after the marker was written) the
version is *unknown*, and gc keeps its manifest and every blob it names until repair restores
it or the user discards it explicitly (``gc(discard_unknown=True)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from castore._parts import Parts
from castore.errors import CastoreError
from castore.manifest import ManifestDecodeError, decode_manifest

__all__ = [
    "MAX_MANIFEST_BYTES",
    "MarkerScan",
    "read_marked_manifest",
    "scan_markers",
    "unknown_roots",
]

#: Version documents larger than this are not read (a bound on memory).
MAX_MANIFEST_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class MarkerScan:
    """Markers sorted by what the catalogue says of their versions."""

    unknown: dict[str, str] = field(default_factory=dict)  # version id -> manifest digest
    deleted: list[str] = field(default_factory=list)  # version ids whose row is DELETED
    missing: list[tuple[str, str]] = field(default_factory=list)  # committed, no marker


def scan_markers(parts: Parts) -> MarkerScan:
    """Compare the markers with the catalogue's version rows (one read transaction)."""
    markers = dict(parts.markers)
    catalog = parts.catalog
    with catalog.read_txn():
        rows = catalog.execute("SELECT id, state, manifest_blob FROM versions").fetchall()
    states = {row[0]: row[1] for row in rows}
    scan = MarkerScan()
    for version_id, digest in sorted(markers.items()):
        state = states.get(version_id)
        if state is None:
            scan.unknown[version_id] = digest
        elif state == "DELETED":
            scan.deleted.append(version_id)
    for version_id, state, manifest_blob in rows:
        if state == "COMMITTED" and manifest_blob and version_id not in markers:
            scan.missing.append((version_id, manifest_blob))
    return scan


def read_marked_manifest(parts: Parts, version_id: str, digest: str) -> dict[str, Any]:
    """The checked version document a marker names.

    Raises:
        ManifestDecodeError: the blob is not that version's document.
        CastoreError, OSError: the blob is missing, damaged or too large.
    """
    blobs = parts.blobs
    if blobs.stat(digest).size > MAX_MANIFEST_BYTES:
        raise ManifestDecodeError(f"manifest blob {digest} is larger than {MAX_MANIFEST_BYTES}")
    doc = decode_manifest(blobs.read_bytes(digest), algorithm=blobs.algorithm)
    if doc["id"] != version_id:
        raise ManifestDecodeError(
            f"the marker of {version_id} names a document of version {doc['id']}"
        )
    return doc


def unknown_roots(parts: Parts, unknown: dict[str, str]) -> set[str]:
    """Every blob the unknown versions need: their manifests and their entries' blobs."""
    keep: set[str] = set()
    for version_id, digest in unknown.items():
        keep.add(digest)
        try:
            doc = read_marked_manifest(parts, version_id, digest)
        except (CastoreError, OSError):
            continue  # fsck reports it; the manifest blob itself is still kept
        keep.update(d for _, d, _, ref, *_ in doc["entries"] if d is not None and ref is None)
    return keep
