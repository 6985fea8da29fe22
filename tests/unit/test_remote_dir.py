"""Directory remotes: push/pull, only missing blobs move, refs by compare-and-swap."""

from __future__ import annotations

import os
from pathlib import Path

import harness
import pytest

import castore
from castore.errors import AliasConflictError, BundleError, NotFoundError


def _src(path: Path) -> castore.Store:
    store = castore.init(path)
    harness.finalize(store, "ds", {"a.txt": b"A0", "big.bin": b"B" * 5000})
    harness.finalize(store, "ds", {"a.txt": b"A1", "big.bin": b"B" * 5000}, aliases=["prod"])
    return store


def test_push_pull_round_trip(tmp_path: Path) -> None:
    src = _src(tmp_path / "src")
    remote = str(tmp_path / "usb")
    first = src.push(remote)
    assert first.blobs_sent == 3
    second = src.push(remote)
    assert (second.blobs_sent, second.bytes_sent) == (0, 0)
    listed = src.remote_versions(remote)
    assert [(v.ref, v.aliases) for v in listed] == [("ds:v0", []), ("ds:v1", ["latest", "prod"])]
    dst = castore.init(tmp_path / "dst")
    report = dst.pull(remote, refs=["ds:prod"])
    assert report.versions == ["ds:v1"]
    assert dst.get("ds:prod").id == src.get("ds:prod").id
    dst.pull(remote)
    assert harness.snapshot(dst) == harness.snapshot(src)


def test_named_remotes(tmp_path: Path) -> None:
    src = _src(tmp_path / "src")
    src.remotes.add("usb", str(tmp_path / "usb"))
    assert [r.name for r in src.remotes.list()] == ["usb"]
    src.push("usb", refs=["ds"])
    with castore.open(tmp_path / "src") as again:  # kept in the store
        assert again.remotes.list()[0].url == str(tmp_path / "usb")
    src.remotes.remove("usb")
    assert src.remotes.list() == []
    with pytest.raises(NotFoundError):
        src.remotes.remove("usb")


def test_alias_cas_between_stores(tmp_path: Path) -> None:
    remote = str(tmp_path / "usb")
    a = _src(tmp_path / "a")
    a.push(remote, refs=["ds:v0", "ds:prod"])
    b = castore.init(tmp_path / "b")
    b.pull(remote)
    b.get("ds:v0").add_alias("prod")  # b moves prod back to v0
    with pytest.raises(AliasConflictError):
        b.push(remote, refs=["ds:prod"])
    b.push(remote, refs=["ds:prod"], force=True)
    assert {v.ref: v.aliases for v in a.remote_versions(remote)}["ds:v0"] == ["prod"]


def test_damaged_remote_blob_lands_nothing(tmp_path: Path) -> None:
    src = _src(tmp_path / "src")
    remote = tmp_path / "usb"
    src.push(str(remote))
    blobs = remote / "blobs" / "sha256"
    victim = next(p for p in blobs.iterdir() if p.stat().st_size == 5000)
    os.chmod(victim, 0o644)
    victim.write_bytes(b"C" * 5000)
    dst = castore.init(tmp_path / "dst")
    with pytest.raises(BundleError, match="does not match"):
        dst.pull(str(remote))
    assert dst.versions().items == []
    assert list(dst.blobs.iter_tmp()) == []


def test_resume_after_interrupted_push(tmp_path: Path) -> None:
    src = _src(tmp_path / "src")
    remote = tmp_path / "usb"
    src.push(str(remote), refs=["ds:v0"])  # as if a push of everything stopped after v0
    again = src.push(str(remote))
    assert again.blobs_skipped == 2 and again.blobs_sent == 1  # only A1 is new
