"""Version queries of the catalogue: reads of version rows and the filters of ``Store.versions``.

Functions over a :class:`~castore.index.database.Database`; they only read. The WHERE and
ORDER BY builders are pure SQL text. Every filter has an index behind it; see
``migrations._v3`` for the listing indexes. Raw SQL throughout: these are the hot reads, with
joins, window-free paging and partial-index conditions that sqlite-utils' ``rows_where`` would
only pass through as text anyway.
"""

from __future__ import annotations

from typing import Any

from castore.index.database import Database
from castore.index.metaquery import meta_filter, meta_sort_key, split_operators
from castore.refs import LATEST

__all__ = [
    "LINKED",
    "LIVE",
    "SORT_KEYS",
    "VERSION_SELECT",
    "build_where",
    "count_versions",
    "count_versions_where",
    "expired_versions",
    "get_version",
    "latest_per_collection",
    "list_drafts",
    "live_version",
    "newest_live",
    "order_by",
    "parse_sort",
    "query_versions",
    "types",
    "version_by_alias",
    "version_by_number",
    "versions_by_digest_prefix",
]

#: Versions hidden because they expired: ``hide_at`` is ``expires_at`` unless a user alias pins
#: the version (see ``_migrations._v3``); kept up to date by every write that changes either.
LIVE = "(v.hide_at IS NULL OR v.hide_at > :now)"
#: A committed version links to ``v``: gc and prune keep a linked source (delete rules).
LINKED = "SELECT 1 FROM versions l WHERE l.link_source = v.id AND l.state = 'COMMITTED'"
#: A version row with its collection's ``name`` (as ``collection``) and ``type``.
VERSION_SELECT = (
    "SELECT v.*, c.name AS collection, c.type AS type FROM versions v "
    "JOIN collections c ON c.id = v.collection_id"
)
SORT_KEYS = {
    "created_at": "v.created_at",
    "updated_at": "v.updated_at",
    "size": "v.size",
    "number": "v.number",
    "name": "c.name",
}


def build_where(
    *,
    collection: str | list[str] | None,
    type: str | None,
    tags: list[str] | None,
    alias: str | None,
    state: str | None,
    metadata: dict[str, Any] | None,
    created_after: int | None,
    created_before: int | None,
    match: str,
    now: int,
    updated_after: int | None = None,
    updated_before: int | None = None,
    produced_by: str | None = None,
    used_by: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """The WHERE clause and parameters of a version query (``Store.versions`` filters).

    ``state`` and the hiding of expired versions always apply; ``match`` (``"all"`` or
    ``"any"``) combines the other filters. The shape of each filter is chosen for SQLite's
    planner: with a collection to drive the search, tags, aliases and metadata are checked per
    row; without one, ``IN (subquery)`` lists are computed once and may drive it.
    """
    params: dict[str, Any] = {"now": now}
    always = [LIVE]
    if state is not None:
        always.append("v.state = :state")
        params["state"] = state
    else:
        always.append("v.state != 'DELETED'")
    filters: list[str] = []
    if collection is not None:
        names = [collection] if isinstance(collection, str) else list(collection)
        keys = [f":coll{i}" for i in range(len(names))]
        filters.append(
            "v.collection_id IN (SELECT id FROM collections "
            f"WHERE name IN ({', '.join(keys) or 'NULL'}))"
        )
        params.update({k[1:]: n for k, n in zip(keys, names, strict=True)})
    if type is not None:
        filters.append("v.collection_id IN (SELECT id FROM collections WHERE type = :type)")
        params["type"] = type
    if tags:
        tag_keys = ", ".join(f":tag{i}" for i in range(len(tags)))
        params.update({f"tag{i}": t for i, t in enumerate(tags)})
        # With a collection to drive the search, check tags per row (cheap); without one,
        # an IN (subquery) is computed once and may drive the search itself.
        if match == "all" and collection is not None:
            filters.append(
                "(SELECT COUNT(*) FROM version_tags t WHERE t.version_id = v.id "
                f"AND t.tag IN ({tag_keys})) = {len(set(tags))}"
            )
        elif match == "all":
            filters.append(
                f"v.id IN (SELECT version_id FROM version_tags WHERE tag IN ({tag_keys}) "
                f"GROUP BY version_id HAVING COUNT(*) = {len(set(tags))})"
            )
        else:
            filters.append(
                f"v.id IN (SELECT version_id FROM version_tags WHERE tag IN ({tag_keys}))"
            )
    if alias == LATEST:
        # latest as readers find it (the newest live version of each collection), not the
        # stored row, which can still point at a version that has just expired.
        filters.append(
            "v.id IN (SELECT (SELECT v2.id FROM versions v2 WHERE v2.collection_id = c2.id "
            f"AND v2.state = 'COMMITTED' AND {LIVE.replace('v.', 'v2.')} "
            "ORDER BY v2.number DESC LIMIT 1) FROM collections c2)"
        )
    elif alias is not None:
        if collection is not None:
            filters.append(
                "EXISTS (SELECT 1 FROM aliases a WHERE a.version_id = v.id AND a.alias = :alias)"
            )
        else:
            filters.append("v.id IN (SELECT version_id FROM aliases WHERE alias = :alias)")
        params["alias"] = alias
    others = any(f is not None for f in (collection, type, alias)) or bool(tags)
    n = 0
    for key, value in (metadata or {}).items():
        ops = split_operators(str(key), value)
        for op, operand in ops:
            # Another filter drives the search (or OR joins them): check per row; alone, the
            # (key, value) index of version_meta drives it.
            per_row = others or match == "any" or n > 0
            filters.append(meta_filter(n, str(key), op, operand, params, per_row=per_row))
            n += 1
    if created_after is not None:
        filters.append("v.created_at >= :after")
        params["after"] = created_after
    if created_before is not None:
        filters.append("v.created_at < :before")
        params["before"] = created_before
    if updated_after is not None:
        filters.append("v.updated_at >= :uafter")
        params["uafter"] = updated_after
    if updated_before is not None:
        filters.append("v.updated_at < :ubefore")
        params["ubefore"] = updated_before
    # Runs (by id): the (run_id, kind, version_id) index of run_edges lists their versions.
    if produced_by is not None:
        filters.append(
            "v.id IN (SELECT version_id FROM run_edges WHERE run_id = :produced_by "
            "AND kind = 'produced')"
        )
        params["produced_by"] = produced_by
    if used_by is not None:
        filters.append(
            "v.id IN (SELECT version_id FROM run_edges WHERE run_id = :used_by AND kind = 'used')"
        )
        params["used_by"] = used_by
    where = " AND ".join(always)
    if filters:
        joiner = " AND " if match == "all" else " OR "
        where += " AND (" + joiner.join(filters) + ")"
    return where, params


def parse_sort(sort: str | list[str]) -> list[tuple[str, bool]]:
    """``[(key, descending)]`` of a sort argument (``"-created_at,name"`` or a list).

    Raises:
        ValueError: an unknown key (``metadata.KEY`` sorts by a metadata key).
    """
    keys = sort.split(",") if isinstance(sort, str) else list(sort)
    found = []
    for key in keys:
        key = key.strip()
        name = key.lstrip("+-")
        if name not in SORT_KEYS and meta_sort_key(name) is None:
            raise ValueError(
                f"cannot sort versions by {name!r}; use one of {', '.join(SORT_KEYS)} or "
                "metadata.KEY (prefix '-' for descending)"
            )
        found.append((name, key.startswith("-")))
    return found


def order_by(sort: str | list[str], params: dict[str, Any] | None = None) -> str:
    """The ORDER BY clause of ``sort``; a ``metadata.KEY`` sorts on the join ``ms{i}``.

    Versions without the key come last in both directions (``(ms.value IS NULL)`` first).
    """
    keys = parse_sort(sort)
    parts = []
    for i, (name, desc) in enumerate(keys):
        direction = "DESC" if desc else "ASC"
        meta = meta_sort_key(name)
        if meta is None:
            parts.append(f"{SORT_KEYS[name]} {direction}")
        else:
            if params is not None:
                params[f"sk{i}"] = meta
            parts.append(f"(ms{i}.value IS NULL) ASC, ms{i}.value {direction}")
    tie = "DESC" if keys and keys[0][1] else "ASC"
    parts.append(f"v.id {tie}")
    return ", ".join(parts)


def _meta_joins(sort: str | list[str]) -> str:
    return "".join(
        f" LEFT JOIN version_meta ms{i} ON ms{i}.version_id = v.id AND ms{i}.key = :sk{i}"
        for i, (name, _) in enumerate(parse_sort(sort))
        if meta_sort_key(name) is not None
    )


# -- single versions -------------------------------------------------------------------------


def get_version(db: Database, version_id: str) -> dict[str, Any] | None:
    """A version row (with ``collection`` and ``type``), or None."""
    return db.one(f"{VERSION_SELECT} WHERE v.id = ?", (version_id,))


def live_version(db: Database, version_id: str, *, now: int | None = None) -> dict[str, Any] | None:
    """A committed, unexpired version by id, or None."""
    return db.one(
        f"{VERSION_SELECT} WHERE v.id = :id AND v.state = 'COMMITTED' AND {LIVE}",
        {"id": version_id, "now": now or db.now()},
    )


def version_by_number(
    db: Database, collection_id: int, number: int, *, now: int | None = None
) -> dict[str, Any] | None:
    """The live committed version ``number`` of a collection, or None."""
    return db.one(
        f"{VERSION_SELECT} WHERE v.collection_id = :c AND v.number = :n "
        f"AND v.state = 'COMMITTED' AND {LIVE}",
        {"c": collection_id, "n": number, "now": now or db.now()},
    )


def version_by_alias(
    db: Database, collection_id: int, alias: str, *, now: int | None = None
) -> dict[str, Any] | None:
    """The live version an alias points at; for ``latest``, the newest live version."""
    now = now or db.now()
    row = db.one(
        f"{VERSION_SELECT} JOIN aliases a ON a.version_id = v.id "
        f"WHERE a.collection_id = :c AND a.alias = :a AND v.state = 'COMMITTED' AND {LIVE}",
        {"c": collection_id, "a": alias, "now": now},
    )
    if row is None and alias == LATEST:
        # latest expired: reads never write, so show the newest version still alive.
        row = newest_live(db, collection_id, now=now)
    return row


def newest_live(
    db: Database, collection_id: int, *, now: int | None = None
) -> dict[str, Any] | None:
    """The highest-numbered live committed version of a collection."""
    return db.one(
        f"{VERSION_SELECT} WHERE v.collection_id = :c AND v.state = 'COMMITTED' "
        f"AND {LIVE} ORDER BY v.number DESC LIMIT 1",
        {"c": collection_id, "now": now or db.now()},
    )


def versions_by_digest_prefix(
    db: Database, collection_id: int, prefix: str, *, now: int | None = None
) -> list[dict[str, Any]]:
    """Live committed versions whose digest hex starts with ``prefix``, newest first."""
    # The digest is "algo:hex": match on the hex part with a range scan-friendly LIKE.
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return db.all_rows(
        f"{VERSION_SELECT} WHERE v.collection_id = :c AND v.state = 'COMMITTED' "
        f"AND substr(v.digest, instr(v.digest, ':') + 1) LIKE :p ESCAPE '\\' AND {LIVE} "
        "ORDER BY v.number DESC",
        {"c": collection_id, "p": escaped + "%", "now": now or db.now()},
    )


def list_drafts(db: Database, collection: str | None = None) -> list[dict[str, Any]]:
    """Pending drafts, oldest first, with ``age`` in seconds."""
    sql = (
        "SELECT d.*, v.*, c.name AS collection, c.type AS type FROM drafts d "
        "JOIN versions v ON v.id = d.version_id JOIN collections c ON c.id = v.collection_id"
    )
    params: list[Any] = []
    if collection is not None:
        sql += " WHERE c.name = ?"
        params.append(collection)
    rows = db.all_rows(sql + " ORDER BY d.created_at", params)
    now = db.now()
    for row in rows:
        row["age"] = (now - row["created_at"]) / 1_000_000
    return rows


def expired_versions(db: Database, now: int | None = None) -> list[dict[str, Any]]:
    """Committed versions past ``expires_at`` holding no user alias (gc deletes them)."""
    return db.all_rows(
        f"{VERSION_SELECT} WHERE v.state = 'COMMITTED' AND v.expires_at IS NOT NULL "
        f"AND NOT {LIVE} AND NOT EXISTS ({LINKED}) ORDER BY v.expires_at",
        {"now": now or db.now()},
    )


# -- listings --------------------------------------------------------------------------------


def query_versions(
    db: Database,
    *,
    sort: str | list[str] = "-created_at",
    limit: int | None = 50,
    offset: int = 0,
    now: int | None = None,
    **filters: Any,
) -> tuple[list[dict[str, Any]], int]:
    """Version rows matching the filters of ``Store.versions``, and the total count."""
    where, params = build_where(now=now or db.now(), **filters)
    keys = parse_sort(sort)
    with db.read_txn():
        if meta_sort_key(keys[0][0]) is not None and len(keys) == 1:
            ids = _ids_by_meta(db, keys[0], where, params, filters, limit, offset)
        else:
            ids = _ids(db, sort, where, params, limit, offset)
        rows = _rows_of(db, ids)
        if offset == 0 and (limit is None or len(rows) < limit):
            total = len(rows)  # the whole result fits in this page
        else:
            total = count_versions_where(db, where, params)
    return rows, total


def _paging(sql: str, params: dict[str, Any], limit: int | None, offset: int) -> str:
    if limit is not None:
        params.update(limit=limit, offset=offset)
        return sql + " LIMIT :limit OFFSET :offset"
    if offset:
        params["offset"] = offset
        return sql + " LIMIT -1 OFFSET :offset"
    return sql


def _ids(
    db: Database,
    sort: str | list[str],
    where: str,
    params: dict[str, Any],
    limit: int | None,
    offset: int,
) -> list[int]:
    params = dict(params)
    order = order_by(sort, params)
    # Sort and page row ids only, then fetch the page's rows: sorting whole rows (metadata
    # included) of every match is what makes a wide listing slow.
    join = " JOIN collections c ON c.id = v.collection_id" if "c." in order else ""
    sql = f"SELECT v.rowid FROM versions v{join}{_meta_joins(sort)} WHERE {where} ORDER BY {order}"
    return [row[0] for row in db.execute(_paging(sql, params, limit, offset), params)]


def _ids_by_meta(
    db: Database,
    key: tuple[str, bool],
    where: str,
    params: dict[str, Any],
    filters: dict[str, Any],
    limit: int | None,
    offset: int,
) -> list[int]:
    """Ids sorted by one metadata key: the versions holding it in the order of the
    ``(key, value)`` index, then those without it (newest id first when descending)."""
    name, desc = key
    direction = "DESC" if desc else "ASC"
    params = {**params, "sk": meta_sort_key(name)}
    # With nothing narrowing the search, walk the index in order (CROSS JOIN fixes the loop
    # order) and stop at the page; a collection or alias narrows it better: let SQLite choose.
    narrow = filters.get("collection") is not None or filters.get("alias") is not None
    joiner = "JOIN" if narrow else "CROSS JOIN"
    having = (
        f"SELECT v.rowid FROM version_meta ms {joiner} versions v ON v.id = ms.version_id "
        f"WHERE ms.key = :sk AND {where} "
        f"ORDER BY ms.value {direction}, ms.version_id {direction}"
    )
    paged = dict(params)
    ids = [row[0] for row in db.execute(_paging(having, paged, limit, offset), paged)]
    if limit is not None and len(ids) >= limit:
        return ids
    if offset == 0 or ids:
        held = offset + len(ids)
    else:
        held = int(
            db.execute(
                "SELECT COUNT(*) FROM version_meta ms JOIN versions v ON v.id = ms.version_id "
                f"WHERE ms.key = :sk AND {where}",
                params,
            ).fetchone()[0]
        )
    lacking = (
        f"SELECT v.rowid FROM versions v WHERE {where} AND NOT EXISTS (SELECT 1 FROM "
        "version_meta x WHERE x.version_id = v.id AND x.key = :sk) "
        f"ORDER BY v.id {direction}"
    )
    rest_limit = None if limit is None else limit - len(ids)
    rest = _paging(lacking, params, rest_limit, max(0, offset - held))
    return ids + [row[0] for row in db.execute(rest, params)]  # _paging filled params


def _rows_of(db: Database, ids: list[int]) -> list[dict[str, Any]]:
    by_id: dict[int, dict[str, Any]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for row in db.execute(
            f"SELECT v.rowid AS _rowid, v.*, c.name AS collection, c.type AS type "
            f"FROM versions v JOIN collections c ON c.id = v.collection_id "
            f"WHERE v.rowid IN ({marks})",
            chunk,
        ):
            found = dict(row)
            by_id[found.pop("_rowid")] = found
    return [by_id[i] for i in ids]


def count_versions_where(db: Database, where: str, params: dict[str, Any]) -> int:
    """The number of versions matching a WHERE clause built by :func:`build_where`."""
    params = {k: v for k, v in params.items() if k not in ("limit", "offset", "sk")}
    row = db.execute(
        f"SELECT COUNT(*) FROM versions v WHERE {where}",  # no filter needs collections
        params,
    ).fetchone()
    return int(row[0])


def count_versions(db: Database, *, now: int | None = None, **filters: Any) -> int:
    """The number of versions matching the filters of ``Store.versions``."""
    where, params = build_where(now=now or db.now(), **filters)
    return count_versions_where(db, where, params)


def latest_per_collection(
    db: Database,
    type: str | None = None,
    *,
    now: int | None = None,
) -> list[dict[str, Any]]:
    """The newest live committed version of every collection (of ``type``), by name."""
    # One index seek per collection (collection_id, state, number DESC), not a scan.
    sql = (
        "SELECT v.*, c.name AS collection, c.type AS type FROM collections c "
        "JOIN versions v ON v.id = (SELECT v2.id FROM versions v2 "
        "WHERE v2.collection_id = c.id AND v2.state = 'COMMITTED' "
        f"AND {LIVE.replace('v.', 'v2.')} ORDER BY v2.number DESC LIMIT 1)"
    )
    params: dict[str, Any] = {"now": now or db.now()}
    if type is not None:
        sql += " WHERE c.type = :type"
        params["type"] = type
    return db.all_rows(sql + " ORDER BY c.name", params)


def types(db: Database, *, now: int | None = None) -> list[tuple[str, int, int]]:
    """``(type, collections, live committed versions)`` for every type in use."""
    rows = db.execute(
        "SELECT c.type, COUNT(DISTINCT c.id), "
        f"COUNT(v.id) FILTER (WHERE v.state = 'COMMITTED' AND {LIVE}) "
        "FROM collections c LEFT JOIN versions v ON v.collection_id = c.id "
        "GROUP BY c.type ORDER BY c.type",
        {"now": now or db.now()},
    )
    return [(row[0], int(row[1]), int(row[2])) for row in rows]
