"""The maintenance lock: exclusivity with a timeout, survives kill -9, never deletes its file."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import harness
import pytest

import castore
from castore.storage.locking import StoreLock, maintenance_lock


def test_lock_excludes_and_times_out(tmp_path: Path) -> None:
    with maintenance_lock(tmp_path / "locks"):
        other = StoreLock(tmp_path / "locks", timeout=0.05)
        with pytest.raises(castore.LockTimeoutError) as info:
            other.acquire()
        assert info.value.timeout == 0.05
        assert "held by another castore process" in str(info.value)
    StoreLock(tmp_path / "locks", timeout=0).acquire()  # free again


def test_lock_file_is_never_deleted(tmp_path: Path) -> None:
    lock = StoreLock(tmp_path / "locks")
    with lock:
        assert lock.is_locked
    assert not lock.is_locked
    assert lock.path.exists()


def test_lock_excludes_threads_of_one_process(tmp_path: Path) -> None:
    lock = StoreLock(tmp_path / "locks", timeout=5)
    inside = []
    overlap = []

    def work() -> None:
        for _ in range(50):
            with lock:
                inside.append(1)
                if len(inside) > 1:
                    overlap.append(1)
                inside.pop()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlap == []


def test_lock_is_reentrant_in_one_thread(tmp_path: Path) -> None:
    lock = StoreLock(tmp_path / "locks", timeout=0.1)
    with lock, lock:
        assert lock.is_locked
    assert not lock.is_locked


def test_lock_is_free_after_its_holder_is_killed(tmp_path: Path) -> None:
    """reliability.md test 25: the kernel drops a flock when its holder dies."""
    store = castore.init(tmp_path / "store", durable=False)
    store.close()
    proc = harness.spawn("hold_lock", store.path, 60)
    assert proc.stdout.readline().strip() == "locked"
    with pytest.raises(castore.LockTimeoutError):
        StoreLock(store.path / "locks", timeout=0.05).acquire()
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    with castore.open(store.path) as s:
        assert s.gc().blobs_deleted == 0  # takes the lock at once
    assert (store.path / "locks" / "maintenance.lock").exists()


def test_lock_mutual_exclusion_across_processes(tmp_path: Path) -> None:
    """reliability.md test 24: read-modify-write of a counter under the lock loses nothing."""
    castore.init(tmp_path / "store", durable=False).close()
    counter = tmp_path / "counter"
    counter.write_text("0")
    procs = [harness.spawn("count", tmp_path / "store", counter, 200) for _ in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert counter.read_text() == "600"


def test_catalogue_write_lock_past_timeout_is_lock_timeout(tmp_path: Path) -> None:
    """reliability.md test 22: SQLite's write lock held elsewhere -> LockTimeoutError."""
    from castore.index.catalog import Catalog

    castore.init(tmp_path / "store", durable=False).close()
    proc = harness.spawn("hold_write", tmp_path / "store", 30)
    try:
        assert proc.stdout.readline().strip() == "locked"
        catalog = Catalog(tmp_path / "store" / "catalog.db", timeout=0.2, durable=False)
        try:
            with pytest.raises(castore.LockTimeoutError), catalog.write_txn():
                pass
            # WAL readers keep working during the writer's lock.
            assert catalog.execute("SELECT COUNT(*) FROM versions").fetchone()[0] == 0
        finally:
            catalog.close()
    finally:
        proc.kill()
        proc.communicate()
