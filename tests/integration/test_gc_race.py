"""gc beside writers (reliability.md tests 20-21): closed by design, even with grace 0.

The deterministic tests run a complete gc inside the writer's window (after staging, before the
catalogue transaction that records and publishes); the soak runs writer processes against a
process looping ``gc(grace=0)``.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import harness
import pytest

import castore

ZERO = timedelta(0)


def _gc_in_window(store: castore.Store, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make every staged blob trigger a full gc(grace=0) by another Store, before it is recorded."""
    other = castore.open(store.path, durable=False)
    runs: list[int] = []
    real = store.blobs.stage_stream

    def stage_stream(*args, **kwargs):
        staged = real(*args, **kwargs)
        if not store.catalog.conn.in_transaction:  # (the manifest is staged inside finalize's)
            runs.append(other.gc(grace=ZERO).blobs_deleted)
        return staged

    monkeypatch.setattr(store.blobs, "stage_stream", stage_stream)
    return runs


def test_gc_between_stage_and_publish_of_a_dedup_hit(
    store: castore.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blob the writer dedups against is unreferenced and gc deletes it in the window:
    the writer's publish must bring it back, not commit a dangling entry."""
    old = harness.finalize(store, "ds", {"a": b"revived content" * 10})
    harness.finalize(store, "ds", {"a": b"something else"})
    old.delete()
    runs = _gc_in_window(store, monkeypatch)
    v = harness.finalize(store, "ds", {"a": b"revived content" * 10})
    assert sum(runs) >= 1  # gc really deleted the old copy inside the window
    v.verify()
    monkeypatch.undo()
    store.gc(grace=ZERO)
    v.verify()
    assert store.fsck().ok


def test_gc_between_stage_and_publish_of_new_blobs(
    store: castore.Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _gc_in_window(store, monkeypatch)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        (src / f"f{i}").write_bytes(os.urandom(100 + i))
    draft = store.draft("ds")
    draft.add_dir(src)
    draft.add_bytes(b"bytes", "b")
    v = draft.finalize()
    monkeypatch.undo()
    store.gc(grace=ZERO)
    v.verify()
    assert store.fsck().ok


def test_gc_between_stat_cache_hit_and_record(
    store: castore.Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A re-added unchanged file is known from the stat cache (not re-staged): gc may delete
    its blob between the lookup and the catalogue transaction."""
    src = tmp_path / "f.bin"
    src.write_bytes(b"cached content" * 50)
    first = store.draft("ds")
    first.add_file(src)
    old = first.finalize()
    harness.finalize(store, "ds", {"x": b"other"})
    old.delete()
    other = castore.open(store.path, durable=False)
    cache = store.catalog.stat_cache
    real = cache.lookup_many
    runs: list[int] = []

    def lookup_many(stats):
        found = real(stats)
        assert found  # the file is known: it will not be staged again
        if not store.catalog.conn.in_transaction:
            runs.append(other.gc(grace=ZERO).blobs_deleted)
        return found

    monkeypatch.setattr(cache, "lookup_many", lookup_many)
    draft = store.draft("ds")
    draft.add_file(src)
    v = draft.finalize()
    monkeypatch.undo()
    other.close()
    assert sum(runs) >= 1  # gc deleted the cached blob inside the window
    v.verify()
    assert store.fsck().ok


def _mostly_dead_pack(store: castore.Store, revived: bytes) -> tuple[castore.Version, str]:
    """A pack holding a live blob, ``revived`` and a larger blob, the last two dead: gc
    rewrites it. Returns the version keeping the live blob, and the pack's name."""
    old = harness.finalize_dir(
        store, "ds", {"keep": b"kept" * 10, "revived": revived, "big": os.urandom(3000)}
    )
    [pack] = [p.name for p in (store.path / "packs").iterdir()]
    keeper = harness.finalize_dir(store, "ds", {"keep": b"kept" * 10, "x": b"x"})
    old.delete()
    return keeper, pack


def test_gc_rewrites_a_pack_between_stage_and_publish_of_a_dedup_hit(
    store: castore.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blob the writer dedups against is dead in a pack that gc rewrites (and trashes) in
    the window: the writer no longer finds it and stores its own copy."""
    revived = b"revived packed content" * 10
    keeper, pack = _mostly_dead_pack(store, revived)
    runs = _gc_in_window(store, monkeypatch)
    v = harness.finalize(store, "ds", {"a": revived})
    assert sum(runs) >= 1
    assert not (store.path / "packs" / pack).exists()  # rewritten inside the window
    v.verify()
    keeper.verify()
    monkeypatch.undo()
    store.gc(grace=ZERO)
    v.verify()
    keeper.verify()
    assert v.read_bytes("a") == revived
    assert store.fsck().ok


def test_a_dedup_hit_registered_during_a_rewrite_keeps_the_old_pack(
    store: castore.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer registers a dead blob of the pack after gc copied the live blobs out and
    before gc's transaction: gc must keep the old pack (the only copy), and a later gc
    settles the duplicates."""
    from castore.maintenance import repack

    revived = b"revived during rewrite" * 10
    keeper, pack = _mostly_dead_pack(store, revived)
    writer = castore.open(store.path, durable=False)
    real = repack.rewrite
    made: list[castore.Version] = []

    def rewrite(blobs, plans):
        done = real(blobs, plans)
        assert pack in done.done and done.new_packs  # the copy is published already
        made.append(harness.finalize(writer, "ds", {"a": revived}))  # a dedup hit
        return done

    monkeypatch.setattr(repack, "rewrite", rewrite)
    store.gc(grace=ZERO)
    monkeypatch.undo()
    assert (store.path / "packs" / pack).exists()  # kept: the only copy of "revived"
    [v] = made
    v.verify()
    keeper.verify()
    harness.settle_packs(store)
    assert not (store.path / "packs" / pack).exists()
    assert v.read_bytes("a") == revived
    keeper.verify()
    assert store.fsck().ok
    writer.close()


def _race(tmp_path: Path, writers: int, versions: int, mode: str = "bytes") -> dict[str, int]:
    path = tmp_path / "store"
    castore.init(path, durable=False).close()
    stop = tmp_path / "stop"
    gc_proc = harness.spawn("gc_loop", path, stop)
    procs = [harness.spawn("writer", path, seed, versions, "shared", mode)
             for seed in range(writers)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert "done" in out
    stop.write_text("stop")
    out, err = gc_proc.communicate(timeout=120)
    assert gc_proc.returncode == 0, err
    loops = int(out.split()[-1])
    with castore.open(path, durable=False) as store:
        report = store.fsck()
        assert report.ok, report
        checked = harness.assert_readable(store)
        store.gc(grace=ZERO)
        assert store.fsck().ok
        if mode == "dir":
            harness.settle_packs(store)
            assert harness.assert_readable(store) == checked
    return {"gc_loops": loops, "versions": checked}


def test_gc_loop_beside_writer_processes(tmp_path: Path) -> None:
    result = _race(tmp_path, writers=2, versions=40)
    assert result["gc_loops"] >= 1 and result["versions"] >= 1


def test_gc_loop_rewriting_packs_beside_writer_processes(tmp_path: Path) -> None:
    """Writers add small files by directory (one pack per version) and delete old versions,
    leaving packs mostly dead: the gc loop rewrites them while writers dedup against them."""
    result = _race(tmp_path, writers=3, versions=40, mode="dir")
    assert result["gc_loops"] >= 1 and result["versions"] >= 1


@pytest.mark.slow
def test_gc_loop_beside_writer_processes_long(tmp_path: Path) -> None:
    result = _race(tmp_path, writers=4, versions=200)
    assert result["gc_loops"] >= 1
