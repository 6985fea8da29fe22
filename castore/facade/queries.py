"""Drafts, references and queries of the Store facade."""

from __future__ import annotations

from datetime import datetime
from typing import Any, overload

from castore.artifact.commit import start_draft
from castore.errors import NotFoundError
from castore.facade.base import StoreBase
from castore.handles.collection import Collection
from castore.handles.query import resolve_ref, version_filters
from castore.handles.run import Run, run_id_of
from castore.handles.version import ArtifactVersion, Draft
from castore.models import Diff, Page, TypeInfo

__all__ = ["QueriesMixin"]

_RAISE: Any = object()


class QueriesMixin(StoreBase):
    """``draft``, ``get``, ``collections``, ``versions`` and the other reads."""

    def draft(
        self,
        collection: str,
        *,
        type: str | None = None,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        tags: list[str] | None = None,
    ) -> Draft:
        """Start a draft of the next version of ``collection`` (created on first use).

        Args:
            collection: the collection's name.
            type: its type (``"dataset"`` by default for a new collection); fixed once set.
            description: the version's description.
            metadata: JSON-serialisable metadata of the version.
            tags: tags of the version.

        Raises:
            InvalidReferenceError: a malformed name or tag.
            ValueError: ``type`` differs from the existing collection's type.

        Example:
            >>> with store.draft("mnist", type="dataset") as d:  # doctest: +SKIP
            ...     d.add_file("train.csv")
        """
        draft_id, coll_type = start_draft(
            self.parts, collection, type=type, description=description, metadata=metadata,
            tags=tags or [],
        )
        return Draft(self.parts, draft_id, collection, coll_type)

    def drafts(self, collection: str | None = None) -> list[Draft]:
        """Drafts not yet finalized (``PENDING`` versions), oldest first."""
        return [
            Draft(self.parts, row["version_id"], row["collection"], row["type"])
            for row in self.catalog.list_drafts(collection)
        ]

    def get(self, ref: str, default: Any = _RAISE) -> ArtifactVersion | Any:
        """The version a reference names: ``"mnist"``, ``"mnist:prod"``, ``"mnist:v3"``,
        ``"mnist@9f2c1a"``, ``"mnist:prod@9f2c1a"`` or a version id.

        Args:
            ref: the reference.
            default: returned instead of raising :class:`NotFoundError` when given.

        Raises:
            NotFoundError: nothing matches (expired versions are hidden) and no ``default``.
            MultipleResourcesFoundError: a digest prefix matches different contents.
            InvalidReferenceError: the reference is malformed (also with a ``default``).
        """
        try:
            return ArtifactVersion(self.parts, resolve_ref(self.parts.catalog, ref))
        except NotFoundError:
            if default is _RAISE:
                raise
            return default

    def collection(self, name: str) -> Collection:
        """The collection ``name``.

        Raises:
            NotFoundError: there is none.
        """
        row = self.catalog.get_collection(name)
        if row is None:
            raise NotFoundError(f"no collection named {name!r}", ref=name)
        return Collection(self.parts, row)

    @overload
    def collections(
        self, type: str | None = None, *, limit: None = None, offset: int = 0
    ) -> list[Collection]: ...
    @overload
    def collections(
        self, type: str | None = None, *, limit: int, offset: int = 0
    ) -> Page[Collection]: ...
    def collections(
        self, type: str | None = None, *, limit: int | None = None, offset: int = 0
    ) -> list[Collection] | Page[Collection]:
        """Every collection (of ``type``), by name; a :class:`Page` when ``limit`` is set.

        Example:
            >>> page = store.collections(limit=20, offset=40)  # doctest: +SKIP
        """
        if (limit is not None and limit < 0) or offset < 0:
            raise ValueError(f"limit and offset must not be negative ({limit}, {offset})")
        rows, total = self.catalog.list_collections_page(type, limit=limit, offset=offset)
        items = [Collection(self.parts, row) for row in rows]
        if limit is None:
            return items
        return Page[Collection](
            items=items, total=total, limit=limit, offset=offset,
            has_more=offset + len(items) < total,
        )

    def versions(
        self,
        collection: str | None = None,
        *,
        type: str | None = None,
        tags: list[str] | None = None,
        alias: str | None = None,
        state: str | None = "COMMITTED",
        metadata: dict[str, Any] | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        updated_after: datetime | str | None = None,
        updated_before: datetime | str | None = None,
        match: str = "all",
        produced_by: str | Run | None = None,
        used_by: str | Run | None = None,
        sort: str | list[str] = "-created_at",
        limit: int | None = 50,
        offset: int = 0,
    ) -> Page[ArtifactVersion]:
        """Versions matching the filters, one page at a time.

        ``state`` and the hiding of expired versions always apply; ``match`` (``"all"`` or
        ``"any"``) combines the other filters; ``tags`` means all of them (any with
        ``match="any"``). ``sort`` takes ``created_at``, ``updated_at``, ``size``, ``number``,
        ``name`` or ``metadata.KEY``, ``-`` for descending, several separated by commas.
        ``produced_by`` and ``used_by`` take a run (handle, id or name): the versions it
        produced or used.

        ``metadata`` maps keys to a value (equality) or to operators: ``$eq $ne $gt $gte $lt
        $lte $in $nin $exists $contains`` (docs/queries.md gives what each costs).
        ``created_after``/``updated_after`` are inclusive, ``created_before``/
        ``updated_before`` exclusive; each takes a timezone-aware datetime or an ISO-8601
        string.

        Raises:
            ValueError: an unknown operator, sort key, ``match`` or ``state``.
            TypeError: a naive datetime or a time of another type.

        Example:
            >>> page = store.versions(type="model", metadata={"f1": {"$gte": 0.9}},
            ...                       sort="-metadata.f1")  # doctest: +SKIP
            >>> page.total, page.has_more  # doctest: +SKIP
        """
        filters = self._filters(
            collection, type, tags, alias, state, metadata, created_after, created_before, match,
            updated_after, updated_before,
            produced_by=produced_by, used_by=used_by,
        )
        if (limit is not None and limit < 0) or offset < 0:
            raise ValueError(f"limit and offset must not be negative ({limit}, {offset})")
        rows, total = self.catalog.query_versions(sort=sort, limit=limit, offset=offset, **filters)
        return Page[ArtifactVersion](
            items=[ArtifactVersion(self.parts, row) for row in rows],
            total=total,
            limit=limit,
            offset=offset,
            has_more=offset + len(rows) < total,
        )

    def count(
        self,
        collection: str | None = None,
        *,
        type: str | None = None,
        tags: list[str] | None = None,
        alias: str | None = None,
        state: str | None = "COMMITTED",
        metadata: dict[str, Any] | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        updated_after: datetime | str | None = None,
        updated_before: datetime | str | None = None,
        match: str = "all",
        produced_by: str | Run | None = None,
        used_by: str | Run | None = None,
    ) -> int:
        """How many versions :meth:`versions` would list with the same filters."""
        filters = self._filters(
            collection, type, tags, alias, state, metadata, created_after, created_before, match,
            updated_after, updated_before,
            produced_by=produced_by, used_by=used_by,
        )
        return self.catalog.count_versions(**filters)

    def _filters(
        self, *args: Any, produced_by: str | Run | None, used_by: str | Run | None
    ) -> dict[str, Any]:
        filters = version_filters(*args)
        filters["produced_by"] = None if produced_by is None else run_id_of(self.parts, produced_by)
        filters["used_by"] = None if used_by is None else run_id_of(self.parts, used_by)
        return filters

    def latest(self, type: str | None = None) -> list[ArtifactVersion]:
        """The newest live version of every collection (of ``type``), by collection name."""
        return [
            ArtifactVersion(self.parts, row) for row in self.catalog.latest_per_collection(type)
        ]

    def types(self) -> list[TypeInfo]:
        """Every collection type in use, with its numbers of collections and versions."""
        return [
            TypeInfo(name=name, collections=colls, versions=versions)
            for name, colls, versions in self.catalog.types()
        ]

    def diff(self, a: str | ArtifactVersion, b: str | ArtifactVersion) -> Diff:
        """What changed from version ``a`` to version ``b`` (references or handles).

        Returns:
            A :class:`~castore.models.Diff`: ``added``, ``removed`` and ``modified`` entries
            with paths, sizes and digests on each side, sorted by path.

        Example:
            >>> store.diff("ds:v1", "ds:v2").modified  # doctest: +SKIP
        """
        va = self.get(a) if isinstance(a, str) else a
        vb = self.get(b) if isinstance(b, str) else b
        from castore.worktree import operations  # diff only

        return operations.diff(va.files(), vb.files(), a=va.ref, b=vb.ref)
