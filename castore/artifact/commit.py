"""Starting a draft and committing it: the two catalogue transactions around the writing.

``commit_draft`` is the finalize of DESIGN.md invariant 2: blobs durably on disk, then one
``BEGIN IMMEDIATE`` transaction that numbers the version, moves ``latest`` and the aliases,
adds the tags and records the manifest blob (the version document of :mod:`castore.manifest`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from castore._parts import Parts
from castore.errors import NotFoundError
from castore.manifest import artifact_digest, iter_manifest
from castore.refs import LATEST, check_user_alias, tag_list, validate_name

__all__ = [
    "check_metadata",
    "commit_draft",
    "draft_from_version",
    "link_version",
    "start_draft",
]


def check_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Raise ``ValueError`` unless ``metadata`` is JSON-serialisable (and has no NaN)."""
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata must be JSON-serialisable (no NaN): {exc}") from exc
    return metadata


def start_draft(
    parts: Parts,
    collection: str,
    *,
    type: str | None,
    description: str | None,
    metadata: dict[str, Any] | None,
    tags: Iterable[str],
) -> tuple[str, str]:
    """Create the pending version row (and the collection on first use).

    Returns:
        The draft's version id and the collection's type.
    """
    parts.require_writable("start a draft")
    validate_name(collection)
    if type is not None:
        validate_name(type, "type")
    tags = tag_list(tags)
    if metadata is not None:
        check_metadata(metadata)
    catalog = parts.catalog
    with catalog.write_txn():
        coll = catalog.ensure_collection(collection, type)
        draft_id = catalog.create_version(
            coll["id"], description=description, metadata=metadata, tags=tags
        )
    return draft_id, str(coll["type"])


def draft_from_version(parts: Parts, version_id: str) -> str:
    """A draft pre-filled with the files, description and metadata of a committed version.

    Raises:
        NotFoundError: the version is not committed (a deleted one has no files left: a
            draft from it would finalize into an empty version).
    """
    parts.require_writable("start a draft")
    catalog = parts.catalog
    with catalog.write_txn():
        row = catalog.get_version(version_id)
        if row is None or row["state"] != "COMMITTED":
            state = "gone" if row is None else row["state"]
            ref = version_id if row is None or row["number"] is None else (
                f"{row['collection']}:v{row['number']}"
            )
            raise NotFoundError(
                f"cannot start a draft from {ref}: it is {state}, not COMMITTED", ref=ref
            )
        draft_id = catalog.create_version(
            row["collection_id"],
            description=row["description"],
            metadata=json.loads(row["metadata"] or "{}"),
            base_version=row["id"],
        )
        catalog.copy_entries(row["id"], draft_id)
    return draft_id


def _given_fields(draft: dict[str, Any], latest: dict[str, Any]) -> dict[str, Any]:
    """The draft's description (when set) and metadata (when not empty) that differ."""
    changes: dict[str, Any] = {}
    if draft["description"] is not None and draft["description"] != latest["description"]:
        changes["description"] = draft["description"]
    metadata = json.loads(draft["metadata"] or "{}")
    if metadata and metadata != json.loads(latest["metadata"] or "{}"):
        changes["metadata"] = metadata
    return changes


class _PieceReader(io.RawIOBase):
    """A binary reader over an iterator of byte pieces (the streamed version document)."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        super().__init__()
        self._pieces = pieces
        self._current = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._current:
            piece = next(self._pieces, None)
            if piece is None:
                return 0
            self._current = memoryview(piece)
        n = min(len(buffer), len(self._current))
        buffer[:n] = self._current[:n]
        self._current = self._current[n:]
        return n


def _write_document(parts: Parts, committed: dict[str, Any]) -> None:
    """Store the version document and its marker (inside the committing transaction).

    The entries are streamed from the catalogue in path order into the blob, so a version of
    a million files is never held in memory as rows or as one document.
    """
    catalog, blobs = parts.catalog, parts.blobs
    version_id = committed["id"]
    pieces = iter_manifest(
        committed, catalog.tags_of(version_id), catalog.iter_entries(version_id)
    )
    staged = blobs.stage_stream(io.BufferedReader(_PieceReader(pieces)), sync=blobs.durable)
    blobs.publish(staged)
    # The marker first: a catalogue lost or rolled back after this point still lets
    # gc keep, and repair restore, this version (storage/markers.py).
    parts.markers.write(version_id, str(staged.digest))
    catalog.update_version(version_id, manifest_blob=staged.digest)


def link_version(
    parts: Parts, source_id: str, collection: str, *, aliases: Iterable[str] = ()
) -> dict[str, Any]:
    """Link a committed version into ``collection`` (API.md "Linking versions").

    The link is a committed version of that collection with its own number, aliases and tags,
    whose entries are copies of the source's entry rows (so checkout, gc and fsck treat it as
    any version) and whose ``link_source`` names the source; no blob is copied. Linking a link
    links its source. Linking again into a collection whose live link to the same source
    exists returns that link, with ``aliases`` applied.

    Raises:
        NotFoundError: the source is not a live committed version.
        ValueError: ``collection`` is the source's own, or has another type.
        InvalidReferenceError: a malformed name or alias, or ``"latest"``.
    """
    parts.require_writable("link a version")
    validate_name(collection)
    aliases = [check_user_alias(a) for a in aliases]
    catalog = parts.catalog
    parts.blobs.sync()
    with catalog.write_txn():
        source = catalog.live_version(source_id)
        if source is not None and source["link_source"]:
            source = catalog.live_version(source["link_source"])
        if source is None:
            raise NotFoundError(
                f"cannot link {source_id}: it is not a live committed version", ref=source_id
            )
        if source["collection"] == collection:
            raise ValueError(
                f"{source['collection']}:v{source['number']} is already in {collection!r}; "
                "link into another collection"
            )
        coll = catalog.ensure_collection(collection, source["type"])
        existing = catalog.one(
            "SELECT id FROM versions WHERE collection_id = ? AND link_source = ? "
            "AND state = 'COMMITTED' ORDER BY number DESC LIMIT 1",
            (coll["id"], source["id"]),
        )
        if existing is not None:
            version_id = existing["id"]
        else:
            version_id = catalog.create_version(
                coll["id"], description=source["description"],
                metadata=json.loads(source["metadata"] or "{}"), base_version=source["id"],
            )
            catalog.copy_entries(source["id"], version_id)
            catalog.commit_version(
                version_id, digest=source["digest"], size=source["size"],
                file_count=source["file_count"], ttl=coll["default_ttl"],
            )
            catalog.execute(
                "UPDATE versions SET link_source = ? WHERE id = ?", (source["id"], version_id)
            )
            committed = catalog.get_version(version_id)
            assert committed is not None
            _write_document(parts, committed)
        for alias in aliases:
            catalog.set_alias(coll["id"], alias, version_id)
        row = catalog.get_version(version_id)
        assert row is not None
    return row


def commit_draft(
    parts: Parts,
    draft_id: str,
    collection: str,
    *,
    aliases: Iterable[str] = (),
    tags: Iterable[str] = (),
    producer: str | None = None,
) -> dict[str, Any]:
    """Commit the draft ``draft_id`` as the next version of its collection.

    The draft's entries are read from the catalogue as a stream (for the digest, then for
    the version document), never all at once.

    If the content equals the current latest version's, no version is made: the draft is
    dropped and ``aliases`` and ``tags`` go to that version.

    ``producer`` is the id of the run that made the draft (``run.draft()``): its
    ``produced`` edge is recorded in the same transaction as the commit, before the version
    document is written, so the document names the producer. A reused version keeps the
    producer it has, if any.

    Returns:
        The catalogue row of the committed (or reused) version.

    Raises:
        NotFoundError: the draft was discarded or swept meanwhile.
        InvalidReferenceError: an alias or tag is malformed, or an alias is ``"latest"``.
        RunError: the producing run has ended; nothing was committed.
    """
    aliases = [check_user_alias(a) for a in aliases]
    tags = tag_list(tags)
    catalog, blobs = parts.catalog, parts.blobs
    blobs.sync()  # every blob durable before the version that needs it commits
    with catalog.write_txn():
        row = catalog.get_version(draft_id)
        if row is None or row["state"] != "PENDING":
            raise NotFoundError(
                f"the draft {draft_id} of {collection!r} no longer exists", ref=draft_id
            )
        # Read inside the transaction: the entries hashed are the entries committed.
        digest = artifact_digest(blobs.algorithm, catalog.iter_entries(draft_id), presorted=True)
        coll = catalog.get_collection_by_id(row["collection_id"])
        assert coll is not None
        latest = catalog.version_by_alias(coll["id"], LATEST)
        # Same files written by another materializer (or none) load differently: a new version.
        reuse = (
            latest is not None
            and latest["digest"] == digest
            and latest.get("materializer") == row.get("materializer")
        )
        if latest is not None and reuse:
            version_id = latest["id"]
            catalog.discard_draft(draft_id)
            # The draft's description and metadata are applied like its aliases and tags
            # (a re-run that logs the same content with new metrics must not lose them).
            changes = _given_fields(row, latest)
            if changes:
                catalog.update_version(version_id, **changes)
        else:
            version_id = draft_id
            file_count, size = catalog.entry_totals(draft_id)
            catalog.commit_version(
                draft_id,
                digest=digest,
                size=size,
                file_count=file_count,
                ttl=coll["default_ttl"],
            )
        for alias in aliases:
            catalog.set_alias(coll["id"], alias, version_id)
        catalog.add_tags(version_id, tags)
        if producer is not None:
            catalog.add_edge(producer, version_id, "produced")
        committed = catalog.get_version(version_id)
        assert committed is not None
        if not reuse:
            _write_document(parts, committed)
        # Read back: the snapshot must carry the updated_at of the last write.
        committed = catalog.get_version(version_id)
        assert committed is not None
    return committed
