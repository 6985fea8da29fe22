"""Version handles: :class:`ArtifactVersion` and the :class:`Draft` that finalizes into one.

A handle holds a snapshot of its row and the store's parts (never the ``Store``). Methods that
change it write to the catalogue, refresh the snapshot in place and return the handle. Aliases
and tags are loaded on first access, so ``store.get()`` costs one query.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from castore._parts import Parts
from castore.artifact.commit import check_metadata, draft_from_version, link_version
from castore.artifact.writer import DraftWriter
from castore.errors import IntegrityError, NotFoundError
from castore.handles.run import Run, VersionHandles
from castore.handles.times import seconds, to_datetime
from castore.handles.version_files import VersionFiles
from castore.models import Manifest, ManifestEntry
from castore.refs import check_user_alias, tag_list

__all__ = ["HANDLES", "UNSET", "ArtifactVersion", "Draft"]

#: The default of optional keyword arguments where None is a meaningful value.
UNSET: Any = object()


class ArtifactVersion(VersionFiles):
    """One version of a collection: its files, aliases, tags and metadata.

    Get one from ``store.get(ref)``, ``store.versions()`` or ``draft.finalize()``.

    Example:
        >>> v = store.get("mnist:latest")  # doctest: +SKIP
        >>> v.ref, v.digest  # doctest: +SKIP
        ('mnist:v3', 'xxh3-128:9f2c…')
    """

    def __init__(self, parts: Parts, row: dict[str, Any]) -> None:
        self._parts = parts
        self._set(row)

    def _set(self, row: dict[str, Any]) -> None:
        self._row = row
        self._aliases: list[str] | None = None
        self._tags: list[str] | None = None

    def refresh(self) -> ArtifactVersion:
        """Reload the snapshot from the catalogue (a deleted version shows ``DELETED``)."""
        row = self._parts.catalog.get_version(self.id)
        if row is None:  # its collection was deleted
            row = {**self._row, "state": "DELETED"}
        self._set(row)
        return self

    # -- attributes ------------------------------------------------------------------------

    @property
    def id(self) -> str:
        """The version id (a UUIDv7)."""
        return str(self._row["id"])

    @property
    def collection(self) -> str:
        """The collection's name."""
        return str(self._row["collection"])

    @property
    def type(self) -> str:
        """The collection's type, e.g. ``"dataset"``."""
        return str(self._row["type"])

    @property
    def number(self) -> int | None:
        """The version number (None while pending)."""
        number: int | None = self._row["number"]
        return number

    @property
    def version(self) -> str | None:
        """``"v3"`` (None while pending)."""
        return None if self.number is None else f"v{self.number}"

    @property
    def ref(self) -> str:
        """The canonical reference ``"name:v3"`` (the id while pending)."""
        return self.id if self.number is None else f"{self.collection}:v{self.number}"

    @property
    def digest(self) -> str | None:
        """The content digest over sorted paths, digests and sizes."""
        digest: str | None = self._row["digest"]
        return digest

    @property
    def size(self) -> int:
        """Total bytes of the files."""
        return int(self._row["size"])

    @property
    def file_count(self) -> int:
        """Number of files."""
        return int(self._row["file_count"])

    @property
    def state(self) -> str:
        """``"PENDING"``, ``"COMMITTED"`` or ``"DELETED"``."""
        return str(self._row["state"])

    @property
    def aliases(self) -> list[str]:
        """Aliases pointing here, sorted (``"latest"`` included where it points)."""
        if self._aliases is None:
            self._aliases = self._parts.catalog.aliases_of(self.id)
        return list(self._aliases)

    @property
    def tags(self) -> list[str]:
        """Tags, sorted."""
        if self._tags is None:
            self._tags = self._parts.catalog.tags_of(self.id)
        return list(self._tags)

    @property
    def metadata(self) -> dict[str, Any]:
        """Free-form metadata (a copy: change it with :meth:`update`)."""
        value: dict[str, Any] = json.loads(self._row["metadata"] or "{}")
        return value

    @property
    def description(self) -> str | None:
        """The description."""
        text: str | None = self._row["description"]
        return text

    @property
    def created_at(self) -> datetime:
        """When the version was committed (UTC)."""
        value = to_datetime(self._row["created_at"])
        assert value is not None
        return value

    @property
    def updated_at(self) -> datetime:
        """When the version last changed (UTC)."""
        value = to_datetime(self._row["updated_at"])
        assert value is not None
        return value

    @property
    def ttl(self) -> timedelta | None:
        """Time to live, or None (never expires)."""
        ttl = self._row["ttl"]
        return None if ttl is None else timedelta(seconds=ttl)

    @property
    def expires_at(self) -> datetime | None:
        """``created_at + ttl``, or None."""
        return to_datetime(self._row["expires_at"])

    @property
    def producer(self) -> str | None:
        """The id of the run that produced the version, if any."""
        return self._row.get("producer")

    @property
    def manifest_blob(self) -> str | None:
        """Digest of the canonical manifest document stored as a blob."""
        return self._row.get("manifest_blob")

    @property
    def materializer(self) -> str | None:
        """The materializer that wrote it through ``store.save()`` (None for files)."""
        return self._row.get("materializer")

    def load(self, /, **options: Any) -> Any:
        """The object :meth:`Store.save` wrote, built by the materializer that wrote it.

        Raises:
            MaterializerError: not written by ``save``, or ``allow_pickle=True`` is needed.
        """
        from castore.objects import load_version  # the registry reads entry points: only here

        return load_version(self, **options)

    # -- files -----------------------------------------------------------------------------

    @property
    def manifest(self) -> Manifest:
        """Every entry, sorted by path, with the content digest."""
        return Manifest(entries=list(self.files()), digest=self.digest or "")

    def files(self, prefix: str | None = None) -> Iterator[ManifestEntry]:
        """Iterate the entries (sorted by path) whose path starts with ``prefix``.

        Raises:
            NotFoundError: the version was deleted (through another handle or process).
        """
        for path, digest, size, ref, executable in self._rows(prefix):
            yield ManifestEntry(
                path=path, digest=digest, size=size, ref=ref, executable=executable
            )

    def _require_live(self) -> None:
        """Raise :class:`NotFoundError` unless the version is still committed.

        A deleted version has no entries left: without this check a stale handle would
        check out, verify and download an empty version.
        """
        row = self._parts.catalog.execute(
            "SELECT state FROM versions WHERE id = ?", (self.id,)
        ).fetchone()
        if row is None or row[0] != "COMMITTED":
            state = "deleted" if row is None else str(row[0]).lower()
            raise NotFoundError(
                f"{self.ref} is {state} (through another handle or process); "
                "get the version again with store.get()",
                ref=self.ref,
            )

    def _rows(
        self, prefix: str | None = None
    ) -> Iterator[tuple[str, str | None, int, str | None, bool]]:
        """The entries as plain rows (no model per file), checked against deletion."""
        self._require_live()
        count = 0
        for row in self._parts.catalog.iter_entries(self.id, prefix):
            count += 1
            yield row
        if not prefix and count != self.file_count:
            self._require_live()  # deleted while we read: say so rather than yield a part
            raise IntegrityError(
                f"{self.ref} lists {count} entries but recorded {self.file_count} files; "
                "run `castore fsck`",
            )

    def get_entry(self, path: str) -> ManifestEntry:
        """The entry at ``path``.

        Raises:
            NotFoundError: (a ``KeyError``) no such file in the version.
        """
        self._require_live()
        try:
            p, digest, size, ref, executable = self._parts.catalog.get_entry(self.id, path)
        except KeyError:
            raise NotFoundError(f"{path!r} is not in {self.ref}", ref=path) from None
        return ManifestEntry(path=p, digest=digest, size=size, ref=ref, executable=executable)

    # -- changes ---------------------------------------------------------------------------

    def _require_committed(self, what: str) -> Any:
        """Refresh inside the caller's transaction; refuse unless still COMMITTED."""
        self.refresh()
        if self.state != "COMMITTED":
            raise NotFoundError(
                f"cannot {what} {self.ref}: it is {self.state}, not COMMITTED; a deleted "
                "version takes no changes", ref=self.ref,
            )
        return self._row["collection_id"]

    def new_draft(self) -> Draft:
        """A draft pre-filled with this version's files, description and metadata.

        Raises:
            NotFoundError: the version is deleted (it has no files left to start from).
        """
        draft_id = draft_from_version(self._parts, self.id)
        return Draft(self._parts, draft_id, self.collection, self.type)

    def add_alias(self, alias: str) -> ArtifactVersion:
        """Point ``alias`` at this version (moving it from another version of the collection).

        Raises:
            InvalidReferenceError: malformed, or ``"latest"`` (managed by the store).
        """
        check_user_alias(alias)
        with self._parts.catalog.write_txn():
            collection_id = self._require_committed("alias")
            self._parts.catalog.set_alias(collection_id, alias, self.id)
        return self.refresh()

    def remove_alias(self, alias: str) -> ArtifactVersion:
        """Remove ``alias`` from this version.

        Raises:
            NotFoundError: the alias does not point here.
        """
        check_user_alias(alias)
        catalog = self._parts.catalog
        with catalog.write_txn():
            if alias not in catalog.aliases_of(self.id):
                raise NotFoundError(f"alias {alias!r} does not point at {self.ref}", ref=alias)
            catalog.remove_alias(self._row["collection_id"], alias)
        return self.refresh()

    def add_tags(self, tags: Iterable[str] | None) -> ArtifactVersion:
        """Add tags (existing ones are kept)."""
        tags = tag_list(tags or ())
        with self._parts.catalog.write_txn():
            self._require_committed("tag")
            self._parts.catalog.add_tags(self.id, tags)
        return self.refresh()

    def remove_tags(self, tags: Iterable[str] | None) -> ArtifactVersion:
        """Remove tags (absent ones are ignored)."""
        tags = tag_list(tags or ())
        with self._parts.catalog.write_txn():
            self._require_committed("untag")
            self._parts.catalog.remove_tags(self.id, tags)
        return self.refresh()

    def update(
        self,
        *,
        description: str | None = UNSET,
        metadata: dict[str, Any] = UNSET,
        tags: Iterable[str] = UNSET,
    ) -> ArtifactVersion:
        """Change the given fields; only given fields change (None leaves one as it is).

        Args:
            description: the new description.
            metadata: replaces the whole metadata.
            tags: replaces the whole tag set.

        Raises:
            NotFoundError: the version is deleted.
        """
        fields: dict[str, Any] = {}
        if description is not UNSET:
            fields["description"] = description
        if metadata is not UNSET and metadata is not None:
            if not isinstance(metadata, dict):
                raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
            fields["metadata"] = check_metadata(metadata)
        new_tags = None if tags is UNSET or tags is None else tag_list(tags)
        catalog = self._parts.catalog
        with catalog.write_txn():
            self._require_committed("update")
            if fields:
                catalog.update_version(self.id, **fields)
            if new_tags is not None:
                catalog.remove_tags(self.id, [t for t in self.tags if t not in new_tags])
                catalog.add_tags(self.id, new_tags)
        return self.refresh()

    def set_ttl(self, ttl: timedelta | None) -> ArtifactVersion:
        """Expire ``ttl`` after creation (None: never). A version with a user alias never
        expires; an expired one disappears from queries at once and gc deletes it."""
        ttl_seconds = seconds(ttl)
        with self._parts.catalog.write_txn():
            self._require_committed("set the TTL of")
            self._parts.catalog.set_ttl(self.id, ttl_seconds)
        return self.refresh()

    def delete(self, *, delete_aliases: bool = False, delete_links: bool = False) -> None:
        """Delete the version; ``latest`` moves to the previous one. Blobs stay until gc.

        Args:
            delete_aliases: also drop its user aliases (else they block the deletion).
            delete_links: also delete the versions that link to it (else they block it).

        Raises:
            AliasConflictError: it holds aliases other than ``latest`` and not
                ``delete_aliases``, or versions link to it and not ``delete_links`` (the
                message names them).
        """
        self._parts.require_writable("delete a version")
        self._parts.freeing_space(
            lambda: self._parts.catalog.delete_version(
                self.id, delete_aliases=delete_aliases, delete_links=delete_links
            )
        )
        self.refresh()

    # -- links (API.md "Linking versions into other collections") ---------------------------

    def link(self, collection: str, *, aliases: Iterable[str] | None = None) -> ArtifactVersion:
        """Link this version into another collection (a registry); no bytes are copied.

        Returns:
            The link: a version of ``collection`` with its own number, aliases and tags.

        Example:
            >>> v = store.get("mnist:v3")  # doctest: +SKIP
            >>> reg = v.link("mnist-registry", aliases=["staging"])  # doctest: +SKIP
            >>> reg.is_link, reg.source.ref  # doctest: +SKIP
            (True, 'mnist:v3')
        """
        return ArtifactVersion(
            self._parts, link_version(self._parts, self.id, collection, aliases=aliases or ())
        )

    @property
    def is_link(self) -> bool:
        """Whether this version is a link to a version of another collection."""
        return bool(self._row.get("link_source"))

    @property
    def source(self) -> ArtifactVersion | None:
        """The version this link points at (None when not a link, or the source is gone)."""
        source_id = self._row.get("link_source")
        row = None if not source_id else self._parts.catalog.get_version(source_id)
        return None if row is None or row["state"] != "COMMITTED" else (
            ArtifactVersion(self._parts, row)
        )

    def linked_versions(self) -> list[ArtifactVersion]:
        """The versions that link to this one, by collection and number."""
        return [ArtifactVersion(self._parts, r) for r in self._parts.catalog.links_to(self.id)]

    def unlink(self) -> None:
        """Remove this link (with its aliases); the source is never touched.

        Raises:
            ValueError: this version is not a link.
        """
        if not self.is_link:
            raise ValueError(f"{self.ref} is not a link; use delete() to delete a version")
        self.delete(delete_aliases=True)

    def logged_by(self) -> Run | None:
        """The run that produced this version, or None."""
        rows = self._parts.catalog.runs_of_version(self.id, "produced")
        return Run(self._parts, rows[0], HANDLES) if rows else None

    def used_by(self) -> list[Run]:
        """The runs that used this version, oldest first."""
        rows = self._parts.catalog.runs_of_version(self.id, "used")
        return [Run(self._parts, row, HANDLES) for row in rows]

    # -- identity --------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ArtifactVersion) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        digest = self.digest
        short = f" {digest[: digest.index(':') + 9]}…" if digest else ""
        state = "" if self.state == "COMMITTED" else f" {self.state}"
        return f"<ArtifactVersion {self.ref}{short}{state}>"


class Draft(DraftWriter):
    """A version being built. Get one from ``store.draft()`` or ``version.new_draft()``.

    Example:
        >>> with store.draft("mnist", type="dataset") as d:  # doctest: +SKIP
        ...     d.add_dir("local/data")
        >>> d.version.ref  # doctest: +SKIP
        'mnist:v0'
    """

    def __init__(self, parts: Parts, version_id: str, collection: str, type: str) -> None:
        super().__init__(parts, version_id, collection, type)
        self.version: ArtifactVersion | None = None  # set by finalize()

    def finalize(
        self, *, aliases: Iterable[str] | None = (), tags: Iterable[str] | None = ()
    ) -> ArtifactVersion:
        """Commit the draft as the next version of its collection; move ``latest``.

        If the content equals the current latest version's, no version is made: that one is
        returned, with ``aliases`` and ``tags`` applied to it, and so are the draft's
        description (when it has one) and metadata (when not empty), as ``update()`` would.

        Returns:
            The :class:`~castore.ArtifactVersion`.

        Raises:
            ArtifactFinalizedError: the draft was already finalized or discarded.
            InvalidReferenceError: an alias or tag is malformed, or ``"latest"``.
        """
        self.version = ArtifactVersion(self._parts, self._commit(aliases or (), tags or ()))
        return self.version

    def __enter__(self) -> Draft:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            if not self._done:
                self.finalize()
        elif not self._done:
            self.discard()


#: The version handles a :class:`~castore.handles.run.Run` makes.
HANDLES = VersionHandles(version=ArtifactVersion, draft=Draft)
