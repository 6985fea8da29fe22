"""Entries of the catalogue: the ``(path, digest, size, ref, executable)`` files of a version.

Functions over a :class:`~castore.index.database.Database`. The entry writes are the catalogue's
hot path (one row per file of every version), so they stay raw ``executemany`` and
``INSERT … SELECT``: at 20,000 rows ``put_entries`` took 232-334 ms against 280-453 ms for
sqlite-utils' ``insert_all(replace=True)`` (medians of 5, two runs on a loaded 2-core machine),
and ``entries`` is a WITHOUT ROWID table, which sqlite-utils does not fully support.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from castore.index.database import Database

__all__ = [
    "EntryRow",
    "EntryRowLike",
    "copy_entries",
    "delete_all_entries",
    "delete_entries",
    "entry_totals",
    "get_entry",
    "iter_entries",
    "put_entries",
    "referenced_digests",
]

#: ``(path, digest, size, ref, executable)``: plain tuples, since a version may hold millions.
EntryRow = tuple[str, str | None, int, str | None, bool]
#: Also accepted on writes: a ``(path, digest, size, ref)`` row, not executable.
EntryRowLike = EntryRow | tuple[str, str | None, int, str | None]


def put_entries(db: Database, version_id: str, rows: Iterable[EntryRowLike]) -> None:
    """Insert or replace ``(path, digest, size, ref[, executable])`` entries of a version."""
    with db.write_txn():
        db.conn.executemany(
            "INSERT OR REPLACE INTO entries (version_id, path, digest, size, ref, executable) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            ((version_id, *row[:4], 1 if any(row[4:]) else 0) for row in rows),
        )


def delete_entries(db: Database, version_id: str, paths: Iterable[str]) -> None:
    """Remove entries of a version by exact path."""
    with db.write_txn():
        db.conn.executemany(
            "DELETE FROM entries WHERE version_id = ? AND path = ?",
            [(version_id, path) for path in paths],
        )


def delete_all_entries(db: Database, version_id: str) -> None:
    """Remove every entry of a version."""
    with db.write_txn():
        db.execute("DELETE FROM entries WHERE version_id = ?", (version_id,))


def copy_entries(db: Database, source: str, target: str) -> None:
    """Copy every entry of version ``source`` into version ``target``."""
    # One INSERT … SELECT: the rows never leave SQLite (insert_all would read them all into
    # Python first).
    with db.write_txn():
        db.execute(
            "INSERT OR REPLACE INTO entries (version_id, path, digest, size, ref, executable) "
            "SELECT ?, path, digest, size, ref, executable FROM entries WHERE version_id = ?",
            (target, source),
        )


def iter_entries(db: Database, version_id: str, prefix: str | None = None) -> Iterator[EntryRow]:
    """``(path, digest, size, ref, executable)`` of a version's entries, by path, streamed."""
    sql = "SELECT path, digest, size, ref, executable FROM entries WHERE version_id = ?"
    params: list[Any] = [version_id]
    if prefix:
        sql += " AND path >= ? AND path < ?"
        params += [prefix, prefix + "\U0010ffff"]
    # A cursor of its own, so callers may run other statements while iterating.
    cursor = db.conn.cursor()
    try:
        cursor.execute(sql + " ORDER BY path", params)
        for row in cursor:
            yield (row[0], row[1], row[2], row[3], bool(row[4]))
    finally:
        cursor.close()


def entry_totals(db: Database, version_id: str) -> tuple[int, int]:
    """The number of entries of a version and the sum of their sizes."""
    count, size = db.execute(
        "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM entries WHERE version_id = ?",
        (version_id,),
    ).fetchone()
    return int(count), int(size)


def get_entry(db: Database, version_id: str, path: str) -> EntryRow:
    """One entry of a version; ``KeyError`` if absent."""
    row = db.execute(
        "SELECT path, digest, size, ref, executable FROM entries "
        "WHERE version_id = ? AND path = ?",
        (version_id, path),
    ).fetchone()
    if row is None:
        raise KeyError(path)
    return (row[0], row[1], row[2], row[3], bool(row[4]))


def referenced_digests(db: Database) -> set[str]:
    """Every digest a committed or pending version needs (entries and manifest blobs)."""
    rows = db.execute(
        "SELECT DISTINCT e.digest FROM entries e JOIN versions v ON v.id = e.version_id "
        "WHERE v.state IN ('COMMITTED', 'PENDING') AND e.digest IS NOT NULL AND e.ref IS NULL "
        "UNION SELECT manifest_blob FROM versions "
        "WHERE state IN ('COMMITTED', 'PENDING') AND manifest_blob IS NOT NULL"
    )
    return {row[0] for row in rows}
