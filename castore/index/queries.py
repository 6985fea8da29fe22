"""Version queries of the catalogue: the WHERE and ORDER BY clauses of ``Store.versions``.

Pure SQL text building, kept apart from ``catalog.py`` (connections, transactions, rows).
Every filter has an index behind it; see ``_migrations._v3`` for the listing indexes.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["LIVE", "SORT_KEYS", "build_where", "order_by"]

#: Versions hidden because they expired: ``hide_at`` is ``expires_at`` unless a user alias pins
#: the version (see ``_migrations._v3``); kept up to date by every write that changes either.
LIVE = "(v.hide_at IS NULL OR v.hide_at > :now)"
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
    if alias is not None:
        if collection is not None:
            filters.append(
                "EXISTS (SELECT 1 FROM aliases a WHERE a.version_id = v.id AND a.alias = :alias)"
            )
        else:
            filters.append("v.id IN (SELECT version_id FROM aliases WHERE alias = :alias)")
        params["alias"] = alias
    others = any(f is not None for f in (collection, type, alias)) or bool(tags)
    for i, (key, value) in enumerate((metadata or {}).items()):
        path = '$."' + str(key).replace('"', '\\"') + '"'
        params[f"mk{i}"] = path
        expr = f"json_extract(v.metadata, :mk{i})"
        if value is None:
            filters.append(f"({expr} IS NULL)")
        elif isinstance(value, dict | list):
            filters.append(f"({expr} = json(:mv{i}))")
            params[f"mv{i}"] = json.dumps(value, separators=(",", ":"))
        elif others or match == "any":  # another filter drives: a key lookup per row
            filters.append(
                f"EXISTS (SELECT 1 FROM version_meta m WHERE m.version_id = v.id "
                f"AND m.key = :mn{i} AND m.value = :mv{i})"
            )
            params[f"mn{i}"] = str(key)
            params[f"mv{i}"] = int(value) if isinstance(value, bool) else value
        else:  # metadata alone: the (key, value) index of version_meta drives the search
            filters.append(
                f"v.id IN (SELECT version_id FROM version_meta WHERE key = :mn{i} "
                f"AND value = :mv{i})"
            )
            params[f"mn{i}"] = str(key)
            params[f"mv{i}"] = int(value) if isinstance(value, bool) else value
    if created_after is not None:
        filters.append("v.created_at >= :after")
        params["after"] = created_after
    if created_before is not None:
        filters.append("v.created_at < :before")
        params["before"] = created_before
    where = " AND ".join(always)
    if filters:
        joiner = " AND " if match == "all" else " OR "
        where += " AND (" + joiner.join(filters) + ")"
    return where, params


def order_by(sort: str | list[str]) -> str:
    """The ORDER BY clause of ``sort`` (keys of :data:`SORT_KEYS`, ``-`` for descending)."""
    keys = sort.split(",") if isinstance(sort, str) else list(sort)
    parts = []
    for key in keys:
        key = key.strip()
        desc = key.startswith("-")
        name = key.lstrip("+-")
        if name not in SORT_KEYS:
            raise ValueError(
                f"cannot sort versions by {name!r}; use one of {', '.join(SORT_KEYS)} "
                "(prefix '-' for descending)"
            )
        parts.append(f"{SORT_KEYS[name]} {'DESC' if desc else 'ASC'}")
    tie = "DESC" if keys and keys[0].strip().startswith("-") else "ASC"
    parts.append(f"v.id {tie}")
    return ", ".join(parts)
