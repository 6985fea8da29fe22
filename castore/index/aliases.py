"""Aliases of the catalogue: named pointers to versions, and the history of their moves.

A user alias pins its version against expiry (``versions.hide_at``); ``latest`` does not, and
readers find it on the newest live version even when the stored row still points at one that
has just expired (reads never write; gc repoints it). Functions over a
:class:`~castore.index.database.Database`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from castore import _faults
from castore.index.database import Database
from castore.index.queries import newest_live
from castore.models import AliasEvent
from castore.refs import LATEST, format_ref

__all__ = [
    "alias_events",
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
    db.insert(
        "alias_history",
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
    """Every recorded move of the collection's aliases (of ``alias``), oldest first, as rows.

    The stored rows (version ids, microseconds); :func:`alias_events` gives the records.
    """
    sql = "SELECT * FROM alias_history WHERE collection_id = ?"
    params: list[Any] = [collection_id]
    if alias is not None:
        sql += " AND alias = ?"
        params.append(alias)
    return db.all_rows(sql + " ORDER BY at, id", params)


def alias_events(db: Database, collection_id: int, alias: str | None = None) -> list[AliasEvent]:
    """Every move of the collection's aliases (of ``alias``), oldest first.

    Versions are given as references (``"mnist:v3"``); a version whose row is gone (purged by
    gc) keeps its id, the only name left for it.
    """
    sql = (
        "SELECT h.at, h.alias, h.from_version, h.to_version, "
        "fc.name AS from_collection, fv.number AS from_number, "
        "tc.name AS to_collection, tv.number AS to_number FROM alias_history h "
        "LEFT JOIN versions fv ON fv.id = h.from_version "
        "LEFT JOIN collections fc ON fc.id = fv.collection_id "
        "LEFT JOIN versions tv ON tv.id = h.to_version "
        "LEFT JOIN collections tc ON tc.id = tv.collection_id "
        "WHERE h.collection_id = ?"
    )
    params: list[Any] = [collection_id]
    if alias is not None:
        sql += " AND h.alias = ?"
        params.append(alias)
    return [
        AliasEvent(
            at=datetime.fromtimestamp(row["at"] / 1_000_000, tz=UTC),
            alias=row["alias"],
            from_version=_ref(row["from_version"], row["from_collection"], row["from_number"]),
            to_version=_ref(row["to_version"], row["to_collection"], row["to_number"]),
        )
        for row in db.execute(sql + " ORDER BY h.at, h.id", params)
    ]


def _ref(version_id: str | None, collection: str | None, number: int | None) -> str | None:
    if version_id is None:
        return None
    if collection is None or number is None:
        return version_id
    return format_ref(collection, number)
