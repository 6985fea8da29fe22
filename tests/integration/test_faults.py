"""I/O errors and environment faults (reliability.md §3.4): after each, fsck is clean."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import harness
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import castore

DATA = os.urandom(300_000)  # incompressible: stored raw, several write chunks


def _final_blobs(store: castore.Store) -> set[str]:
    return set(store.blobs.iter_digests())


@settings(max_examples=15, deadline=None)
@given(nbytes=st.integers(min_value=0, max_value=len(DATA) - 1))
def test_enospc_mid_blob(tmp_path_factory: pytest.TempPathFactory, nbytes: int) -> None:
    """Test 10: OutOfSpaceError, no partial blob, nothing committed; the retry succeeds."""
    with castore.init(tmp_path_factory.mktemp("s") / "store", durable=False) as store:
        harness.finalize(store, "ds", {"a": b"before"})
        before, blobs = harness.snapshot(store), _final_blobs(store)
        draft = store.draft("ds")
        with harness.enospc_after(nbytes), pytest.raises(castore.OutOfSpaceError) as info:
            draft.add_bytes(DATA, "big.bin")
        assert isinstance(info.value, OSError)
        assert list(store.blobs.iter_tmp()) == []  # the temp file is gone
        assert _final_blobs(store) == blobs  # nothing under a final name
        assert harness.snapshot(store) == before
        assert draft.paths == []
        draft.add_bytes(DATA, "big.bin")  # space is back: the same add succeeds
        v = draft.finalize()
        v.verify()
        assert store.fsck().ok


def test_sqlite_full_at_commit(store: castore.Store) -> None:
    """Test 11: SQLITE_FULL (max_page_count) -> OutOfSpaceError, rolled back, writable after."""
    harness.finalize(store, "ds", {"a": b"before"})
    before = harness.snapshot(store)
    draft = store.draft("ds")
    for i in range(30):
        draft.add_bytes(f"file {i}".encode() * 50, f"dir/file-{i:03}-{'x' * 60}.txt")
    conn = store.catalog.conn
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(castore.OutOfSpaceError):
        for i in range(200):  # until the catalogue cannot grow
            store.draft(f"more{i}").add_bytes(os.urandom(64) * 8, f"{'y' * 200}-{i}")
    # Many aliases and tags: the commit needs pages the catalogue cannot get.
    aliases = [f"alias-{i:02}-{'a' * 100}" for i in range(40)]
    tags = [f"tag-{i:02}-{'t' * 100}" for i in range(40)]
    with pytest.raises(castore.OutOfSpaceError):
        draft.finalize(aliases=aliases, tags=tags)
    assert not conn.in_transaction
    assert harness.snapshot(store) == before
    conn.execute("PRAGMA max_page_count = 1073741823")
    v = draft.finalize(aliases=aliases, tags=tags)
    assert v.number == 1 and v.file_count == 30
    v.verify()
    for d in store.drafts():
        d.discard()
    store.gc(grace=timedelta(0))
    report = store.fsck()
    assert report.ok and report.findings == [], report


def test_fsync_failure_commits_nothing(durable_store: castore.Store) -> None:
    """Test 12: a failed fsync fails the finalize; the catalogue does not commit."""
    store = durable_store
    harness.finalize(store, "ds", {"a": b"before"})
    before = harness.snapshot(store)
    draft = store.draft("ds")
    draft.add_bytes(b"needs to be durable" * 100, "d.bin")
    with harness.failing_fsync() as failed, pytest.raises(OSError):
        draft.finalize()
    assert failed
    assert harness.snapshot(store) == before
    v = draft.finalize()  # the retry writes (and syncs) again
    v.verify()
    assert store.fsck().ok


def test_fsync_failure_while_adding(durable_store: castore.Store) -> None:
    store = durable_store
    with harness.failing_fsync(), pytest.raises(OSError):
        store.blobs.put_bytes(b"x" * 1000)
    assert list(store.blobs.iter_tmp()) == []
    assert store.fsck().ok


def test_eio_on_read_during_checkout_leaves_target_alone(
    store: castore.Store, tmp_path: Path
) -> None:
    """Test 13: checkout raises before touching the target; fsck names the digest."""
    v = harness.finalize(store, "ds", {"a": b"a" * 100, "b": b"b" * 100})
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    digest = v.get_entry("b").digest
    with harness.eio_on_read(store, digest):
        with pytest.raises((castore.CastoreError, OSError)):
            v.checkout(target)
        [finding] = harness.errors_of(store.fsck())
        assert finding.digest == digest and "cannot be read" in finding.message
    assert sorted(p.name for p in target.iterdir() if not p.name.startswith(".")) == ["keep.txt"]
    assert store.fsck().ok


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


def test_read_only_store_reads_everything_and_creates_nothing(tmp_path: Path) -> None:
    """Test 14: every read works, every write raises ReadOnlyStoreError, nothing is created."""
    path = tmp_path / "store"
    with castore.init(path, durable=False) as store:
        harness.finalize(store, "ds", {"a": b"alpha", "d/b": b"beta"}, aliases=["prod"])
        harness.finalize(store, "ds", {"a": b"alpha2"})
    before = _tree(path)
    with castore.open(path, read_only=True) as ro:
        assert ro.read_only
        v = ro.get("ds:prod")
        assert v.read_bytes("a") == b"alpha"
        v.verify()
        v.checkout(tmp_path / "out")
        assert (tmp_path / "out" / "d" / "b").read_bytes() == b"beta"
        assert [x.number for x in ro.versions()] == [1, 0]
        assert ro.fsck().ok
        assert ro.stats().versions == 2
        assert ro.gc(dry_run=True).dry_run
        for write in (
            lambda: ro.draft("ds"),
            lambda: ro.gc(),
            lambda: ro.prune(keep_last=0),
            lambda: ro.fsck(repair=True),
            lambda: v.add_alias("x"),
            lambda: v.delete(),
            lambda: ro.blobs.put_bytes(b"new"),
        ):
            with pytest.raises(castore.ReadOnlyStoreError):
                write()
    after = _tree(path)
    # SQLite's own -wal/-shm may appear (see the report); castore creates nothing else.
    assert {k: v for k, v in after.items() if not k.endswith(("-wal", "-shm"))} == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_store_without_write_permission_opens_read_only(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with castore.init(path, durable=False) as store:
        harness.finalize(store, "ds", {"a": b"alpha"})
    for p in [path, *path.rglob("*")]:
        if p.is_dir():
            os.chmod(p, 0o555)
    try:
        with castore.open(path) as store:
            assert store.read_only
            assert store.get("ds").read_bytes("a") == b"alpha"
            with pytest.raises(castore.ReadOnlyStoreError):
                store.gc()
    finally:
        for p in [path, *path.rglob("*")]:
            if p.is_dir():
                os.chmod(p, 0o755)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_unreadable_blob_is_reported(store: castore.Store) -> None:
    v = harness.finalize(store, "ds", {"a": b"secret" * 10})
    path = store.blobs.path_of(v.get_entry("a").digest)
    os.chmod(path, 0)
    try:
        [finding] = harness.errors_of(store.fsck())
        assert finding.kind == "corrupt_blob" and "cannot be read" in finding.message
    finally:
        os.chmod(path, 0o444)
    assert store.fsck().ok


# -- issue 9 item 11: files that change under add_dir, disk full anywhere ------------------
#
# Each fault is raised as a castore error naming the path (FileChangedError for the source,
# OutOfSpaceError for the store or the target), and nothing already stored is lost.


def _source(root: Path, count: int = 6) -> Path:
    root.mkdir(parents=True)
    for i in range(count):
        (root / f"f{i}.bin").write_bytes(os.urandom(2000 + i))
    return root


def _after_walk(monkeypatch: pytest.MonkeyPatch, change: Any) -> None:
    """Run ``change()`` between add_dir's walk and the reading of the files."""
    # add_dir imports the walk when it runs (keeping it off the read-only commands' imports)
    import castore.artifact.walk as walk_mod

    real = walk_mod.walk_tree

    def walk_then_change(*args: Any, **kwargs: Any) -> Any:
        files = list(real(*args, **kwargs))
        change()
        return iter(files)

    monkeypatch.setattr(walk_mod, "walk_tree", walk_then_change)


def _replace_with_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


@pytest.mark.parametrize(
    "change",
    [Path.unlink, lambda p: (p.unlink(), p.mkdir()), _replace_with_fifo],
    ids=["vanished", "replaced-by-directory", "replaced-by-fifo"],
)
def test_file_changing_between_walk_and_read(
    store: castore.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: Any
) -> None:
    """A vanished file was a raw FileNotFoundError (and a FIFO hung the add)."""
    harness.finalize(store, "ds", {"a": b"before"})
    before, blobs = harness.snapshot(store), _final_blobs(store)
    src = _source(tmp_path / "src")
    victim = src / "f3.bin"
    _after_walk(monkeypatch, lambda: change(victim))
    draft = store.draft("ds")
    with pytest.raises(castore.FileChangedError) as info:
        draft.add_dir(src)
    assert info.value.path == str(victim) and "f3.bin" in str(info.value)
    assert "f3.bin" not in draft.paths
    assert list(store.blobs.iter_tmp()) == []
    assert blobs <= _final_blobs(store)
    draft.discard()
    assert harness.snapshot(store) == before
    assert store.fsck().ok


def test_file_truncated_mid_read(
    store: castore.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from castore.storage.blobs import BlobStore

    src = _source(tmp_path / "src", count=1)
    victim = src / "f0.bin"
    real = BlobStore.stage_stream

    def truncate_then_read(self: BlobStore, stream: Any, **kwargs: Any) -> Any:
        os.truncate(victim, 500)  # shrinks after its size was taken, before it is read
        return real(self, stream, **kwargs)

    real_small = BlobStore._stage_small

    def truncate_then_read_small(self: BlobStore, fh: Any, size: int) -> Any:
        os.truncate(victim, 500)
        return real_small(self, fh, size)

    monkeypatch.setattr(BlobStore, "stage_stream", truncate_then_read)
    monkeypatch.setattr(BlobStore, "_stage_small", truncate_then_read_small)
    with pytest.raises(castore.FileChangedError, match=r"f0\.bin"):
        store.draft("ds").add_dir(src)
    assert list(store.blobs.iter_tmp()) == []
    assert store.fsck().ok


def test_enospc_while_staging_a_directory(store: castore.Store, tmp_path: Path) -> None:
    harness.finalize(store, "ds", {"a": b"before"})
    before = harness.snapshot(store)
    src = _source(tmp_path / "src")
    draft = store.draft("ds")
    with harness.enospc_after(5000), pytest.raises(castore.OutOfSpaceError) as info:
        draft.add_dir(src)
    assert info.value.path and str(store.path) in str(info.value)
    assert list(store.blobs.iter_tmp()) == []
    draft.discard()
    assert harness.snapshot(store) == before
    assert store.fsck().ok


def test_enospc_creating_a_blob_shard(store: castore.Store) -> None:
    """A new shard directory on a full disk was a bare OSError [Errno 28]."""
    harness.finalize(store, "ds", {"a": b"before"})
    before, blobs = harness.snapshot(store), _final_blobs(store)
    draft = store.draft("ds")
    with (
        harness.enospc_on_mkdir(store.path / "blobs") as refused,
        pytest.raises(castore.OutOfSpaceError) as info,
    ):
        for i in range(64):  # until a blob needs a shard that is not there yet
            # large enough to be a loose file (small blobs go into packs, not shards)
            draft.add_bytes(os.urandom(70_000), f"f{i}")
    assert refused and info.value.path
    assert "blobs" in str(info.value)
    assert _final_blobs(store) >= blobs
    draft.discard()
    assert harness.snapshot(store) == before
    assert store.fsck().ok


@pytest.mark.parametrize("verb", ["checkout", "download"])
def test_enospc_while_writing_a_checkout(store: castore.Store, tmp_path: Path, verb: str) -> None:
    """Disk full mid-file in checkout/download was a bare OSError [Errno 28]."""
    v = harness.finalize(store, "ds", {"a.bin": os.urandom(50_000), "b/c.bin": b"c" * 3000})
    before = harness.snapshot(store)
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with (
        harness.enospc_after(20_000, at="checkout"),
        pytest.raises(castore.OutOfSpaceError) as info,
    ):
        getattr(v, verb)(target, link="copy", **({"force": True} if verb == "checkout" else {}))
    assert isinstance(info.value, OSError)
    assert str(target) in str(info.value)
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]  # left unchanged
    assert harness.snapshot(store) == before
    assert store.fsck().ok
    getattr(v, verb)(tmp_path / "retry", link="copy")  # space is back


def test_enospc_making_checkout_directories(store: castore.Store, tmp_path: Path) -> None:
    v = harness.finalize(store, "ds", {"deep/er/x.txt": b"x"})
    target = tmp_path / "target"
    with harness.enospc_on_mkdir(tmp_path), pytest.raises(castore.OutOfSpaceError) as info:
        v.checkout(target)
    assert str(target) in str(info.value)
    assert store.fsck().ok
