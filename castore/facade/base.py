"""What every piece of the Store facade can rely on: the parts and their read-only views."""

from __future__ import annotations

from pathlib import Path

from castore._parts import Parts
from castore.index.catalog import Catalog
from castore.models import StoreConfig
from castore.storage.blobs import BlobStore
from castore.storage.layout import Layout

__all__ = ["StoreBase"]


class StoreBase:
    """The parts of an open store, and properties over them."""

    parts: Parts

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
