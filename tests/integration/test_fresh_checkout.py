"""The fresh checkout path: a new or empty root is built in one staging directory, then renamed.

A kill in the middle leaves the root absent or complete; what appears at the root while the tree
is built is never written through; an existing non-empty root still takes the careful path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import castore
from castore.errors import UnsafeTargetError
from castore.worktree import containment as _c
from castore.worktree import fresh as _fresh

ROOT = Path(__file__).resolve().parents[2]


def _version(store: castore.Store, tmp_path: Path, files: int = 40) -> castore.ArtifactVersion:
    src = tmp_path / "src"
    for i in range(files):
        d = src / f"d{i % 4}" / ("deep" if i % 3 == 0 else "")
        d.mkdir(parents=True, exist_ok=True)
        # half incompressible, half text (zstd blobs: streamed); small blobs are packed (never
        # linkable) and every eighth file is large enough to be a loose raw blob (linkable)
        data = os.urandom((70_000 if i % 8 == 1 else 200) + i) if i % 2 else (b"text %d " % i) * 50
        (d / f"f{i}.bin").write_bytes(data)
    (src / "top.txt").write_bytes(os.urandom(300))
    with store.draft("ds") as draft:
        draft.add_dir(src)
    return store.get("ds")


def _tree(root: Path) -> dict[str, bytes]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != _c.MARKER_NAME:
            out[path.relative_to(root).as_posix()] = path.read_bytes()
    return out


def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []
    real = _fresh.build

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(args[3])  # type: ignore[arg-type]
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_fresh, "build", counting)
    return calls


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(_c.STAGING_PREFIX)]


@pytest.mark.parametrize("link", ["copy", "hardlink", "symlink", "auto"])
def test_new_root_is_built_beside_and_renamed_once(
    store: castore.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, link: str
) -> None:
    version = _version(store, tmp_path)
    calls = _count_builds(monkeypatch)
    target = tmp_path / "out" / "new"
    version.checkout(target, link=link)
    assert calls == [target]
    assert _tree(target) == _tree(tmp_path / "src")
    assert _leftovers(target.parent) == [] and _leftovers(target) == []
    version.verify(target)  # raises when anything differs
    if link in ("hardlink", "symlink"):
        assert any(p.is_symlink() or p.stat().st_nlink > 1 for p in target.rglob("*.bin"))
    # the stat cache learned the copies: a second checkout finds every file already right
    before = {p: p.lstat().st_ino for p in target.rglob("*")}
    version.checkout(target, link=link)
    assert {p: p.lstat().st_ino for p in target.rglob("*")} == before


def test_existing_empty_root_takes_the_fresh_path_and_keeps_its_inode(
    store: castore.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = _version(store, tmp_path)
    target = tmp_path / "empty"
    target.mkdir()
    inode = target.stat().st_ino
    calls = _count_builds(monkeypatch)
    version.checkout(target)
    assert calls == [target]
    assert target.stat().st_ino == inode
    assert _tree(target) == _tree(tmp_path / "src")
    assert _leftovers(target) == []
    version.verify(target)
    version.download(tmp_path / "dl")  # download into a new root: the fresh path, no marker
    assert not (tmp_path / "dl" / _c.MARKER_NAME).exists()
    assert _tree(tmp_path / "dl") == _tree(tmp_path / "src")


def test_non_empty_root_still_takes_the_careful_path(
    store: castore.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = _version(store, tmp_path)
    target = tmp_path / "busy"
    target.mkdir()
    (target / "mine.txt").write_text("keep me")
    calls = _count_builds(monkeypatch)
    with pytest.raises(UnsafeTargetError):
        version.checkout(target)  # not made by castore: refused, nothing written
    assert [p.name for p in target.iterdir()] == ["mine.txt"]
    version.download(target)
    assert calls == []
    assert (target / "mine.txt").read_text() == "keep me"


def test_something_appearing_at_the_root_is_never_written_through(
    store: castore.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = _version(store, tmp_path)
    target = tmp_path / "raced"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("x")
    real = _fresh._fill

    def fill_then_race(*args: object, **kwargs: object) -> object:
        rows = real(*args, **kwargs)  # type: ignore[arg-type]
        target.symlink_to(outside, target_is_directory=True)  # an attacker's link
        return rows

    monkeypatch.setattr(_fresh, "_fill", fill_then_race)
    with pytest.raises(UnsafeTargetError, match="appeared"):
        version.checkout(target)
    assert target.is_symlink()
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    assert _leftovers(tmp_path) == []


_CHILD = """
import sys, castore
store = castore.open(sys.argv[1])
store.get("ds").checkout(sys.argv[2])
"""


def _checkout_in_child(store: Path, target: Path, crash_at: str) -> int:
    env = dict(os.environ, CASTORE_CRASH_AT=crash_at, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(store), str(target)],
        env=env, capture_output=True, text=True, timeout=120,
    )
    return proc.returncode


def test_a_kill_while_staging_leaves_the_root_absent_and_is_swept(
    store: castore.Store, tmp_path: Path
) -> None:
    version = _version(store, tmp_path)
    target = tmp_path / "out" / "killed"
    target.parent.mkdir()
    assert _checkout_in_child(store.path, target, "checkout.tmp_written") == 137
    assert not target.exists()
    assert len(_leftovers(target.parent)) == 1  # the dead process's staging directory
    version.checkout(target)  # the next fresh checkout of that root removes it
    assert _leftovers(target.parent) == []
    assert _tree(target) == _tree(tmp_path / "src")
    assert store.fsck().ok


def test_a_kill_after_the_rename_leaves_the_root_complete(
    store: castore.Store, tmp_path: Path
) -> None:
    version = _version(store, tmp_path)
    target = tmp_path / "done"
    assert _checkout_in_child(store.path, target, "checkout.renamed") == 137
    assert _tree(target) == _tree(tmp_path / "src")
    assert _leftovers(tmp_path) == []
    version.verify(target)
    version.checkout(target)  # made by castore: the careful path accepts it as it is


def test_a_live_processs_staging_is_never_swept(store: castore.Store, tmp_path: Path) -> None:
    version = _version(store, tmp_path)
    target = tmp_path / "shared"
    alive = tmp_path / f"{_c.STAGING_PREFIX}{os.getpid()}-beef-{target.name}"
    alive.mkdir()
    (alive / "busy").write_text("another checkout at work")
    version.checkout(target)
    assert (alive / "busy").exists()
