"""What offline transfer keeps in the catalogue: the sha256 of blobs, and named remotes.

OCI layouts and registries name blobs by sha256; castore keys them by its own hash. The
``blob_sha256`` table remembers each blob's sha256 once computed (migration step 6), so a
second export or push reads no blob again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from castore.index.database import Database

__all__ = [
    "add_remote",
    "get_remote",
    "known_sha256",
    "list_remotes",
    "remember_sha256",
    "remove_remote",
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
