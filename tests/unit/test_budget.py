"""set_budget with a directory remote: eviction, fetch-back, never the only copy, failures."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import harness
import pytest

import castore
from castore.errors import RemoteError


def _store(tmp_path: Path) -> castore.Store:
    store = castore.init(tmp_path / "store", durable=False)
    harness.finalize(store, "ds", {"a.bin": b"A" * 40_000, "b.bin": b"B" * 30_000})
    harness.finalize(store, "solo", {"c.bin": b"C" * 20_000})
    return store


def test_set_budget_validates_and_persists(tmp_path: Path) -> None:
    store = _store(tmp_path)
    for bad in (-1, 1.5, "10GB", True):
        with pytest.raises(ValueError):
            store.set_budget(bad)  # type: ignore[arg-type]
    assert store.stats().budget is None
    store.set_budget(10)
    store.close()
    with castore.open(tmp_path / "store") as again:
        assert again.stats().budget == 10
        again.set_budget(None)
        assert again.stats().budget is None


def test_without_a_remote_nothing_is_evicted(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.set_budget(0)
    report = store.gc()
    assert report.blobs_evicted == 0
    assert store.stats().remote_only_blobs == 0


def test_evicts_lru_remote_held_blobs_and_fetches_back(tmp_path: Path) -> None:
    store = _store(tmp_path)
    remote = str(tmp_path / "usb")
    store.push(remote, refs=["ds:v0"])
    a = store.get("ds:v0").get_entry("a.bin").digest
    b = store.get("ds:v0").get_entry("b.bin").digest
    assert a is not None and b is not None
    # b was used long ago, a recently: a budget that needs one eviction takes b
    os.utime(store.blobs.path_of(b), (1_000_000, 1_000_000))
    total = store.stats().stored_bytes
    store.set_budget(total - 1)
    report = store.gc()
    assert report.blobs_evicted == 1
    assert not store.blobs.exists(b) and store.blobs.exists(a)
    store.set_budget(0)
    store.gc()
    assert not store.blobs.exists(a)
    assert store.blobs.exists(store.get("solo:v0").get_entry("c.bin").digest or "")  # only copy
    findings = store.fsck().findings
    assert sorted(f.path for f in findings if f.kind == "evicted_blob") == ["a.bin", "b.bin"]
    out = store.get("ds:v0").checkout(tmp_path / "out")
    assert (out / "a.bin").read_bytes() == b"A" * 40_000
    assert store.get("ds:v0").verify().ok
    assert store.stats().remote_only_blobs == 0


def test_a_damaged_remote_copy_is_never_stored(tmp_path: Path) -> None:
    store = _store(tmp_path)
    remote = tmp_path / "usb"
    store.push(str(remote), refs=["ds:v0"])
    store.set_budget(0)
    store.gc()
    for blob in (remote / "blobs" / "sha256").iterdir():
        if blob.stat().st_size == 30_000:
            blob.write_bytes(b"X" * 30_000)
    with pytest.raises(RemoteError, match="not the expected content"):
        store.get("ds:v0").read_bytes("b.bin")
    assert not store.blobs.exists(store.get("ds:v0").get_entry("b.bin").digest or "")
    assert list(store.blobs.iter_tmp()) == []
    assert store.get("ds:v0").read_bytes("a.bin") == b"A" * 40_000


def test_gone_remote_keeps_blobs_and_reads_name_it(tmp_path: Path) -> None:
    store = _store(tmp_path)
    remote = tmp_path / "usb"
    store.remotes.add("usb", str(remote))
    store.push("usb", refs=["ds:v0"])
    shutil.move(str(remote), str(tmp_path / "away"))
    store.set_budget(0)
    assert store.gc().blobs_evicted == 0  # the remote no longer confirms it holds them
    shutil.move(str(tmp_path / "away"), str(remote))
    assert store.gc().blobs_evicted == 2
    shutil.rmtree(remote)
    with pytest.raises(RemoteError, match="usb") as caught:
        store.get("ds:v0").read_bytes("a.bin")
    assert caught.value.remote == "usb"
