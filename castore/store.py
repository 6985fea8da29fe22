"""The ``Store`` facade: opens a store directory and composes blobs, catalogue and the rest."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from castore._parts import Parts, blob_store, freeing_space
from castore.artifact.commit import start_draft
from castore.errors import (
    CatalogCorruptError,
    ConfigurationError,
    NotFoundError,
    StoreDamagedError,
    StoreNotFoundError,
)
from castore.handles.collection import Collection
from castore.handles.query import resolve_ref, version_filters
from castore.handles.version import ArtifactVersion, Draft
from castore.index.catalog import Catalog
from castore.maintenance import fsck as fsck_ops
from castore.maintenance import gc as gc_ops
from castore.maintenance import rebuild
from castore.models import (
    Diff,
    Finding,
    FsckReport,
    GCReport,
    Page,
    PruneReport,
    StoreConfig,
    StoreStats,
    TypeInfo,
)
from castore.storage.blobs import BlobStore
from castore.storage.hashing import DEFAULT_ALGORITHM, check_algorithm
from castore.storage.layout import Layout
from castore.storage.locking import maintenance_lock
from castore.storage.reserve import ensure_reserve
from castore.worktree import operations

__all__ = ["DEFAULT_HOME", "Store", "default_path", "init", "open", "repair"]

DEFAULT_HOME = "~/.castore"
_COMPRESSIONS = ("zstd", "none")


def default_path() -> Path:
    """``$CASTORE_HOME``, else ``~/.castore``."""
    return Path(os.environ.get("CASTORE_HOME") or DEFAULT_HOME).expanduser()


class Store:
    """An open castore store: a directory of blobs and a SQLite catalogue.

    Use :func:`castore.open` or :func:`castore.init` to get one. A ``Store`` is safe to share
    between threads; several processes may open the same directory at once.

    Example:
        >>> import castore, tempfile
        >>> with castore.open(tempfile.mkdtemp()) as store:
        ...     store.config.hash
        'xxh3-128'
    """

    def __init__(
        self,
        path: str | Path,
        *,
        config: StoreConfig,
        read_only: bool = False,
        durable: bool = True,
    ) -> None:
        layout = Layout(Path(path).absolute())
        if read_only:
            self.parts = Parts.open(layout, config, read_only=True, durable=durable)
        else:
            # On a full disk the catalogue cannot even map its -shm: release the reserve.
            self.parts = freeing_space(
                layout, lambda: Parts.open(layout, config, read_only=False, durable=durable)
            )
            ensure_reserve(layout.root)  # only while space is plentiful
        self._closed = False
        if not read_only and not layout.manifests.is_dir():
            rebuild.backfill_markers(self.parts)  # a store made before markers existed

    @property
    def path(self) -> Path:
        """The store's directory."""
        return self.parts.path

    @property
    def layout(self) -> Layout:
        """Where the store's files are."""
        return self.parts.layout

    @property
    def config(self) -> StoreConfig:
        """The settings of ``castore.json``."""
        return self.parts.config

    @property
    def read_only(self) -> bool:
        """True when every write raises :class:`ReadOnlyStoreError`."""
        return self.parts.read_only

    @property
    def durable(self) -> bool:
        """True when writes are fsynced before they count."""
        return self.parts.durable

    @property
    def blobs(self) -> BlobStore:
        """The blob store."""
        return self.parts.blobs

    @property
    def catalog(self) -> Catalog:
        """The SQLite catalogue."""
        return self.parts.catalog

    @property
    def hash(self) -> str:
        """The store's hash algorithm (``"xxh3-128"``, ``"blake3"`` or ``"sha256"``)."""
        return self.config.hash

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def close(self) -> None:
        """Close the catalogue connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.parts.catalog.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = " read-only" if self.read_only else ""
        return f"<castore.Store {str(self.path)!r} {self.config.hash}{mode}>"

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

    def get(self, ref: str) -> ArtifactVersion:
        """The version a reference names: ``"mnist"``, ``"mnist:prod"``, ``"mnist:v3"``,
        ``"mnist@9f2c1a"``, ``"mnist:prod@9f2c1a"`` or a version id.

        Raises:
            NotFoundError: nothing matches (expired versions are hidden).
            MultipleResourcesFoundError: a digest prefix matches different contents.
            InvalidReferenceError: the reference is malformed.
        """
        return ArtifactVersion(self.parts, resolve_ref(self.parts.catalog, ref))

    def collection(self, name: str) -> Collection:
        """The collection ``name``.

        Raises:
            NotFoundError: there is none.
        """
        row = self.catalog.get_collection(name)
        if row is None:
            raise NotFoundError(f"no collection named {name!r}", ref=name)
        return Collection(self.parts, row)

    def collections(self, type: str | None = None) -> list[Collection]:
        """Every collection (of ``type``), by name."""
        return [Collection(self.parts, row) for row in self.catalog.list_collections(type)]

    def versions(
        self,
        collection: str | None = None,
        *,
        type: str | None = None,
        tags: list[str] | None = None,
        alias: str | None = None,
        state: str | None = "COMMITTED",
        metadata: dict[str, Any] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        match: str = "all",
        sort: str | list[str] = "-created_at",
        limit: int | None = 50,
        offset: int = 0,
    ) -> Page[ArtifactVersion]:
        """Versions matching the filters, one page at a time.

        ``state`` and the hiding of expired versions always apply; ``match`` (``"all"`` or
        ``"any"``) combines the other filters; ``tags`` means all of them (any with
        ``match="any"``). ``sort`` takes ``created_at``, ``updated_at``, ``size``, ``number``,
        ``name``, ``-`` for descending, several separated by commas.

        Example:
            >>> page = store.versions(type="model", metadata={"split": "train"})  # doctest: +SKIP
            >>> page.total, page.has_more  # doctest: +SKIP
        """
        filters = version_filters(
            collection, type, tags, alias, state, metadata, created_after, created_before, match
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
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        match: str = "all",
    ) -> int:
        """How many versions :meth:`versions` would list with the same filters."""
        filters = version_filters(
            collection, type, tags, alias, state, metadata, created_after, created_before, match
        )
        return self.catalog.count_versions(**filters)

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

    def gc(
        self,
        dry_run: bool = False,
        grace: timedelta | None = None,
        *,
        discard_unknown: bool = False,
    ) -> GCReport:
        """Delete expired versions, unreferenced blobs and stale temp files.

        Plans, then acts: expired versions (TTL) are deleted with the alias rules (``latest``
        repointed); blobs that no committed or pending version references and that are older
        than ``grace`` are deleted after the catalogue commit, under the maintenance lock.
        Safe beside writers in other processes, even with ``grace=timedelta(0)``.

        Args:
            dry_run: only report what would be deleted.
            grace: how old an unreferenced blob must be (default one hour).
            discard_unknown: also let go of versions that have a stored document but no
                catalogue row (after restoring an older ``catalog.db``). By default gc keeps
                them, and every blob they name, until ``fsck(repair=True)`` restores them.

        Returns:
            A :class:`GCReport`.

        Raises:
            ReadOnlyStoreError: the store is read-only (a dry run works).
            LockTimeoutError: another gc, prune or repair held the store too long.

        Example:
            >>> store.gc(dry_run=True).blobs_deleted  # doctest: +SKIP
            0
        """
        if dry_run:
            return gc_ops.gc(self.parts, dry_run=True, grace=grace, discard_unknown=discard_unknown)
        self.parts.require_writable("run gc")
        report = self.parts.freeing_space(
            lambda: gc_ops.gc(
                self.parts, dry_run=False, grace=grace, discard_unknown=discard_unknown
            )
        )
        ensure_reserve(self.layout.root)  # taken again once there is room to spare
        return report

    def prune(
        self,
        collection: str | None = None,
        *,
        keep_last: int | None = None,
        only_unused: bool = False,
        dry_run: bool = False,
    ) -> PruneReport:
        """Delete versions by retention policy; their blobs go at the next :meth:`gc`.

        Args:
            collection: one collection (default: every collection).
            keep_last: keep the newest ``keep_last`` versions of each collection.
            only_unused: delete only versions no run used or produced (with ``keep_last``:
                both conditions must hold).
            dry_run: only report what would be deleted.

        A version holding any alias, ``latest`` included, is never pruned.

        Raises:
            ValueError: no policy was given.
            NotFoundError: ``collection`` does not exist.
            ReadOnlyStoreError: the store is read-only (a dry run works).

        Example:
            >>> store.prune("mnist", keep_last=3).versions_deleted  # doctest: +SKIP
            ['mnist:v0', 'mnist:v1']
        """
        if not dry_run:
            self.parts.require_writable("prune versions")
        return self.parts.freeing_space(
            lambda: gc_ops.prune(
                self.parts, collection, keep_last=keep_last, only_unused=only_unused,
                dry_run=dry_run,
            )
        )

    def fsck(self, repair: bool = False) -> FsckReport:
        """Check the store's invariants: catalogue, blobs, aliases, temp files and drafts.

        Every stored blob is re-hashed. Findings use a fixed vocabulary (``missing_blob``,
        ``corrupt_blob``, ``dangling_ref``, ``alias_to_missing``, ``catalogue_integrity``:
        errors; ``orphan_blob``, ``stale_tmp``, ``stale_draft``: warnings).

        Args:
            repair: quarantine corrupt blobs (never delete them), flag affected versions
                damaged, remove stale temp files, and rebuild a damaged catalogue from the
                manifest blobs.

        Returns:
            A :class:`FsckReport`; ``ok`` is False only when there is an error.

        Raises:
            ReadOnlyStoreError: ``repair`` on a read-only store.

        Example:
            >>> store.fsck().ok  # doctest: +SKIP
            True
        """
        if repair:
            self.parts.require_writable("repair the store")
        return fsck_ops.fsck(
            self.parts, repair=repair, rebuild=lambda: rebuild.rebuild_in_place(self.parts)
        )

    def stats(self) -> StoreStats:
        """Counts and sizes: collections, versions, blobs, logical and stored bytes.

        ``dedup_ratio`` is the logical bytes of all versions over the bytes of their distinct
        contents (1.0 without any sharing); ``stored_bytes`` is what the blob files take.

        Example:
            >>> store.stats().versions  # doctest: +SKIP
            12
        """
        return gc_ops.stats(self.parts)

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
        return operations.diff(va.files(), vb.files(), a=va.ref, b=vb.ref)


def _check_settings(hash: str, compression: str, level: int) -> None:
    check_algorithm(hash)
    if compression not in _COMPRESSIONS:
        raise ConfigurationError(
            f"unknown compression {compression!r}; choose one of {', '.join(_COMPRESSIONS)}"
        )
    if not isinstance(level, int) or not 1 <= level <= 22:
        raise ConfigurationError(f"zstd level must be an integer from 1 to 22, not {level!r}")


def init(
    path: str | Path | None = None,
    *,
    hash: str = DEFAULT_ALGORITHM,
    compression: str = "zstd",
    level: int = 3,
    durable: bool = True,
) -> Store:
    """Create a store with explicit settings, or open the existing one if they match.

    Args:
        path: the store directory (default: ``$CASTORE_HOME``, else ``~/.castore``).
        hash: ``"xxh3-128"`` (default, fastest), ``"blake3"`` or ``"sha256"`` (choose a
            cryptographic one where untrusted parties can write blobs). Fixed at creation.
        compression: ``"zstd"`` or ``"none"``.
        level: zstd level, 1–22.
        durable: fsync before anything counts as stored (False for scratch stores).

    Raises:
        ConfigurationError: the store exists with other settings, or a setting is invalid.
        UnsupportedFormatError: the directory holds a store of an unknown format.

    Example:
        >>> import castore, tempfile
        >>> castore.init(tempfile.mkdtemp(), hash="sha256").hash
        'sha256'
    """
    _check_settings(hash, compression, level)
    root = Path(path).expanduser() if path is not None else default_path()
    layout = Layout(root)
    config = layout.create(hash=hash, compression=compression, level=level, durable=durable)
    wanted = (hash, compression, level)
    found = (config.hash, config.compression.codec, config.compression.level)
    if found != wanted:
        raise ConfigurationError(
            f"the store at {str(root)!r} exists with hash={found[0]!r}, "
            f"compression={found[1]!r}, level={found[2]!r}; it cannot change to "
            f"hash={hash!r}, compression={compression!r}, level={level!r} (open it with "
            "castore.open() to use its own settings)"
        )
    return Store(root, config=config, durable=durable)


def open(  # noqa: A001 - castore.open() is the public name, as in API.md
    path: str | Path | None = None,
    *,
    create: bool = True,
    read_only: bool = False,
    durable: bool = True,
    hash: str | None = None,
    compression: str | None = None,
    level: int | None = None,
) -> Store:
    """Open the store at ``path``, creating it with default settings if missing.

    Args:
        path: the store directory (default: ``$CASTORE_HOME``, else ``~/.castore``).
        create: create a missing store; with False a missing store raises.
        read_only: every read works, every write raises :class:`ReadOnlyStoreError`, and
            nothing is created in the directory. A store this process cannot write to opens
            read-only by itself.
        durable: fsync before anything counts as stored.
        hash: the hash algorithm of a store created here (see :func:`init`); for an
            existing store, a different value raises :class:`ConfigurationError`.
        compression: ``"zstd"`` or ``"none"``, as for ``hash``.
        level: the zstd level, as for ``hash``.

    Raises:
        StoreNotFoundError: no store at ``path`` and ``create`` is False (or ``read_only``).
        UnsupportedFormatError: the store has an unknown (newer) format.

    Example:
        >>> import castore, tempfile
        >>> store = castore.open(tempfile.mkdtemp())
        >>> store.close()
    """
    root = Path(path).expanduser() if path is not None else default_path()
    layout = Layout(root)
    if not layout.exists():
        if layout.holds_data():
            raise StoreDamagedError(
                root, "castore.json is missing while the store holds a catalogue or blobs"
            )
        if not create or read_only:
            raise StoreNotFoundError(root)
        return init(
            root, durable=durable, hash=hash or DEFAULT_ALGORITHM,
            compression=compression or "zstd", level=3 if level is None else level,
        )
    config = layout.read_config()
    if hash is not None or compression is not None or level is not None:
        return init(
            root, durable=durable, hash=hash or config.hash,
            compression=compression or config.compression.codec,
            level=config.compression.level if level is None else level,
        )
    read_only = read_only or not layout.writable()
    return Store(root, config=config, read_only=read_only, durable=durable)


def repair(path: str | Path | None = None, *, durable: bool = True) -> FsckReport:
    """Check and repair the store at ``path``, even when its catalogue is too damaged to open.

    Runs ``fsck(repair=True)``: a catalogue that cannot be opened (or fails its integrity
    check) is set aside as ``catalog.db.damaged-*`` and rebuilt from the manifest blobs.

    Raises:
        StoreNotFoundError: there is no store at ``path``.
        LockTimeoutError: another maintenance run holds the store.

    Example:
        >>> castore.repair("path/to/store").ok  # doctest: +SKIP
        True
    """
    root = Path(path).expanduser() if path is not None else default_path()
    layout = Layout(root)
    config, notes = rebuild.recover_config(layout, durable=durable)
    try:
        store = Store(root, config=config, durable=durable)
    except CatalogCorruptError as exc:
        notes.append(
            Finding(
                kind="catalogue_integrity",
                severity="error",
                path=str(layout.catalog_path),
                message=f"the catalogue could not be used ({exc.detail}); rebuilt it",
                repaired=True,
            )
        )
        blobs = blob_store(layout, config, read_only=False, durable=durable)
        with maintenance_lock(layout.locks):
            catalog, rebuilt = rebuild.rebuild_catalog(layout, blobs, durable=durable)
            catalog.close()
        notes.extend(rebuilt)
        store = Store(root, config=config, durable=durable)
    with store:
        report = store.fsck(repair=True)
    if not notes:
        return report
    findings = [*notes, *report.findings]
    return FsckReport(
        ok=not any(f.severity == "error" and not f.repaired for f in findings),
        findings=findings,
        repaired=True,
    )
