"""Link-mode probing and placing, and the descriptor-based containment helpers."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

import castore
from castore.errors import ConfigurationError, UnsafeTargetError
from castore.models import ManifestEntry
from castore.worktree import containment as c
from castore.worktree import linking as lk
from castore.worktree import operations as m


def raw_entry(store: castore.Store, path: str = "w.bin") -> ManifestEntry:
    data = os.urandom(4096)
    return ManifestEntry(path=path, digest=store.blobs.put_bytes(data).digest, size=len(data))


def test_unknown_link_mode_is_a_configuration_error(store, tmp_path):
    with pytest.raises(ConfigurationError, match="unknown link mode"):
        m.checkout(store.blobs, [], tmp_path / "t", link="softlink", store_root=store.path)
    assert not (tmp_path / "t").exists()


def test_reflink_probe_is_cached_and_explicit_reflink_fails_clearly(store, tmp_path):
    entry = raw_entry(store)
    raw = store.blobs.raw_path(entry.digest)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        supported = lk.reflink_supported(raw, fd, probe_name=".probe")
        assert not os.path.exists(tmp_path / ".probe")
        key = (os.stat(raw).st_dev, os.fstat(fd).st_dev)
        assert lk._reflink_cache[key] is supported
    finally:
        os.close(fd)
    root = tmp_path / "t"
    if supported:
        m.checkout(store.blobs, [entry], root, link="reflink", store_root=store.path)
        assert m.verify_dir(store.blobs, [entry], root).ok
        assert (root / "w.bin").stat().st_mode & 0o200  # a clone is the user's to edit
    else:
        with pytest.raises(ConfigurationError, match="reflink") as info:
            m.checkout(store.blobs, [entry], root, link="reflink", store_root=store.path)
        assert "link='auto'" in str(info.value)
        assert not root.exists()  # refused before the target changed
        m.checkout(store.blobs, [entry], root, link="auto", store_root=store.path)
        assert (root / "w.bin").stat().st_nlink == 1  # auto fell back to a copy


def test_hardlink_across_filesystems_is_refused_before_writing(store):
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == store.path.stat().st_dev:
        pytest.skip("needs a second filesystem")
    entry = raw_entry(store)
    target = shm / f"castore-test-{os.getpid()}"
    try:
        with pytest.raises(ConfigurationError, match="same filesystem"):
            m.checkout(store.blobs, [entry], target, link="hardlink", store_root=store.path)
        assert not target.exists()
        m.checkout(store.blobs, [entry], target, link="symlink", store_root=store.path)
        assert (target / "w.bin").is_symlink()
        m.checkout(store.blobs, [entry], target, link="auto", store_root=store.path)
        assert not (target / "w.bin").is_symlink()
    finally:
        import shutil

        shutil.rmtree(target, ignore_errors=True)


def test_make_readonly_and_place_stream_never_overwrites(tmp_path):
    f = tmp_path / "blob"
    f.write_bytes(b"x")
    lk.make_readonly(f)
    assert not f.stat().st_mode & 0o222
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert lk.place_stream(io.BytesIO(b"abc" * 1000), fd, "new") == 3000
        with pytest.raises(FileExistsError):
            lk.place_stream(io.BytesIO(b"zzz"), fd, "new")
        (tmp_path / "link").symlink_to(f)
        with pytest.raises(FileExistsError):
            lk.place_stream(io.BytesIO(b"zzz"), fd, "link")
    finally:
        os.close(fd)
    assert (tmp_path / "new").read_bytes() == b"abc" * 1000
    assert f.read_bytes() == b"x"


def test_check_target_refusals(tmp_path, monkeypatch):
    store = tmp_path / "store"
    store.mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    for bad in [store, store / "x", tmp_path, Path("/"), tmp_path / "home"]:
        with pytest.raises(UnsafeTargetError):
            c.check_target(bad, store)
    assert c.check_target(tmp_path / "home" / "work", store) == tmp_path / "home" / "work"


def test_open_subdir_replaces_a_link_and_leaves_its_target(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f").write_text("keep")
    root = tmp_path / "root"
    root.mkdir()
    (root / "sub").symlink_to(outside)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(UnsafeTargetError):
            c.open_subdir(fd, "sub", create=False)
        sub = c.open_subdir(fd, "sub", create=True)
        os.close(sub)
    finally:
        os.close(fd)
    assert (root / "sub").is_dir() and not (root / "sub").is_symlink()
    assert (outside / "f").read_text() == "keep"


def test_scan_tree_lists_links_as_files_and_does_not_descend(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    root = tmp_path / "root"
    (root / "d/e").mkdir(parents=True)
    (root / "d/e/f").write_text("f")
    (root / "d/l").symlink_to(outside)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        scan = c.scan_tree(fd)
    finally:
        os.close(fd)
    assert set(scan.files) == {"d/e/f", "d/l"}
    assert scan.dirs == {"d", "d/e"}


def test_dir_cursor_visits_each_directory_once(tmp_path, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    opened: list[str] = []
    real = c.open_subdir

    def spy(parent_fd: int, name: str, **kw: object) -> int:
        opened.append(str(kw.get("where")))
        return real(parent_fd, name, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(c, "open_subdir", spy)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    paths = sorted(["a/b/1", "a/b/2", "a/c", "a/b/z/3", "b", "a.x"], key=c.sort_key)
    try:
        with c.DirCursor(fd, create=True) as cursor:
            for p in paths:
                cursor.dir_of(p)
    finally:
        os.close(fd)
    assert sorted(opened) == sorted(set(opened)) == ["a", "a/b", "a/b/z"]


def test_hardlink_checkout_copies_when_the_link_limit_is_reached(store, tmp_path, monkeypatch):
    # issue 9 item 8: 100,000 empty files share one blob; past the filesystem's link limit
    # link() fails with EMLINK ("Too many links") and the checkout must copy instead.
    import errno

    v = store.draft("many")
    same = os.urandom(70_000)  # a loose raw blob (small blobs are packed: never linked)
    for i in range(40):
        v.add_bytes(same, name=f"f{i:02d}")
    version = v.finalize()
    raw = store.blobs.raw_path(version.get_entry("f00").digest)
    assert raw is not None
    real_link = os.link
    calls = {"n": 0}

    def limited_link(src, dst, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 10:
            raise OSError(errno.EMLINK, "Too many links")
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(lk.os, "link", limited_link)
    out = version.checkout(tmp_path / "out", link="hardlink")
    monkeypatch.undo()
    names = sorted(p.name for p in out.iterdir() if p.name != c.MARKER_NAME)
    assert names == [f"f{i:02d}" for i in range(40)]
    blob = os.stat(raw)
    linked = [n for n in names if os.path.samestat(os.stat(out / n), blob)]
    copies = [n for n in names if n not in linked]
    assert len(linked) == 10 and len(copies) == 30
    for n in names:
        assert (out / n).read_bytes() == same
    for n in copies:
        assert os.stat(out / n).st_nlink == 1
    assert version.verify(out).ok
    assert store.fsck().ok
