"""The on-disk layout of a store (format 1) and its ``castore.json``.

```
STORE/
  castore.json   format, store id, hash algorithm, compression settings
  catalog.db     the SQLite catalogue (WAL)
  blobs/ab/<hex>[.zst]
  tmp/0..f/      in-flight writes (same filesystem as blobs/), spread over 16 directories
  trash/         blobs gc has unlinked from blobs/ and is about to delete
  quarantine/    blobs that failed verification (kept, never silently deleted)
  locks/         maintenance lock files
  reserve        space released on a full disk so deletes can run (storage/reserve.py)
```
"""

from __future__ import annotations

import json
import os
import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from castore.errors import (
    ConfigurationError,
    StoreDamagedError,
    StoreNotFoundError,
    UnsupportedFormatError,
)
from castore.models import DEFAULT_MIN_SAVING, CompressionConfig, StoreConfig
from castore.storage.fsutil import durable_write

__all__ = ["FORMAT", "READABLE_FORMATS", "Layout", "config_json"]

#: The store format this version of castore writes and reads.
FORMAT = 2
#: Formats this castore opens: 1 (loose blobs only) opens unchanged and stays format 1.
READABLE_FORMATS = (1, 2)
CONFIG_NAME = "castore.json"
#: Subdirectories of tmp/ that in-flight writes are spread over.
TMP_SPREAD = tuple(f"{i:x}" for i in range(16))
_OWN_NAMES = {
    CONFIG_NAME,
    "catalog.db",
    "catalog.db-wal",
    "catalog.db-shm",
    "catalog.db-journal",
    "blobs",
    "packs",
    "tmp",
    "trash",
    "quarantine",
    "locks",
    "manifests",
    "reserve",
}
_REPAIR_HINT = "`castore fsck --repair` (castore.repair() in Python) restores it"
#: Files and directories whose presence means a store lives here, even without castore.json.
_DATA_NAMES = ("catalog.db", "catalog.db-wal", "blobs", "packs", "manifests")


def config_json(config: StoreConfig) -> bytes:
    """The bytes of ``castore.json`` for ``config``.

    ``compression.min_saving`` is written only when it is not the default, so a store with the
    default settings keeps the ``castore.json`` that earlier castore versions read.
    """
    exclude = ({"compression": {"min_saving"}}
               if config.compression.min_saving == DEFAULT_MIN_SAVING else None)
    fields = config.model_dump(mode="json", exclude=exclude)
    return (json.dumps(fields, indent=2, sort_keys=True) + "\n").encode()


class Layout:
    """Paths of a store's parts, and reading/writing its configuration."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.config_path = self.root / CONFIG_NAME
        self.catalog_path = self.root / "catalog.db"
        self.blobs = self.root / "blobs"
        self.packs = self.root / "packs"
        self.tmp = self.root / "tmp"
        self.trash = self.root / "trash"
        self.quarantine = self.root / "quarantine"
        self.locks = self.root / "locks"
        self.manifests = self.root / "manifests"
        self._tmp_spread = [self.tmp / name for name in TMP_SPREAD]

    def exists(self) -> bool:
        """True when the root holds a ``castore.json``."""
        return self.config_path.is_file()

    def read_config(self) -> StoreConfig:
        """Read and validate ``castore.json``.

        Raises:
            StoreNotFoundError: there is no ``castore.json``.
            UnsupportedFormatError: its format is unknown (newer castore) or it is unreadable.
        """
        try:
            raw = self.config_path.read_bytes()
        except FileNotFoundError as exc:
            raise StoreNotFoundError(self.root) from exc
        except NotADirectoryError as exc:
            raise StoreNotFoundError(self.root) from exc
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UnsupportedFormatError(
                f"{self.config_path} is not valid JSON: the store's settings file is damaged; "
                f"{_REPAIR_HINT}",
                found=None,
            ) from exc
        fmt = data.get("format") if isinstance(data, dict) else None
        if isinstance(fmt, int) and not isinstance(fmt, bool) and fmt > FORMAT:
            raise UnsupportedFormatError(
                f"store {str(self.root)!r} has format {fmt!r}; this castore reads format "
                f"{FORMAT} (upgrade castore to open newer stores)",
                found=fmt,
            )
        if fmt not in READABLE_FORMATS:
            raise UnsupportedFormatError(
                f"{self.config_path} has no valid format number ({fmt!r}): the store's "
                f"settings file is damaged; {_REPAIR_HINT}",
                found=fmt,
            )
        try:
            return StoreConfig.model_validate(data)
        except ValueError as exc:
            raise UnsupportedFormatError(
                f"{self.config_path} is not a valid format-{FORMAT} configuration ({exc}); "
                f"{_REPAIR_HINT}",
                found=fmt,
            ) from exc

    def create(
        self, *, hash: str, compression: str, level: int, durable: bool,
        min_saving: float = DEFAULT_MIN_SAVING,
    ) -> StoreConfig:
        """Create the store, or return the existing one's config if another process won.

        Safe when many processes create the same store at once: the configuration is
        published with no overwrite, so exactly one wins and the others read it.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.exists():
            if self.holds_data():
                raise StoreDamagedError(
                    self.root,
                    "castore.json is missing while the store holds a catalogue or blobs "
                    "(creating a new one could change the hash algorithm and make every "
                    "version unreadable)",
                )
            strangers = sorted(
                p.name
                for p in self.root.iterdir()
                if p.name not in _OWN_NAMES and not p.name.startswith(".")
            )
            if strangers:
                raise ConfigurationError(
                    f"{str(self.root)!r} is not empty and is not a castore store (it holds "
                    f"{', '.join(strangers[:3])}{'…' if len(strangers) > 3 else ''}); "
                    "choose an empty or new directory"
                )
            config = StoreConfig(
                format=FORMAT,
                store_id=str(uuid.uuid4()),
                hash=hash,
                compression=CompressionConfig(
                    codec=compression, level=level, min_saving=min_saving  # type: ignore[arg-type]
                ),
                created_at=datetime.now(UTC),
            )
            durable_write(self.config_path, config_json(config), overwrite=False,
                          durable=durable)
        config = self.read_config()
        for directory in (
            self.blobs, self.packs, self.tmp, self.trash, self.quarantine, self.locks,
            self.manifests,
        ):
            directory.mkdir(exist_ok=True)
        for spread in TMP_SPREAD:
            (self.tmp / spread).mkdir(exist_ok=True)
        return config

    def tmp_dir(self) -> Path:
        """A directory of ``tmp/`` for one new temp file.

        Creating and unlinking files serialises on their directory's lock: one shared tmp/
        capped parallel adds at ~2,800 files/s here, 16 spread directories reach ~9,700.
        """
        return self._tmp_spread[secrets.randbelow(len(TMP_SPREAD))]

    def iter_tmp_files(self) -> Iterator[os.DirEntry[str]]:
        """Every file in ``tmp/`` and its spread directories."""
        if not self.tmp.is_dir():
            return
        with os.scandir(self.tmp) as it:
            entries = list(it)
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                with os.scandir(entry.path) as sub:
                    yield from list(sub)
            else:
                yield entry

    def holds_data(self) -> bool:
        """True when a catalogue, a blob or a manifest marker is here (a store's content)."""
        for name in _DATA_NAMES:
            path = self.root / name
            if path.is_file() and path.stat().st_size > 0:
                return True
            if path.is_dir() and any(_files_below(path)):
                return True
        return False

    def catalogue_lost(self) -> bool:
        """True when ``catalog.db`` is missing or empty while the store holds blobs or markers.

        Such a catalogue would open as an empty store, and gc would then delete everything.
        """
        try:
            size = self.catalog_path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size > 0:
            return False
        return any(
            path.is_dir() and any(_files_below(path)) for path in (self.blobs, self.manifests)
        )

    def writable(self) -> bool:
        """True when this process may create files in the store."""
        return os.access(self.root, os.W_OK) and (
            not self.blobs.exists() or os.access(self.blobs, os.W_OK)
        )


def _files_below(directory: Path) -> Iterator[str]:
    """Names of files in ``directory`` and its subdirectories (one level), lazily."""
    with os.scandir(directory) as it:
        entries = list(it)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            with os.scandir(entry.path) as sub:
                names = [e.name for e in sub]
            yield from names
        else:
            yield entry.name
