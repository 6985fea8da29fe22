"""Checkout in batches (issue 15): the result never depends on the batch size.

A checkout streams its entries from the catalogue a batch at a time (``staging.BATCH``): one
pass checks everything, then files are staged, committed and recorded in the stat cache per
batch. These tests patch the batch size down to a few files and check that every link mode, the
fresh and the careful path, the conflict checks (before anything is written) and a kill in the
middle of a batched fresh checkout behave as a one-batch checkout does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import castore
from castore.errors import IntegrityError, InvalidPathError, UnsafeTargetError
from castore.models import ManifestEntry
from castore.worktree import containment as _c
from castore.worktree import engine as _k
from castore.worktree import operations as m
from castore.worktree import staging as _s
from castore.worktree.entries import Entry, EntryStream

ROOT = Path(__file__).resolve().parents[2]
MODES = ["copy", "hardlink", "symlink", "auto"]


def _source(tmp_path: Path, files: int = 30, seed: int = 0) -> Path:
    src = tmp_path / f"src{seed}"
    for i in range(files):
        d = src / f"d{i % 3}" / ("deep" if i % 4 == 0 else "")
        d.mkdir(parents=True, exist_ok=True)
        # text (compressed, packed or streamed), incompressible (raw: linkable), executables
        data = os.urandom(300 + i) if i % 2 else (b"text %d %d " % (i, seed)) * 40
        path = d / f"f{i}.bin"
        path.write_bytes(data)
        if i % 7 == 3:
            path.chmod(0o755)
    (src / "d0.txt").write_bytes(b"sorts between d0 and d0/ " * 3)
    (src / "top").write_bytes(os.urandom(200))
    return src


def _version(store: castore.Store, src: Path, name: str = "ds") -> castore.ArtifactVersion:
    with store.draft(name) as draft:
        draft.add_dir(src)
    return store.get(name)


def _tree(root: Path) -> dict[str, tuple[bytes, bool, bool]]:
    """Each file's content, executable bit and whether it is a link (the marker and staging
    directories left out)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.name == _c.MARKER_NAME or path.is_dir() or rel.startswith(_c.STAGING_PREFIX):
            continue
        out[rel] = (path.read_bytes(), os.access(path, os.X_OK), path.is_symlink())
    return out


def _inodes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.lstat().st_ino for p in root.rglob("*")}


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_s, "BATCH", 4)


@pytest.mark.parametrize("link", MODES)
def test_fresh_checkout_in_batches_equals_one_batch(
    store: castore.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, link: str
) -> None:
    version = _version(store, _source(tmp_path))
    whole = tmp_path / "whole"
    version.checkout(whole, link=link)  # the default batch holds every file
    monkeypatch.setattr(_s, "BATCH", 3)
    batched = tmp_path / "batched"
    version.checkout(batched, link=link)
    assert _tree(batched) == _tree(whole) != {}
    version.verify(batched)
    # the stat cache learned every copy from the batches: nothing is rewritten or re-hashed
    before = _inodes(batched)
    version.checkout(batched, link=link)
    assert _inodes(batched) == before


@pytest.mark.parametrize("link", MODES)
def test_careful_checkout_in_batches_equals_one_batch(
    store: castore.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, link: str
) -> None:
    old = _version(store, _source(tmp_path, files=20, seed=1), "old")
    new = _version(store, _source(tmp_path, files=30, seed=2), "new")
    roots = {}
    for name, batch in (("whole", 100_000), ("batched", 3)):
        monkeypatch.setattr(_s, "BATCH", batch)
        root = tmp_path / name
        old.checkout(root, link=link)
        (root / "extra.txt").write_text("castore removes me")  # a managed root: no refusal
        (root / "d1" / "deep").mkdir(exist_ok=True)
        new.checkout(root, link=link)  # the careful path: some files kept, some rewritten
        roots[name] = root
    assert _tree(roots["batched"]) == _tree(roots["whole"]) == _tree(tmp_path / "src2")
    new.verify(roots["batched"])
    before = _inodes(roots["batched"])
    new.checkout(roots["batched"], link=link)
    assert _inodes(roots["batched"]) == before


def test_download_in_batches_keeps_other_files(
    store: castore.Store, tmp_path: Path, small_batches: None
) -> None:
    version = _version(store, _source(tmp_path))
    root = tmp_path / "dl"
    root.mkdir()
    (root / "mine.txt").write_text("keep")
    version.download(root, path_prefix="d1/")
    want = {k: v for k, v in _tree(tmp_path / "src0").items() if k.startswith("d1/")}
    assert _tree(root) == {**want, "mine.txt": (b"keep", False, False)}


def test_conflicts_are_found_before_any_file_is_written(
    store: castore.Store, tmp_path: Path, small_batches: None
) -> None:
    version = _version(store, _source(tmp_path))
    root = tmp_path / "busy"
    (root / "top").parent.mkdir()
    (root / "top").write_bytes(b"the user's own file, last in path order")
    with pytest.raises(UnsafeTargetError, match="top"):
        version.checkout(root)  # not made by castore: refused before any batch is staged
    assert sorted(p.name for p in root.iterdir()) == ["top"]
    # a directory in the way of a download's last file: refused before the first one is written
    dl = tmp_path / "dl"
    (dl / "top").mkdir(parents=True)
    (dl / "top" / "x").write_text("x")
    with pytest.raises(UnsafeTargetError, match="directory stands"):
        version.download(dl)
    assert sorted(p.relative_to(dl).as_posix() for p in dl.rglob("*")) == ["top", "top/x"]


@pytest.mark.parametrize("fresh", [True, False])
def test_a_missing_content_in_the_last_batch_changes_nothing(
    store: castore.Store, tmp_path: Path, small_batches: None, fresh: bool
) -> None:
    good = [
        ManifestEntry(path=f"a{i:02d}", digest=d.digest, size=d.size)
        for i, d in enumerate(store.blobs.put_bytes(os.urandom(50 + i)) for i in range(12))
    ]
    ghost = "xxh3-128:" + "0" * 32 if store.hash == "xxh3-128" else None
    absent = ManifestEntry(path="z", digest=ghost or good[0].digest.replace(
        good[0].digest[-4:], "0000"), size=3)
    root = tmp_path / "out"
    if not fresh:
        root.mkdir()
        (root / "a00").write_bytes(b"old")
        (root / _c.MARKER_NAME).write_text("managed")
    before = sorted(p.name for p in root.iterdir()) if root.exists() else None
    with pytest.raises(IntegrityError) as info:
        m.checkout(store.blobs, [*good, absent], root, store_root=store.path)
    assert info.value.paths == ["z"]
    after = sorted(p.name for p in root.iterdir()) if root.exists() else None
    assert after == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(_c.STAGING_PREFIX)] == []


def test_invalid_paths_are_refused_before_any_file_is_written(
    store: castore.Store, tmp_path: Path, small_batches: None
) -> None:
    blob = store.blobs.put_bytes(b"x" * 100)
    rows = [(f"a{i:02d}", blob.digest, 100, None) for i in range(10)]
    root = tmp_path / "out"
    for bad in ([("a05/sub", blob.digest, 100, None)], [("a09", blob.digest, 100, None)]):
        with pytest.raises(InvalidPathError):
            m.checkout(store.blobs, sorted(rows + bad), root, store_root=store.path)
        assert not root.exists()


_CHILD = """
import sys, castore
from castore.worktree import staging
staging.BATCH = 4
store = castore.open(sys.argv[1])
store.get("ds").checkout(sys.argv[2])
"""


def test_a_kill_between_batches_of_a_fresh_checkout_leaves_the_root_absent(
    store: castore.Store, tmp_path: Path
) -> None:
    src = _source(tmp_path)
    version = _version(store, src)
    target = tmp_path / "out" / "killed"
    target.parent.mkdir()
    env = dict(os.environ, CASTORE_CRASH_AT="checkout.batch_placed:3", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(store.path), str(target)],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 137, proc.stderr
    assert not target.exists()
    staged = [p for p in target.parent.iterdir() if p.name.startswith(_c.STAGING_PREFIX)]
    assert len(staged) == 1 and any(staged[0].rglob("*.bin"))  # killed part-way through
    version.checkout(target)  # the next checkout sweeps the dead one's staging directory
    assert [p.name for p in target.parent.iterdir()] == ["killed"]
    assert _tree(target) == _tree(src)


def test_a_kill_between_staged_batches_leaves_a_careful_root_unchanged(
    store: castore.Store, tmp_path: Path
) -> None:
    old = _version(store, _source(tmp_path, files=10, seed=1), "ds")
    root = tmp_path / "root"
    old.checkout(root)
    before = _tree(root)
    _version(store, _source(tmp_path, files=30, seed=2), "ds")  # ds:latest is the new one
    env = dict(os.environ, CASTORE_CRASH_AT="checkout.batch_placed:2", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(store.path), str(root)],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 137, proc.stderr
    assert _tree(root) == before  # only the private staging directory holds new files
    assert any(p.name.startswith(_c.STAGING_PREFIX) for p in root.iterdir())
    store.get("ds").checkout(root)  # sweeps it
    assert _tree(root) == _tree(tmp_path / "src2")
    assert not [p for p in root.iterdir() if p.name.startswith(_c.STAGING_PREFIX)]


def test_entries_that_change_between_passes_are_refused(
    store: castore.Store, tmp_path: Path, small_batches: None
) -> None:
    blob = store.blobs.put_bytes(b"y" * 64)
    rows = [Entry(f"f{i:02d}", blob.digest, 64) for i in range(10)]
    passes: list[int] = []

    def open_rows() -> Iterator[Entry]:
        passes.append(1)
        return iter(rows if len(passes) == 1 else rows[:6])  # a version deleted meanwhile

    root = tmp_path / "out"
    with pytest.raises(IntegrityError, match="changed while the checkout ran"):
        m.checkout(store.blobs, EntryStream(open_rows), root, store_root=store.path)
    assert not root.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(_c.STAGING_PREFIX)] == []


def test_unsorted_entries_still_check_out(
    store: castore.Store, tmp_path: Path, small_batches: None
) -> None:
    blob = store.blobs.put_bytes(b"z" * 10)
    rows = [Entry(p, blob.digest, 10) for p in ["b/x", "a", "c", "b.txt", "b/a"]]
    m.checkout(store.blobs, EntryStream(lambda: iter(rows)), tmp_path / "s", store_root=store.path)
    m.checkout(store.blobs, rows, tmp_path / "l", store_root=store.path)
    assert _tree(tmp_path / "s") == _tree(tmp_path / "l")
    assert sorted(_tree(tmp_path / "s")) == ["a", "b.txt", "b/a", "b/x", "c"]


# -- the streamed path check agrees with the whole-set check ----------------------------------

_names = st.sampled_from(["a", "b", "a.b", "a-", "ab", "a b", "é", "b/c"])
_paths = st.lists(st.lists(_names, min_size=1, max_size=3).map("/".join), max_size=12)


def _set_check(paths: list[str]) -> set[str]:
    """What is wrong with ``paths`` by the whole-set rules (empty: nothing)."""
    wrong = set()
    if len(set(paths)) != len(paths):
        wrong.add("twice")
    dirs = {p[:i] for p in paths for i in range(len(p)) if p[i] == "/"}
    if dirs & set(paths):
        wrong.add("file and a directory")
    return wrong


@given(_paths)
@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_streamed_path_check_agrees_with_the_set_check(paths: list[str]) -> None:
    expected = _set_check(paths)
    check = _k.PathCheck()
    try:
        for path in sorted(paths):
            check.check(path)
    except InvalidPathError as exc:
        assert any(kind in str(exc) for kind in expected), (expected, exc)
    else:
        assert not expected
