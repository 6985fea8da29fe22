"""Schema migrations: stepwise upgrades match a fresh catalogue; new steps use sqlite-utils."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database

from castore.index import migrations as _migrations
from castore.index.catalog import Catalog


def _schema(path: Path) -> list[tuple[str, str, str | None]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
            "AND name NOT LIKE 'sqlite_%' ORDER BY type, name"
        ).fetchall()
    finally:
        conn.close()


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def test_every_older_schema_upgrades_to_the_fresh_one(tmp_path: Path) -> None:
    Catalog(tmp_path / "fresh.db").close()
    fresh = _schema(tmp_path / "fresh.db")
    for start in range(1, _migrations.SCHEMA_VERSION):
        path = tmp_path / f"v{start}.db"
        conn = _connect(path)
        conn.execute("BEGIN")
        for step in _migrations.MIGRATIONS[:start]:
            step(Database(conn))
        conn.execute(f"PRAGMA user_version = {start}")
        conn.execute("COMMIT")
        assert _migrations.migrate(conn) == _migrations.SCHEMA_VERSION - start
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1  # restored
        conn.close()
        assert _schema(path) == fresh


def _with_step(monkeypatch: pytest.MonkeyPatch, step: object) -> None:
    steps = [*_migrations.MIGRATIONS, step]
    monkeypatch.setattr(_migrations, "MIGRATIONS", steps)
    monkeypatch.setattr(_migrations, "SCHEMA_VERSION", len(steps))


def test_a_new_step_can_use_the_table_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.db"
    cat = Catalog(path)
    coll = cat.ensure_collection("a", "dataset")
    vid = cat.create_version(coll["id"])
    with cat.write_txn():
        cat.commit_version(vid, digest="xxh3-128:" + "1" * 32, size=0, file_count=0, ttl=None)
    cat.close()

    def step(db: Database) -> None:
        db["alias_history"].add_column("note", str)
        db["alias_history"].create_index(["note"])
        db["alias_history"].transform(types={"note": int})

    _with_step(monkeypatch, step)
    conn = _connect(path)
    assert _migrations.migrate(conn) == 1
    table = Database(conn)["alias_history"]
    assert table.columns_dict["note"] is int
    assert {index.name for index in table.indexes} >= {
        "idx_alias_history",
        "idx_alias_history_note",
    }
    assert conn.execute("SELECT COUNT(*) FROM alias_history").fetchone()[0] == 1
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.close()


def test_a_failing_step_leaves_the_catalogue_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.db"
    Catalog(path).close()
    before = _schema(path)

    def step(db: Database) -> None:
        db["versions"].add_column("half_done", str)
        raise RuntimeError("boom")

    _with_step(monkeypatch, step)
    conn = _connect(path)
    with pytest.raises(RuntimeError):
        _migrations.migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == _migrations.SCHEMA_VERSION - 1
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    conn.close()
    assert _schema(path) == before


def _catalogue_at(path: Path, step: int, state: str) -> sqlite3.Connection:
    """A catalogue at schema ``step`` holding collection 1 and its version ``'v'`` in ``state``,
    inside an open transaction."""
    conn = _connect(path)
    conn.execute("BEGIN")
    for migration in _migrations.MIGRATIONS[:step]:
        migration(Database(conn))
    conn.execute(f"PRAGMA user_version = {step}")
    conn.execute(
        "INSERT INTO collections (id, name, type, created_at, updated_at) "
        "VALUES (1, 'c', 'dataset', 0, 0)"
    )
    conn.execute(
        "INSERT INTO versions (id, collection_id, state, created_at, updated_at) "
        "VALUES ('v', 1, ?, 0, 0)",
        (state,),
    )
    return conn


def test_step_4_adds_the_executable_bit_as_false_to_existing_entries(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    conn = _catalogue_at(path, 3, "PENDING")
    conn.execute("INSERT INTO entries (version_id, path, digest, size) VALUES ('v', 'a', 'd', 1)")
    conn.execute("COMMIT")
    assert _migrations.migrate(conn) == _migrations.SCHEMA_VERSION - 3
    assert conn.execute("SELECT path, executable FROM entries").fetchall() == [("a", 0)]
    conn.close()
    cat = Catalog(path)
    assert list(cat.iter_entries("v")) == [("a", "d", 1, None, False)]
    cat.close()


def test_step_10_drops_the_digest_index_and_keeps_every_entry(tmp_path: Path) -> None:
    path = tmp_path / "v9.db"
    conn = _catalogue_at(path, 9, "COMMITTED")
    conn.executemany(
        "INSERT INTO entries (version_id, path, digest, size) VALUES ('v', ?, ?, 1)",
        [(f"f{i}", f"xxh3-128:{i:032x}") for i in range(50)],
    )
    conn.execute("COMMIT")
    indexes = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'entries'"
    assert ("idx_entries_digest",) in conn.execute(indexes).fetchall()
    assert _migrations.migrate(conn) == _migrations.SCHEMA_VERSION - 9
    assert ("idx_entries_digest",) not in conn.execute(indexes).fetchall()
    assert conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0] == 50
    conn.close()
    cat = Catalog(path)
    assert len(list(cat.iter_entries("v"))) == 50
    cat.close()
