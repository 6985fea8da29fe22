"""Maintenance queries of the catalogue: what gc, prune, fsck and stats ask of it.

Module functions over a :class:`~castore.index.database.Database` (a
:class:`~castore.index.catalog.Catalog` is one), kept apart from the everyday reads and writes.
Raw SQL: aggregates, ``PRAGMA`` checks and set differences that sqlite-utils has no API for.
Nothing here knows blob files.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from castore.index.database import Database
from castore.index.queries import LINKED, LIVE, VERSION_SELECT

__all__ = [
    "bad_aliases",
    "damaged_version_ids",
    "digests_used_only_by",
    "has_table",
    "integrity_problems",
    "prune_candidates",
    "referenced_digest_sizes",
    "set_damaged",
    "stale_drafts",
    "store_counts",
    "users_of_digests",
]

_ALIVE_STATES = "('COMMITTED', 'PENDING')"


def referenced_digest_sizes(catalog: Database) -> dict[str, int]:
    """``{digest: content size}`` of every blob a committed or pending version needs.

    Manifest blobs map to -1 (their size is not recorded in the catalogue).
    """
    found: dict[str, int] = {}
    rows = catalog.execute(
        "SELECT e.digest, MAX(e.size) FROM entries e JOIN versions v ON v.id = e.version_id "
        f"WHERE v.state IN {_ALIVE_STATES} AND e.digest IS NOT NULL AND e.ref IS NULL "
        "GROUP BY e.digest"
    )
    for digest, size in rows:
        found[digest] = int(size)
    for (digest,) in catalog.execute(
        f"SELECT manifest_blob FROM versions WHERE state IN {_ALIVE_STATES} "
        "AND manifest_blob IS NOT NULL"
    ):
        found.setdefault(digest, -1)
    return found


def digests_used_only_by(catalog: Database, version_ids: Iterable[str]) -> set[str]:
    """Blob digests that no committed or pending version outside ``version_ids`` needs."""
    ids = list(version_ids)
    if not ids:
        return set()
    marks = ", ".join("?" * len(ids))
    rows = catalog.execute(
        f"SELECT DISTINCT e.digest FROM entries e WHERE e.version_id IN ({marks}) "
        "AND e.digest IS NOT NULL AND e.ref IS NULL "
        f"UNION SELECT manifest_blob FROM versions WHERE id IN ({marks}) "
        "AND manifest_blob IS NOT NULL",
        [*ids, *ids],
    )
    theirs = {row[0] for row in rows}
    outside = {
        row[0]
        for row in catalog.execute(
            "SELECT DISTINCT e.digest FROM entries e JOIN versions v ON v.id = e.version_id "
            f"WHERE v.state IN {_ALIVE_STATES} AND e.ref IS NULL AND e.digest IS NOT NULL "
            f"AND v.id NOT IN ({marks}) UNION SELECT manifest_blob FROM versions "
            f"WHERE state IN {_ALIVE_STATES} AND manifest_blob IS NOT NULL AND id NOT IN ({marks})",
            [*ids, *ids],
        )
    }
    return theirs - outside


def stale_drafts(catalog: Database, created_before: int | None = None) -> list[dict[str, Any]]:
    """Drafts created before ``created_before`` (µs; None: all), oldest first, with their
    collection, ``file_count`` and ``size`` (the bytes of their files, which they hold)."""
    return catalog.all_rows(
        "SELECT d.version_id, d.pid, d.host, d.created_at, c.name AS collection, "
        "(SELECT COUNT(*) FROM entries e WHERE e.version_id = d.version_id) AS file_count, "
        "(SELECT COALESCE(SUM(e.size), 0) FROM entries e WHERE e.version_id = d.version_id) "
        "AS size FROM drafts d "
        "JOIN versions v ON v.id = d.version_id JOIN collections c ON c.id = v.collection_id "
        "WHERE d.created_at < ? ORDER BY d.created_at",
        (created_before if created_before is not None else 2**62,),
    )


def users_of_digests(
    catalog: Database, digests: Iterable[str]
) -> dict[str, list[tuple[str, str, str | None]]]:
    """``{digest: [(version id, "coll:vN" ref, path)]}`` for committed and pending versions.

    A manifest blob is listed with path None. Entries are not indexed by digest (migration
    step 10), so this is one scan of the live entries, filtered here, whatever the number of
    digests asked for.
    """
    wanted = set(digests)
    found: dict[str, list[tuple[str, str, str | None]]] = {}
    if not wanted:
        return found
    rows = catalog.execute(
        "SELECT e.digest, v.id, c.name, v.number, v.state, e.path FROM entries e "
        "JOIN versions v ON v.id = e.version_id JOIN collections c ON c.id = v.collection_id "
        f"WHERE e.ref IS NULL AND e.digest IS NOT NULL AND v.state IN {_ALIVE_STATES} "
        "UNION ALL SELECT v.manifest_blob, v.id, c.name, v.number, v.state, NULL "
        "FROM versions v JOIN collections c ON c.id = v.collection_id "
        f"WHERE v.manifest_blob IS NOT NULL AND v.state IN {_ALIVE_STATES}"
    )
    hits = [row for row in rows if row[0] in wanted]
    # by collection, then number (drafts, which have none, first), as ORDER BY did
    hits.sort(key=lambda row: (row[2], -1 if row[3] is None else row[3]))
    for digest, vid, coll, number, state, path in hits:
        ref = f"{coll}:v{number}" if state == "COMMITTED" else f"{coll}@draft:{vid}"
        found.setdefault(digest, []).append((vid, ref, path))
    return found


def set_damaged(catalog: Database, version_ids: Iterable[str], damaged: bool = True) -> int:
    """Flag versions as damaged (a blob they need is missing or corrupt), or clear the flag."""
    ids = list(version_ids)
    with catalog.write_txn():
        catalog.conn.executemany(
            "UPDATE versions SET damaged = ? WHERE id = ?", [(int(damaged), i) for i in ids]
        )
    return len(ids)


def damaged_version_ids(catalog: Database) -> set[str]:
    """Ids of versions flagged damaged."""
    return {row[0] for row in catalog.execute("SELECT id FROM versions WHERE damaged != 0")}


def has_table(catalog: Database, name: str) -> bool:
    """True when the catalogue has a table ``name`` (e.g. ``runs``, from a later migration)."""
    row = catalog.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


def prune_candidates(
    catalog: Database,
    *,
    collection: str | None,
    keep_last: int | None,
    only_unused: bool,
    now: int | None = None,
) -> list[dict[str, Any]]:
    """Committed versions a prune would delete, oldest first (see ``Store.prune``).

    Versions beyond the newest ``keep_last`` of their collection and/or (both given: and) that
    no run used or produced; a version holding any alias (``latest`` included) is never a
    candidate.
    """
    params: dict[str, Any] = {"now": now or catalog.now()}
    where = [
        "v.state = 'COMMITTED'",
        LIVE,
        "NOT EXISTS (SELECT 1 FROM aliases a WHERE a.version_id = v.id)",
        f"NOT EXISTS ({LINKED})",
    ]
    if collection is not None:
        where.append("c.name = :coll")
        params["coll"] = collection
    if keep_last is not None:
        where.append(
            "(SELECT COUNT(*) FROM versions n WHERE n.collection_id = v.collection_id "
            "AND n.state = 'COMMITTED' AND n.number > v.number "
            f"AND {LIVE.replace('v.', 'n.')}) >= :keep"
        )
        params["keep"] = keep_last
    if only_unused:
        # "Unused" as ZenML means it: no run used it and no run produced it.
        where.append("v.producer IS NULL")
        where.append("NOT EXISTS (SELECT 1 FROM run_edges u WHERE u.version_id = v.id)")
    return catalog.all_rows(
        f"{VERSION_SELECT} WHERE {' AND '.join(where)} ORDER BY c.name, v.number", params
    )


def integrity_problems(catalog: Database) -> list[str]:
    """What ``PRAGMA integrity_check`` and ``foreign_key_check`` report (empty when sound)."""
    problems = [
        str(row[0])
        for row in catalog.execute("PRAGMA integrity_check")
        if str(row[0]).lower() != "ok"
    ]
    for row in catalog.execute("PRAGMA foreign_key_check"):
        problems.append(f"row {row[1]} of table {row[0]} refers to a missing row of {row[2]}")
    return problems


def bad_aliases(catalog: Database) -> list[dict[str, Any]]:
    """Aliases pointing at a version that is not committed (or not in their collection)."""
    return catalog.all_rows(
        "SELECT a.alias, a.version_id, c.name AS collection, v.state, v.number FROM aliases a "
        "JOIN collections c ON c.id = a.collection_id "
        "LEFT JOIN versions v ON v.id = a.version_id "
        "WHERE v.id IS NULL OR v.state != 'COMMITTED' OR v.collection_id != a.collection_id"
    )


def store_counts(catalog: Database) -> dict[str, int]:
    """Collections, committed versions, logical bytes and unique content bytes."""
    with catalog.read_txn():
        collections = catalog.execute("SELECT COUNT(*) FROM collections").fetchone()[0]
        versions, logical = catalog.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM versions WHERE state = 'COMMITTED'"
        ).fetchone()
        unique = catalog.execute(
            "SELECT COALESCE(SUM(s), 0) FROM (SELECT MAX(e.size) AS s FROM entries e "
            "JOIN versions v ON v.id = e.version_id WHERE v.state = 'COMMITTED' "
            "AND e.digest IS NOT NULL AND e.ref IS NULL GROUP BY e.digest)"
        ).fetchone()[0]
    return {
        "collections": int(collections),
        "versions": int(versions),
        "logical_bytes": int(logical),
        "unique_bytes": int(unique),
    }
