"""A store on a read-only filesystem can be read and never written (issue 9 item 7).

The store is built, then its directory is bind-mounted read-only (root only: the mount needs
``CAP_SYS_ADMIN``; skipped otherwise). Every read path runs through the Python API and the
CLI; every write raises :class:`ReadOnlyStoreError`.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import castore
from castore.cli import cli
from castore.errors import ReadOnlyStoreError
from tests.harness import finalize

FILES = {"a.txt": b"alpha " * 50, "b/c.bin": bytes(range(256)) * 40}


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


@pytest.fixture
def read_only_view(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """``(src, view)``: ``view`` is ``src`` bind-mounted read-only."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    src, view = tmp_path / "src", tmp_path / "view"
    src.mkdir()
    view.mkdir()
    try:
        _mount("--bind", str(src), str(view))
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot bind-mount here: {exc}")
    try:
        _mount("-o", "remount,bind,ro", str(view))
        yield src, view
    finally:
        # Lazily if busy: a failing test may still hold files open through its traceback.
        if subprocess.run(["umount", str(view)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(view)], check=False, capture_output=True)


def _build(root: Path) -> None:
    with castore.init(root, durable=False) as store:
        finalize(store, "ds", FILES, aliases=["prod"])
        finalize(store, "ds", {"a.txt": b"two"})


def _listing(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("read_only", [True, False])
def test_python_reads_work_on_a_read_only_mount(
    read_only_view: tuple[Path, Path], tmp_path: Path, read_only: bool
) -> None:
    src, view = read_only_view
    _build(src / "store")
    before = _listing(src / "store")
    # read_only=False: a store the process cannot write opens read-only by itself.
    with castore.open(view / "store", read_only=read_only) as store:
        assert store.read_only
        assert [v.ref for v in store.versions(sort="number").items] == ["ds:v0", "ds:v1"]
        v0 = store.get("ds:prod")
        assert {e.path for e in v0.files()} == set(FILES)
        assert v0.read_bytes("b/c.bin") == FILES["b/c.bin"]
        assert v0.verify().ok
        target = tmp_path / "out"
        v0.checkout(target)
        assert (target / "a.txt").read_bytes() == FILES["a.txt"]
        v0.checkout(target)  # again: the stat cache is read, never written
        assert v0.verify(target).ok
        assert store.fsck().ok
        assert store.stats().versions == 2
        assert store.gc(dry_run=True).blobs_deleted == 0

        with pytest.raises(ReadOnlyStoreError):
            store.draft("ds")
        with pytest.raises(ReadOnlyStoreError):
            v0.add_alias("best")
        with pytest.raises(ReadOnlyStoreError):
            v0.delete()
        with pytest.raises(ReadOnlyStoreError):
            store.gc()
        with pytest.raises(ReadOnlyStoreError):
            store.fsck(repair=True)
    assert _listing(src / "store") == before


def test_cli_reads_work_on_a_read_only_mount(
    read_only_view: tuple[Path, Path], tmp_path: Path
) -> None:
    src, view = read_only_view
    _build(src / "store")
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(cli, ["--store", str(view / "store"), *args])
        assert result.exit_code == 0, (args, result.output, result.exception)
        return result.output

    assert "ds" in run("ls")
    assert "ds:v1" in run("ls", "ds")
    assert run("cat", "ds:prod", "a.txt") == FILES["a.txt"].decode()
    run("verify", "ds:prod")
    run("checkout", "ds:prod", str(tmp_path / "out"))
    assert (tmp_path / "out" / "b" / "c.bin").read_bytes() == FILES["b/c.bin"]
    run("verify", "ds:prod", str(tmp_path / "out"))
    run("fsck")
    result = runner.invoke(cli, ["--store", str(view / "store"), "rm", "ds:v1", "-y"])
    assert result.exit_code != 0
    assert "read-only" in result.output


def test_a_read_only_reader_sees_a_live_writers_commits(
    read_only_view: tuple[Path, Path],
) -> None:
    """With a writer's -wal and -shm present, reads go through the WAL (mode=ro)."""
    src, view = read_only_view
    _build(src / "store")
    with castore.open(src / "store", durable=False) as writer:
        writer.catalog.execute("PRAGMA wal_autocheckpoint = 0")
        finalize(writer, "ds", {"a.txt": b"three"})
        with castore.open(view / "store") as reader:
            assert reader.get("ds:v2").read_bytes("a.txt") == b"three"
            assert not reader.catalog.immutable


def test_unmerged_wal_without_shm_is_refused_not_skipped(
    read_only_view: tuple[Path, Path],
) -> None:
    """immutable=1 would skip commits still in the -wal: refuse instead of showing less."""
    src, view = read_only_view
    _build(src / "store")
    copy = src / "copy"
    conn = sqlite3.connect(str(src / "store" / "catalog.db"), isolation_level=None)
    try:
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        with castore.open(src / "store", durable=False) as writer:
            writer.catalog.execute("PRAGMA wal_autocheckpoint = 0")
            finalize(writer, "ds", {"a.txt": b"three"})
            shutil.copytree(src / "store", copy)  # as a crash would leave it
    finally:
        conn.close()
    (copy / "catalog.db-shm").unlink()
    assert (copy / "catalog.db-wal").stat().st_size > 0
    with pytest.raises(ReadOnlyStoreError, match=r"catalog\.db-wal"):
        castore.open(view / "copy")
