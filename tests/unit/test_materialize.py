"""checkout, download, verify, open and diff over a real BlobStore and hand-made entries."""

from __future__ import annotations

import errno
import itertools
import os
import stat
from pathlib import Path

import pytest

import castore
from castore.errors import (
    IntegrityError,
    InvalidPathError,
    NotFoundError,
    RemoteError,
    UnsafeTargetError,
)
from castore.models import ManifestEntry
from castore.worktree import linking as _linking
from castore.worktree import operations as m
from tests import harness

RAW = os.urandom  # incompressible: stored raw, so it can be linked


def put(store: castore.Store, path: str, data: bytes) -> ManifestEntry:
    result = store.blobs.put_bytes(data)
    return ManifestEntry(path=path, digest=result.digest, size=len(data))


def snapshot(root: Path) -> dict[str, tuple[str, object, int]]:
    """Everything under root, without following links: kind, content or link text, inode."""
    out: dict[str, tuple[str, object, int]] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = p.relative_to(root).as_posix()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p), st.st_ino)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", None, st.st_ino)
            else:
                out[rel] = ("file", p.read_bytes(), st.st_ino)
    return out


def files_of(root: Path) -> dict[str, bytes]:
    return {
        k: v[1]  # type: ignore[misc]
        for k, v in snapshot(root).items()
        if v[0] == "file" and k != ".castore-checkout"
    }


@pytest.fixture
def entries(store: castore.Store) -> list[ManifestEntry]:
    return [
        put(store, "a.txt", b"hello " * 200),  # compressed
        put(store, "d/e/f.bin", RAW(5000)),
        put(store, "d/raw.bin", RAW(300)),
        put(store, "empty", b""),
        put(store, "d/ü ñ.txt", b"unicode " * 50),
    ]


def expected(store: castore.Store, entries: list[ManifestEntry]) -> dict[str, bytes]:
    return {e.path: m.read_bytes(store.blobs, e) for e in entries}


@pytest.mark.parametrize("link", ["auto", "copy", "hardlink", "symlink"])
def test_checkout_round_trip_every_mode(store, entries, tmp_path, link):
    root = tmp_path / "out"
    assert m.checkout(store.blobs, entries, root, link=link, store_root=store.path) == root
    got = {p: (root / p).read_bytes() for p in expected(store, entries)}
    assert got == expected(store, entries)
    assert m.verify_dir(store.blobs, entries, root).ok
    raw_file = root / "d/raw.bin"
    if link == "hardlink":
        assert raw_file.stat().st_ino == store.blobs.raw_path(entries[2].digest).stat().st_ino
        assert not raw_file.stat().st_mode & 0o222  # read-only
    elif link == "symlink":
        assert raw_file.is_symlink()
        assert Path(os.readlink(raw_file)) == store.blobs.raw_path(entries[2].digest)
    else:
        assert raw_file.stat().st_nlink == 1 and not raw_file.is_symlink()
    # compressed blobs are always copies
    assert not (root / "a.txt").is_symlink() and (root / "a.txt").stat().st_nlink == 1


def test_checkout_over_a_dirty_directory(store, entries, tmp_path):
    root = tmp_path / "out"
    m.checkout(store.blobs, entries, root, store_root=store.path)
    (root / "junk.txt").write_text("extra")
    (root / "emptydir").mkdir()
    (root / "deep/er").mkdir(parents=True)
    (root / "deep/er/x").write_text("x")
    (root / "a.txt").write_text("edited")
    (root / "d/raw.bin").unlink()
    (root / "d/raw.bin").mkdir()  # a directory where a file goes
    (root / "d/raw.bin/inner").write_text("i")
    (root / "empty").unlink()
    m.checkout(store.blobs, entries, root, store_root=store.path)
    assert files_of(root) == expected(store, entries)
    assert not (root / "emptydir").exists() and not (root / "deep").exists()
    report = m.verify_dir(store.blobs, entries, root)
    assert report.ok, report


def test_checkout_removes_a_file_standing_where_a_directory_goes(store, entries, tmp_path):
    root = tmp_path / "out"
    m.checkout(store.blobs, entries[:1], root, store_root=store.path)
    (root / "d").write_text("a file named like the directory")
    m.checkout(store.blobs, entries, root, store_root=store.path)
    assert files_of(root) == expected(store, entries)


def test_unmanaged_non_empty_target_is_refused_without_force(store, entries, tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "precious.txt").write_text("my thesis")
    before = snapshot(root)
    with pytest.raises(UnsafeTargetError, match="precious"):
        m.checkout(store.blobs, entries, root, store_root=store.path)
    assert snapshot(root) == before
    m.checkout(store.blobs, entries, root, store_root=store.path, force=True)
    assert files_of(root) == expected(store, entries)


def test_unmanaged_target_holding_only_correct_files_is_accepted(store, entries, tmp_path):
    root = tmp_path / "mine"
    (root / "hollow/dirs").mkdir(parents=True)
    m.download(store.blobs, entries, root, store_root=store.path)
    m.checkout(store.blobs, entries, root, store_root=store.path)  # nothing of value to delete
    assert os.getxattr(root, "user.castore.checkout") == b"1"
    assert not (root / ".castore-checkout").exists()
    assert not (root / "hollow").exists()


def test_download_leaves_other_files_and_selects_by_prefix(store, entries, tmp_path):
    root = tmp_path / "dl"
    root.mkdir()
    (root / "mine.txt").write_text("keep")
    m.download(store.blobs, entries, root, path_prefix="d/", store_root=store.path)
    got = files_of(root)
    assert got.pop("mine.txt") == b"keep"
    assert got == {k: v for k, v in expected(store, entries).items() if k.startswith("d/")}
    with pytest.raises(OSError):  # download never marks a root as managed
        os.getxattr(root, "user.castore.checkout")


def test_download_refuses_a_directory_where_a_file_goes(store, entries, tmp_path):
    root = tmp_path / "dl"
    (root / "a.txt").mkdir(parents=True)
    (root / "a.txt/keep").write_text("k")
    before = snapshot(root)
    with pytest.raises(UnsafeTargetError, match=r"a\.txt"):
        m.download(store.blobs, entries, root, store_root=store.path)
    assert snapshot(root) == before


def test_already_correct_files_are_not_rewritten(store, entries, tmp_path):
    root = tmp_path / "out"
    m.checkout(store.blobs, entries, root, store_root=store.path)
    before = snapshot(root)
    m.checkout(store.blobs, entries, root, store_root=store.path)
    assert snapshot(root) == before  # same inodes: nothing replaced


def test_stat_cache_skips_hashing(store, entries, tmp_path, monkeypatch):
    root = tmp_path / "out"
    cache = m.MemoryStatCache()
    m.checkout(store.blobs, entries, root, store_root=store.path, stat_cache=cache)

    def boom(*args: object) -> None:
        raise AssertionError("hashed a file the stat cache knows")

    monkeypatch.setattr(_linking, "file_matches", boom)
    m.checkout(store.blobs, entries, root, store_root=store.path, stat_cache=cache)
    assert m.verify_dir(store.blobs, entries, root, stat_cache=cache).ok


def test_missing_blob_fails_before_the_target_changes(store, entries, tmp_path):
    root = tmp_path / "out"
    m.checkout(store.blobs, entries[:2], root, store_root=store.path)
    (root / "extra").write_text("stays until a good checkout")
    before = snapshot(root)
    ghost = ManifestEntry(path="ghost.bin", digest="xxh3-128:" + "0" * 32, size=3)
    with pytest.raises(IntegrityError) as info:
        m.checkout(store.blobs, [*entries, ghost], root, store_root=store.path)
    assert "ghost.bin" in str(info.value) and ghost.digest in str(info.value)
    assert info.value.paths == ["ghost.bin"]
    assert snapshot(root) == before
    fresh = tmp_path / "fresh"
    with pytest.raises(IntegrityError):
        m.checkout(store.blobs, [ghost], fresh, store_root=store.path)
    assert not fresh.exists()


@pytest.mark.parametrize("which", [1, 0])  # 1: a raw blob, 0: a zstd blob
@pytest.mark.parametrize("link", ["auto", "copy"])
def test_corrupt_blob_leaves_the_target_unchanged(store, entries, tmp_path, which, link):
    root = tmp_path / "out"
    m.checkout(store.blobs, entries[2:], root, store_root=store.path)
    (root / "extra").write_text("x")
    before = snapshot(root)
    blob = store.blobs.path_of(entries[which].digest)
    os.chmod(blob, 0o644)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as info:
        m.checkout(store.blobs, entries, root, link=link, store_root=store.path)
    assert entries[which].path in str(info.value)
    assert snapshot(root) == before
    fresh = tmp_path / "fresh"
    with pytest.raises(IntegrityError):
        m.download(store.blobs, entries, fresh, store_root=store.path)
    assert not fresh.exists()


@pytest.mark.parametrize(
    "bad", ["../escape", "/abs", "a/../../b", "a//b", "C:x", "x\\..\\y", "CON"]
)
def test_tampered_paths_are_rejected_before_anything_is_written(store, tmp_path, bad):
    good = put(store, "ok", b"ok")
    evil = ManifestEntry(path=bad, digest=good.digest, size=good.size)
    root = tmp_path / "out"
    with pytest.raises(InvalidPathError):
        m.checkout(store.blobs, [good, evil], root, store_root=store.path)
    assert not root.exists()
    assert not (tmp_path / "escape").exists()


def test_file_and_directory_collision_is_rejected(store, tmp_path):
    a = put(store, "a", b"1")
    ab = put(store, "a/b", b"2")
    with pytest.raises(InvalidPathError, match="collision"):
        m.checkout(store.blobs, [a, ab], tmp_path / "o", store_root=store.path)


def test_verify_reports_missing_modified_and_extra(store, entries, tmp_path):
    root = tmp_path / "out"
    m.checkout(store.blobs, entries, root, store_root=store.path)
    (root / "a.txt").write_text("changed")
    (root / "d/raw.bin").unlink()
    (root / "new.txt").write_text("n")
    report = m.verify_dir(store.blobs, entries, root)
    assert not report.ok
    assert report.modified == ["a.txt"]
    assert report.missing == ["d/raw.bin"]
    assert report.extra == ["new.txt"]
    assert m.verify_dir(store.blobs, entries, tmp_path / "nowhere").missing == sorted(
        e.path for e in entries
    )


def test_verify_flags_an_edited_hardlink_and_a_foreign_symlink(store, entries, tmp_path):
    root = tmp_path / "out"
    m.checkout(store.blobs, entries, root, link="hardlink", store_root=store.path)
    target = root / "d/raw.bin"
    os.chmod(target, 0o644)  # a user forcing a write through the link damages the blob
    target.write_bytes(b"X" * 300)
    (root / "d/e/f.bin").unlink()
    (root / "d/e/f.bin").symlink_to(tmp_path / "elsewhere")
    report = m.verify_dir(store.blobs, entries, root)
    assert report.modified == ["d/e/f.bin", "d/raw.bin"]
    assert m.verify_blobs(store.blobs, entries) == ["d/raw.bin"]  # store damage, seen by fsck


def test_verify_accepts_symlinks_into_the_store_and_checks_the_blob(store, entries, tmp_path):
    root = tmp_path / "out"
    m.checkout(store.blobs, entries, root, link="symlink", store_root=store.path)
    assert m.verify_dir(store.blobs, entries, root).ok
    blob = store.blobs.raw_path(entries[1].digest)
    os.chmod(blob, 0o644)
    blob.write_bytes(b"\0" * entries[1].size)
    assert m.verify_dir(store.blobs, entries, root).modified == ["d/e/f.bin"]


def test_copy_mode_replaces_a_hardlink_into_the_store(store, entries, tmp_path):
    root = tmp_path / "out"
    m.checkout(store.blobs, entries, root, link="hardlink", store_root=store.path)
    m.checkout(store.blobs, entries, root, link="copy", store_root=store.path)
    assert (root / "d/raw.bin").stat().st_nlink == 1
    m.checkout(store.blobs, entries, root, link="symlink", store_root=store.path)
    assert (root / "d/raw.bin").is_symlink()
    m.checkout(store.blobs, entries, root, link="copy", store_root=store.path)
    assert not (root / "d/raw.bin").is_symlink()
    assert files_of(root) == expected(store, entries)


def test_verify_blobs_names_missing_and_damaged_paths(store, entries):
    assert m.verify_blobs(store.blobs, entries) == []
    store.blobs.delete(entries[0].digest)
    assert m.verify_blobs(store.blobs, entries) == ["a.txt"]


def test_open_entry_streams_and_checks_at_eof(store, entries):
    with m.open_entry(store.blobs, entries[1]) as fh:
        assert fh.read(10) == m.read_bytes(store.blobs, entries[1])[:10]
    blob = store.blobs.raw_path(entries[1].digest)
    os.chmod(blob, 0o644)
    blob.write_bytes(b"\0" * entries[1].size)
    with pytest.raises(IntegrityError):
        m.read_bytes(store.blobs, entries[1])


def test_file_references_are_copied_and_checked(store, tmp_path):
    src = tmp_path / "big.bin"
    src.write_bytes(b"referenced")
    digest = store.blobs.put_bytes(b"referenced").digest
    ref = ManifestEntry(path="big.bin", digest=digest, size=10, ref=src.as_uri())
    root = m.download(store.blobs, [ref], tmp_path / "dl", store_root=store.path)
    assert (root / "big.bin").read_bytes() == b"referenced"
    src.write_bytes(b"REFERENCED")  # changed behind our back
    with pytest.raises(IntegrityError):
        m.download(store.blobs, [ref], tmp_path / "dl2", store_root=store.path)
    assert not (tmp_path / "dl2").exists()
    assert m.verify_blobs(store.blobs, [ref]) == ["big.bin"]
    # s3:// and http(s):// are fetched now (tests/integration/test_references.py); a scheme
    # castore cannot fetch is still refused by name
    ftp = ManifestEntry(path="x", digest=None, size=1, ref="ftp://host/x")
    with pytest.raises(RemoteError, match="file://"):
        m.open_entry(store.blobs, ftp)
    gone = ManifestEntry(path="y", digest=None, size=1, ref=(tmp_path / "nope").as_uri())
    with pytest.raises(NotFoundError):
        m.open_entry(store.blobs, gone)


def test_progress_callable_and_stderr_bar(store, entries, tmp_path, capsys):
    calls: list[tuple[int, int]] = []
    m.checkout(
        store.blobs,
        entries,
        tmp_path / "a",
        store_root=store.path,
        progress=lambda d, t: calls.append((d, t)),
    )
    total = sum(e.size for e in entries)
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(calls))
    m.checkout(store.blobs, entries, tmp_path / "b", store_root=store.path, progress=True)
    captured = capsys.readouterr()
    assert captured.out == "" and "100.0%" in captured.err
    m.checkout(store.blobs, entries, tmp_path / "c", store_root=store.path)
    assert capsys.readouterr() == ("", "")


def test_many_files_go_through_the_pool(store, tmp_path):
    many = [put(store, f"dir{i % 7}/f{i}.bin", RAW(64 + i)) for i in range(120)]
    root = m.checkout(store.blobs, many, tmp_path / "o", store_root=store.path, workers=4)
    assert m.verify_dir(store.blobs, many, root, workers=4).ok
    assert len(files_of(root)) == 120


def test_diff_lists_added_removed_and_modified_with_sizes(store):
    a = [put(store, "same", b"s"), put(store, "gone", b"g"), put(store, "changed", b"c1")]
    b = [put(store, "same", b"s"), put(store, "new", b"nn"), put(store, "changed", b"c22")]
    d = m.diff(a, b, a="ds:v1", b="ds:v2")
    assert (d.a, d.b) == ("ds:v1", "ds:v2")
    assert [x.path for x in d.added] == ["new"] and d.added[0].size_b == 2
    assert [x.path for x in d.removed] == ["gone"] and d.removed[0].size_a == 1
    assert [(x.path, x.size_a, x.size_b) for x in d.modified] == [("changed", 2, 3)]
    assert m.diff(a, a).empty


# -- through the public handles ------------------------------------------------------------


def _make(store, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "sub/b.bin").write_bytes(RAW(2048))
    with store.draft("ds", type="dataset") as d:
        d.add_dir(src)
    return d.version, src


def test_version_checkout_verify_and_reads(store, tmp_path, monkeypatch):
    v, src = _make(store, tmp_path)
    root = v.checkout(tmp_path / "co", link="hardlink")
    assert (root / "sub/b.bin").read_bytes() == (src / "sub/b.bin").read_bytes()
    assert v.verify(root).ok and v.verify().ok
    (root / "extra").write_text("e")
    with pytest.raises(castore.VerificationError) as info:
        v.verify(root)
    assert info.value.report.extra == ["extra"]
    assert v.read_text("a.txt") == "alpha"
    with v.open("sub/b.bin") as fh:
        assert fh.read() == (src / "sub/b.bin").read_bytes()
    with pytest.raises(NotFoundError):
        v.open("nope")
    monkeypatch.chdir(tmp_path)
    assert v.download() == (tmp_path / "artifacts/ds/v0").resolve()
    with pytest.raises(ValueError, match="2 files"):
        v.file()


def test_version_checkout_uses_the_catalogue_stat_cache(store, tmp_path, monkeypatch):
    v, _ = _make(store, tmp_path)
    root = v.checkout(tmp_path / "co")
    before = snapshot(root)

    def boom(*args: object) -> None:
        raise AssertionError("hashed a file the stat cache knows")

    monkeypatch.setattr(_linking, "file_matches", boom)
    v.checkout(root)
    assert v.verify(root).ok
    assert snapshot(root) == before


def test_version_verify_without_root_names_damaged_paths(store, tmp_path):
    v, _ = _make(store, tmp_path)
    entry = v.get_entry("sub/b.bin")
    harness.damage_blob(store, entry.digest)  # loose or packed
    with pytest.raises(IntegrityError) as info:
        v.verify()
    assert info.value.paths == ["sub/b.bin"]
    with pytest.raises(IntegrityError):
        v.checkout(tmp_path / "co")
    assert not (tmp_path / "co").exists()


def test_store_diff_and_single_file(store, tmp_path):
    v0, _ = _make(store, tmp_path)
    with v0.new_draft() as d:
        d.add_bytes(b"new", name="new.txt")
        d.remove("a.txt")
    diff = store.diff("ds:v0", d.version)
    assert [e.path for e in diff.added] == ["new.txt"]
    assert [e.path for e in diff.removed] == ["a.txt"]
    assert (diff.a, diff.b) == ("ds:v0", "ds:v1")
    with store.draft("model", type="model") as d:
        d.add_bytes(b"weights", name="w.pt")
    path = d.version.file(tmp_path / "m")
    assert path == (tmp_path / "m/w.pt").resolve() and path.read_bytes() == b"weights"


def test_marker_file_is_the_fallback_without_xattrs(store, entries, tmp_path, monkeypatch):
    def no_xattrs(*args, **kwargs):
        raise OSError(errno.ENOTSUP, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", no_xattrs)
    monkeypatch.setattr(os, "getxattr", no_xattrs)
    root = tmp_path / "plainfs"
    m.checkout(store.blobs, entries, root, store_root=store.path)
    assert (root / ".castore-checkout").is_file()
    (root / "extra.txt").write_text("removed: the root is managed")
    m.checkout(store.blobs, entries, root, store_root=store.path)
    assert not (root / "extra.txt").exists()
    assert m.verify_dir(store.blobs, entries, root).ok
