"""The catalogue's SQLite database: connections, transactions and error translation.

It keeps diskcache's discipline (STYLE rule 8): WAL, ``busy_timeout`` set before anything
else, one connection per thread (re-created after ``fork``), and every write inside
:meth:`Database.write_txn`, a ``BEGIN IMMEDIATE`` transaction, so writers queue on SQLite's lock
instead of failing half-way. SQLite's errors are translated here, at the boundary, into
castore's (``database is locked`` → :class:`LockTimeoutError`, full disk →
:class:`OutOfSpaceError`, ...).

This is the lower piece of the catalogue: the operations (``collection``, ``versions``,
``aliases``, ``entries``, ``queries``), the stat cache and the maintenance queries are functions
over a :class:`Database`; :class:`~castore.index.catalog.Catalog` gathers them as methods.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

from castore import _faults
from castore.errors import (
    CastoreError,
    CatalogCorruptError,
    LockTimeoutError,
    OutOfSpaceError,
    ReadOnlyStoreError,
)
from castore.index.ids import now_us

__all__ = ["DEFAULT_TIMEOUT", "Database"]

DEFAULT_TIMEOUT = 30.0

# SQLite's primary result codes (the low byte of an extended code).
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_CANTOPEN = 14
_HEADER = b"SQLite format 3\x00"
#: Free bytes below which an I/O error of the catalogue is taken for a full disk.
_NEARLY_FULL = 1 << 20


def _quote(identifier: str) -> str:
    """``identifier`` as a quoted SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


def _primary_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def damage_under_wal(path: Path) -> str | None:
    """Why ``path`` cannot be the database its ``-wal``/``-shm`` files belong to, or None.

    Every catalogue is in WAL mode (its header says so from the first statement on), and the
    ``-wal`` and ``-shm`` files exist only beside such a header. A file truncated, emptied or
    replaced under a running process breaks this: SQLite then tries to switch the file back to
    WAL and waits for the other process's lock until the timeout (every open
    waited 30 s, then reported a lock timeout), or reads the shared index of a deleted ``-wal``
    and fails with "disk I/O error".
    """
    wal, shm = _sidecar(path, "-wal"), _sidecar(path, "-shm")
    if not (wal.exists() or shm.exists()):
        return None
    logged = _logged_bytes(shm)
    if logged and (not wal.exists() or wal.stat().st_size < logged):
        # SQLite deletes -shm before -wal on close, so a -shm whose index counts more log than
        # the -wal holds means the log was deleted (or cut) under a running process; the next
        # opener re-creates an empty -wal and fails with "disk I/O error".
        return f"{wal.name} is missing or shorter than {shm.name} records (deleted under a process)"
    try:
        with path.open("rb") as file:
            header = file.read(100)
    except FileNotFoundError:
        return f"it is missing while {wal.name} or {shm.name} is in use"
    if len(header) < 100:
        return f"it is truncated to {len(header)} bytes while another process uses it"
    if not header.startswith(_HEADER):
        return "it is not a SQLite database"
    if header[18:20] != b"\x02\x02":
        return f"its header is not in WAL mode while {wal.name} or {shm.name} is in use"
    return None


def _logged_bytes(shm: Path) -> int:
    """How long the ``-wal`` must be for the frames the ``-shm`` index counts (0 if unknown).

    The index header (``WalIndexHdr`` in SQLite's wal.c, native byte order) holds the page
    size at offset 14 (1 means 65536) and the number of valid frames at offset 16.
    """
    try:
        with shm.open("rb") as file:
            header = file.read(48)
    except OSError:
        return 0
    if len(header) < 48:
        return 0
    page = int.from_bytes(header[14:16], sys.byteorder)
    page = 65536 if page == 1 else page
    frames = int.from_bytes(header[16:20], sys.byteorder)
    return 32 + frames * (24 + page) if frames else 0


def _enable_wal(conn: sqlite3.Connection, timeout: float, path: Path) -> None:
    """Switch a connection's database to WAL, waiting for the other processes doing the same.

    Changing the journal mode needs an exclusive lock, and SQLite answers "database is locked"
    at once instead of calling the busy handler (diskcache #266): 50 processes opening a new
    store together failed this way. Retry until ``timeout``; once the file is in WAL mode (it
    is persistent) nothing needs changing. A file that is not in WAL mode while its ``-wal``
    or ``-shm`` is in use was damaged under another process: waiting would never help.

    Raises:
        CatalogCorruptError: the file was truncated or replaced under another process.
    """
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                # Checked before the switch, which would wait out the busy timeout.
                damage = damage_under_wal(path)
                if damage is not None:
                    raise CatalogCorruptError(path, damage)
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


def _is_full(exc: sqlite3.Error, path: Path) -> bool:
    if "full" in str(exc).lower() or _primary_code(exc) == 13:
        return True
    if _primary_code(exc) not in (_SQLITE_IOERR, _SQLITE_CANTOPEN):
        return False
    # A -shm that cannot grow on a full disk is an I/O error to SQLite, not SQLITE_FULL.
    try:
        stat = os.statvfs(path.parent)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < _NEARLY_FULL


class Database:
    """The SQLite database of a catalogue: per-thread connections and transactions.

    Args:
        path: the database file (``STORE/catalog.db``).
        timeout: seconds to wait for SQLite's write lock before :class:`LockTimeoutError`.
        read_only: open with ``mode=ro``; any write raises :class:`ReadOnlyStoreError`.
        durable: ``synchronous=FULL`` (every commit reaches the disk) instead of ``NORMAL``.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        read_only: bool = False,
        durable: bool = True,
    ) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.read_only = read_only
        self.durable = durable
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._closed = False
        # Read-only and the WAL cannot be used (no writable -shm): open with immutable=1.
        self.immutable = False

    def now(self) -> int:
        """Catalogue time: microseconds since the epoch (UTC)."""
        return now_us()

    # -- connections and transactions ------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection (a new one after ``fork``)."""
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():
            if self._closed:
                raise CastoreError(f"the catalogue {str(self.path)!r} is closed")
            conn = self._connect()
            local.conn, local.pid, local.depth = conn, os.getpid(), 0
            local.wrote = False
            with self._all_lock:
                self._all.append(conn)
        return conn

    def insert(self, table: str, row: dict[str, Any]) -> None:
        """Insert one row (``{column: value}``) into ``table``, in the caller's transaction.

        Plain SQL, not sqlite-utils' ``Table.insert``: importing sqlite-utils imports numpy and
        pandas when they are installed (measured 365 ms against 72 ms without them), which every
        write command (``add``, ``alias``, ``run``) paid for one row. Names are quoted as SQL
        identifiers; values are bound parameters.
        """
        columns = ", ".join(_quote(c) for c in row)
        marks = ", ".join("?" * len(row))
        self.conn.execute(
            f"INSERT INTO {_quote(table)} ({columns}) VALUES ({marks})", list(row.values())
        )

    def _connect(self) -> sqlite3.Connection:
        try:
            if self.read_only:
                conn = self._connect_read_only()
            else:
                conn = self._open(str(self.path), uri=False)
            conn.row_factory = sqlite3.Row
            if not self.read_only:
                _enable_wal(conn, self.timeout, self.path)
            conn.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
            conn.execute("PRAGMA foreign_keys = ON")
            # A checkpoint every 10,000 WAL pages (40 MiB), not SQLite's 1,000: a batch of
            # 2,000 entries dirties ~2,000 random pages of the digest index, so the default
            # checkpointed (two fsyncs) after every batch of an add; measured 0.15 s of a
            # 1.3 s re-add of 20,000 files.
            conn.execute("PRAGMA wal_autocheckpoint = 10000")
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        return conn

    def _open(self, target: str, *, uri: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(
            target, uri=uri, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        # busy_timeout first: every later statement may meet a locked database.
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        return conn

    def _connect_read_only(self) -> sqlite3.Connection:
        """A ``mode=ro`` connection; ``immutable=1`` where the WAL cannot be used.

        A reader of a WAL database needs a ``-shm`` it can map: on a read-only filesystem or
        for a user who cannot write the store's directory, with no ``-shm`` left by a writer,
        ``mode=ro`` fails with "unable to open database file". ``immutable=1``
        reads the file alone, without locks or the WAL. It is right only while nobody writes
        the store (docs/operating.md says so), and never when a ``-wal`` holds commits not yet
        in the file, which it would silently skip: that case is refused.
        """
        uri = f"file:{quote(str(self.path.resolve()))}?mode=ro"
        if not self.immutable:
            conn = self._open(uri, uri=True)
            try:
                conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
                return conn
            except sqlite3.OperationalError as exc:
                conn.close()
                if _primary_code(exc) not in (_SQLITE_CANTOPEN, _SQLITE_READONLY):
                    raise
                if not self.path.is_file():
                    raise
                wal = _sidecar(self.path, "-wal")
                if wal.exists() and wal.stat().st_size > 0:
                    raise ReadOnlyStoreError(
                        self.path.parent,
                        f"read the commits in {wal.name} that are not yet merged into "
                        f"{self.path.name} (open the store once with write access to merge "
                        "them)",
                    ) from exc
                self.immutable = True
        return self._open(uri + "&immutable=1", uri=True)

    def _translate(self, exc: sqlite3.Error) -> Exception:
        text = str(exc).lower()
        code = _primary_code(exc)
        if _is_full(exc, self.path):
            return OutOfSpaceError(
                f"no space left to write the catalogue {str(self.path)!r}; free disk space "
                "(nothing was committed)",
                path=self.path,
            )
        if code == _SQLITE_IOERR or "locked" in text or "busy" in text:
            # A catalogue damaged under another process shows up as a lock or an I/O error.
            damage = damage_under_wal(self.path)
            if damage is not None:
                return CatalogCorruptError(self.path, damage)
        if code == _SQLITE_IOERR:
            return CatalogCorruptError(
                self.path, f"{exc} reading or writing it; if the disk is sound it was damaged"
            )
        if code == _SQLITE_CANTOPEN:
            return CatalogCorruptError(self.path, f"{exc}: it is missing or cannot be opened")
        if "locked" in text or "busy" in text:
            return LockTimeoutError(
                f"the catalogue {str(self.path)!r} stayed locked for {self.timeout:g} s; "
                "another process holds a long write, retry or raise the timeout",
                timeout=self.timeout,
            )
        if "readonly" in text or "read-only" in text:
            return ReadOnlyStoreError(self.path.parent, "write the catalogue")
        if "malformed" in text or "not a database" in text or "corrupt" in text:
            return CatalogCorruptError(self.path, str(exc))
        return exc

    @contextmanager
    def write_txn(self, *, sync: bool = True) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` … ``COMMIT`` transaction (re-entrant: inner calls join it).

        Args:
            sync: on a durable catalogue, False commits with ``synchronous=NORMAL`` (no fsync
                of the WAL; a power loss may undo it, never corrupt it), for writes a crash
                may lose, such as a draft's intermediate batches.

        Raises:
            ReadOnlyStoreError: the catalogue was opened read-only.
            LockTimeoutError: the write lock was not granted within ``timeout``.
            OutOfSpaceError: the disk is full; the transaction was rolled back.
        """
        if self.read_only:
            raise ReadOnlyStoreError(self.path.parent, "write the catalogue")
        conn = self.conn
        local = self._local
        if self.durable and not sync and not local.depth:
            conn.execute("PRAGMA synchronous = NORMAL")
            try:
                with self.write_txn() as joined:
                    yield joined
            finally:
                conn.execute("PRAGMA synchronous = FULL")
            return
        if local.depth:
            local.depth += 1
            try:
                yield conn
            finally:
                local.depth -= 1
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        local.depth = 1
        _faults.point("cat.begin")
        try:
            yield conn
        except BaseException as exc:
            local.depth = 0
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                translated = self._translate(exc)
                if translated is not exc:
                    raise translated from exc
            raise
        local.depth = 0
        _faults.point("cat.rows_inserted")
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise self._translate(exc) from exc
        local.wrote = True
        _faults.point("cat.committed")

    @contextmanager
    def read_txn(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several reads (joins an open transaction)."""
        conn = self.conn
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        """Run one statement on this thread's connection, translating SQLite's errors."""
        try:
            return self.conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc

    def close(self) -> None:
        """Close every connection this catalogue opened (in any thread)."""
        if not self._closed and not self.read_only and getattr(self._local, "wrote", False):
            # SQLite's advice: let the planner gather statistics before closing. Only after this
            # connection wrote: on a small catalogue the optimize re-ran ANALYZE, a durable
            # write (an fsync) that cost `castore ls` ~10 ms on every run.
            conn = getattr(self._local, "conn", None)
            if conn is not None and self._local.pid == os.getpid() and not conn.in_transaction:
                with suppress(sqlite3.Error):
                    conn.execute("PRAGMA optimize")
        self._closed = True
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            with suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()

    def one(self, sql: str, params: Any = ()) -> dict[str, Any] | None:
        """The first row of a query as a ``dict``, or None."""
        row = self.execute(sql, params).fetchone()
        return dict(row) if row is not None else None

    def all_rows(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        """Every row of a query as ``dict``s."""
        return [dict(row) for row in self.execute(sql, params)]

    # The old private names, still called by castore/maintenance (not part of this package).
    _one = one
    _all_rows = all_rows
