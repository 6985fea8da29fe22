"""Finding versions: reference strings and the filters of ``store.versions()``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from castore.errors import MultipleResourcesFoundError, NotFoundError
from castore.handles.times import filter_time
from castore.index.catalog import Catalog
from castore.index.metaquery import split_operators
from castore.refs import LATEST, parse_ref

__all__ = ["resolve_ref", "version_filters"]


def version_filters(
    collection: str | None = None,
    type: str | None = None,
    tags: list[str] | None = None,
    alias: str | None = None,
    state: str | None = "COMMITTED",
    metadata: dict[str, Any] | None = None,
    created_after: datetime | str | None = None,
    created_before: datetime | str | None = None,
    match: str = "all",
    updated_after: datetime | str | None = None,
    updated_before: datetime | str | None = None,
) -> dict[str, Any]:
    """Check the filters of ``store.versions()`` and put them in the catalogue's terms.

    Raises:
        ValueError: an unknown ``match``, ``state`` or metadata operator.
        TypeError: a naive datetime, or a time that is neither a datetime nor an ISO string.
    """
    if match not in ("all", "any"):
        raise ValueError(f"match must be 'all' or 'any', not {match!r}")
    if state is not None and state not in ("PENDING", "COMMITTED", "DELETED"):
        raise ValueError(
            f"state must be 'PENDING', 'COMMITTED', 'DELETED' or None, not {state!r}"
        )
    if isinstance(tags, str):
        tags = [tags]
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
        for key, value in metadata.items():
            split_operators(str(key), value)  # unknown operators fail here, before any SQL
    return {
        "collection": collection,
        "type": type,
        "tags": list(tags) if tags else None,
        "alias": alias,
        "state": state,
        "metadata": metadata,
        "created_after": filter_time(created_after, "created_after"),
        "created_before": filter_time(created_before, "created_before"),
        "updated_after": filter_time(updated_after, "updated_after"),
        "updated_before": filter_time(updated_before, "updated_before"),
        "match": match,
    }


def resolve_ref(catalog: Catalog, ref: str) -> dict[str, Any]:
    """The catalogue row a reference string names (``API.md`` "Reference strings").

    Raises:
        InvalidReferenceError: malformed reference.
        NotFoundError: nothing matches (or an asserted digest differs).
        MultipleResourcesFoundError: a digest prefix matches versions of different content.
    """
    parsed = parse_ref(ref)
    if parsed.version_id is not None:
        row = catalog.live_version(parsed.version_id)
        if row is None:
            raise NotFoundError(f"no version with id {parsed.version_id}", ref=ref)
        return row
    assert parsed.collection is not None
    coll = catalog.get_collection(parsed.collection)
    if coll is None:
        raise NotFoundError(
            f"no collection named {parsed.collection!r}; list them with store.collections()",
            ref=ref,
        )
    if parsed.number is not None:
        row = catalog.version_by_number(coll["id"], parsed.number)
        if row is None:
            raise NotFoundError(f"{parsed.collection} has no version v{parsed.number}", ref=ref)
    elif parsed.alias is not None:
        row = catalog.version_by_alias(coll["id"], parsed.alias)
        if row is None:
            raise NotFoundError(
                f"{parsed.collection} has no alias {parsed.alias!r}"
                if parsed.alias != LATEST
                else f"{parsed.collection} has no versions",
                ref=ref,
            )
    else:
        assert parsed.digest_prefix is not None
        rows = catalog.versions_by_digest_prefix(coll["id"], parsed.digest_prefix)
        if parsed.digest_algorithm:
            rows = [r for r in rows if r["digest"].startswith(parsed.digest_algorithm + ":")]
        if not rows:
            raise NotFoundError(
                f"no version of {parsed.collection} has a digest starting with "
                f"{parsed.digest_prefix!r}",
                ref=ref,
            )
        digests = sorted({r["digest"] for r in rows})
        if len(digests) > 1:
            raise MultipleResourcesFoundError(
                f"digest prefix {parsed.digest_prefix!r} matches {len(digests)} different "
                f"contents in {parsed.collection}; give more hex digits",
                ref=ref,
                matches=[f"{parsed.collection}:v{r['number']}" for r in rows],
            )
        return rows[0]  # same content: the newest version
    if parsed.digest_prefix is not None:
        algo, _, hexpart = str(row["digest"]).partition(":")
        if not hexpart.startswith(parsed.digest_prefix) or (
            parsed.digest_algorithm and parsed.digest_algorithm != algo
        ):
            raise NotFoundError(
                f"{parsed.collection}:{parsed.alias or f'v{parsed.number}'} now points at "
                f"{row['digest']}, not at a digest starting with {parsed.digest_prefix!r}",
                ref=ref,
            )
    return row
