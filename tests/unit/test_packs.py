"""Pack files (format 2): small blobs of a draft batch share one pack with its own index."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import castore
from castore.errors import IntegrityError
from castore.storage.packs import PACK_THRESHOLD, read_index


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


def test_gc_deletes_a_pack_only_when_all_its_blobs_are_dead(tmp_path: Path) -> None:
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
        # "a" is still used by v2 and shares v1's pack with the dead "b": the pack stays whole
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
