"""On a 100 % full disk, ``rm`` and ``gc`` still free space (issue 9, "Messages and leftovers").

The store lives on a small tmpfs (root only; skipped otherwise), which a filler file then
fills to the last byte. Opening the catalogue needs its ``-shm`` and a delete grows the
``-wal``, and blob files may only go after the COMMIT, so the store keeps a pre-allocated
reserve that it releases on a full disk (``castore.storage.reserve``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

import castore
from castore.cli import cli
from castore.storage.reserve import RESERVE_NAME
from tests.harness import finalize

BLOB = 600_000


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where = tmp_path / "fs"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr!r}")
    try:
        yield where
    finally:
        # Lazily if busy: a failing test may still hold files open through its traceback.
        if subprocess.run(["umount", str(where)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def _free(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def _fill(path: Path) -> None:
    """Write a file until not one more byte fits."""
    fd = os.open(path / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 16, 1 << 12, 1):
            block = bytes(chunk)
            while True:
                try:
                    os.write(fd, block)
                except OSError:
                    break
    finally:
        os.close(fd)
    assert _free(path) == 0


def test_rm_and_gc_free_space_on_a_full_disk(small_fs: Path) -> None:
    root = small_fs / "store"
    with castore.init(root) as store:
        for i in range(3):
            finalize(store, "ds", {"big.bin": os.urandom(BLOB), "n.txt": b"%d" % i})
    assert (root / RESERVE_NAME).is_file()
    _fill(small_fs)

    runner = CliRunner()
    result = runner.invoke(cli, ["--store", str(root), "rm", "ds:v0", "-y"])
    assert result.exit_code == 0, (result.output, result.exception)
    result = runner.invoke(cli, ["--store", str(root), "gc", "--grace", "0s", "-y"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert _free(small_fs) >= BLOB

    with castore.open(root) as store:
        assert [v.ref for v in store.versions(sort="number").items] == ["ds:v1", "ds:v2"]
        assert store.fsck().ok
        for v in store.versions().items:
            assert v.verify().ok


def test_python_delete_and_gc_on_a_full_disk(small_fs: Path) -> None:
    root = small_fs / "store"
    with castore.init(root) as store:
        for i in range(3):
            finalize(store, "ds", {"big.bin": os.urandom(BLOB), "n.txt": b"%d" % i})
    _fill(small_fs)
    with castore.open(root) as store:
        store.get("ds:v1").delete()
        report = store.gc(grace=timedelta(0))
        assert report.bytes_freed >= BLOB
        assert store.fsck().ok
    (small_fs / "filler").unlink()
    with castore.open(root) as store:
        store.gc()  # with room to spare again, the reserve is taken back
    assert (root / RESERVE_NAME).is_file()
