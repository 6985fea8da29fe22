"""Aliases of the catalogue: named pointers to versions, and the history of their moves.

A user alias pins its version against expiry (``versions.hide_at``); ``latest`` does not, and
readers find it on the newest live version even when the stored row still points at one that
has just expired (reads never write; gc repoints it). Functions over a
:class:`~castore.index.database.Database`.
"""

from __future__ import annotations

from typing import Any

from castore import _faults
from castore.index.database import Database
from castore.index.queries import newest_live
from castore.refs import LATEST

__all__ = [
    "alias_history",
    "aliases_of",
    "collection_aliases",
    "remove_alias",
    "repoint_latest",
    "set_alias",
    "stored_aliases_of",
]

#: Recompute a version's ``hide_at`` after its aliases changed (the triggers of
#: ``migrations._v3`` do the same for writers outside these functions).
PIN = (
    "UPDATE versions SET hide_at = CASE WHEN EXISTS (SELECT 1 FROM aliases a "
    f"WHERE a.version_id = versions.id AND a.alias != '{LATEST}') THEN NULL ELSE expires_at END "
    "WHERE id = ?"
)


def collection_aliases(db: Database, collection_id: int) -> dict[str, int | None]:
    """``{alias: version number}`` of a collection."""
    rows = db.execute(
        "SELECT a.alias, v.number FROM aliases a JOIN versions v ON v.id = a.version_id "
        "WHERE a.collection_id = ? AND a.alias != ? ORDER BY a.alias",
        (collection_id, LATEST),
    )
    found: dict[str, int | None] = {row["alias"]: row["number"] for row in rows}
    newest = newest_live(db, collection_id)  # see aliases_of: latest as readers find it
    if newest is not None:
        found[LATEST] = newest["number"]
    return dict(sorted(found.items()))


def stored_aliases_of(db: Database, version_id: str) -> list[str]:
    """The alias rows pointing at a version (``latest`` as stored), sorted."""
    rows = db.execute(
        "SELECT alias FROM aliases WHERE version_id = ? ORDER BY alias", (version_id,)
    )
    return [row["alias"] for row in rows]


def aliases_of(db: Database, version_id: str, *, now: int | None = None) -> list[str]:
    """The aliases pointing at a version, sorted.

    ``latest`` is reported where readers find it: on the newest live version. The stored
    row can still point at a version that has just expired, since reads never write (gc
    repoints it).
    """
    rows = db.execute(
        "SELECT alias FROM aliases WHERE version_id = ? AND alias != ? ORDER BY alias",
        (version_id, LATEST),
    )
    aliases = [row["alias"] for row in rows]
    own = db.one("SELECT collection_id FROM versions WHERE id = ?", (version_id,))
    if own is not None:
        newest = newest_live(db, own["collection_id"], now=now)
        if newest is not None and newest["id"] == version_id:
            aliases.append(LATEST)
    return sorted(aliases)


def _record_move(
    db: Database, collection_id: int, alias: str, old: str | None, new: str | None, at: int
) -> None:
    db.table("alias_history").insert(
        {
            "collection_id": collection_id,
            "alias": alias,
            "from_version": old,
            "to_version": new,
            "at": at,
        }
    )


def set_alias(db: Database, collection_id: int, alias: str, version_id: str) -> None:
    """Point ``alias`` at a version (moving it if needed) and record the move."""
    with db.write_txn():
        old = db.one(
            "SELECT version_id FROM aliases WHERE collection_id = ? AND alias = ?",
            (collection_id, alias),
        )
        previous = old["version_id"] if old else None
        if previous == version_id:
            return
        now = db.now()
        # Raw SQL: one upsert statement, so the update triggers of migrations._v3 fire on a
        # move (sqlite-utils' upsert is an INSERT OR IGNORE followed by an UPDATE).
        db.execute(
            "INSERT INTO aliases (collection_id, alias, version_id, updated_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (collection_id, alias) DO UPDATE SET "
            "version_id = excluded.version_id, updated_at = excluded.updated_at",
            (collection_id, alias, version_id, now),
        )
        _record_move(db, collection_id, alias, previous, version_id, now)
        if alias != LATEST:  # a user alias pins its version against expiry
            db.execute(PIN, (version_id,))
            if previous is not None:
                db.execute(PIN, (previous,))
        _faults.point("alias.moved")


def remove_alias(db: Database, collection_id: int, alias: str) -> bool:
    """Remove an alias; return whether it existed."""
    with db.write_txn():
        old = db.one(
            "SELECT version_id FROM aliases WHERE collection_id = ? AND alias = ?",
            (collection_id, alias),
        )
        if old is None:
            return False
        db.execute(
            "DELETE FROM aliases WHERE collection_id = ? AND alias = ?", (collection_id, alias)
        )
        _record_move(db, collection_id, alias, old["version_id"], None, db.now())
        if alias != LATEST:
            db.execute(PIN, (old["version_id"],))
        return True


def repoint_latest(db: Database, collection_id: int) -> None:
    """Point ``latest`` at the highest-numbered committed version (or remove it)."""
    with db.write_txn():
        row = db.one(
            "SELECT id FROM versions WHERE collection_id = ? AND state = 'COMMITTED' "
            "ORDER BY number DESC LIMIT 1",
            (collection_id,),
        )
        if row is None:
            remove_alias(db, collection_id, LATEST)
        else:
            set_alias(db, collection_id, LATEST, row["id"])


def alias_history(
    db: Database, collection_id: int, alias: str | None = None
) -> list[dict[str, Any]]:
    """Every recorded move of the collection's aliases (of ``alias``), oldest first."""
    sql = "SELECT * FROM alias_history WHERE collection_id = ?"
    params: list[Any] = [collection_id]
    if alias is not None:
        sql += " AND alias = ?"
        params.append(alias)
    return db.all_rows(sql + " ORDER BY at, id", params)
