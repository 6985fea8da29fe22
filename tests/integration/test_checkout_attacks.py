"""Hostile checkout targets: reliability.md §3.7 tests 35–39.

The rule under test: nothing outside the root is created, modified, followed or deleted.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

import castore
from castore.errors import UnsafeTargetError
from castore.models import ManifestEntry
from castore.worktree import operations as m


def put(store: castore.Store, path: str, data: bytes) -> ManifestEntry:
    return ManifestEntry(path=path, digest=store.blobs.put_bytes(data).digest, size=len(data))


def fingerprint(path: Path) -> dict[str, tuple[bytes, int]]:
    """Content and mtime of every file under (or at) ``path``, without following links."""
    if path.is_file():
        return {"": (path.read_bytes(), path.stat().st_mtime_ns)}
    out = {}
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            p = Path(dirpath) / name
            out[str(p.relative_to(path))] = (p.read_bytes(), p.lstat().st_mtime_ns)
    return out


@pytest.fixture
def outside(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "outside_dir"
    d.mkdir()
    (d / "keep.txt").write_bytes(b"outside data")
    sentinel = tmp_path / "outside_sentinel"
    sentinel.write_bytes(b"sentinel bytes")
    return {"dir": d, "sentinel": sentinel}


@pytest.mark.parametrize("mode", ["checkout", "download"])
@pytest.mark.parametrize("link", ["copy", "hardlink", "symlink"])
def test_35_symlinks_in_the_target_are_replaced_never_followed(
    store, tmp_path, outside, mode, link
):
    entries = [put(store, "sub/x", os.urandom(100)), put(store, "model.bin", b"model " * 40)]
    root = tmp_path / "target"
    root.mkdir()
    if mode == "checkout":
        m.checkout(store.blobs, [], root, store_root=store.path)  # a managed, empty target
    (root / "sub").symlink_to(outside["dir"])
    (root / "model.bin").symlink_to(outside["sentinel"])
    before = {k: fingerprint(v) for k, v in outside.items()}
    run = m.checkout if mode == "checkout" else m.download
    run(store.blobs, entries, root, link=link, store_root=store.path)
    assert {k: fingerprint(v) for k, v in outside.items()} == before
    assert not (root / "sub").is_symlink() and (root / "sub").is_dir()
    assert (root / "model.bin").read_bytes() == b"model " * 40
    assert not (root / "model.bin").is_symlink()
    assert m.verify_dir(store.blobs, entries, root).ok


def test_36_extra_file_removal_never_follows_links(store, tmp_path, outside):
    entries = [put(store, "a.txt", b"a")]
    root = tmp_path / "target"
    m.checkout(store.blobs, entries, root, store_root=store.path)
    (root / "junk").symlink_to(outside["dir"], target_is_directory=True)
    os.link(outside["sentinel"], root / "h")
    (root / "deeper").mkdir()
    (root / "deeper/link").symlink_to(outside["dir"])
    before = {k: fingerprint(v) for k, v in outside.items()}
    m.checkout(store.blobs, entries, root, store_root=store.path)
    assert sorted(os.listdir(root)) == ["a.txt"]  # exactly the version: the marker is an xattr
    assert {k: fingerprint(v) for k, v in outside.items()} == before
    assert outside["sentinel"].stat().st_nlink == 1


def test_37_symlink_swapped_in_during_checkout(store, tmp_path, outside):
    entries = [put(store, f"sub/f{i}", os.urandom(64)) for i in range(20)]
    entries.append(put(store, "top", b"t"))
    root = tmp_path / "target"
    m.checkout(store.blobs, entries, root, store_root=store.path)
    before = fingerprint(outside["dir"])
    stop = threading.Event()

    def attacker() -> None:
        sub = root / "sub"
        while not stop.is_set():
            try:
                if sub.is_symlink():
                    sub.unlink()
                    sub.mkdir()
                else:
                    shutil.rmtree(sub, ignore_errors=True)
                    sub.symlink_to(outside["dir"], target_is_directory=True)
            except OSError:
                pass

    thread = threading.Thread(target=attacker, daemon=True)
    thread.start()
    failures = 0
    try:
        for i in range(200):
            try:
                # alternate versions so that files are really written and removed
                version = entries if i % 2 else entries[::2]
                m.checkout(store.blobs, version, root, store_root=store.path, workers=2)
            except UnsafeTargetError:
                failures += 1
            except OSError:
                # the attacker removed or replaced a directory under our feet (ENOENT,
                # ENOTEMPTY, ENOTDIR, ELOOP): failing is fine, following a link is not
                failures += 1
    finally:
        stop.set()
        thread.join()
    assert fingerprint(outside["dir"]) == before
    assert sorted(os.listdir(outside["dir"])) == ["keep.txt"]
    # with the attacker gone, a checkout repairs the target
    if (root / "sub").is_symlink():
        (root / "sub").unlink()
    m.checkout(store.blobs, entries, root, store_root=store.path)
    assert m.verify_dir(store.blobs, entries, root).ok


def test_38_hardlinked_target_file_is_broken_by_the_rename(store, tmp_path, outside):
    v1 = [put(store, "model.bin", b"old model")]
    v2 = [put(store, "model.bin", b"new model")]
    root = tmp_path / "target"
    m.checkout(store.blobs, v1, root, store_root=store.path)
    (root / "model.bin").unlink()
    os.link(outside["sentinel"], root / "model.bin")
    m.checkout(store.blobs, v2, root, store_root=store.path)
    assert outside["sentinel"].read_bytes() == b"sentinel bytes"
    assert (root / "model.bin").read_bytes() == b"new model"
    assert (root / "model.bin").stat().st_ino != outside["sentinel"].stat().st_ino


def test_38_default_checkout_never_hardlinks_to_blobs(store, tmp_path):
    entries = [put(store, "w.bin", os.urandom(4096))]
    root = m.checkout(store.blobs, entries, tmp_path / "t", store_root=store.path)
    assert (root / "w.bin").stat().st_nlink == 1


def test_39_dangerous_targets_are_refused_and_nothing_is_deleted(store, tmp_path, monkeypatch):
    entries = [put(store, "a", b"a")]
    home = tmp_path / "home"
    home.mkdir()
    (home / "dotfile").write_text("mine")
    monkeypatch.setenv("HOME", str(home))
    store_files = sorted(p.relative_to(store.path) for p in store.path.rglob("*"))
    for target in [
        store.path,
        store.path / "blobs",
        store.path / "new",
        Path("/"),
        home,
        store.path.parent,
    ]:
        with pytest.raises(UnsafeTargetError):
            m.checkout(store.blobs, entries, target, store_root=store.path)
        with pytest.raises(UnsafeTargetError):
            m.download(store.blobs, entries, target, store_root=store.path)
    assert sorted(p.relative_to(store.path) for p in store.path.rglob("*")) == store_files
    assert (home / "dotfile").read_text() == "mine"
    # a symlink to the store is resolved before the check
    alias = tmp_path / "alias"
    alias.symlink_to(store.path / "blobs")
    with pytest.raises(UnsafeTargetError):
        m.checkout(store.blobs, entries, alias, store_root=store.path)
    # a non-empty directory castore did not make is not wiped without force
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "src.py").write_text("print()")
    with pytest.raises(UnsafeTargetError, match="force"):
        m.checkout(store.blobs, entries, mine, store_root=store.path)
    assert (mine / "src.py").read_text() == "print()"
    # an existing file as the target
    with pytest.raises(UnsafeTargetError):
        m.checkout(store.blobs, entries, mine / "src.py", store_root=store.path)
