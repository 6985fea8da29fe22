"""The ``Store`` facade: opens a store directory and composes blobs, catalogue and the rest."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

from castore._parts import Parts, blob_store, freeing_space
from castore.errors import (
    CatalogCorruptError,
    ConfigurationError,
    StoreDamagedError,
    StoreNotFoundError,
)
from castore.facade.budget import BudgetMixin
from castore.facade.maintenance import MaintenanceMixin
from castore.facade.objects import ObjectsMixin
from castore.facade.queries import QueriesMixin
from castore.facade.runs import RunsMixin
from castore.facade.transfer import TransferMixin
from castore.models import (
    DEFAULT_MIN_SAVING,
    Finding,
    FsckReport,
    StoreConfig,
)
from castore.storage.hashing import DEFAULT_ALGORITHM, check_algorithm
from castore.storage.layout import Layout
from castore.storage.locking import maintenance_lock
from castore.storage.reserve import ensure_reserve

__all__ = ["DEFAULT_HOME", "Store", "default_path", "init", "open", "repair"]

DEFAULT_HOME = "~/.castore"
_COMPRESSIONS = ("zstd", "none")


class _LazyFetcher:
    """Fetches blobs evicted under a budget; imports the transfer code on first use only, so
    a command that only reads (``castore ls``) does not pay ~30 ms of imports for it."""

    def fetch(self, parts: Parts, wanted: Mapping[str, int]) -> None:
        from castore.transfer.fetchback import RemoteFetcher

        RemoteFetcher().fetch(parts, wanted)

    def held(self, parts: Parts, digests: Iterable[str]) -> set[str]:
        from castore.transfer.fetchback import RemoteFetcher

        return RemoteFetcher().held(parts, digests)


def default_path() -> Path:
    """``$CASTORE_HOME``, else ``~/.castore``."""
    return Path(os.environ.get("CASTORE_HOME") or DEFAULT_HOME).expanduser()


class Store(
    QueriesMixin, RunsMixin, MaintenanceMixin, BudgetMixin, ObjectsMixin, TransferMixin
):
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
        self.parts.fetcher = _LazyFetcher()  # reads of blobs evicted under a budget
        self._closed = False
        if not read_only and not layout.manifests.is_dir():
            from castore.maintenance import rebuild  # imported only here: not on every open

            rebuild.backfill_markers(self.parts)  # a store made before markers existed

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
        self.parts.blobs.pack_index.close()

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

def _check_settings(hash: str, compression: str, level: int, min_saving: float) -> None:
    check_algorithm(hash)
    if compression not in _COMPRESSIONS:
        raise ConfigurationError(
            f"unknown compression {compression!r}; choose one of {', '.join(_COMPRESSIONS)}"
        )
    if not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= 22:
        raise ConfigurationError(f"zstd level must be an integer from 1 to 22, not {level!r}")
    if (not isinstance(min_saving, (int, float)) or isinstance(min_saving, bool)
            or not 0.0 <= min_saving <= 1.0):
        raise ConfigurationError(
            f"min_saving must be a fraction from 0 to 1 (e.g. 0.1 = keep zstd only where it "
            f"saves 10%), not {min_saving!r}"
        )


def init(
    path: str | Path | None = None,
    *,
    hash: str = DEFAULT_ALGORITHM,
    compression: str = "zstd",
    level: int = 3,
    min_saving: float = DEFAULT_MIN_SAVING,
    durable: bool = True,
) -> Store:
    """Create a store with explicit settings, or open the existing one if they match.

    Args:
        path: the store directory (default: ``$CASTORE_HOME``, else ``~/.castore``).
        hash: ``"xxh3-128"`` (default, fastest), ``"blake3"`` or ``"sha256"`` (choose a
            cryptographic one where untrusted parties can write blobs). Fixed at creation.
        compression: ``"zstd"`` or ``"none"``.
        level: zstd level, 1–22.
        min_saving: a blob is stored compressed only when zstd saves at least this fraction
            of it (default 0.1); others stay raw, so checkout can hardlink, symlink or reflink
            them and copy them in the kernel. 0 keeps every saving (e.g. the ~7% of float
            weights: a smaller store, slower adds and copy-only checkouts); see
            ``docs/format.md``.
        durable: fsync before anything counts as stored (False for scratch stores).

    Raises:
        ConfigurationError: the store exists with other settings, or a setting is invalid.
        UnsupportedFormatError: the directory holds a store of an unknown format.

    Example:
        >>> import castore, tempfile
        >>> castore.init(tempfile.mkdtemp(), hash="sha256").hash
        'sha256'
    """
    _check_settings(hash, compression, level, min_saving)
    min_saving = float(min_saving)
    root = Path(path).expanduser() if path is not None else default_path()
    layout = Layout(root)
    config = layout.create(
        hash=hash, compression=compression, level=level, min_saving=min_saving, durable=durable
    )
    wanted = (hash, compression, level, min_saving)
    found = (config.hash, config.compression.codec, config.compression.level,
             config.compression.min_saving)
    if found != wanted:
        raise ConfigurationError(
            f"the store at {str(root)!r} exists with hash={found[0]!r}, "
            f"compression={found[1]!r}, level={found[2]!r}, min_saving={found[3]!r}; it "
            f"cannot change to hash={hash!r}, compression={compression!r}, level={level!r}, "
            f"min_saving={min_saving!r} (open it with castore.open() to use its own settings)"
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
    min_saving: float | None = None,
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
        min_saving: the compression threshold (see :func:`init`), as for ``hash``.

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
            min_saving=DEFAULT_MIN_SAVING if min_saving is None else min_saving,
        )
    config = layout.read_config()
    if any(setting is not None for setting in (hash, compression, level, min_saving)):
        return init(
            root, durable=durable, hash=hash or config.hash,
            compression=compression or config.compression.codec,
            level=config.compression.level if level is None else level,
            min_saving=config.compression.min_saving if min_saving is None else min_saving,
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
    from castore.maintenance import rebuild

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
