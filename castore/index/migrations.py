"""Numbered schema migrations of the catalogue.

The schema version is SQLite's ``PRAGMA user_version``. :func:`migrate` reads it inside a
``BEGIN IMMEDIATE`` transaction and applies every newer step in that same transaction, so two
processes opening a fresh store at once cannot both create the tables (sqlite-utils'
``Migrations`` helper checks its bookkeeping table before taking the write lock, which races).
Steps are append-only: never edit a released one, add a new number instead.

Each step receives a sqlite-utils ``Database`` over the migrating connection, inside the open
transaction (sqlite-utils nests its own work in savepoints). New steps use its ``Table`` API:
``add_column``, ``create_index``, ``transform`` for a change SQLite's ``ALTER TABLE`` cannot
make (foreign keys are off while migrating, as SQLite's 12-step ``ALTER`` recipe wants; a
step that moves rows checks them with ``PRAGMA foreign_key_check``, and fsck reports any
dangling row). The released steps 1-3 stay the SQL they
were released as: their text is what ``sqlite3 catalog.db .schema`` shows in every existing
store, and sqlite-utils cannot express parts of them (``WITHOUT ROWID`` tables, partial indexes,
triggers, the table-level ``UNIQUE``); ``table.create`` would write other ``CREATE`` text, so a
fresh store would no longer match the stores already on disk.

Times are integers of microseconds since the epoch (UTC); TTLs are seconds; metadata and
collection tags are JSON text, queried with ``json_extract``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

from castore.errors import UnsupportedFormatError

if TYPE_CHECKING:
    from sqlite_utils import Database

__all__ = ["SCHEMA_VERSION", "migrate"]


def _v1(db: Database) -> None:
    _script(
        db,
        """
        CREATE TABLE collections (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            description TEXT,
            tags TEXT NOT NULL DEFAULT '[]',
            metadata TEXT NOT NULL DEFAULT '{}',
            default_ttl REAL,
            next_number INTEGER NOT NULL DEFAULT 0,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        );
        CREATE INDEX idx_collections_type ON collections(type);

        CREATE TABLE versions (
            id TEXT PRIMARY KEY,
            collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
            number INTEGER,
            state TEXT NOT NULL,
            digest TEXT,
            size INTEGER NOT NULL DEFAULT 0,
            file_count INTEGER NOT NULL DEFAULT 0,
            description TEXT,
            metadata TEXT NOT NULL DEFAULT '{}',
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            ttl REAL,
            expires_at INTEGER,
            producer TEXT,
            manifest_blob TEXT,
            UNIQUE (collection_id, number)
        );
        CREATE INDEX idx_versions_state_created ON versions(state, created_at);
        CREATE INDEX idx_versions_coll_state ON versions(collection_id, state, number);
        CREATE INDEX idx_versions_digest ON versions(digest);
        CREATE INDEX idx_versions_expires ON versions(expires_at) WHERE expires_at IS NOT NULL;
        CREATE INDEX idx_versions_updated ON versions(updated_at);
        CREATE INDEX idx_versions_size ON versions(size);
        CREATE INDEX idx_versions_producer ON versions(producer) WHERE producer IS NOT NULL;

        CREATE TABLE entries (
            version_id TEXT NOT NULL REFERENCES versions(id) ON DELETE CASCADE,
            path TEXT NOT NULL,
            digest TEXT,
            size INTEGER NOT NULL,
            ref TEXT,
            PRIMARY KEY (version_id, path)
        ) WITHOUT ROWID;
        CREATE INDEX idx_entries_digest ON entries(digest);

        CREATE TABLE aliases (
            collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
            alias TEXT NOT NULL,
            version_id TEXT NOT NULL REFERENCES versions(id) ON DELETE CASCADE,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (collection_id, alias)
        );
        CREATE INDEX idx_aliases_version ON aliases(version_id);
        CREATE INDEX idx_aliases_alias ON aliases(alias);

        CREATE TABLE version_tags (
            version_id TEXT NOT NULL REFERENCES versions(id) ON DELETE CASCADE,
            tag TEXT NOT NULL,
            PRIMARY KEY (version_id, tag)
        ) WITHOUT ROWID;
        CREATE INDEX idx_version_tags_tag ON version_tags(tag);

        CREATE TABLE alias_history (
            id INTEGER PRIMARY KEY,
            collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
            alias TEXT NOT NULL,
            from_version TEXT,
            to_version TEXT,
            at INTEGER NOT NULL
        );
        CREATE INDEX idx_alias_history ON alias_history(collection_id, alias, at);

        CREATE TABLE drafts (
            version_id TEXT PRIMARY KEY REFERENCES versions(id) ON DELETE CASCADE,
            base_version TEXT,
            pid INTEGER,
            host TEXT,
            created_at INTEGER NOT NULL
        );
        CREATE INDEX idx_drafts_created ON drafts(created_at);

        CREATE TABLE stat_cache (
            device INTEGER NOT NULL,
            inode INTEGER NOT NULL,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            ctime_ns INTEGER NOT NULL,
            digest TEXT NOT NULL,
            path TEXT,
            checked_at INTEGER NOT NULL,
            PRIMARY KEY (device, inode)
        ) WITHOUT ROWID;
        """,
    )


def _v2(db: Database) -> None:
    # fsck(repair=True) flags versions whose blobs are missing or corrupt.
    _script(
        db,
        """
        ALTER TABLE versions ADD COLUMN damaged INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX idx_versions_manifest ON versions(manifest_blob)
            WHERE manifest_blob IS NOT NULL;
        """,
    )


def _v3(db: Database) -> None:
    # Listing speed at 100k versions: ``hide_at`` is ``expires_at`` unless a user
    # alias pins the version (then NULL), so "is it visible" reads one column that the
    # covering indexes hold, instead of a correlated alias lookup per row; triggers keep it
    # right whoever writes versions or aliases (catalog methods, rebuild, import). ``version_meta``
    # indexes the top-level scalar metadata values (kept by triggers, whoever writes), so
    # ``metadata={"k": v}`` filters are index lookups instead of a json_extract per row.
    _script(
        db,
        """
        ALTER TABLE versions ADD COLUMN hide_at INTEGER;
        UPDATE versions SET hide_at = expires_at WHERE expires_at IS NOT NULL AND NOT EXISTS
            (SELECT 1 FROM aliases a WHERE a.version_id = versions.id AND a.alias != 'latest');
        DROP INDEX idx_versions_state_created;
        CREATE INDEX idx_versions_state_created ON versions(state, created_at, hide_at);
        CREATE INDEX idx_versions_coll_created
            ON versions(collection_id, state, created_at, hide_at);
        CREATE INDEX idx_versions_hide ON versions(hide_at) WHERE hide_at IS NOT NULL;
        DROP INDEX idx_aliases_version;
        CREATE INDEX idx_aliases_version ON aliases(version_id, alias);

        CREATE TRIGGER versions_hide_insert AFTER INSERT ON versions
            WHEN NEW.expires_at IS NOT NULL AND NEW.hide_at IS NULL BEGIN
            UPDATE versions SET hide_at = NEW.expires_at WHERE id = NEW.id;
        END;
        CREATE TRIGGER versions_hide_update AFTER UPDATE OF expires_at ON versions BEGIN
            UPDATE versions SET hide_at = CASE WHEN EXISTS (SELECT 1 FROM aliases a
                WHERE a.version_id = NEW.id AND a.alias != 'latest') THEN NULL
                ELSE NEW.expires_at END WHERE id = NEW.id;
        END;
        CREATE TRIGGER aliases_pin_insert AFTER INSERT ON aliases
            WHEN NEW.alias != 'latest' BEGIN
            UPDATE versions SET hide_at = NULL WHERE id = NEW.version_id;
        END;
        CREATE TRIGGER aliases_pin_update AFTER UPDATE OF version_id ON aliases
            WHEN NEW.alias != 'latest' BEGIN
            UPDATE versions SET hide_at = NULL WHERE id = NEW.version_id;
            UPDATE versions SET hide_at = CASE WHEN EXISTS (SELECT 1 FROM aliases a
                WHERE a.version_id = OLD.version_id AND a.alias != 'latest') THEN NULL
                ELSE expires_at END WHERE id = OLD.version_id;
        END;
        CREATE TRIGGER aliases_pin_delete AFTER DELETE ON aliases
            WHEN OLD.alias != 'latest' BEGIN
            UPDATE versions SET hide_at = CASE WHEN EXISTS (SELECT 1 FROM aliases a
                WHERE a.version_id = OLD.version_id AND a.alias != 'latest') THEN NULL
                ELSE expires_at END WHERE id = OLD.version_id;
        END;

        CREATE TABLE version_meta (
            version_id TEXT NOT NULL REFERENCES versions(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value,
            PRIMARY KEY (version_id, key)
        ) WITHOUT ROWID;
        CREATE INDEX idx_version_meta ON version_meta(key, value);
        CREATE TRIGGER versions_meta_insert AFTER INSERT ON versions BEGIN
            INSERT INTO version_meta (version_id, key, value)
            SELECT NEW.id, key, value FROM json_each(NEW.metadata)
            WHERE type NOT IN ('object', 'array', 'null');
        END;
        CREATE TRIGGER versions_meta_update AFTER UPDATE OF metadata ON versions BEGIN
            DELETE FROM version_meta WHERE version_id = NEW.id;
            INSERT INTO version_meta (version_id, key, value)
            SELECT NEW.id, key, value FROM json_each(NEW.metadata)
            WHERE type NOT IN ('object', 'array', 'null');
        END;
        INSERT INTO version_meta (version_id, key, value)
            SELECT v.id, j.key, j.value FROM versions v, json_each(v.metadata) j
            WHERE j.type NOT IN ('object', 'array', 'null');
        """,
    )


def _v4(db: Database) -> None:
    # The executable bit of each file (scripts came out 0o644): 1 when the
    # source had any x bit set. Existing entries were recorded without it and stay 0.
    db.table("entries").add_column("executable", int, not_null_default=0)


def _v5(db: Database) -> None:
    # Runs and lineage (offline experiment tracking). A run is never deleted (gc and prune
    # leave it); an edge names a version by id without a foreign key, so deleting the version,
    # or its whole collection, keeps the edge: triggers mark it ``version_deleted`` and the
    # edge keeps the collection and number it pointed at, for lineage to show.
    db.table("runs").create(
        {
            "id": str,
            "name": str,
            "state": str,  # RUNNING | FINISHED | FAILED | CRASHED
            "metadata": str,
            "summary": str,
            "host": str,
            "pid": int,
            "process_start": str,  # "<boot id>:<start ticks>" (castore._process)
            "started_at": int,
            "ended_at": int,
            "error": str,
        },
        pk="id",
        not_null={"name", "state", "metadata", "summary", "started_at"},
        defaults={"metadata": "{}", "summary": "{}"},
    )
    db.table("runs").create_index(["name"], unique=True)
    db.table("runs").create_index(["state", "started_at"])
    db.table("runs").create_index(["started_at"])
    db.table("run_edges").create(
        {
            "run_id": str,
            "version_id": str,
            "kind": str,  # used | produced
            "at": int,
            "collection": str,
            "number": int,
            "version_deleted": int,
        },
        pk=("run_id", "version_id", "kind"),
        foreign_keys=[("run_id", "runs", "id")],
        not_null={"run_id", "version_id", "kind", "at"},
        defaults={"version_deleted": 0},
    )
    db.table("run_edges").create_index(["version_id", "kind", "run_id"])
    db.table("run_edges").create_index(["run_id", "kind", "version_id"])
    # sqlite-utils cannot write a partial index or a trigger: raw SQL for those.
    _script(
        db,
        """
        CREATE UNIQUE INDEX idx_run_edges_one_producer ON run_edges(version_id)
            WHERE kind = 'produced';
        CREATE TRIGGER run_edges_version_deleted AFTER UPDATE OF state ON versions
            WHEN NEW.state = 'DELETED' BEGIN
            UPDATE run_edges SET version_deleted = 1 WHERE version_id = NEW.id;
        END;
        CREATE TRIGGER run_edges_version_gone AFTER DELETE ON versions BEGIN
            UPDATE run_edges SET version_deleted = 1 WHERE version_id = OLD.id;
        END;
        """,
    )


def _v6(db: Database) -> None:
    # Offline transfer. OCI names blobs by sha256 while castore keys them by its own hash:
    # blob_sha256 remembers the sha256 (and size) of each blob once computed, so a second
    # export or push re-reads nothing. ``digest`` is a castore digest, or ``group:<digest>``
    # for a tar layer of small files (keyed by the artifact digest of its members).
    # remotes names the store's remotes (Store.remotes): url plus JSON options.
    db.execute(
        "CREATE TABLE blob_sha256 (digest TEXT PRIMARY KEY, sha256 TEXT NOT NULL, "
        "size INTEGER NOT NULL) WITHOUT ROWID"
    )
    db.execute(
        "CREATE TABLE remotes (name TEXT PRIMARY KEY, url TEXT NOT NULL, "
        "options TEXT NOT NULL DEFAULT '{}', created_at INTEGER NOT NULL)"
    )


def _v7(db: Database) -> None:
    # Links (API.md "Linking versions into other collections"): a version of another
    # collection whose entries are the source's. ``link_source`` names the source version;
    # the index serves "which versions link to v" (delete rules, linked_versions()).
    db.table("versions").add_column("link_source", str)
    db.table("versions").create_index(["link_source"], index_name="idx_versions_link_source")


def _v8(db: Database) -> None:
    # Which materializer wrote a version through ``store.save()`` (``"numpy.ndarray"``,
    # ``"json"``, ...), so ``store.load()`` reads it back the same way; NULL for versions
    # made from files. The version document carries it too, so a rebuild keeps it.
    db.table("versions").add_column("materializer", str)


def _v9(db: Database) -> None:
    # Remotes as a second home for blobs (API.md set_budget). ``blob_remotes`` records which
    # remote (a remote's name, or the URL it was reached by) is known to hold which blob: every
    # push and pull writes the rows it proved; gc under a budget evicts only blobs listed here,
    # and a read of an evicted blob fetches it back from one of them (by the sha256 kept in
    # blob_sha256). ``settings`` keeps store-wide knobs such as the budget (key -> JSON).
    db.execute(
        "CREATE TABLE blob_remotes (digest TEXT NOT NULL, remote TEXT NOT NULL, "
        "recorded_at INTEGER NOT NULL, PRIMARY KEY (digest, remote)) WITHOUT ROWID"
    )
    db.execute("CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


def _v10(db: Database) -> None:
    # No index of entries by digest. Digests are random, so each batch of a draft wrote its
    # rows into that many random leaves of the index: 400,000 entries took 11.8 s to insert
    # with it against 1.9 s without (batches of 2,000, one transaction each), the cost per
    # entry grew with the catalogue, and half-full leaves made it ~140 bytes per entry. Only
    # maintenance read through it (gc's and fsck's scans of every live entry, which scan
    # anyway, and fsck's report of the versions holding a damaged blob, now one scan).
    db.execute("DROP INDEX IF EXISTS idx_entries_digest")


#: The steps, in order: step ``n`` brings the schema from version ``n - 1`` to ``n``.
MIGRATIONS: list[Callable[[Database], None]] = [
    _v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8, _v9, _v10
]
SCHEMA_VERSION = len(MIGRATIONS)


def current_version(conn: sqlite3.Connection) -> int:
    """The schema version recorded in the database (0 for a new one)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to :data:`SCHEMA_VERSION` in one ``BEGIN IMMEDIATE`` transaction.

    Args:
        conn: an autocommit connection (``isolation_level=None``) with no open transaction.

    Returns:
        The number of steps applied.

    Raises:
        UnsupportedFormatError: the catalogue was written by a newer castore.
    """
    if current_version(conn) == SCHEMA_VERSION:
        return 0
    # Imported only when a step runs: sqlite-utils pulls in numpy and pandas when installed.
    from sqlite_utils import Database

    db = Database(conn, execute_plugins=False, recursive_triggers=False)
    # Off outside the transaction (the pragma is a no-op inside one): a step that rebuilds a
    # referenced table must not fire ON DELETE CASCADE when the old copy is dropped.
    foreign_keys = bool(conn.execute("PRAGMA foreign_keys").fetchone()[0])
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = current_version(conn)
            if version > SCHEMA_VERSION:
                raise UnsupportedFormatError(
                    f"the catalogue has schema version {version}, newer than this castore "
                    f"understands ({SCHEMA_VERSION}); upgrade castore",
                    found=version,
                )
            for number in range(version + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[number - 1](db)
                conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    finally:
        if foreign_keys:
            conn.execute("PRAGMA foreign_keys = ON")
    return SCHEMA_VERSION - version


def _script(db: Database, script: str) -> None:
    """Run a released step's SQL statement by statement, inside the open transaction.

    (``executescript`` would COMMIT first.)
    """
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                db.execute(current.strip())
            current = ""
    if current.strip():
        db.execute(current.strip())
