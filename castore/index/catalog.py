"""The catalogue: collections, versions, entries, aliases and tags in one SQLite database.

The catalogue knows SQLite and nothing of blob files (``blobs.py`` is the other half). It keeps
diskcache's discipline: WAL, ``busy_timeout`` set before anything else, one connection per
thread (re-created after ``fork``), and every write inside :meth:`Catalog.write_txn`, a
``BEGIN IMMEDIATE`` transaction, so writers queue on SQLite's lock instead of failing half-way.

Rows are returned as plain ``dict``s; the handles in ``handles.py`` turn them into objects.
Times are integers of microseconds since the epoch (UTC), TTLs are seconds.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

from castore import _faults
from castore.errors import (
    AliasConflictError,
    CastoreError,
    CatalogCorruptError,
    LockTimeoutError,
    OutOfSpaceError,
    ReadOnlyStoreError,
)
from castore.index import migrations as _migrations
from castore.index.queries import LIVE, build_where, order_by
from castore.index.statcache import StatCache

__all__ = ["LATEST", "Catalog", "StatCache", "now_us", "uuid7"]

LATEST = "latest"
DEFAULT_TIMEOUT = 30.0
_LIVE = LIVE
_PIN = (
    "UPDATE versions SET hide_at = CASE WHEN EXISTS (SELECT 1 FROM aliases a "
    "WHERE a.version_id = versions.id AND a.alias != 'latest') THEN NULL ELSE expires_at END "
    "WHERE id = ?"
)
_VERSION_SELECT = (
    "SELECT v.*, c.name AS collection, c.type AS type FROM versions v "
    "JOIN collections c ON c.id = v.collection_id"
)

_uuid_lock = threading.Lock()
_uuid_last = [0, 0]  # last millisecond, last counter


def uuid7() -> str:
    """A new UUIDv7 (RFC 9562): time-ordered, monotonic within this process."""
    with _uuid_lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _uuid_last[0]:
            ms = _uuid_last[0]
            counter = _uuid_last[1] + 1
            if counter > 0xFFF:  # 4096 ids in one millisecond: borrow the next one
                ms, counter = ms + 1, secrets.randbits(8)
        else:
            counter = secrets.randbits(8)
        _uuid_last[0], _uuid_last[1] = ms, counter
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | counter << 64
    value |= 0b10 << 62 | secrets.randbits(62)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def now_us() -> int:
    """The current time in microseconds since the epoch."""
    return time.time_ns() // 1000


def _enable_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Switch a connection's database to WAL, waiting for the other processes doing the same.

    Changing the journal mode needs an exclusive lock, and SQLite answers "database is locked"
    at once instead of calling the busy handler (diskcache #266): 50 processes opening a new
    store together failed this way. Retry until ``timeout``; once the file is in WAL mode (it
    is persistent) nothing needs changing.
    """
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


def _is_full(exc: sqlite3.Error) -> bool:
    return "full" in str(exc).lower() or getattr(exc, "sqlite_errorcode", None) == 13


class Catalog:
    """The SQLite catalogue of a store.

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
        self.stat_cache = StatCache(self)
        conn = self.conn
        if not read_only:
            try:
                _migrations.migrate(conn)
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc

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
            local.conn, local.pid, local.depth, local.db = conn, os.getpid(), 0, None
            with self._all_lock:
                self._all.append(conn)
        return conn

    @property
    def db(self) -> Any:
        """A sqlite-utils ``Database`` over this thread's connection."""
        conn = self.conn
        if self._local.db is None:
            from sqlite_utils import Database

            self._local.db = Database(conn, execute_plugins=False, recursive_triggers=False)
        return self._local.db

    def _connect(self) -> sqlite3.Connection:
        try:
            if self.read_only:
                uri = f"file:{quote(str(self.path.resolve()))}?mode=ro"
                conn = sqlite3.connect(
                    uri,
                    uri=True,
                    timeout=self.timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
            else:
                conn = sqlite3.connect(
                    str(self.path),
                    timeout=self.timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
            # busy_timeout first: every later statement may meet a locked database.
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            conn.row_factory = sqlite3.Row
            if not self.read_only:
                _enable_wal(conn, self.timeout)
            conn.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        return conn

    def _translate(self, exc: sqlite3.Error) -> Exception:
        text = str(exc).lower()
        if "locked" in text or "busy" in text:
            return LockTimeoutError(
                f"the catalogue {str(self.path)!r} stayed locked for {self.timeout:g} s; "
                "another process holds a long write, retry or raise the timeout",
                timeout=self.timeout,
            )
        if _is_full(exc):
            return OutOfSpaceError(
                f"no space left to write the catalogue {str(self.path)!r}; free disk space "
                "(nothing was committed)",
                path=self.path,
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
        if not self._closed and not self.read_only:
            # SQLite's advice: let the planner gather statistics before closing.
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

    def _one(self, sql: str, params: Any = ()) -> dict[str, Any] | None:
        row = self.execute(sql, params).fetchone()
        return dict(row) if row is not None else None

    def _all_rows(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        return [dict(row) for row in self.execute(sql, params)]

    # -- collections -----------------------------------------------------------------------

    def get_collection(self, name: str) -> dict[str, Any] | None:
        """The collection row named ``name``, or None."""
        return self._one("SELECT * FROM collections WHERE name = ?", (name,))

    def get_collection_by_id(self, collection_id: int) -> dict[str, Any] | None:
        """The collection row with this id, or None."""
        return self._one("SELECT * FROM collections WHERE id = ?", (collection_id,))

    def ensure_collection(
        self,
        name: str,
        type: str | None,
        *,
        default_type: str = "dataset",
    ) -> dict[str, Any]:
        """The collection ``name``, created with ``type`` when missing (inside a write txn).

        Raises:
            ValueError: the collection exists with another type.
        """
        with self.write_txn():
            row = self.get_collection(name)
            if row is None:
                now = now_us()
                self.execute(
                    "INSERT INTO collections (name, type, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?)",
                    (name, type or default_type, now, now),
                )
                row = self.get_collection(name)
                assert row is not None
            elif type is not None and row["type"] != type:
                raise ValueError(
                    f"collection {name!r} has type {row['type']!r}, not {type!r}; a "
                    "collection's type is fixed (change it with collection.update(type=...))"
                )
            return row

    def list_collections(self, type: str | None = None) -> list[dict[str, Any]]:
        """Every collection (of ``type``), by name."""
        if type is None:
            return self._all_rows("SELECT * FROM collections ORDER BY name")
        return self._all_rows("SELECT * FROM collections WHERE type = ? ORDER BY name", (type,))

    def update_collection(self, collection_id: int, **fields: Any) -> None:
        """Change the given columns of a collection (``tags``/``metadata`` are JSON-encoded)."""
        if not fields:
            return
        for key in ("tags", "metadata"):
            if key in fields:
                fields[key] = json.dumps(fields[key], sort_keys=True)
        fields["updated_at"] = now_us()
        sets = ", ".join(f"{key} = ?" for key in fields)
        with self.write_txn():
            self.execute(
                f"UPDATE collections SET {sets} WHERE id = ?", (*fields.values(), collection_id)
            )

    def delete_collection(self, collection_id: int) -> None:
        """Delete a collection with all its versions, entries, aliases and tags."""
        with self.write_txn():
            self.execute("DELETE FROM collections WHERE id = ?", (collection_id,))

    def collection_aliases(self, collection_id: int) -> dict[str, int | None]:
        """``{alias: version number}`` of a collection."""
        rows = self.execute(
            "SELECT a.alias, v.number FROM aliases a JOIN versions v ON v.id = a.version_id "
            "WHERE a.collection_id = ? AND a.alias != ? ORDER BY a.alias",
            (collection_id, LATEST),
        )
        found: dict[str, int | None] = {row["alias"]: row["number"] for row in rows}
        newest = self.newest_live(collection_id)  # see aliases_of: latest as readers find it
        if newest is not None:
            found[LATEST] = newest["number"]
        return dict(sorted(found.items()))

    # -- versions --------------------------------------------------------------------------

    def get_version(self, version_id: str) -> dict[str, Any] | None:
        """A version row (with ``collection`` and ``type``), or None."""
        return self._one(f"{_VERSION_SELECT} WHERE v.id = ?", (version_id,))

    def live_version(self, version_id: str, *, now: int | None = None) -> dict[str, Any] | None:
        """A committed, unexpired version by id, or None."""
        return self._one(
            f"{_VERSION_SELECT} WHERE v.id = :id AND v.state = 'COMMITTED' AND {_LIVE}",
            {"id": version_id, "now": now or now_us()},
        )

    def version_by_number(
        self, collection_id: int, number: int, *, now: int | None = None
    ) -> dict[str, Any] | None:
        """The live committed version ``number`` of a collection, or None."""
        return self._one(
            f"{_VERSION_SELECT} WHERE v.collection_id = :c AND v.number = :n "
            f"AND v.state = 'COMMITTED' AND {_LIVE}",
            {"c": collection_id, "n": number, "now": now or now_us()},
        )

    def version_by_alias(
        self, collection_id: int, alias: str, *, now: int | None = None
    ) -> dict[str, Any] | None:
        """The live version an alias points at; for ``latest``, the newest live version."""
        now = now or now_us()
        row = self._one(
            f"{_VERSION_SELECT} JOIN aliases a ON a.version_id = v.id "
            f"WHERE a.collection_id = :c AND a.alias = :a AND v.state = 'COMMITTED' AND {_LIVE}",
            {"c": collection_id, "a": alias, "now": now},
        )
        if row is None and alias == LATEST:
            # latest expired: reads never write, so show the newest version still alive.
            row = self.newest_live(collection_id, now=now)
        return row

    def newest_live(self, collection_id: int, *, now: int | None = None) -> dict[str, Any] | None:
        """The highest-numbered live committed version of a collection."""
        return self._one(
            f"{_VERSION_SELECT} WHERE v.collection_id = :c AND v.state = 'COMMITTED' "
            f"AND {_LIVE} ORDER BY v.number DESC LIMIT 1",
            {"c": collection_id, "now": now or now_us()},
        )

    def versions_by_digest_prefix(
        self, collection_id: int, prefix: str, *, now: int | None = None
    ) -> list[dict[str, Any]]:
        """Live committed versions whose digest hex starts with ``prefix``, newest first."""
        # The digest is "algo:hex": match on the hex part with a range scan-friendly LIKE.
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return self._all_rows(
            f"{_VERSION_SELECT} WHERE v.collection_id = :c AND v.state = 'COMMITTED' "
            f"AND substr(v.digest, instr(v.digest, ':') + 1) LIKE :p ESCAPE '\\' AND {_LIVE} "
            "ORDER BY v.number DESC",
            {"c": collection_id, "p": escaped + "%", "now": now or now_us()},
        )

    def create_version(
        self,
        collection_id: int,
        *,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        tags: Iterable[str] = (),
        base_version: str | None = None,
        producer: str | None = None,
    ) -> str:
        """Insert a ``PENDING`` version row and its draft record; return the new id."""
        version_id = uuid7()
        now = now_us()
        with self.write_txn():
            self.execute(
                "INSERT INTO versions (id, collection_id, state, description, metadata, "
                "created_at, updated_at, producer) VALUES (?, ?, 'PENDING', ?, ?, ?, ?, ?)",
                (
                    version_id,
                    collection_id,
                    description,
                    json.dumps(metadata or {}, sort_keys=True),
                    now,
                    now,
                    producer,
                ),
            )
            self.execute(
                "INSERT INTO drafts (version_id, base_version, pid, host, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (version_id, base_version, os.getpid(), socket.gethostname(), now),
            )
            self.add_tags(version_id, tags)
        return version_id

    def update_version(self, version_id: str, **fields: Any) -> None:
        """Change the given columns of a version (``metadata`` is JSON-encoded)."""
        if "metadata" in fields:
            fields["metadata"] = json.dumps(fields["metadata"], sort_keys=True)
        fields["updated_at"] = now_us()
        sets = ", ".join(f"{key} = ?" for key in fields)
        with self.write_txn():
            self.execute(f"UPDATE versions SET {sets} WHERE id = ?", (*fields.values(), version_id))

    def set_ttl(self, version_id: str, ttl: float | None) -> None:
        """Set a version's TTL in seconds (None: never expires); ``expires_at`` follows."""
        with self.write_txn():
            row = self.get_version(version_id)
            if row is None:
                return
            expires = None if ttl is None else row["created_at"] + int(ttl * 1_000_000)
            self.update_version(version_id, ttl=ttl, expires_at=expires)
            self.execute(_PIN, (version_id,))

    def commit_version(
        self,
        version_id: str,
        *,
        digest: str,
        size: int,
        file_count: int,
        ttl: float | None,
    ) -> int:
        """Turn a pending version into ``COMMITTED`` with the next number; move ``latest``.

        Must run inside :meth:`write_txn`; the number comes from the collection's counter, so
        numbers are dense and never reused even across deletions.
        """
        row = self.get_version(version_id)
        assert row is not None and row["state"] == "PENDING"
        coll = self.execute(
            "UPDATE collections SET next_number = next_number + 1 WHERE id = ? "
            "RETURNING next_number - 1 AS number",
            (row["collection_id"],),
        ).fetchone()
        number = int(coll["number"])
        now = now_us()
        expires = None if ttl is None else now + int(ttl * 1_000_000)
        self.execute(
            "UPDATE versions SET state = 'COMMITTED', number = ?, digest = ?, size = ?, "
            "file_count = ?, created_at = ?, updated_at = ?, ttl = ?, expires_at = ?, "
            "hide_at = ? WHERE id = ?",
            (number, digest, size, file_count, now, now, ttl, expires, expires, version_id),
        )
        self.execute("DELETE FROM drafts WHERE version_id = ?", (version_id,))
        self.set_alias(row["collection_id"], LATEST, version_id)
        return number

    def delete_version(self, version_id: str, *, delete_aliases: bool = False) -> None:
        """Mark a version ``DELETED``, drop its entries and aliases; repoint ``latest``.

        Raises:
            AliasConflictError: it holds aliases other than ``latest`` and not
                ``delete_aliases``.
        """
        with self.write_txn():
            row = self.get_version(version_id)
            if row is None or row["state"] == "DELETED":
                return
            if row["state"] == "PENDING":
                self.execute("DELETE FROM versions WHERE id = ?", (version_id,))
                return
            aliases = self.stored_aliases_of(version_id)
            user = [a for a in aliases if a != LATEST]
            if user and not delete_aliases:
                raise AliasConflictError(
                    f"version {row['collection']}:v{row['number']} holds aliases "
                    f"{', '.join(user)}; remove them first or pass delete_aliases=True",
                    alias=user[0],
                    ref=f"{row['collection']}:v{row['number']}",
                )
            for alias in aliases:
                self.remove_alias(row["collection_id"], alias)
            self.execute("DELETE FROM entries WHERE version_id = ?", (version_id,))
            self.execute("DELETE FROM version_tags WHERE version_id = ?", (version_id,))
            self.execute(
                "UPDATE versions SET state = 'DELETED', updated_at = ? WHERE id = ?",
                (now_us(), version_id),
            )
            if LATEST in aliases:
                self.repoint_latest(row["collection_id"])

    def repoint_latest(self, collection_id: int) -> None:
        """Point ``latest`` at the highest-numbered committed version (or remove it)."""
        with self.write_txn():
            row = self._one(
                "SELECT id FROM versions WHERE collection_id = ? AND state = 'COMMITTED' "
                "ORDER BY number DESC LIMIT 1",
                (collection_id,),
            )
            if row is None:
                self.remove_alias(collection_id, LATEST)
            else:
                self.set_alias(collection_id, LATEST, row["id"])

    # -- aliases and tags ------------------------------------------------------------------

    def stored_aliases_of(self, version_id: str) -> list[str]:
        """The alias rows pointing at a version (``latest`` as stored), sorted."""
        rows = self.execute(
            "SELECT alias FROM aliases WHERE version_id = ? ORDER BY alias", (version_id,)
        )
        return [row["alias"] for row in rows]

    def aliases_of(self, version_id: str, *, now: int | None = None) -> list[str]:
        """The aliases pointing at a version, sorted.

        ``latest`` is reported where readers find it: on the newest live version. The stored
        row can still point at a version that has just expired, since reads never write (gc
        repoints it).
        """
        rows = self.execute(
            "SELECT alias FROM aliases WHERE version_id = ? AND alias != ? ORDER BY alias",
            (version_id, LATEST),
        )
        aliases = [row["alias"] for row in rows]
        own = self._one("SELECT collection_id FROM versions WHERE id = ?", (version_id,))
        if own is not None:
            newest = self.newest_live(own["collection_id"], now=now)
            if newest is not None and newest["id"] == version_id:
                aliases.append(LATEST)
        return sorted(aliases)

    def set_alias(self, collection_id: int, alias: str, version_id: str) -> None:
        """Point ``alias`` at a version (moving it if needed) and record the move."""
        with self.write_txn():
            old = self._one(
                "SELECT version_id FROM aliases WHERE collection_id = ? AND alias = ?",
                (collection_id, alias),
            )
            previous = old["version_id"] if old else None
            if previous == version_id:
                return
            now = now_us()
            self.execute(
                "INSERT INTO aliases (collection_id, alias, version_id, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (collection_id, alias) DO UPDATE SET "
                "version_id = excluded.version_id, updated_at = excluded.updated_at",
                (collection_id, alias, version_id, now),
            )
            self.execute(
                "INSERT INTO alias_history (collection_id, alias, from_version, to_version, at) "
                "VALUES (?, ?, ?, ?, ?)",
                (collection_id, alias, previous, version_id, now),
            )
            if alias != LATEST:  # a user alias pins its version against expiry
                self.execute(_PIN, (version_id,))
                if previous is not None:
                    self.execute(_PIN, (previous,))
            _faults.point("alias.moved")

    def remove_alias(self, collection_id: int, alias: str) -> bool:
        """Remove an alias; return whether it existed."""
        with self.write_txn():
            old = self._one(
                "SELECT version_id FROM aliases WHERE collection_id = ? AND alias = ?",
                (collection_id, alias),
            )
            if old is None:
                return False
            self.execute(
                "DELETE FROM aliases WHERE collection_id = ? AND alias = ?", (collection_id, alias)
            )
            self.execute(
                "INSERT INTO alias_history (collection_id, alias, from_version, to_version, at) "
                "VALUES (?, ?, ?, NULL, ?)",
                (collection_id, alias, old["version_id"], now_us()),
            )
            if alias != LATEST:
                self.execute(_PIN, (old["version_id"],))
            return True

    def alias_history(self, collection_id: int, alias: str | None = None) -> list[dict[str, Any]]:
        """Every recorded move of the collection's aliases (of ``alias``), oldest first."""
        sql = "SELECT * FROM alias_history WHERE collection_id = ?"
        params: list[Any] = [collection_id]
        if alias is not None:
            sql += " AND alias = ?"
            params.append(alias)
        return self._all_rows(sql + " ORDER BY at, id", params)

    def tags_of(self, version_id: str) -> list[str]:
        """A version's tags, sorted."""
        rows = self.execute(
            "SELECT tag FROM version_tags WHERE version_id = ? ORDER BY tag", (version_id,)
        )
        return [row["tag"] for row in rows]

    def add_tags(self, version_id: str, tags: Iterable[str]) -> None:
        """Add tags to a version (existing ones are kept)."""
        tags = list(tags)
        if not tags:
            return
        with self.write_txn():
            self.conn.executemany(
                "INSERT OR IGNORE INTO version_tags (version_id, tag) VALUES (?, ?)",
                [(version_id, tag) for tag in tags],
            )
            self.execute("UPDATE versions SET updated_at = ? WHERE id = ?", (now_us(), version_id))

    def remove_tags(self, version_id: str, tags: Iterable[str]) -> None:
        """Remove tags from a version (missing ones are ignored)."""
        with self.write_txn():
            self.conn.executemany(
                "DELETE FROM version_tags WHERE version_id = ? AND tag = ?",
                [(version_id, tag) for tag in tags],
            )
            self.execute("UPDATE versions SET updated_at = ? WHERE id = ?", (now_us(), version_id))

    # -- entries ---------------------------------------------------------------------------

    def put_entries(
        self, version_id: str, rows: Iterable[tuple[str, str | None, int, str | None]]
    ) -> None:
        """Insert or replace ``(path, digest, size, ref)`` entries of a version."""
        with self.write_txn():
            self.conn.executemany(
                "INSERT OR REPLACE INTO entries (version_id, path, digest, size, ref) "
                "VALUES (?, ?, ?, ?, ?)",
                ((version_id, *row) for row in rows),
            )

    def delete_entries(self, version_id: str, paths: Iterable[str]) -> None:
        """Remove entries of a version by exact path."""
        with self.write_txn():
            self.conn.executemany(
                "DELETE FROM entries WHERE version_id = ? AND path = ?",
                [(version_id, path) for path in paths],
            )

    def copy_entries(self, source: str, target: str) -> None:
        """Copy every entry of version ``source`` into version ``target``."""
        with self.write_txn():
            self.execute(
                "INSERT OR REPLACE INTO entries (version_id, path, digest, size, ref) "
                "SELECT ?, path, digest, size, ref FROM entries WHERE version_id = ?",
                (target, source),
            )

    def iter_entries(
        self, version_id: str, prefix: str | None = None
    ) -> Iterator[tuple[str, str | None, int, str | None]]:
        """``(path, digest, size, ref)`` of a version's entries, sorted by path, streamed."""
        sql = "SELECT path, digest, size, ref FROM entries WHERE version_id = ?"
        params: list[Any] = [version_id]
        if prefix:
            sql += " AND path >= ? AND path < ?"
            params += [prefix, prefix + "\U0010ffff"]
        # A cursor of its own, so callers may run other statements while iterating.
        cursor = self.conn.cursor()
        try:
            cursor.execute(sql + " ORDER BY path", params)
            for row in cursor:
                yield (row[0], row[1], row[2], row[3])
        finally:
            cursor.close()

    def get_entry(self, version_id: str, path: str) -> tuple[str, str | None, int, str | None]:
        """One entry of a version; ``KeyError`` if absent."""
        row = self.execute(
            "SELECT path, digest, size, ref FROM entries WHERE version_id = ? AND path = ?",
            (version_id, path),
        ).fetchone()
        if row is None:
            raise KeyError(path)
        return (row[0], row[1], row[2], row[3])

    # -- drafts and maintenance ------------------------------------------------------------

    def list_drafts(self, collection: str | None = None) -> list[dict[str, Any]]:
        """Pending drafts, oldest first, with ``age`` in seconds."""
        sql = (
            "SELECT d.*, v.*, c.name AS collection, c.type AS type FROM drafts d "
            "JOIN versions v ON v.id = d.version_id JOIN collections c ON c.id = v.collection_id"
        )
        params: list[Any] = []
        if collection is not None:
            sql += " WHERE c.name = ?"
            params.append(collection)
        rows = self._all_rows(sql + " ORDER BY d.created_at", params)
        now = now_us()
        for row in rows:
            row["age"] = (now - row["created_at"]) / 1_000_000
        return rows

    def discard_draft(self, version_id: str) -> None:
        """Delete a pending version with its entries and draft record."""
        with self.write_txn():
            self.execute("DELETE FROM versions WHERE id = ? AND state = 'PENDING'", (version_id,))

    def referenced_digests(self) -> set[str]:
        """Every digest a committed or pending version needs (entries and manifest blobs)."""
        rows = self.execute(
            "SELECT DISTINCT e.digest FROM entries e JOIN versions v ON v.id = e.version_id "
            "WHERE v.state IN ('COMMITTED', 'PENDING') AND e.digest IS NOT NULL AND e.ref IS NULL "
            "UNION SELECT manifest_blob FROM versions "
            "WHERE state IN ('COMMITTED', 'PENDING') AND manifest_blob IS NOT NULL"
        )
        return {row[0] for row in rows}

    def expired_versions(self, now: int | None = None) -> list[dict[str, Any]]:
        """Committed versions past ``expires_at`` holding no user alias (gc deletes them)."""
        return self._all_rows(
            f"{_VERSION_SELECT} WHERE v.state = 'COMMITTED' AND v.expires_at IS NOT NULL "
            f"AND NOT {_LIVE} ORDER BY v.expires_at",
            {"now": now or now_us()},
        )

    # -- queries ---------------------------------------------------------------------------

    def _where(self, *, now: int, **filters: Any) -> tuple[str, dict[str, Any]]:
        return build_where(now=now, **filters)

    def query_versions(
        self,
        *,
        sort: str | list[str] = "-created_at",
        limit: int | None = 50,
        offset: int = 0,
        now: int | None = None,
        **filters: Any,
    ) -> tuple[list[dict[str, Any]], int]:
        """Version rows matching the filters of ``Store.versions``, and the total count."""
        where, params = self._where(now=now or now_us(), **filters)
        order = order_by(sort)
        # Sort and page row ids only, then fetch the page's rows: sorting whole rows (metadata
        # included) of every match is what makes a wide listing slow.
        join = " JOIN collections c ON c.id = v.collection_id" if "c." in order else ""
        sql = f"SELECT v.rowid FROM versions v{join} WHERE {where} ORDER BY {order}"
        if limit is not None:
            sql += " LIMIT :limit OFFSET :offset"
            params.update(limit=limit, offset=offset)
        elif offset:
            sql += " LIMIT -1 OFFSET :offset"
            params["offset"] = offset
        with self.read_txn():
            ids = [row[0] for row in self.execute(sql, params)]
            by_id: dict[int, dict[str, Any]] = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                for row in self.execute(
                    f"SELECT v.rowid AS _rowid, v.*, c.name AS collection, c.type AS type "
                    f"FROM versions v JOIN collections c ON c.id = v.collection_id "
                    f"WHERE v.rowid IN ({marks})",
                    chunk,
                ):
                    found = dict(row)
                    by_id[found.pop("_rowid")] = found
            rows = [by_id[i] for i in ids]
            if offset == 0 and (limit is None or len(rows) < limit):
                total = len(rows)  # the whole result fits in this page
            else:
                total = self.count_versions_where(where, params)
        return rows, total

    def count_versions_where(self, where: str, params: dict[str, Any]) -> int:
        """The number of versions matching a WHERE clause built by :meth:`_where`."""
        params = {k: v for k, v in params.items() if k not in ("limit", "offset")}
        row = self.execute(
            f"SELECT COUNT(*) FROM versions v WHERE {where}",  # no filter needs collections
            params,
        ).fetchone()
        return int(row[0])

    def count_versions(self, *, now: int | None = None, **filters: Any) -> int:
        """The number of versions matching the filters of ``Store.versions``."""
        where, params = self._where(now=now or now_us(), **filters)
        return self.count_versions_where(where, params)

    def latest_per_collection(
        self,
        type: str | None = None,
        *,
        now: int | None = None,
    ) -> list[dict[str, Any]]:
        """The newest live committed version of every collection (of ``type``), by name."""
        # One index seek per collection (collection_id, state, number DESC), not a scan.
        sql = (
            "SELECT v.*, c.name AS collection, c.type AS type FROM collections c "
            "JOIN versions v ON v.id = (SELECT v2.id FROM versions v2 "
            "WHERE v2.collection_id = c.id AND v2.state = 'COMMITTED' "
            f"AND {_LIVE.replace('v.', 'v2.')} ORDER BY v2.number DESC LIMIT 1)"
        )
        params: dict[str, Any] = {"now": now or now_us()}
        if type is not None:
            sql += " WHERE c.type = :type"
            params["type"] = type
        return self._all_rows(sql + " ORDER BY c.name", params)

    def types(self, *, now: int | None = None) -> list[tuple[str, int, int]]:
        """``(type, collections, live committed versions)`` for every type in use."""
        rows = self.execute(
            "SELECT c.type, COUNT(DISTINCT c.id), "
            f"COUNT(v.id) FILTER (WHERE v.state = 'COMMITTED' AND {_LIVE}) "
            "FROM collections c LEFT JOIN versions v ON v.collection_id = c.id "
            "GROUP BY c.type ORDER BY c.type",
            {"now": now or now_us()},
        )
        return [(row[0], int(row[1]), int(row[2])) for row in rows]
