"""What offline transfer keeps in the catalogue: the sha256 of blobs, and named remotes.

OCI layouts and registries name blobs by sha256; castore keys them by its own hash. The
``blob_sha256`` table remembers each blob's sha256 once computed (migration step 6), so a
second export or push reads no blob again. ``blob_remotes`` (step 9) records which remote is
known to hold which blob, for eviction under a budget and fetch-back; ``settings`` keeps the
budget.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from castore.index.database import Database

__all__ = [
    "add_remote",
    "blob_homes",
    "forget_blob_remote",
    "get_remote",
    "get_setting",
    "known_sha256",
    "list_remotes",
    "record_blob_remote",
    "remember_sha256",
    "remote_held_digests",
    "remove_remote",
    "set_setting",
]


def known_sha256(db: Database, digests: Iterable[str]) -> dict[str, tuple[str, int]]:
    """``{digest: (sha256 hex, size)}`` of the given castore digests already hashed."""
    found: dict[str, tuple[str, int]] = {}
    batch: list[str] = []

    def flush() -> None:
        marks = ",".join("?" * len(batch))
        for digest, sha, size in db.execute(
            f"SELECT digest, sha256, size FROM blob_sha256 WHERE digest IN ({marks})", batch
        ):
            found[digest] = (sha, int(size))
        batch.clear()

    for digest in digests:
        batch.append(digest)
        if len(batch) >= 500:
            flush()
    if batch:
        flush()
    return found


def remember_sha256(db: Database, rows: Iterable[tuple[str, str, int]]) -> None:
    """Record ``(digest, sha256 hex, size)`` rows (a digest names one content: never updated)."""
    with db.write_txn():
        db.conn.executemany(
            "INSERT OR IGNORE INTO blob_sha256 (digest, sha256, size) VALUES (?, ?, ?)",
            list(rows),
        )


def add_remote(db: Database, name: str, url: str, options: dict[str, Any]) -> bool:
    """Name a remote; False when ``name`` is taken (nothing changes)."""
    with db.write_txn():
        if db.one("SELECT name FROM remotes WHERE name = ?", (name,)) is not None:
            return False
        db.execute(
            "INSERT INTO remotes (name, url, options, created_at) VALUES (?, ?, ?, ?)",
            (name, url, json.dumps(options, sort_keys=True), db.now()),
        )
    return True


def get_remote(db: Database, name: str) -> dict[str, Any] | None:
    """The remote named ``name`` (``name``, ``url``, ``options``), or None."""
    row = db.one("SELECT name, url, options FROM remotes WHERE name = ?", (name,))
    return None if row is None else {**row, "options": json.loads(row["options"])}


def list_remotes(db: Database) -> list[dict[str, Any]]:
    """Every named remote, by name."""
    return [
        {**row, "options": json.loads(row["options"])}
        for row in db.all_rows("SELECT name, url, options FROM remotes ORDER BY name")
    ]


def remove_remote(db: Database, name: str) -> bool:
    """Forget a remote; False when there was none."""
    with db.write_txn():
        return db.execute("DELETE FROM remotes WHERE name = ?", (name,)).rowcount > 0


def record_blob_remote(db: Database, remote: str, digests: Iterable[str]) -> None:
    """Record that ``remote`` holds the blobs ``digests`` (a push or pull proved it)."""
    now = db.now()
    rows = [(d, remote, now) for d in digests]
    if not rows:
        return
    with db.write_txn():
        db.conn.executemany(
            "INSERT INTO blob_remotes (digest, remote, recorded_at) VALUES (?, ?, ?) "
            "ON CONFLICT (digest, remote) DO UPDATE SET recorded_at = excluded.recorded_at",
            rows,
        )


def forget_blob_remote(db: Database, remote: str, digests: Iterable[str]) -> None:
    """Forget that ``remote`` holds ``digests`` (it was found lacking them)."""
    with db.write_txn():
        db.conn.executemany(
            "DELETE FROM blob_remotes WHERE digest = ? AND remote = ?",
            [(d, remote) for d in digests],
        )


def blob_homes(db: Database, digests: Iterable[str]) -> dict[str, list[tuple[str, str, int]]]:
    """``{digest: [(remote, sha256 hex, size), ...]}``: where each blob can be fetched from,
    most recently proved first (only blobs whose sha256 is known)."""
    found: dict[str, list[tuple[str, str, int]]] = {}
    wanted = list(dict.fromkeys(digests))
    for start in range(0, len(wanted), 500):
        batch = wanted[start:start + 500]
        marks = ",".join("?" * len(batch))
        for digest, remote, sha, size in db.execute(
            "SELECT r.digest, r.remote, s.sha256, s.size FROM blob_remotes r "
            f"JOIN blob_sha256 s ON s.digest = r.digest WHERE r.digest IN ({marks}) "
            "ORDER BY r.recorded_at DESC", batch,
        ):
            found.setdefault(digest, []).append((remote, sha, int(size)))
    return found


def remote_held_digests(db: Database) -> set[str]:
    """Every blob some remote is known to hold (with a known sha256, so it can come back)."""
    return {
        row[0] for row in db.execute(
            "SELECT DISTINCT r.digest FROM blob_remotes r "
            "JOIN blob_sha256 s ON s.digest = r.digest"
        )
    }


def get_setting(db: Database, key: str) -> Any:
    """A store-wide setting (decoded JSON), or None."""
    row = db.one("SELECT value FROM settings WHERE key = ?", (key,))
    return None if row is None else json.loads(row["value"])


def set_setting(db: Database, key: str, value: Any) -> None:
    """Store a setting (None removes it)."""
    with db.write_txn():
        if value is None:
            db.execute("DELETE FROM settings WHERE key = ?", (key,))
        else:
            db.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )
