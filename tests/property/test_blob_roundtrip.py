"""Hypothesis round trips through the blob store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import castore
from castore.storage.hashing import CHUNK_SIZE, hash_bytes

SIZES = st.sampled_from([0, 1, 2, 63, 64, 65, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1])


@st.composite
def contents(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["random", "repetitive", "small"]))
    if kind == "small":
        return draw(st.binary(max_size=300))
    size = draw(st.one_of(SIZES, st.integers(0, 3 * CHUNK_SIZE)))
    if kind == "random":
        return os.urandom(size)
    unit = draw(st.binary(min_size=1, max_size=50))
    return (unit * (size // len(unit) + 1))[:size]


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory):
    s = castore.init(tmp_path_factory.mktemp("rt") / "store", durable=False)
    yield s
    s.close()


@given(data=contents())
def test_bytes_round_trip(shared_store: castore.Store, data: bytes) -> None:
    r = shared_store.blobs.put_bytes(data)
    assert r.digest == hash_bytes("xxh3-128", data)
    assert r.size == len(data)
    assert shared_store.blobs.read_bytes(r.digest) == data
    assert shared_store.blobs.stat(r.digest).size == len(data)
    shared_store.blobs.verify(r.digest)


@given(data=contents())
def test_file_round_trip_equals_bytes_put(
    shared_store: castore.Store, tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    src: Path = tmp_path_factory.mktemp("src") / "f"
    src.write_bytes(data)
    from_file = shared_store.blobs.put_file(src)
    from_bytes = shared_store.blobs.put_bytes(data)
    assert from_file.digest == from_bytes.digest
    assert from_bytes.new is False
    with shared_store.blobs.open(from_file.digest) as fh:
        assert fh.read() == data
