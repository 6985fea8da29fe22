"""Concurrent puts from threads and processes, and many processes creating one store."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import castore
from castore.storage.hashing import hash_bytes

PAYLOADS = [bytes([i]) * 200_000 for i in range(4)] + [os.urandom(100_000) for _ in range(4)]


def _put_all(store_path: str, payloads: list[bytes], barrier) -> list[str]:  # type: ignore[no-untyped-def]
    store = castore.open(store_path, durable=False)
    barrier.wait()
    digests = [store.blobs.put_bytes(p).digest for p in payloads]
    store.close()
    return [str(d) for d in digests]


def _worker(args):  # type: ignore[no-untyped-def]
    store_path, payloads, barrier = args
    return _put_all(store_path, payloads, barrier)


def test_eight_threads_same_and_different_content(store: castore.Store) -> None:
    jobs = [PAYLOADS[0]] * 8 + PAYLOADS  # the same content 8 times, then all different
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(store.blobs.put_bytes, jobs))
    assert sum(r.new for r in results if r.digest == results[0].digest) == 1
    assert set(store.blobs.iter_digests()) == {hash_bytes("xxh3-128", p) for p in PAYLOADS}
    for p in PAYLOADS:
        assert store.blobs.read_bytes(hash_bytes("xxh3-128", p)) == p
    assert list(store.blobs.iter_tmp()) == []


def test_four_processes_putting_the_same_content(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    castore.init(path, durable=False).close()
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(4)
        with ctx.Pool(4) as pool:
            results = pool.map(_worker, [(path, PAYLOADS, barrier)] * 4)
    assert all(r == results[0] for r in results)
    with castore.open(path) as store:
        assert len(set(store.blobs.iter_digests())) == len(PAYLOADS)
        for p in PAYLOADS:
            store.blobs.verify(hash_bytes("xxh3-128", p))
        assert list(store.blobs.iter_tmp()) == []


def _open_new(args):  # type: ignore[no-untyped-def]
    path, barrier = args
    barrier.wait()
    store = castore.open(path)
    store_id = json.loads((Path(path) / "castore.json").read_text())["store_id"]
    store.blobs.put_bytes(b"hello")
    store.close()
    return store_id


def test_fifty_processes_opening_a_new_store(tmp_path: Path) -> None:
    path = str(tmp_path / "new")
    ctx = mp.get_context("fork")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(50)
        with ctx.Pool(50) as pool:
            ids = pool.map(_open_new, [(path, barrier)] * 50)
    assert len(set(ids)) == 1
    with castore.open(path, create=False) as store:
        assert store.config.store_id == ids[0]
        assert store.blobs.read_bytes(hash_bytes("xxh3-128", b"hello")) == b"hello"
    leftovers = [p.name for p in Path(path).iterdir() if p.name.startswith(".")]
    assert leftovers == []
