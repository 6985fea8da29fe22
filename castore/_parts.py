"""The parts of an open store, handed to handles and operations instead of the ``Store``.

Handles and operations depend on this small bundle declared below them (restic's
``Repository`` interface used by its restorer), so nothing under ``store.py`` imports it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Protocol, TypeVar

from castore.errors import CatalogCorruptError, OutOfSpaceError, ReadOnlyStoreError
from castore.index.catalog import Catalog
from castore.models import StoreConfig
from castore.storage.blobs import BlobStore
from castore.storage.layout import Layout
from castore.storage.markers import ManifestMarkers
from castore.storage.reserve import release_reserve

__all__ = ["BlobFetcher", "Parts", "blob_store", "freeing_space"]

T = TypeVar("T")


def freeing_space(layout: Layout, operation: Callable[[], T]) -> T:
    """Run an operation that frees space; on a full disk, release the reserve and retry once.

    For deletes only (rm, gc, prune, and opening the catalogue they need): on a 100 % full
    disk the catalogue cannot map its ``-shm`` or grow its ``-wal``, and blob files may only
    go after the COMMIT ("rm and gc must still be able to free space"). The failed
    attempt was rolled back, so running it again is safe.
    """
    try:
        return operation()
    except OutOfSpaceError:
        if not release_reserve(layout.root):
            raise
        return operation()


def blob_store(layout: Layout, config: StoreConfig, *, read_only: bool, durable: bool) -> BlobStore:
    """The blob store of ``layout`` with the settings of ``config``."""
    return BlobStore(
        layout,
        algorithm=config.hash,
        compression=config.compression.codec,
        level=config.compression.level,
        min_saving=config.compression.min_saving,
        durable=durable,
        read_only=read_only,
        packs=config.format >= 2,
    )


class BlobFetcher(Protocol):
    """Brings back blobs evicted under a budget (``set_budget``) from the remotes holding them.

    Declared here, provided by the store (``castore.transfer.fetchback``): handles and
    operations ask it through :meth:`Parts.ensure_local` and never import ``transfer``.
    """

    def fetch(self, parts: Parts, wanted: Mapping[str, int]) -> None:
        """Store the blobs ``{digest: size}`` again, each verified; skip those no remote holds.

        Raises:
            RemoteError: a remote holding one of them cannot be reached (naming it).
        """
        ...

    def held(self, parts: Parts, digests: Iterable[str]) -> set[str]:
        """Of ``digests``, those a remote is known to hold and still holds (asked now)."""
        ...


class Parts:
    """Layout, settings, blob store and catalogue of one open store, with its flags.

    ``catalog`` is the one mutable field: a catalogue rebuild swaps it in place, so every
    handle holding these parts sees the new one.
    """

    __slots__ = (
        "blobs", "catalog", "config", "durable", "fetcher", "layout", "lock", "markers", "path",
        "read_only",
    )

    def __init__(
        self,
        *,
        layout: Layout,
        config: StoreConfig,
        blobs: BlobStore,
        catalog: Catalog,
        read_only: bool,
        durable: bool,
    ) -> None:
        self.layout = layout
        self.path: Path = layout.root
        self.config = config
        self.blobs = blobs
        self.catalog = catalog
        self.read_only = read_only
        self.durable = durable
        self.markers = ManifestMarkers(layout.manifests, durable=durable)
        self.lock = threading.RLock()
        #: brings back evicted blobs (set by the store; None: nothing is ever fetched)
        self.fetcher: BlobFetcher | None = None

    @classmethod
    def open(cls, layout: Layout, config: StoreConfig, *, read_only: bool, durable: bool) -> Parts:
        """Open the blob store and the catalogue of the store at ``layout``.

        Raises:
            CatalogCorruptError: the catalogue is missing or empty while the store holds
                blobs (it would open as an empty store, and a gc would then delete every
                blob), or it cannot be opened.
        """
        if layout.catalogue_lost():
            raise CatalogCorruptError(
                layout.catalog_path, "it is missing or empty while the store holds blobs"
            )
        blobs = blob_store(layout, config, read_only=read_only, durable=durable)
        catalog = Catalog(layout.catalog_path, read_only=read_only, durable=durable)
        return cls(
            layout=layout, config=config, blobs=blobs, catalog=catalog,
            read_only=read_only, durable=durable,
        )

    @property
    def algorithm(self) -> str:
        """The store's hash algorithm."""
        return self.config.hash

    def ensure_local(self, blobs: Iterable[tuple[str | None, int]]) -> None:
        """Fetch back the blobs ``(digest, size)`` that are not stored here (evicted under a
        budget) from a remote known to hold them; a no-op when all are here.

        Raises:
            RemoteError: the remote holding an evicted blob cannot be reached (naming it).
        """
        if self.fetcher is None:
            return
        wanted = {d: s for d, s in blobs if d is not None and not self.blobs.exists(d)}
        if wanted:
            self.fetcher.fetch(self, wanted)

    def require_writable(self, operation: str) -> None:
        """Raise :class:`ReadOnlyStoreError` naming ``operation`` on a read-only store."""
        if self.read_only:
            raise ReadOnlyStoreError(self.path, operation)

    def freeing_space(self, operation: Callable[[], T]) -> T:
        """:func:`freeing_space` on this store."""
        return freeing_space(self.layout, operation)
