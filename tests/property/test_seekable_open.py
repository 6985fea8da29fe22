"""Seekable open(): ranges read through seek/read equal the file's bytes, raw and compressed,
and a damaged blob never returns a ranged byte."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import castore
from castore.errors import IntegrityError
from castore.storage.seekable import SEEK_CHUNK, forget_verified

SIZE = 3 * SEEK_CHUNK + 1234


def _raw_content() -> bytes:
    return random.Random(1).randbytes(SIZE)


def _text_content() -> bytes:
    return b"".join(b"line %08d of a compressible file\n" % i for i in range(SIZE // 34 + 1))[:SIZE]


@pytest.fixture(scope="module")
def seek_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[castore.Store]:
    store = castore.init(tmp_path_factory.mktemp("seek") / "store", durable=False)
    with store.draft("seek", type="dataset") as d:
        d.add_bytes(_raw_content(), name="raw.bin")
        d.add_bytes(_text_content(), name="text.txt")
        d.add_bytes(b"", name="empty.bin")
    yield store
    store.close()


def test_codecs_are_as_intended(seek_store: castore.Store) -> None:
    v = seek_store.get("seek")
    assert seek_store.blobs.stat(v.get_entry("raw.bin").digest).codec == "raw"
    assert seek_store.blobs.stat(v.get_entry("text.txt").digest).codec == "zstd"


ops = st.lists(
    st.tuples(
        st.sampled_from([os.SEEK_SET, os.SEEK_CUR, os.SEEK_END]),
        st.integers(-SIZE - 10, SIZE + 10),
        st.one_of(st.integers(-1, 3 * SEEK_CHUNK), st.just(4096)),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(["raw.bin", "text.txt", "empty.bin"]), ops=ops, cold=st.booleans())
def test_seek_read_matches_bytes(
    seek_store: castore.Store, name: str, ops: list[tuple[int, int, int]], cold: bool
) -> None:
    if cold:
        forget_verified()
    expected = {"raw.bin": _raw_content(), "text.txt": _text_content(), "empty.bin": b""}[name]
    pos = 0
    with seek_store.get("seek").open(name) as f:
        assert f.seekable()
        for whence, offset, n in ops:
            base = {os.SEEK_SET: 0, os.SEEK_CUR: pos, os.SEEK_END: len(expected)}[whence]
            if base + offset < 0:
                with pytest.raises((ValueError, OSError)):
                    f.seek(offset, whence)
                continue
            pos = f.seek(offset, whence)
            assert pos == base + offset
            data = f.read(n)
            want = expected[pos:] if n < 0 else expected[pos : pos + n]
            assert data == want
            pos += len(data)
            assert f.tell() == pos


def test_sequential_read_unchanged(seek_store: castore.Store) -> None:
    v = seek_store.get("seek")
    assert v.read_bytes("raw.bin") == _raw_content()
    with v.open("text.txt") as f:
        got = b"".join(iter(lambda: f.read(1000), b""))
    assert got == _text_content()


def _damage(store: castore.Store, name: str) -> Path:
    digest = store.get("seek2").get_entry(name).digest
    path = store.blobs.path_of(digest)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("name", ["raw.bin", "text.txt"])
def test_damaged_blob_raises_on_ranged_read(tmp_path: Path, name: str) -> None:
    forget_verified()
    store = castore.init(tmp_path / "store", durable=False)
    with store.draft("seek2", type="dataset") as d:
        d.add_bytes(_raw_content(), name="raw.bin")
        d.add_bytes(_text_content(), name="text.txt")
    _damage(store, name)
    v = store.get("seek2")
    with v.open(name) as f:
        f.seek(10)  # far from the damage: the whole blob is still checked first
        with pytest.raises(IntegrityError):
            f.read(10)
    store.close()


def test_damage_after_verification_is_caught(tmp_path: Path) -> None:
    """Chunk digests catch bytes changed after the full check, even with an unchanged stat."""
    forget_verified()
    store = castore.init(tmp_path / "store", durable=False)
    with store.draft("seek2", type="dataset") as d:
        d.add_bytes(_raw_content(), name="raw.bin")
    v = store.get("seek2")
    path = store.blobs.path_of(v.get_entry("raw.bin").digest)
    with v.open("raw.bin") as f:
        f.seek(5)
        assert f.read(10) == _raw_content()[5:15]  # verified now
        st_before = os.stat(path)
        os.chmod(path, 0o644)
        with open(path, "r+b") as raw:
            raw.seek(2 * SEEK_CHUNK + 7)
            raw.write(b"\x00" if _raw_content()[2 * SEEK_CHUNK + 7] else b"\x01")
        os.utime(path, ns=(st_before.st_atime_ns, st_before.st_mtime_ns))
        f.seek(2 * SEEK_CHUNK)
        with pytest.raises(IntegrityError):
            f.read(100)
    store.close()


def test_reference_file_is_seekable(tmp_path: Path) -> None:
    target = tmp_path / "big.bin"
    target.write_bytes(_raw_content())
    store = castore.init(tmp_path / "store", durable=False)
    with store.draft("refs", type="dataset") as d:
        d.add_reference(target.as_uri(), name="big.bin", checksum=True)
    with store.get("refs").open("big.bin") as f:
        f.seek(SEEK_CHUNK - 3)
        assert f.read(10) == _raw_content()[SEEK_CHUNK - 3 : SEEK_CHUNK + 7]
    target.write_bytes(b"x" + _raw_content()[1:])
    forget_verified()
    with store.get("refs").open("big.bin") as f:
        f.seek(100)
        with pytest.raises(IntegrityError):
            f.read(1)
    store.close()
