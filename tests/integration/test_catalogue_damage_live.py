"""A catalogue damaged while another process holds the store (issue 9 item 13).

Truncating ``catalog.db`` under a running process made every open wait out SQLite's 30 s
busy timeout and report a lock timeout (and ``fsck --repair`` exit 11); deleting
``catalog.db-wal`` under a writer gave a raw "disk I/O error". Both must be reported as
:class:`CatalogCorruptError` at once, and repair must proceed while the other process lives.

Every open of the damaged store runs in a subprocess with a short timeout, so a regression
fails fast instead of waiting 30 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import castore
from tests.harness import ROOT, finalize, snapshot

# Far below the catalogue's 30 s busy timeout: the damage must be reported at once.
BOUND = 10.0

_HOLD = """
import sys, time, castore
store = castore.open(sys.argv[1], durable=False)
store.versions()
print("ready", flush=True)
sys.stdin.read()
"""

_OPEN = """
import sys, castore
try:
    with castore.open(sys.argv[1]) as store:
        print("opened", [v.ref for v in store.versions().items])
except castore.CastoreError as exc:
    print(type(exc).__name__, exc)
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@contextmanager
def _held(root: Path) -> Iterator[None]:
    """Another process holds the store open (a connection with its -wal and -shm)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(root)],
        env=_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield
    finally:
        proc.communicate("", timeout=BOUND)


def _open_elsewhere(root: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _OPEN, str(root)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=BOUND,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _repair_with_cli(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "castore", "--store", str(root), "fsck", "--repair", "-y"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=BOUND,
    )


def _build(root: Path, *, versions: int) -> dict[str, object]:
    with castore.init(root, durable=False) as store:
        for i in range(versions):
            finalize(store, "ds", {"a.txt": b"v%d" % i, "b.bin": bytes(range(256)) * (i + 1)})
        return snapshot(store)


@pytest.mark.parametrize(
    ("versions", "size"),
    [(0, 0), (3, 0), (3, 50), (3, 4096)],
    ids=["empty-store-to-0", "to-0", "to-50", "to-4096"],
)
def test_truncated_under_a_holder_is_reported_and_repaired(
    tmp_path: Path, versions: int, size: int
) -> None:
    root = tmp_path / "store"
    before = _build(root, versions=versions)
    with _held(root):
        os.truncate(root / "catalog.db", size)
        out = _open_elsewhere(root)
        assert out.startswith("CatalogCorruptError"), out
        assert "catalog.db" in out and "fsck --repair" in out
        repaired = _repair_with_cli(root)
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        assert _open_elsewhere(root).startswith("opened")
    with castore.open(root) as store:
        assert snapshot(store) == before
        assert store.fsck().ok


def test_wal_deleted_under_a_writer_is_reported_and_repaired(tmp_path: Path) -> None:
    root = tmp_path / "store"
    _build(root, versions=2)
    with castore.open(root, durable=False) as writer:
        writer.catalog.execute("PRAGMA wal_autocheckpoint = 0")
        finalize(writer, "ds", {"a.txt": b"in the wal"})
        expected = snapshot(writer)
        os.unlink(root / "catalog.db-wal")
        out = _open_elsewhere(root)
        assert out.startswith("CatalogCorruptError"), out
        assert "catalog.db-wal" in out and "fsck --repair" in out
        repaired = _repair_with_cli(root)
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    with castore.open(root) as store:
        assert snapshot(store) == expected
        assert store.fsck().ok
