"""The :class:`Collection` handle: a named, typed sequence of versions."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from castore._parts import Parts
from castore.artifact.commit import check_metadata
from castore.errors import AliasConflictError, NotFoundError
from castore.handles.query import version_filters
from castore.handles.times import seconds, to_datetime
from castore.handles.version import UNSET, ArtifactVersion
from castore.models import AliasEvent
from castore.refs import check_user_alias, tag_list, validate_name

__all__ = ["Collection"]


class Collection:
    """A named, typed sequence of versions."""

    def __init__(self, parts: Parts, row: dict[str, Any]) -> None:
        self._parts = parts
        self._row = row

    def refresh(self) -> Collection:
        """Reload the snapshot.

        Raises:
            NotFoundError: the collection was deleted.
        """
        row = self._parts.catalog.get_collection_by_id(self._row["id"])
        if row is None:
            raise NotFoundError(f"collection {self.name!r} was deleted", ref=self.name)
        self._row = row
        return self

    @property
    def name(self) -> str:
        """The collection's name."""
        return str(self._row["name"])

    @property
    def type(self) -> str:
        """Its type (``"dataset"``, ``"model"``, ...)."""
        return str(self._row["type"])

    @property
    def description(self) -> str | None:
        """The description."""
        text: str | None = self._row["description"]
        return text

    @property
    def tags(self) -> list[str]:
        """Collection tags, sorted."""
        return sorted(json.loads(self._row["tags"] or "[]"))

    @property
    def metadata(self) -> dict[str, Any]:
        """Free-form metadata."""
        value: dict[str, Any] = json.loads(self._row["metadata"] or "{}")
        return value

    @property
    def aliases(self) -> dict[str, str]:
        """``{alias: "vN"}`` of the collection's aliases."""
        found = self._parts.catalog.collection_aliases(self._row["id"])
        return {alias: f"v{number}" for alias, number in found.items()}

    @property
    def default_ttl(self) -> timedelta | None:
        """TTL given to versions created from now on, or None."""
        ttl = self._row["default_ttl"]
        return None if ttl is None else timedelta(seconds=ttl)

    @property
    def created_at(self) -> datetime:
        """When the collection was created (UTC)."""
        value = to_datetime(self._row["created_at"])
        assert value is not None
        return value

    def alias_history(self, alias: str | None = None) -> list[AliasEvent]:
        """Every move of the aliases (of ``alias``), oldest first.

        Example:
            >>> [(e.from_version, e.to_version) for e in c.alias_history("prod")]  # doctest: +SKIP
            [(None, 'mnist:v0'), ('mnist:v0', 'mnist:v1')]
        """
        return self._parts.catalog.alias_events(self._row["id"], alias)

    def versions(self) -> list[ArtifactVersion]:
        """The live committed versions, newest first."""
        rows, _ = self._parts.catalog.query_versions(
            sort="-number", limit=None, offset=0, **version_filters(collection=self.name)
        )
        return [ArtifactVersion(self._parts, row) for row in rows]

    def update(
        self,
        *,
        description: str | None = UNSET,
        default_ttl: timedelta | None = UNSET,
        type: str = UNSET,
        tags: Iterable[str] = UNSET,
        metadata: dict[str, Any] = UNSET,
        name: str = UNSET,
    ) -> Collection:
        """Change the given fields; ``default_ttl`` applies to versions created afterwards.

        ``name`` renames the collection: references by the old name stop resolving (the
        version documents keep the name they were written with; docs/format.md).

        Raises:
            InvalidReferenceError: a malformed name or type.
            ValueError: ``name`` is taken by another collection.
        """
        fields: dict[str, Any] = {}
        if name is not UNSET and name is not None and name != self.name:
            fields["name"] = validate_name(name)
        if description is not UNSET:
            fields["description"] = description
        if default_ttl is not UNSET:
            fields["default_ttl"] = seconds(default_ttl, "default_ttl")
        if type is not UNSET:
            fields["type"] = validate_name(type, "type")
        if tags is not UNSET:
            fields["tags"] = sorted(set(tag_list(tags)))
        if metadata is not UNSET:
            fields["metadata"] = check_metadata(metadata)
        self._parts.require_writable("update a collection")
        catalog = self._parts.catalog
        with catalog.write_txn():
            if "name" in fields and catalog.get_collection(fields["name"]) is not None:
                raise ValueError(
                    f"cannot rename {self.name!r} to {fields['name']!r}: that collection "
                    "exists; choose another name or delete it first"
                )
            catalog.update_collection(self._row["id"], **fields)
        return self.refresh()

    def rollback(self, alias: str, *, steps: int = 1) -> ArtifactVersion:
        """Move ``alias`` back to where it pointed ``steps`` moves ago (the rollback is itself
        a move in :meth:`alias_history`, so rolling back twice returns to the start).

        Returns:
            The version the alias now points at.

        Raises:
            InvalidReferenceError: ``alias`` is ``"latest"`` (managed by the store) or malformed.
            ValueError: ``steps`` is not positive.
            NotFoundError: the alias has fewer moves, pointed at nothing then, or that
                version is no longer live.
        """
        check_user_alias(alias)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, not {steps!r}")
        catalog = self._parts.catalog
        with catalog.write_txn():
            moves = catalog.alias_history(self._row["id"], alias)
            if len(moves) < steps:
                raise NotFoundError(
                    f"alias {alias!r} of {self.name!r} has moved {len(moves)} time(s), "
                    f"fewer than steps={steps}", ref=f"{self.name}:{alias}",
                )
            target = moves[-steps]["from_version"]
            row = None if target is None else catalog.live_version(target)
            if row is None:
                raise NotFoundError(
                    f"alias {alias!r} of {self.name!r} pointed at "
                    f"{'nothing' if target is None else 'a version no longer live'} "
                    f"{steps} move(s) ago; nothing to roll back to", ref=f"{self.name}:{alias}",
                )
            catalog.set_alias(self._row["id"], alias, row["id"])
        return ArtifactVersion(self._parts, row).refresh()

    def delete(self) -> None:
        """Delete the collection and all its versions (blobs stay until gc).

        Raises:
            AliasConflictError: versions of other collections link to its versions (the
                message names them; unlink or delete them first).
        """
        self._parts.require_writable("delete a collection")
        catalog = self._parts.catalog
        outside = catalog.all_rows(
            "SELECT c.name, l.number FROM versions l JOIN versions v ON v.id = l.link_source "
            "JOIN collections c ON c.id = l.collection_id WHERE v.collection_id = ? "
            "AND l.collection_id != v.collection_id AND l.state = 'COMMITTED' "
            "ORDER BY c.name, l.number",
            (self._row["id"],),
        )
        if outside:
            named = ", ".join(f"{r['name']}:v{r['number']}" for r in outside)
            raise AliasConflictError(
                f"versions of {self.name!r} are linked from {named}; unlink them first",
                alias=named, ref=self.name,
            )
        ids = [
            row[0]
            for row in catalog.execute(
                "SELECT id FROM versions WHERE collection_id = ?", (self._row["id"],)
            )
        ]
        catalog.delete_collection(self._row["id"])
        # After the commit: the rows are gone, so their markers would make gc keep the
        # versions as unknown ones (storage/markers.py).
        for version_id in ids:
            self._parts.markers.remove(version_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Collection) and other._row["id"] == self._row["id"]

    def __hash__(self) -> int:
        return hash(("collection", self._row["id"]))

    def __repr__(self) -> str:
        return f"<Collection {self.name} type={self.type}>"
