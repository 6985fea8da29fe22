"""Version writes of the catalogue: a version's life from draft to commit to deletion, and tags.

A version starts ``PENDING`` with a ``drafts`` record, becomes ``COMMITTED`` with the next number
of its collection (which moves ``latest``), and ends ``DELETED`` (its entries, tags and aliases
dropped) or, while pending, discarded. Functions over a
:class:`~castore.index.database.Database`; the reads are in ``queries``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

from castore._process import hostname
from castore.errors import AliasConflictError
from castore.index.aliases import PIN, remove_alias, repoint_latest, set_alias, stored_aliases_of
from castore.index.database import Database
from castore.index.ids import uuid7
from castore.index.queries import get_version
from castore.refs import LATEST

__all__ = [
    "add_tags",
    "commit_version",
    "create_version",
    "delete_version",
    "discard_draft",
    "links_to",
    "remove_tags",
    "set_ttl",
    "tags_of",
    "update_version",
]


def create_version(
    db: Database,
    collection_id: int,
    *,
    description: str | None = None,
    metadata: dict[str, Any] | None = None,
    tags: Iterable[str] = (),
    base_version: str | None = None,
    producer: str | None = None,
) -> str:
    """Insert a ``PENDING`` version row and its draft record; return the new id."""
    version_id = uuid7()
    now = db.now()
    with db.write_txn():
        db.insert(
            "versions",
            {
                "id": version_id,
                "collection_id": collection_id,
                "state": "PENDING",
                "description": description,
                "metadata": json.dumps(metadata or {}, sort_keys=True),
                "created_at": now,
                "updated_at": now,
                "producer": producer,
            }
        )
        db.insert(
            "drafts",
            {
                "version_id": version_id,
                "base_version": base_version,
                "pid": os.getpid(),
                "host": hostname(),
                "created_at": now,
            }
        )
        add_tags(db, version_id, tags)
    return version_id


def update_version(db: Database, version_id: str, **fields: Any) -> None:
    """Change the given columns of a version (``metadata`` is JSON-encoded)."""
    if "metadata" in fields:
        fields["metadata"] = json.dumps(fields["metadata"], sort_keys=True)
    fields["updated_at"] = db.now()
    sets = ", ".join(f"{key} = ?" for key in fields)
    with db.write_txn():
        db.execute(f"UPDATE versions SET {sets} WHERE id = ?", (*fields.values(), version_id))


def set_ttl(db: Database, version_id: str, ttl: float | None) -> None:
    """Set a version's TTL in seconds (None: never expires); ``expires_at`` follows."""
    with db.write_txn():
        row = get_version(db, version_id)
        if row is None:
            return
        expires = None if ttl is None else row["created_at"] + int(ttl * 1_000_000)
        update_version(db, version_id, ttl=ttl, expires_at=expires)
        db.execute(PIN, (version_id,))


def commit_version(
    db: Database,
    version_id: str,
    *,
    digest: str,
    size: int,
    file_count: int,
    ttl: float | None,
) -> int:
    """Turn a pending version into ``COMMITTED`` with the next number; move ``latest``.

    Must run inside :meth:`~castore.index.database.Database.write_txn`; the number comes from
    the collection's counter, so numbers are dense and never reused even across deletions.
    """
    row = get_version(db, version_id)
    assert row is not None and row["state"] == "PENDING"
    coll = db.execute(
        "UPDATE collections SET next_number = next_number + 1 WHERE id = ? "
        "RETURNING next_number - 1 AS number",
        (row["collection_id"],),
    ).fetchone()
    number = int(coll["number"])
    now = db.now()
    expires = None if ttl is None else now + int(ttl * 1_000_000)
    db.execute(
        "UPDATE versions SET state = 'COMMITTED', number = ?, digest = ?, size = ?, "
        "file_count = ?, created_at = ?, updated_at = ?, ttl = ?, expires_at = ?, "
        "hide_at = ? WHERE id = ?",
        (number, digest, size, file_count, now, now, ttl, expires, expires, version_id),
    )
    db.execute("DELETE FROM drafts WHERE version_id = ?", (version_id,))
    set_alias(db, row["collection_id"], LATEST, version_id)
    return number


def links_to(db: Database, version_id: str) -> list[dict[str, Any]]:
    """The committed versions that link to ``version_id``, by collection and number."""
    return db.all_rows(
        "SELECT v.*, c.name AS collection, c.type AS type FROM versions v "
        "JOIN collections c ON c.id = v.collection_id "
        "WHERE v.link_source = ? AND v.state = 'COMMITTED' ORDER BY c.name, v.number",
        (version_id,),
    )


def delete_version(
    db: Database, version_id: str, *, delete_aliases: bool = False, delete_links: bool = False
) -> None:
    """Mark a version ``DELETED``, drop its entries and aliases; repoint ``latest``.

    Raises:
        AliasConflictError: it holds aliases other than ``latest`` and not
            ``delete_aliases``, or versions link to it and not ``delete_links``.
    """
    with db.write_txn():
        row = get_version(db, version_id)
        if row is None or row["state"] == "DELETED":
            return
        if row["state"] == "PENDING":
            db.execute("DELETE FROM versions WHERE id = ?", (version_id,))
            return
        links = links_to(db, version_id)
        if links and not delete_links:
            named = ", ".join(f"{r['collection']}:v{r['number']}" for r in links)
            raise AliasConflictError(
                f"version {row['collection']}:v{row['number']} is linked from {named}; "
                "unlink them first or pass delete_links=True",
                alias=named,
                ref=f"{row['collection']}:v{row['number']}",
            )
        for link in links:
            delete_version(db, link["id"], delete_aliases=True)
        aliases = stored_aliases_of(db, version_id)
        user = [a for a in aliases if a != LATEST]
        if user and not delete_aliases:
            raise AliasConflictError(
                f"version {row['collection']}:v{row['number']} holds aliases "
                f"{', '.join(user)}; remove them first or pass delete_aliases=True",
                alias=user[0],
                ref=f"{row['collection']}:v{row['number']}",
            )
        for alias in aliases:
            remove_alias(db, row["collection_id"], alias)
        db.execute("DELETE FROM entries WHERE version_id = ?", (version_id,))
        db.execute("DELETE FROM version_tags WHERE version_id = ?", (version_id,))
        db.execute(
            "UPDATE versions SET state = 'DELETED', updated_at = ? WHERE id = ?",
            (db.now(), version_id),
        )
        if LATEST in aliases:
            repoint_latest(db, row["collection_id"])


def discard_draft(db: Database, version_id: str) -> None:
    """Delete a pending version with its entries and draft record."""
    with db.write_txn():
        db.execute("DELETE FROM versions WHERE id = ? AND state = 'PENDING'", (version_id,))


# -- tags ------------------------------------------------------------------------------------


def tags_of(db: Database, version_id: str) -> list[str]:
    """A version's tags, sorted."""
    rows = db.execute(
        "SELECT tag FROM version_tags WHERE version_id = ? ORDER BY tag", (version_id,)
    )
    return [row["tag"] for row in rows]


def add_tags(db: Database, version_id: str, tags: Iterable[str]) -> None:
    """Add tags to a version (existing ones are kept)."""
    tags = list(tags)
    if not tags:
        return
    with db.write_txn():
        # Raw SQL: version_tags is WITHOUT ROWID, and sqlite-utils' insert_all(ignore=True)
        # asks for the rowid of a conflicting row ("no such column: rowid").
        db.conn.executemany(
            "INSERT OR IGNORE INTO version_tags (version_id, tag) VALUES (?, ?)",
            [(version_id, tag) for tag in tags],
        )
        db.execute("UPDATE versions SET updated_at = ? WHERE id = ?", (db.now(), version_id))


def remove_tags(db: Database, version_id: str, tags: Iterable[str]) -> None:
    """Remove tags from a version (missing ones are ignored)."""
    with db.write_txn():
        db.conn.executemany(
            "DELETE FROM version_tags WHERE version_id = ? AND tag = ?",
            [(version_id, tag) for tag in tags],
        )
        db.execute("UPDATE versions SET updated_at = ? WHERE id = ?", (db.now(), version_id))
