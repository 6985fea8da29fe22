"""The SQLite catalogue: connections, transactions, migrations, stat cache, uuid7."""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from castore.errors import (
    LockTimeoutError,
    OutOfSpaceError,
    ReadOnlyStoreError,
    UnsupportedFormatError,
)
from castore.index import migrations as _migrations
from castore.index.catalog import Catalog, now_us, uuid7
from castore.models import AliasEvent


@pytest.fixture
def catalog(tmp_path: Path):
    cat = Catalog(tmp_path / "catalog.db", timeout=2, durable=False)
    yield cat
    cat.close()


def test_schema_is_created_with_wal_and_pragmas(catalog: Catalog) -> None:
    conn = catalog.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 2000
    assert conn.execute("PRAGMA user_version").fetchone()[0] == _migrations.SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {
        "collections",
        "versions",
        "entries",
        "aliases",
        "version_tags",
        "alias_history",
        "drafts",
        "stat_cache",
    } <= tables


def test_every_filter_column_is_indexed(catalog: Catalog) -> None:
    plan = catalog.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM versions WHERE digest = 'x'"
    ).fetchall()
    assert any("idx_versions_digest" in str(tuple(row)) for row in plan)
    plan = catalog.execute("EXPLAIN QUERY PLAN SELECT * FROM version_tags WHERE tag = 'a'")
    assert any("idx_version_tags_tag" in str(tuple(row)) for row in plan)


def test_reopening_does_not_migrate_again(tmp_path: Path) -> None:
    Catalog(tmp_path / "c.db").close()
    conn = sqlite3.connect(tmp_path / "c.db", isolation_level=None)
    assert _migrations.migrate(conn) == 0
    conn.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "c.db")
    conn.execute(f"PRAGMA user_version = {_migrations.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(UnsupportedFormatError, match="newer"):
        Catalog(tmp_path / "c.db")


def test_write_txn_rolls_back_on_error(catalog: Catalog) -> None:
    with pytest.raises(RuntimeError), catalog.write_txn():
        catalog.ensure_collection("a", "dataset")
        raise RuntimeError("boom")
    assert catalog.get_collection("a") is None
    with catalog.write_txn():
        catalog.ensure_collection("a", "dataset")
    assert catalog.get_collection("a") is not None


def test_write_txn_is_reentrant(catalog: Catalog) -> None:
    with catalog.write_txn(), catalog.write_txn():
        catalog.ensure_collection("a", None)
    assert not catalog.conn.in_transaction
    assert catalog.get_collection("a")["type"] == "dataset"


def test_collection_type_is_fixed(catalog: Catalog) -> None:
    catalog.ensure_collection("a", "model")
    with pytest.raises(ValueError, match="type 'model'"):
        catalog.ensure_collection("a", "dataset")
    assert catalog.ensure_collection("a", None)["type"] == "model"


def test_lock_timeout_is_translated(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    holder = Catalog(path, timeout=5)
    waiter = Catalog(path, timeout=0.2)
    try:
        with holder.write_txn(), pytest.raises(LockTimeoutError) as info, waiter.write_txn():
            pass
        assert info.value.timeout == 0.2
    finally:
        holder.close()
        waiter.close()


def test_disk_full_is_translated(catalog: Catalog) -> None:
    exc = sqlite3.OperationalError("database or disk is full")
    assert isinstance(catalog._translate(exc), OutOfSpaceError)


def test_read_only_catalog_refuses_writes(tmp_path: Path) -> None:
    Catalog(tmp_path / "c.db").close()
    ro = Catalog(tmp_path / "c.db", read_only=True)
    try:
        assert ro.list_collections() == []
        with pytest.raises(ReadOnlyStoreError):
            ro.ensure_collection("a", "dataset")
        ro.stat_cache.record_many([])  # a no-op, not an error
    finally:
        ro.close()


def test_one_connection_per_thread(catalog: Catalog) -> None:
    seen = []

    def work(i: int) -> None:
        seen.append(id(catalog.conn))
        catalog.ensure_collection(f"t{i}", "dataset")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 4
    assert len(catalog.list_collections()) == 4


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_connection_is_recreated_after_fork(catalog: Catalog) -> None:
    parent_conn = catalog.conn
    pid = os.fork()
    if pid == 0:  # child: must not reuse the parent's connection
        ok = catalog.conn is not parent_conn
        catalog.ensure_collection("from-child", "dataset")
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert catalog.get_collection("from-child") is not None


def test_uuid7_is_valid_and_ordered() -> None:
    ids = [uuid7() for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    ms = int(ids[0].replace("-", "")[:12], 16)
    assert abs(ms - now_us() // 1000) < 60_000


def test_stat_cache_matches_every_key_field(catalog: Catalog, tmp_path: Path) -> None:
    f = tmp_path / "f.txt"
    f.write_text("one")
    st = os.stat(f)
    cache = catalog.stat_cache
    assert cache.lookup(str(f), st) is None
    cache.record_many([(str(f), st, "xxh3-128:" + "0" * 32)])
    assert cache.lookup(str(f), st) == "xxh3-128:" + "0" * 32
    assert cache.lookup_many([st]) == {(st.st_dev, st.st_ino): "xxh3-128:" + "0" * 32}
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert cache.lookup(str(f), os.stat(f)) is None  # mtime (and ctime) changed
    f.write_text("two")  # same size, new content
    assert cache.lookup(str(f), os.stat(f)) is None


def test_stat_cache_handles_huge_inode_numbers(catalog: Catalog) -> None:
    st = SimpleNamespace(
        st_dev=2**63 + 1, st_ino=2**64 - 5, st_size=3, st_mtime_ns=1, st_ctime_ns=2
    )
    catalog.stat_cache.record_many([("x", st, "d")])
    assert catalog.stat_cache.lookup("x", st) == "d"


def test_alias_moves_are_recorded(catalog: Catalog) -> None:
    coll = catalog.ensure_collection("a", "dataset")
    ids = []
    for _ in range(2):
        vid = catalog.create_version(coll["id"])
        with catalog.write_txn():
            catalog.commit_version(
                vid, digest="xxh3-128:" + "1" * 32, size=0, file_count=0, ttl=None
            )
        ids.append(vid)
    catalog.set_alias(coll["id"], "prod", ids[0])
    catalog.set_alias(coll["id"], "prod", ids[1])
    catalog.remove_alias(coll["id"], "prod")
    moves = [
        (r["from_version"], r["to_version"]) for r in catalog.alias_history(coll["id"], "prod")
    ]
    assert moves == [(None, ids[0]), (ids[0], ids[1]), (ids[1], None)]
    latest = [
        (r["from_version"], r["to_version"]) for r in catalog.alias_history(coll["id"], "latest")
    ]
    assert latest == [(None, ids[0]), (ids[0], ids[1])]


def test_alias_events_are_records_with_refs(catalog: Catalog) -> None:
    coll = catalog.ensure_collection("a", "dataset")
    ids = []
    for _ in range(2):
        vid = catalog.create_version(coll["id"])
        with catalog.write_txn():
            catalog.commit_version(
                vid, digest="xxh3-128:" + "1" * 32, size=0, file_count=0, ttl=None
            )
        ids.append(vid)
    catalog.set_alias(coll["id"], "prod", ids[0])
    catalog.set_alias(coll["id"], "prod", ids[1])
    catalog.remove_alias(coll["id"], "prod")
    events = catalog.alias_events(coll["id"], "prod")
    assert all(isinstance(e, AliasEvent) for e in events)
    assert [(e.alias, e.from_version, e.to_version) for e in events] == [
        ("prod", None, "a:v0"),
        ("prod", "a:v0", "a:v1"),
        ("prod", "a:v1", None),
    ]
    assert all(e.at.tzinfo is not None and e.at.utcoffset() == timedelta(0) for e in events)
    assert [e.at for e in events] == sorted(e.at for e in events)
    assert {e.alias for e in catalog.alias_events(coll["id"])} == {"latest", "prod"}
    with pytest.raises(ValidationError):
        AliasEvent(at=events[0].at, alias="x", from_version=None, to_version=None, extra=1)
    # a version whose row is gone keeps its id, the only name left for it
    with catalog.write_txn():
        catalog.execute(
            "UPDATE alias_history SET to_version = 'gone' WHERE to_version = ?", (ids[0],)
        )
    assert catalog.alias_events(coll["id"], "prod")[0].to_version == "gone"


def test_referenced_digests_cover_pending_committed_and_manifests(catalog: Catalog) -> None:
    coll = catalog.ensure_collection("a", "dataset")
    pending = catalog.create_version(coll["id"])
    catalog.put_entries(pending, [("p", "xxh3-128:" + "a" * 32, 1, None)])
    done = catalog.create_version(coll["id"])
    catalog.put_entries(
        done,
        [("q", "xxh3-128:" + "b" * 32, 1, None), ("r", "xxh3-128:" + "e" * 32, 1, "s3://bucket/r")],
    )
    with catalog.write_txn():
        catalog.commit_version(done, digest="xxh3-128:" + "c" * 32, size=1, file_count=2, ttl=None)
        catalog.update_version(done, manifest_blob="xxh3-128:" + "d" * 32)
    assert catalog.referenced_digests() == {"xxh3-128:" + c * 32 for c in "abd"}
    catalog.delete_version(done)
    assert catalog.referenced_digests() == {"xxh3-128:" + "a" * 32}
    catalog.discard_draft(pending)
    assert catalog.referenced_digests() == set()


def test_unsynced_txn_restores_full_sync(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "c.db", durable=True)
    try:
        assert cat.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        with cat.write_txn(sync=False):
            assert cat.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
            cat.ensure_collection("a", None)
        assert cat.conn.execute("PRAGMA synchronous").fetchone()[0] == 2
        with pytest.raises(RuntimeError), cat.write_txn(sync=False):
            raise RuntimeError
        assert cat.conn.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert cat.get_collection("a") is not None
    finally:
        cat.close()


def test_hide_at_follows_raw_writes(catalog: Catalog) -> None:
    """Writers outside the catalogue methods (rebuild, import) keep expiry right by triggers."""
    coll = catalog.ensure_collection("a", "dataset")
    with catalog.write_txn():
        catalog.execute(
            "INSERT INTO versions (id, collection_id, number, state, created_at, updated_at, "
            "ttl, expires_at) VALUES ('x', ?, 0, 'COMMITTED', 1, 1, 1.0, 2)",
            (coll["id"],),
        )
    assert catalog.count_versions(now=10, **_no_filters()) == 0  # expired: hidden
    with catalog.write_txn():
        catalog.execute(
            "INSERT INTO aliases (collection_id, alias, version_id, updated_at) "
            "VALUES (?, 'prod', 'x', 1)",
            (coll["id"],),
        )
    assert catalog.count_versions(now=10, **_no_filters()) == 1  # pinned by a user alias
    with catalog.write_txn():
        catalog.execute("DELETE FROM aliases WHERE alias = 'prod'")
    assert catalog.count_versions(now=10, **_no_filters()) == 0
    with catalog.write_txn():
        catalog.execute("UPDATE versions SET expires_at = NULL WHERE id = 'x'")
    assert catalog.count_versions(now=10, **_no_filters()) == 1


def _no_filters() -> dict:
    return dict(
        collection=None,
        type=None,
        tags=None,
        alias=None,
        state="COMMITTED",
        metadata=None,
        created_after=None,
        created_before=None,
        match="all",
    )
