"""The blob store: put/read round trips, codecs, dedup, damage detection, faults."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import pytest
import zstandard

import castore
from castore.digest import Digest
from castore.errors import (
    FileChangedError,
    HashCollisionError,
    IntegrityError,
    NotFoundError,
    OutOfSpaceError,
    ReadOnlyStoreError,
)
from castore.storage import fsutil as _fsutil
from castore.storage.blobs import BlobStore
from castore.storage.hashing import CHUNK_SIZE, hash_bytes


def _text(n: int) -> bytes:
    line = b"2026-11-22,sensor-17,23.5,ok,the quick brown fox\n"
    return (line * (n // len(line) + 1))[:n]


def _final_files(blobs: BlobStore) -> list[Path]:
    return sorted(p for p in blobs.layout.blobs.rglob("*") if p.is_file())


def test_put_bytes_round_trip_and_digest(store: castore.Store) -> None:
    data = b"hello castore"
    result = store.blobs.put_bytes(data)
    assert result.digest == hash_bytes("xxh3-128", data)
    assert result.digest.startswith("xxh3-128:")
    assert result.new is True
    assert store.blobs.read_bytes(result.digest) == data
    assert store.blobs.exists(result.digest)


def test_dedup_second_put_is_a_hit(store: castore.Store) -> None:
    first = store.blobs.put_bytes(b"same" * 1000)
    second = store.blobs.put_bytes(b"same" * 1000)
    assert first.digest == second.digest
    assert second.new is False
    assert len(_final_files(store.blobs)) == 1
    assert list(store.blobs.iter_tmp()) == []


def test_compressible_content_is_zstd_and_incompressible_is_raw(store: castore.Store) -> None:
    text = store.blobs.put_bytes(_text(300_000))
    noise = store.blobs.put_bytes(os.urandom(300_000))
    assert text.codec == "zstd"
    assert store.blobs.path_of(text.digest).name.endswith(".zst")
    assert store.blobs.stat(text.digest).stored_size < 300_000 // 3
    assert noise.codec == "raw"
    raw = store.blobs.raw_path(noise.digest)
    assert raw is not None and raw.read_bytes() == store.blobs.read_bytes(noise.digest)
    assert store.blobs.raw_path(text.digest) is None
    # the stored zstd file is a standard zstd stream: the zstd tool can decode it.
    with open(store.blobs.path_of(text.digest), "rb") as fh:
        decoded = zstandard.ZstdDecompressor().stream_reader(fh).read()
    assert decoded == _text(300_000)


def test_stat_reports_sizes_and_codec(store: castore.Store) -> None:
    r = store.blobs.put_bytes(_text(100_000))
    st = store.blobs.stat(r.digest)
    assert (st.size, st.codec) == (100_000, "zstd")
    assert st.stored_size == os.path.getsize(store.blobs.path_of(r.digest))


def test_compression_none_store_keeps_everything_raw(tmp_path: Path) -> None:
    s = castore.init(tmp_path / "s", compression="none", durable=False)
    r = s.blobs.put_bytes(_text(100_000))
    assert r.codec == "raw"
    s.close()


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1])
def test_put_file_boundaries(store: castore.Store, tmp_path: Path, size: int) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(_text(size))
    r = store.blobs.put_file(src)
    assert r.size == size
    assert store.blobs.read_bytes(r.digest) == src.read_bytes()


def test_put_stream_without_readinto(store: castore.Store) -> None:
    class Reader:
        def __init__(self, data: bytes) -> None:
            self._buf = io.BytesIO(data)

        def read(self, n: int = -1) -> bytes:
            return self._buf.read(min(n, 1000))

    data = os.urandom(50_000)
    r = store.blobs.put_stream(Reader(data))  # type: ignore[arg-type]
    assert store.blobs.read_bytes(r.digest) == data


def test_open_streams_in_chunks(store: castore.Store) -> None:
    data = _text(3 * CHUNK_SIZE // 2)
    r = store.blobs.put_bytes(data)
    out = bytearray()
    with store.blobs.open(r.digest) as fh:
        while chunk := fh.read(65536):
            out += chunk
    assert bytes(out) == data


def test_missing_blob_is_not_found(store: castore.Store) -> None:
    digest = hash_bytes("xxh3-128", b"never stored")
    assert not store.blobs.exists(digest)
    with pytest.raises(NotFoundError, match="not in the store"):
        store.blobs.open(digest)
    with pytest.raises(NotFoundError):
        store.blobs.stat(digest)


# -- damage --------------------------------------------------------------------------------


def _flip_byte(path: Path, offset: int) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["raw", "zstd"])
def test_bit_flip_detected_on_read_and_verify(store: castore.Store, kind: str) -> None:
    data = os.urandom(200_000) if kind == "raw" else _text(200_000)
    r = store.blobs.put_bytes(data)
    assert r.codec == kind
    path = store.blobs.path_of(r.digest)
    _flip_byte(path, path.stat().st_size // 2)
    with pytest.raises(IntegrityError) as info:
        store.blobs.read_bytes(r.digest)
    assert info.value.digest == r.digest
    with pytest.raises(IntegrityError):
        store.blobs.verify(r.digest)


@pytest.mark.parametrize("kind", ["raw", "zstd"])
def test_truncation_detected(store: castore.Store, kind: str) -> None:
    data = os.urandom(200_000) if kind == "raw" else _text(200_000)
    r = store.blobs.put_bytes(data)
    path = store.blobs.path_of(r.digest)
    os.chmod(path, 0o644)
    os.truncate(path, path.stat().st_size // 2)
    with pytest.raises(IntegrityError):
        store.blobs.verify(r.digest)


def test_truncated_raw_blob_detected_with_expected_size(store: castore.Store) -> None:
    r = store.blobs.put_bytes(os.urandom(10_000))
    path = store.blobs.path_of(r.digest)
    os.chmod(path, 0o644)
    os.truncate(path, 5_000)
    with pytest.raises(IntegrityError):
        store.blobs.verify(r.digest, size=10_000)


def test_swapped_blobs_detected(store: castore.Store) -> None:
    a = store.blobs.put_bytes(os.urandom(5000))
    b = store.blobs.put_bytes(os.urandom(5000))
    pa, pb = store.blobs.path_of(a.digest), store.blobs.path_of(b.digest)
    tmp = pa.with_suffix(".swap")
    os.rename(pa, tmp)
    os.rename(pb, pa)
    os.rename(tmp, pb)
    for digest in (a.digest, b.digest):
        with pytest.raises(IntegrityError):
            store.blobs.read_bytes(digest)


def test_zstd_bomb_raises_with_bounded_output(store: castore.Store) -> None:
    # A small frame that expands to 512 MiB, planted under the name of a 10-byte blob.
    bomb = zstandard.ZstdCompressor(level=1).compress(bytes(512 << 20))
    assert len(bomb) < 1 << 20
    digest = hash_bytes("xxh3-128", b"0123456789")
    path = store.layout.blobs / digest.hex[:2] / (digest.hex + ".zst")
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(bomb)
    with pytest.raises(IntegrityError, match="more than"):
        store.blobs.read_bytes(digest, size=10)
    # without a size from the manifest the trailer is missing: reading still streams in chunks
    # and the digest check fails at the end instead of returning the bomb's bytes.
    with pytest.raises(IntegrityError), store.blobs.open(digest) as fh:
        while fh.read1(1 << 20):
            pass


def test_garbage_zstd_blob_is_an_integrity_error(store: castore.Store) -> None:
    digest = hash_bytes("xxh3-128", b"x")
    path = store.layout.blobs / digest.hex[:2] / (digest.hex + ".zst")
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(b"\x28\xb5\x2f\xfd" + os.urandom(100))
    with pytest.raises(IntegrityError):
        store.blobs.read_bytes(digest)


# -- collisions ----------------------------------------------------------------------------


class _ConstantHasher:
    """A key function that maps every content to one digest, to force a collision."""

    def update(self, data: bytes | memoryview) -> None:
        pass

    def hexdigest(self) -> str:
        return "ab" * 16


def test_collision_detected_for_outside_content(
    store: castore.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(BlobStore, "_hasher", lambda self: _ConstantHasher())
    first = store.blobs.put_bytes(b"local content")
    staged = store.blobs.stage_bytes(b"content from a bundle")
    assert staged.digest == first.digest
    with pytest.raises(HashCollisionError) as info:
        store.blobs.publish(staged, check_collision=True)
    assert info.value.digest == first.digest
    assert not staged.tmp.exists()
    # the stored blob is kept untouched (read it without the patched hasher)
    monkeypatch.undo()
    path = store.blobs.path_of(first.digest)
    assert path.read_bytes() == b"local content"


def test_collision_check_accepts_identical_content(
    store: castore.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = store.blobs.put_bytes(_text(50_000))
    staged = store.blobs.stage_bytes(_text(50_000))
    assert store.blobs.publish(staged, check_collision=True) is False
    assert store.blobs.read_bytes(first.digest) == _text(50_000)


def test_without_collision_check_dedup_trusts_the_key(
    store: castore.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(BlobStore, "_hasher", lambda self: _ConstantHasher())
    store.blobs.put_bytes(b"one")
    assert store.blobs.publish(store.blobs.stage_bytes(b"two")) is False


# -- crash and fault paths -----------------------------------------------------------------


def test_crash_between_temp_write_and_publish_leaves_no_final_blob(
    store: castore.Store,
) -> None:
    staged = store.blobs.stage_bytes(b"in flight" * 100)
    # the process "dies" here: nothing was published
    assert not store.blobs.exists(staged.digest)
    assert _final_files(store.blobs) == []
    assert staged.tmp in list(store.blobs.iter_tmp())


def test_enospc_mid_write_leaves_no_partial_blob(
    store: castore.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 * CHUNK_SIZE))
    real_write = os.write
    calls = {"n": 0}

    def failing_write(fd: int, data: bytes | memoryview) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    real_copy = os.copy_file_range

    def failing_copy(src: int, dst: int, count: int, *offsets: int) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_copy(src, dst, count, *offsets)

    monkeypatch.setattr(os, "write", failing_write)
    monkeypatch.setattr(os, "copy_file_range", failing_copy)  # the raw in-kernel path
    with pytest.raises(OutOfSpaceError) as info:
        store.blobs.put_file(src)
    assert isinstance(info.value, OSError)
    monkeypatch.undo()
    assert _final_files(store.blobs) == []
    assert list(store.blobs.iter_tmp()) == []
    # after space is freed the same put succeeds
    r = store.blobs.put_file(src)
    assert store.blobs.read_bytes(r.digest) == src.read_bytes()


def test_fsync_failure_publishes_nothing(
    durable_store: castore.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output"):
        durable_store.blobs.put_bytes(b"must be durable")
    monkeypatch.undo()
    assert _final_files(durable_store.blobs) == []
    assert list(durable_store.blobs.iter_tmp()) == []


def test_file_changing_while_added_is_refused(
    store: castore.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "growing.log"
    src.write_bytes(_text(CHUNK_SIZE + 100))
    real_fstat = os.fstat
    calls = {"n": 0}

    def fstat(fd: int) -> os.stat_result:
        calls["n"] += 1
        if calls["n"] == 2:  # after reading: someone appended meanwhile
            with open(src, "ab") as fh:
                fh.write(b"more")
        return real_fstat(fd)

    monkeypatch.setattr(os, "fstat", fstat)
    with pytest.raises(FileChangedError, match="changed while"):
        store.blobs.put_file(src)
    monkeypatch.undo()
    assert _final_files(store.blobs) == []
    assert list(store.blobs.iter_tmp()) == []


def test_publish_never_overwrites(store: castore.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    r = store.blobs.put_bytes(os.urandom(1000))
    path = store.blobs.path_of(r.digest)
    inode = path.stat().st_ino
    replaced: list[str] = []
    monkeypatch.setattr(os, "replace", lambda *a, **k: replaced.append("replace"))
    monkeypatch.setattr(os, "rename", lambda *a, **k: replaced.append("rename"))
    staged = store.blobs.stage_bytes(store.blobs.read_bytes(r.digest))
    # pretend the dedup check raced: the link itself must refuse to replace
    monkeypatch.setattr(BlobStore, "_find", lambda self, d: None)
    assert store.blobs.publish(staged) is False
    assert path.stat().st_ino == inode
    assert replaced == []


def test_blob_files_are_read_only(store: castore.Store) -> None:
    r = store.blobs.put_bytes(os.urandom(100))
    assert store.blobs.path_of(r.digest).stat().st_mode & 0o222 == 0


# -- delete, quarantine, iterate -----------------------------------------------------------


def test_delete_quarantine_iter(store: castore.Store) -> None:
    a = store.blobs.put_bytes(b"a" * 100)
    b = store.blobs.put_bytes(os.urandom(100))
    c = store.blobs.put_bytes(_text(10_000))
    assert set(store.blobs.iter_digests()) == {a.digest, b.digest, c.digest}
    assert all(isinstance(d, Digest) for d in store.blobs.iter_digests())
    freed = store.blobs.delete(a.digest)
    assert freed > 0 and not store.blobs.exists(a.digest)
    assert store.blobs.delete(a.digest) == 0
    moved = store.blobs.quarantine(b.digest)
    assert moved.parent == store.layout.quarantine and moved.exists()
    assert not store.blobs.exists(b.digest)
    assert set(store.blobs.iter_digests()) == {c.digest}
    assert store.blobs.move_to_trash(c.digest) > 0
    assert list(store.blobs.iter_digests()) == []
    assert store.blobs.empty_trash() == 1


def test_iter_ignores_foreign_files(store: castore.Store) -> None:
    r = store.blobs.put_bytes(b"x" * 10)
    (store.layout.blobs / "README").write_text("not a blob")
    (store.layout.blobs / r.digest.hex[:2] / "junk.txt").write_text("nope")
    assert list(store.blobs.iter_digests()) == [r.digest]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_read_only_blob_store_refuses_writes(store: castore.Store) -> None:
    ro = castore.open(store.path, read_only=True)
    with pytest.raises(ReadOnlyStoreError):
        ro.blobs.put_bytes(b"x")
    ro.close()


def test_read_only_flag_refuses_writes_and_creates_nothing(store: castore.Store) -> None:
    r = store.blobs.put_bytes(b"kept")
    before = sorted(p.name for p in store.blobs.iter_tmp())
    ro = castore.open(store.path, read_only=True)
    with pytest.raises(ReadOnlyStoreError, match="read-only"):
        ro.blobs.put_bytes(b"x")
    with pytest.raises(ReadOnlyStoreError):
        ro.blobs.delete(r.digest)
    assert ro.blobs.read_bytes(r.digest) == b"kept"
    assert sorted(p.name for p in store.blobs.iter_tmp()) == before
    ro.close()


def test_durable_write_helper(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    assert _fsutil.durable_write(target, b"one") is True
    assert _fsutil.durable_write(target, b"two", overwrite=False) is False
    assert target.read_bytes() == b"one"
    assert _fsutil.durable_write(target, b"three") is True
    assert target.read_bytes() == b"three"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_kernel_copy_unsupported_falls_back_to_read_write(
    store: castore.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 * CHUNK_SIZE))

    def no_copy(*args: int) -> int:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", no_copy)
    r = store.blobs.put_file(src)
    assert r.codec == "raw"
    assert list(store.blobs.iter_tmp()) == []
    assert store.blobs.read_bytes(r.digest) == src.read_bytes()


def test_kernel_copy_digest_matches_streamed_digest(store: castore.Store, tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 12345)  # a short last chunk, unaligned end
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    r = store.blobs.put_file(src)
    assert r.digest == store.blobs.put_bytes(data).digest
    assert (r.size, r.codec, r.stored_size) == (len(data), "raw", len(data))
    assert store.blobs.read_bytes(r.digest) == data
