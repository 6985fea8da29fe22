"""Collections of the catalogue: named, typed groups of numbered versions.

Functions over a :class:`~castore.index.database.Database`. Deleting a collection removes its
versions, entries, aliases and tags by ``ON DELETE CASCADE``.
"""

from __future__ import annotations

import json
from typing import Any

from castore.index.database import Database

__all__ = [
    "delete_collection",
    "ensure_collection",
    "get_collection",
    "get_collection_by_id",
    "list_collections",
    "list_collections_page",
    "update_collection",
]


def get_collection(db: Database, name: str) -> dict[str, Any] | None:
    """The collection row named ``name``, or None."""
    return db.one("SELECT * FROM collections WHERE name = ?", (name,))


def get_collection_by_id(db: Database, collection_id: int) -> dict[str, Any] | None:
    """The collection row with this id, or None."""
    return db.one("SELECT * FROM collections WHERE id = ?", (collection_id,))


def ensure_collection(
    db: Database,
    name: str,
    type: str | None,
    *,
    default_type: str = "dataset",
) -> dict[str, Any]:
    """The collection ``name``, created with ``type`` when missing (inside a write txn).

    Raises:
        ValueError: the collection exists with another type.
    """
    with db.write_txn():
        row = get_collection(db, name)
        if row is None:
            now = db.now()
            db.insert(
                "collections",
                {"name": name, "type": type or default_type, "created_at": now, "updated_at": now}
            )
            row = get_collection(db, name)
            assert row is not None
        elif type is not None and row["type"] != type:
            raise ValueError(
                f"collection {name!r} has type {row['type']!r}, not {type!r}; a "
                "collection's type is fixed (change it with collection.update(type=...))"
            )
        return row


def list_collections(db: Database, type: str | None = None) -> list[dict[str, Any]]:
    """Every collection (of ``type``), by name."""
    if type is None:
        return db.all_rows("SELECT * FROM collections ORDER BY name")
    return db.all_rows("SELECT * FROM collections WHERE type = ? ORDER BY name", (type,))


def list_collections_page(
    db: Database, type: str | None = None, *, limit: int | None = None, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """One page of the collections (of ``type``) by name, and how many there are."""
    where, params = ("WHERE type = ?", [type]) if type is not None else ("", [])
    sql = f"SELECT * FROM collections {where} ORDER BY name LIMIT ? OFFSET ?"
    rows = db.all_rows(sql, [*params, -1 if limit is None else limit, offset])
    if offset == 0 and (limit is None or len(rows) < limit):
        return rows, len(rows)
    total = db.execute(f"SELECT COUNT(*) FROM collections {where}", params).fetchone()[0]
    return rows, int(total)


def update_collection(db: Database, collection_id: int, **fields: Any) -> None:
    """Change the given columns of a collection (``tags``/``metadata`` are JSON-encoded)."""
    if not fields:
        return
    for key in ("tags", "metadata"):
        if key in fields:
            fields[key] = json.dumps(fields[key], sort_keys=True)
    fields["updated_at"] = db.now()
    sets = ", ".join(f"{key} = ?" for key in fields)
    with db.write_txn():
        db.execute(f"UPDATE collections SET {sets} WHERE id = ?", (*fields.values(), collection_id))


def delete_collection(db: Database, collection_id: int) -> None:
    """Delete a collection with all its versions, entries, aliases and tags."""
    with db.write_txn():
        db.execute("DELETE FROM collections WHERE id = ?", (collection_id,))
