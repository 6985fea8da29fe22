"""Handles over catalogue rows: :class:`ArtifactVersion` and :class:`Collection`.

A handle holds a snapshot of its row and a back-reference to its ``Store``. Methods that change
it write to the catalogue, refresh the snapshot in place and return the handle. Aliases and tags
are loaded on first access, so ``store.get()`` costs one query.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from castore.errors import (
    IntegrityError,
    InvalidReferenceError,
    MultipleResourcesFoundError,
    NotFoundError,
    VerificationError,
)
from castore.models import Manifest, ManifestEntry, VerifyReport
from castore.refs import LATEST, parse_ref, validate_alias, validate_tag

if TYPE_CHECKING:
    from castore.artifact import Draft
    from castore.store import Store

__all__ = ["ArtifactVersion", "Collection", "resolve_ref", "to_datetime", "to_us"]

_UNSET: Any = object()


def to_datetime(us: int | None) -> datetime | None:
    """Catalogue microseconds → timezone-aware UTC datetime."""
    return None if us is None else datetime.fromtimestamp(us / 1_000_000, tz=UTC)


def to_us(value: datetime | None) -> int | None:
    """A datetime (naive means UTC) → catalogue microseconds."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1_000_000)


def _seconds(ttl: timedelta | None, what: str = "ttl") -> float | None:
    if ttl is None:
        return None
    if not isinstance(ttl, timedelta):
        raise TypeError(f"{what} must be a datetime.timedelta or None, not {type(ttl).__name__}")
    if ttl <= timedelta(0):
        raise ValueError(f"{what} must be positive, got {ttl}; use None for 'never expires'")
    return ttl.total_seconds()


class ArtifactVersion:
    """One version of a collection: its files, aliases, tags and metadata.

    Get one from ``store.get(ref)``, ``store.versions()`` or ``draft.finalize()``.

    Example:
        >>> v = store.get("mnist:latest")  # doctest: +SKIP
        >>> v.ref, v.digest  # doctest: +SKIP
        ('mnist:v3', 'xxh3-128:9f2c…')
    """

    def __init__(self, store: Store, row: dict[str, Any]) -> None:
        self._store = store
        self._set(row)

    def _set(self, row: dict[str, Any]) -> None:
        self._row = row
        self._aliases: list[str] | None = None
        self._tags: list[str] | None = None

    def refresh(self) -> ArtifactVersion:
        """Reload the snapshot from the catalogue (a deleted version shows ``DELETED``)."""
        row = self._store.catalog.get_version(self.id)
        if row is None:  # its collection was deleted
            row = {**self._row, "state": "DELETED"}
        self._set(row)
        return self

    # -- attributes ------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The store holding this version."""
        return self._store

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
            self._aliases = self._store.catalog.aliases_of(self.id)
        return list(self._aliases)

    @property
    def tags(self) -> list[str]:
        """Tags, sorted."""
        if self._tags is None:
            self._tags = self._store.catalog.tags_of(self.id)
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

    # -- files -----------------------------------------------------------------------------

    @property
    def manifest(self) -> Manifest:
        """Every entry, sorted by path, with the content digest."""
        return Manifest(entries=list(self.files()), digest=self.digest or "")

    def files(self, prefix: str | None = None) -> Iterator[ManifestEntry]:
        """Iterate the entries (sorted by path) whose path starts with ``prefix``."""
        for path, digest, size, ref in self._store.catalog.iter_entries(self.id, prefix):
            yield ManifestEntry(path=path, digest=digest, size=size, ref=ref)

    def get_entry(self, path: str) -> ManifestEntry:
        """The entry at ``path``.

        Raises:
            NotFoundError: (a ``KeyError``) no such file in the version.
        """
        try:
            p, digest, size, ref = self._store.catalog.get_entry(self.id, path)
        except KeyError:
            raise NotFoundError(f"{path!r} is not in {self.ref}", ref=path) from None
        return ManifestEntry(path=p, digest=digest, size=size, ref=ref)

    # -- materialize (issue 4): thin wrappers over castore/materialize.py ----------------------

    def _stat_cache(self) -> Any:
        return None if self._store.read_only else self._store.catalog.stat_cache

    def checkout(
        self,
        root: str | os.PathLike[str],
        *,
        link: str = "auto",
        progress: Any = None,
        force: bool = False,
    ) -> Path:
        """Make ``root`` hold exactly this version's files; extra files and dirs are removed.

        Files already correct are skipped. Nothing outside ``root`` is written or followed; a
        missing or damaged blob raises before the target changes. A non-empty directory that
        castore did not check out before is refused unless ``force=True``.

        Args:
            root: the target directory (created if missing).
            link: ``"auto"`` (reflink where possible, else copy), ``"copy"``, ``"hardlink"``,
                ``"symlink"`` or ``"reflink"``; compressed blobs are always copied.
            progress: a ``(done_bytes, total_bytes)`` callable, or True for a stderr bar.
            force: allow deleting or overwriting files in an unmanaged directory.

        Returns:
            The resolved root.

        Example:
            >>> store.get("mnist:prod").checkout("work/mnist")  # doctest: +SKIP
        """
        from castore.worktree import operations as materialize

        return materialize.checkout(
            self._store.blobs, list(self.files()), root, link=link, force=force,
            store_root=self._store.path, stat_cache=self._stat_cache(), progress=progress,
        )

    def _default_root(self) -> Path:
        return Path("artifacts") / self.collection / (self.version or self.id)

    def download(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        path_prefix: str | None = None,
        link: str = "auto",
        progress: Any = None,
    ) -> Path:
        """Write this version's files (those under ``path_prefix``) into ``root``.

        Other files in ``root`` are left alone. The default root is
        ``./artifacts/<collection>/v<N>``. Same safety as :meth:`checkout`.

        Returns:
            The resolved root.
        """
        from castore.worktree import operations as materialize

        return materialize.download(
            self._store.blobs, list(self.files()), root or self._default_root(),
            path_prefix=path_prefix, link=link, store_root=self._store.path,
            stat_cache=self._stat_cache(), progress=progress,
        )

    def file(self, root: str | os.PathLike[str] | None = None) -> Path:
        """Write the only file of a single-file version and return its path.

        Raises:
            ValueError: the version holds more (or fewer) than one file.
        """
        entries = list(self.files())
        if len(entries) != 1:
            raise ValueError(
                f"{self.ref} holds {len(entries)} files, not one; use download() instead"
            )
        return self.download(root) / entries[0].path

    def verify(self, root: str | os.PathLike[str] | None = None) -> VerifyReport:
        """Check a directory against this version, or (no root) re-hash the stored blobs.

        Returns:
            A :class:`VerifyReport` that is ok.

        Raises:
            VerificationError: ``root`` differs (``.report`` says how).
            IntegrityError: (no root) stored content is damaged or missing; ``.paths`` names
                the files.
        """
        from castore.worktree import operations as materialize

        entries = list(self.files())
        if root is not None:
            report = materialize.verify_dir(
                self._store.blobs, entries, root, stat_cache=self._stat_cache()
            )
            if not report.ok:
                parts = [
                    f"{len(v)} {k}" for k, v in
                    (("missing", report.missing), ("modified", report.modified),
                     ("extra", report.extra)) if v
                ]
                raise VerificationError(
                    f"{str(root)!r} does not match {self.ref}: {', '.join(parts)} "
                    f"(see .report; run checkout() to restore it)",
                    report=report,
                )
            return report
        damaged = materialize.verify_blobs(self._store.blobs, entries)
        if damaged:
            shown = ", ".join(map(repr, damaged[:5])) + (" …" if len(damaged) > 5 else "")
            raise IntegrityError(
                f"{self.ref}: the stored content of {len(damaged)} file(s) is damaged or "
                f"missing: {shown}; run store.fsck()",
                paths=damaged,
            )
        return VerifyReport(ok=True)

    def open(self, path: str) -> BinaryIO:
        """A streaming binary reader of one file; its digest is checked when read to the end.

        Raises:
            NotFoundError: no such file in the version.
            IntegrityError: (while reading) the stored content is damaged.
        """
        from castore.worktree import operations as materialize

        return materialize.open_entry(self._store.blobs, self.get_entry(path))

    def read_bytes(self, path: str) -> bytes:
        """The whole (verified) content of one file."""
        with self.open(path) as fh:
            return fh.read()

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        """The whole (verified) content of one file, decoded."""
        return self.read_bytes(path).decode(encoding)

    # -- end of materialize (issue 4) ---------------------------------------------------------

    # -- changes ---------------------------------------------------------------------------

    def _require_committed(self, what: str) -> Any:
        if self.state != "COMMITTED":
            raise NotFoundError(
                f"cannot {what} {self.ref}: it is {self.state}, not COMMITTED", ref=self.ref
            )
        return self._row["collection_id"]

    def new_draft(self) -> Draft:
        """A draft pre-filled with this version's files, description and metadata."""
        store = self._store
        store._require_writable("start a draft")
        catalog = store.catalog
        with catalog.write_txn():
            draft_id = catalog.create_version(
                self._row["collection_id"],
                description=self.description,
                metadata=self.metadata,
                base_version=self.id,
            )
            catalog.copy_entries(self.id, draft_id)
        from castore.artifact import Draft

        return Draft(store, draft_id, self.collection, self.type)

    def add_alias(self, alias: str) -> ArtifactVersion:
        """Point ``alias`` at this version (moving it from another version of the collection).

        Raises:
            InvalidReferenceError: malformed, or ``"latest"`` (managed by the store).
        """
        _check_user_alias(alias)
        with self._store.catalog.write_txn():
            self.refresh()
            collection_id = self._require_committed("alias")
            self._store.catalog.set_alias(collection_id, alias, self.id)
        return self.refresh()

    def remove_alias(self, alias: str) -> ArtifactVersion:
        """Remove ``alias`` from this version.

        Raises:
            NotFoundError: the alias does not point here.
        """
        _check_user_alias(alias)
        catalog = self._store.catalog
        with catalog.write_txn():
            if alias not in catalog.aliases_of(self.id):
                raise NotFoundError(f"alias {alias!r} does not point at {self.ref}", ref=alias)
            catalog.remove_alias(self._row["collection_id"], alias)
        return self.refresh()

    def add_tags(self, tags: Iterable[str]) -> ArtifactVersion:
        """Add tags (existing ones are kept)."""
        tags = _tag_list(tags)
        self._store.catalog.add_tags(self.id, tags)
        return self.refresh()

    def remove_tags(self, tags: Iterable[str]) -> ArtifactVersion:
        """Remove tags (absent ones are ignored)."""
        tags = _tag_list(tags)
        self._store.catalog.remove_tags(self.id, tags)
        return self.refresh()

    def update(
        self, *, description: str | None = _UNSET, metadata: dict[str, Any] = _UNSET
    ) -> ArtifactVersion:
        """Change the description and/or replace the metadata; only given fields change."""
        fields: dict[str, Any] = {}
        if description is not _UNSET:
            fields["description"] = description
        if metadata is not _UNSET:
            if not isinstance(metadata, dict):
                raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
            fields["metadata"] = _json_safe(metadata)
        if fields:
            self._store.catalog.update_version(self.id, **fields)
        return self.refresh()

    def set_ttl(self, ttl: timedelta | None) -> ArtifactVersion:
        """Expire ``ttl`` after creation (None: never). A version with a user alias never
        expires; an expired one disappears from queries at once and gc deletes it."""
        seconds = _seconds(ttl)
        self._store.catalog.set_ttl(self.id, seconds)
        return self.refresh()

    def delete(self, *, delete_aliases: bool = False) -> None:
        """Delete the version; ``latest`` moves to the previous one. Blobs stay until gc.

        Raises:
            AliasConflictError: it holds aliases other than ``latest`` and not
                ``delete_aliases``.
        """
        self._store._require_writable("delete a version")
        self._store.catalog.delete_version(self.id, delete_aliases=delete_aliases)
        self.refresh()

    def logged_by(self) -> Any:
        """The run that produced this version, or None (runs are not recorded yet)."""
        return None

    def used_by(self) -> list[Any]:
        """The runs that used this version (none recorded yet)."""
        return []

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


class Collection:
    """A named, typed sequence of versions."""

    def __init__(self, store: Store, row: dict[str, Any]) -> None:
        self._store = store
        self._row = row

    def refresh(self) -> Collection:
        """Reload the snapshot.

        Raises:
            NotFoundError: the collection was deleted.
        """
        row = self._store.catalog.get_collection_by_id(self._row["id"])
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
        found = self._store.catalog.collection_aliases(self._row["id"])
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

    def alias_history(self, alias: str | None = None) -> list[dict[str, Any]]:
        """Every move of the aliases (of ``alias``): ``at``, ``alias``, ``from``, ``to`` ids."""
        rows = self._store.catalog.alias_history(self._row["id"], alias)
        return [
            {
                "at": to_datetime(r["at"]),
                "alias": r["alias"],
                "from": r["from_version"],
                "to": r["to_version"],
            }
            for r in rows
        ]

    def versions(self) -> list[ArtifactVersion]:
        """The live committed versions, newest first."""
        page = self._store.versions(collection=self.name, sort="-number", limit=None)
        return list(page.items)

    def update(
        self,
        *,
        description: str | None = _UNSET,
        default_ttl: timedelta | None = _UNSET,
        type: str = _UNSET,
        tags: Iterable[str] = _UNSET,
        metadata: dict[str, Any] = _UNSET,
    ) -> Collection:
        """Change the given fields; ``default_ttl`` applies to versions created afterwards."""
        fields: dict[str, Any] = {}
        if description is not _UNSET:
            fields["description"] = description
        if default_ttl is not _UNSET:
            fields["default_ttl"] = _seconds(default_ttl, "default_ttl")
        if type is not _UNSET:
            fields["type"] = validate_name_like(type, "type")
        if tags is not _UNSET:
            fields["tags"] = sorted(set(_tag_list(tags)))
        if metadata is not _UNSET:
            fields["metadata"] = _json_safe(metadata)
        self._store._require_writable("update a collection")
        self._store.catalog.update_collection(self._row["id"], **fields)
        return self.refresh()

    def delete(self) -> None:
        """Delete the collection and all its versions (blobs stay until gc)."""
        self._store._require_writable("delete a collection")
        self._store.catalog.delete_collection(self._row["id"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Collection) and other._row["id"] == self._row["id"]

    def __hash__(self) -> int:
        return hash(("collection", self._row["id"]))

    def __repr__(self) -> str:
        return f"<Collection {self.name} type={self.type}>"


def validate_name_like(value: str, what: str) -> str:
    """Check a type name (same rule as collection names)."""
    from castore.refs import validate_name

    return validate_name(value, what)


def _check_user_alias(alias: str) -> None:
    validate_alias(alias)
    if alias == LATEST:
        raise InvalidReferenceError(
            "'latest' is managed by the store: it always points at the newest version",
            ref=alias,
        )


def _tag_list(tags: Iterable[str]) -> list[str]:
    if isinstance(tags, str):
        tags = [tags]
    return [validate_tag(tag) for tag in tags]


def _json_safe(metadata: dict[str, Any]) -> dict[str, Any]:
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata must be JSON-serialisable (no NaN): {exc}") from exc
    return metadata


def resolve_ref(store: Store, ref: str) -> dict[str, Any]:
    """The catalogue row a reference string names (``API.md`` "Reference strings").

    Raises:
        InvalidReferenceError: malformed reference.
        NotFoundError: nothing matches (or an asserted digest differs).
        MultipleResourcesFoundError: a digest prefix matches versions of different content.
    """
    parsed = parse_ref(ref)
    catalog = store.catalog
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
