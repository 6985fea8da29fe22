"""Pack files (format 2): small blobs of a draft batch share one pack with its own index."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

import castore
from castore.errors import IntegrityError
from castore.maintenance import repack
from castore.storage.packs import PACK_THRESHOLD, read_index
from tests.harness import finalize_dir, settle_packs


def _tree(root: Path, count: int, size: int = 300) -> dict[str, bytes]:
    files = {f"d/f{i:03}.txt": (f"{i} ".encode() * size)[: size + i] for i in range(count)}
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def _packs(store: castore.Store) -> list[Path]:
    return sorted((store.path / "packs").glob("*.pack"))


def test_small_files_of_one_add_go_into_one_pack(tmp_path: Path) -> None:
    files = _tree(tmp_path / "src", 40)
    (tmp_path / "src" / "big.bin").write_bytes(os.urandom(PACK_THRESHOLD + 10))
    with castore.open(tmp_path / "s") as store:
        version = store.draft("ds").add_dir(tmp_path / "src").finalize()
        assert len(_packs(store)) == 1
        # the small blobs are not loose files (the large one and the version document are)
        loose = set(store.blobs.iter_loose())
        assert version.get_entry("big.bin").digest in loose
        assert not {version.get_entry(n).digest for n in files} & loose
        for name, data in files.items():
            digest = version.get_entry(name).digest
            assert store.blobs.raw_path(digest) is None
            assert store.blobs.read_bytes(digest) == data
            assert store.blobs.stat(digest).size == len(data)
        out = tmp_path / "out"
        version.checkout(out, link="hardlink")
        for name, data in files.items():
            assert (out / name).read_bytes() == data
        assert store.fsck().ok


def test_pack_index_needs_no_catalogue(tmp_path: Path) -> None:
    files = _tree(tmp_path / "src", 10)
    with castore.open(tmp_path / "s") as store:
        store.draft("ds").add_dir(tmp_path / "src").finalize()
        (pack,) = _packs(store)
    rows = read_index(pack)
    assert len(rows) == len(files)
    assert {e.size for _, e in rows} == {len(d) for d in files.values()}


def test_a_damaged_packed_blob_is_quarantined_alone(tmp_path: Path) -> None:
    files = _tree(tmp_path / "src", 5)
    with castore.open(tmp_path / "s") as store:
        version = store.draft("ds").add_dir(tmp_path / "src").finalize()
        (pack,) = _packs(store)
        digest, entry = read_index(pack)[0]
        with open(pack, "r+b") as fh:
            fh.seek(entry.offset)
            fh.write(b"\xff" * 4)
        with pytest.raises(IntegrityError):
            store.blobs.read_bytes(digest)
        assert not store.fsck(repair=True).ok
        # its stored bytes are kept aside; the other blobs are rewritten into a new pack
        assert any(".packed." in p.name for p in (store.path / "quarantine").iterdir())
        assert not store.blobs.exists(digest)
        assert _packs(store) and _packs(store) != [pack]
        for name, data in files.items():
            if version.get_entry(name).digest != digest:
                assert store.blobs.read_bytes(version.get_entry(name).digest) == data


def test_gc_never_deletes_a_pack_whose_index_is_unreadable(tmp_path: Path) -> None:
    _tree(tmp_path / "src", 3)
    with castore.open(tmp_path / "s") as store:
        store.draft("ds").add_dir(tmp_path / "src").finalize()
        (pack,) = _packs(store)
        with open(pack, "r+b") as fh:
            fh.seek(-3, os.SEEK_END)
            fh.write(b"xxx")
        store.gc(grace=0)
        assert _packs(store) == [pack]
        assert not store.fsck().ok


def test_gc_keeps_a_pack_whole_while_its_dead_bytes_are_below_the_threshold(
    tmp_path: Path,
) -> None:
    with castore.open(tmp_path / "s") as store:
        for d, files in (("one", {"a": b"one" * 50, "b": b"two" * 50}),
                         ("two", {"a": b"one" * 50, "c": b"three" * 50})):
            (tmp_path / d).mkdir()
            for name, data in files.items():
                (tmp_path / d / name).write_bytes(data)
        v1 = store.draft("ds").add_dir(tmp_path / "one").finalize()
        assert len(_packs(store)) == 1  # a and b share one pack
        v2 = store.draft("ds").add_dir(tmp_path / "two").finalize()
        a, b = v1.get_entry("a").digest, v1.get_entry("b").digest
        c = v2.get_entry("c").digest
        before = set(_packs(store))
        v1.delete()
        store.gc(grace=0)
        # "a" is still used by v2 and shares v1's pack with the dead "b", whose few stored
        # bytes are far below REWRITE_DEAD_FRACTION of the pack: it stays whole
        assert set(_packs(store)) == before
        assert store.blobs.read_bytes(a) == b"one" * 50
        assert store.blobs.exists(b)
        v2.delete()
        report = store.gc(grace=0)
        assert _packs(store) == []
        assert not any(store.blobs.exists(d) for d in (a, b, c))
        assert report.blobs_deleted >= 3


def test_a_format_1_store_opens_unchanged_and_writes_no_packs(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with castore.open(path) as store:
        pass
    config = json.loads((path / "castore.json").read_text())
    config["format"] = 1
    (path / "castore.json").write_text(json.dumps(config))
    _tree(tmp_path / "src", 5)
    with castore.open(path) as store:
        store.draft("ds").add_dir(tmp_path / "src").finalize()
        assert _packs(store) == []
        assert store.fsck().ok
    assert json.loads((path / "castore.json").read_text())["format"] == 1


def _stored(store: castore.Store) -> int:
    return sum(p.stat().st_size for p in _packs(store))


def _mostly_dead(store: castore.Store) -> tuple[dict[str, bytes], castore.Version, castore.Version]:
    """v1: 30 small incompressible files in one pack; v2 keeps 4 of them; v1 is deleted."""
    files = {f"f{i:02}.bin": os.urandom(500 + 37 * i) for i in range(30)}
    v1 = finalize_dir(store, "ds", files)
    kept = {n: files[n] for n in ("f01.bin", "f07.bin", "f13.bin", "f29.bin")}
    v2 = finalize_dir(store, "ds", {**kept, "new.txt": b"new" * 30})
    v1.delete()
    return kept, v1, v2


def test_gc_rewrites_a_mostly_dead_pack(tmp_path: Path) -> None:
    with castore.open(tmp_path / "s") as store:
        kept, _, v2 = _mostly_dead(store)
        old = {p.name for p in _packs(store)}
        v1_pack = store.blobs.packed(v2.get_entry("f01.bin").digest).pack
        before, stats_before = _stored(store), store.stats().stored_bytes
        plan = store.gc(grace=0, dry_run=True)
        assert _stored(store) == before and {p.name for p in _packs(store)} == old
        report = store.gc(grace=0)
        # 26 dead packed blobs and v1's document (a loose blob)
        assert report.blobs_deleted == plan.blobs_deleted == 27
        after = _stored(store)
        assert after < before / 3
        assert store.stats().stored_bytes == stats_before - report.bytes_freed
        # the estimate of the dry run is close to what the rewrite freed
        assert abs(plan.bytes_freed - report.bytes_freed) < 200
        # v1's pack is gone; its four live blobs are in a new pack, byte for byte
        assert not (store.path / "packs" / v1_pack).exists()
        assert len(_packs(store)) == 2  # v2's own pack (new.txt) and the rewritten one
        out = tmp_path / "out"
        v2.checkout(out)
        for name, data in kept.items():
            assert (out / name).read_bytes() == data
            assert store.blobs.packed(v2.get_entry(name).digest) is not None
        v2.verify()
        report = store.fsck()
        assert report.ok and report.findings == [], report
        assert settle_packs(store) == set()
        assert store.gc(grace=0).bytes_freed == 0  # nothing more to do


def test_a_young_pack_is_not_rewritten(tmp_path: Path) -> None:
    with castore.open(tmp_path / "s") as store:
        _mostly_dead(store)
        before = _stored(store)
        assert store.gc().bytes_freed == 0  # the default grace: everything is younger
        assert _stored(store) == before


def test_duplicate_packs_are_reduced_to_one_copy(tmp_path: Path) -> None:
    """A crash between publishing a rewrite and trashing the old pack leaves every live blob
    in two packs: the next gc drops one copy, never both."""
    with castore.open(tmp_path / "s") as store:
        files = {f"f{i}.bin": os.urandom(700) for i in range(8)}
        v = finalize_dir(store, "ds", files)
        (pack,) = _packs(store)
        copy = pack.with_name(f"{uuid.uuid4().hex}.pack")
        copy.write_bytes(pack.read_bytes())
        size = copy.stat().st_size
        store.blobs.pack_index.refresh(force=True)
        report = store.gc(grace=0)
        assert len(_packs(store)) == 1
        assert report.blobs_deleted == 0  # no blob went: only a second copy
        assert report.bytes_freed == size
        v.verify()
        assert store.fsck().ok


def test_a_damaged_live_blob_keeps_its_pack_from_being_rewritten(tmp_path: Path) -> None:
    with castore.open(tmp_path / "s") as store:
        _, _, v2 = _mostly_dead(store)
        digest = v2.get_entry("f07.bin").digest
        entry = store.blobs.packed(digest)
        assert entry is not None
        path = store.path / "packs" / entry.pack
        path.chmod(0o644)
        with open(path, "r+b") as fh:
            fh.seek(entry.offset)
            fh.write(b"\x00" * 8)
        store.gc(grace=0)
        assert path.exists()  # the damage is not copied into a new pack nor thrown away
        report = store.fsck()
        assert [f.digest for f in report.findings if f.kind == "corrupt_blob"] == [digest]


def test_rewrite_threshold(tmp_path: Path) -> None:
    with castore.open(tmp_path / "s") as store:
        _mostly_dead(store)
        live = {str(d) for d in store.blobs.iter_digests()}
        assert repack.plan(store.blobs, live=live, cutoff=2e9) == []
        v2 = store.get("ds:latest")
        live = {e.digest for e in v2.files()}
        assert len(repack.plan(store.blobs, live=live, cutoff=2e9)) == 1
        assert repack.plan(store.blobs, live=live, cutoff=2e9, fraction=0.99) == []
        assert repack.plan(store.blobs, live=live, cutoff=0) == []  # younger than the grace


def test_rebuild_of_a_store_with_rewritten_packs(tmp_path: Path) -> None:
    """The catalogue is lost after a rewrite: rebuild reads the packs' own indexes and every
    version verifies."""
    root = tmp_path / "s"
    with castore.open(root) as store:
        _, _, v2 = _mostly_dead(store)
        extra = finalize_dir(store, "other", {f"g{i}": os.urandom(300) for i in range(5)})
        store.gc(grace=0)
        want = {v.ref: {e.path: v.read_bytes(e.path) for e in v.files()} for v in (v2, extra)}
    for name in ("catalog.db", "catalog.db-wal", "catalog.db-shm"):
        (root / name).unlink(missing_ok=True)
    assert castore.repair(root).ok
    with castore.open(root) as store:
        got = {v.ref: {e.path: v.read_bytes(e.path) for e in v.files()}
               for c in store.collections() for v in c.versions()}
        assert got == want
        for ref in want:
            store.get(ref).verify()
        assert store.fsck().ok
        store.gc(grace=0)
        for ref in want:
            store.get(ref).verify()


def test_closing_the_store_lets_go_of_open_packs(tmp_path: Path) -> None:
    """Reads keep packs open; close() lets them go, so a pack gc removed frees its space."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        (src / f"{i}.txt").write_text(f"small file {i}\n" * 10)
    store = castore.open(tmp_path / "store")
    with store.draft("ds") as draft:
        draft.add_dir(src)
    assert store.get("ds").read_bytes("3.txt") == (src / "3.txt").read_bytes()
    [pack] = list((tmp_path / "store" / "packs").iterdir())

    def open_fds() -> int:
        return sum(1 for fd in os.listdir("/proc/self/fd")
                   if os.path.realpath(f"/proc/self/fd/{fd}") == str(pack))

    assert open_fds() == 1
    store.close()
    assert open_fds() == 0


def test_a_pack_gone_behind_the_stores_back_fails_the_checkout_cleanly(tmp_path: Path) -> None:
    """A pack removed by another process after this one indexed it: the checkout names the
    missing content and leaves no target."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(20):
        (src / f"{i}.txt").write_text(f"small file {i}\n" * 10)
    with castore.open(tmp_path / "store") as store:
        with store.draft("ds") as draft:
            draft.add_dir(src)
        assert store.blobs.in_pack(store.get("ds").get_entry("3.txt").digest)
        [pack] = list((tmp_path / "store" / "packs").iterdir())
        pack.chmod(0o644)
        pack.unlink()
        with pytest.raises(IntegrityError, match=r"vanished from the store|missing"):
            store.get("ds").checkout(tmp_path / "out", link="copy")
        assert not (tmp_path / "out").exists()


def test_reading_a_blob_whose_pack_just_went_falls_back_cleanly(tmp_path: Path) -> None:
    """The pack index still names a pack that gc (another process) removed a moment ago: the
    read opens it, finds it gone, forgets it and looks again; the failed open leaks nothing."""
    import gc

    from castore.errors import NotFoundError

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("packed content\n" * 10)
    with castore.open(tmp_path / "store") as store:
        with store.draft("ds") as draft:
            draft.add_dir(src)
        digest = store.get("ds").get_entry("a.txt").digest
        assert store.blobs.pack_index.find(digest) is not None
        [pack] = list((tmp_path / "store" / "packs").iterdir())
        pack.chmod(0o644)
        pack.unlink()
        with pytest.raises(NotFoundError):
            store.blobs.read_bytes(digest)
        assert store.blobs.pack_index.find(digest) is None
    gc.collect()
