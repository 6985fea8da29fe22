"""The one durable-write recipe (restic, git): temp beside the target, fsync, publish, fsync dir.

Every file castore publishes goes through here, so faults can be injected in one place.
"""

from __future__ import annotations

import errno
import itertools
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from castore.errors import OutOfSpaceError

if TYPE_CHECKING:
    import ctypes

__all__ = [
    "create_readonly",
    "durable_write",
    "fsync_dir",
    "publish_noclobber",
    "removing_on_error",
    "syncfs",
    "translate_oserror",
    "unique_tmp",
    "write_all",
]

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


#: A random token drawn once per process, and a counter: temp names stay unguessable without
#: asking the kernel for randomness per name (5% of the time of adding many small files).
_TOKEN = secrets.token_hex(8)
_COUNTER = itertools.count()


def unique_tmp(directory: str | Path, suffix: str = ".tmp") -> Path:
    """A fresh, unguessable temp file name inside ``directory`` (not created).

    The process id tells processes apart (a forked child keeps the parent's token but not
    its pid); the counter tells this process's names apart.
    """
    return Path(directory) / f".{os.getpid()}-{_TOKEN}-{next(_COUNTER)}{suffix}"


def fsync_dir(directory: str | Path) -> None:
    """fsync a directory so that entries created or removed in it are durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_libc: ctypes.CDLL | None = None


def syncfs(path: str | Path) -> None:
    """Flush every dirty page of the filesystem holding ``path`` (one call for many files).

    Falls back to ``os.sync()`` where ``syncfs(2)`` is unavailable.
    """
    # ctypes is imported here, not at the top: with ctypes.util (shutil, subprocess) it costs
    # every command ~8 ms, and only a batched sync needs it.
    import ctypes
    import ctypes.util

    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        _libc = ctypes.CDLL(name, use_errno=True) if name else ctypes.CDLL(None, use_errno=True)
    func = getattr(_libc, "syncfs", None)
    if func is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if func(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)


_NOT_COMMITTED = "nothing was committed; free some space (castore gc can help) and try again"


def translate_oserror(
    exc: OSError, path: object = None, *, outcome: str = _NOT_COMMITTED
) -> Exception:
    """Turn a disk-full ``OSError`` into :class:`OutOfSpaceError`; return others unchanged.

    Args:
        exc: the error.
        path: the file or directory being written (default: the error's own filename).
        outcome: what the caller's operation left behind, and what to do.
    """
    if exc.errno in _NO_SPACE:
        where = path or exc.filename
        return OutOfSpaceError(
            f"no space left on the device holding {str(where)!r}: {outcome}", path=where
        )
    return exc


@contextmanager
def removing_on_error(tmp: Path) -> Iterator[None]:
    try:
        yield
    except BaseException as exc:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise translate_oserror(exc, tmp.parent) from exc
        raise


def create_readonly(tmp: Path, mode: int) -> int:
    """Create the new file ``tmp`` read-only (0o444) and open it with ``mode``.

    Creates a missing parent directory (a ``tmp/`` spread directory removed by hand).
    """
    flags = mode | os.O_CREAT | os.O_EXCL
    try:
        return os.open(tmp, flags, 0o444)
    except FileNotFoundError:
        tmp.parent.mkdir(parents=True, exist_ok=True)
        return os.open(tmp, flags, 0o444)


def write_all(fd: int, data: bytes | memoryview) -> int:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less); return its length."""
    view = memoryview(data)
    total = len(view)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    return total


def publish_noclobber(tmp: str | Path, final: str | Path, *, make_dirs: bool = False) -> bool:
    """Link ``tmp`` to ``final`` unless ``final`` exists; always remove ``tmp``.

    The one no-overwrite publish (git's ``finalize_object_file``): blobs and configuration
    files both go through it.

    Args:
        tmp: the written (and, where durable, fsynced) temp file.
        final: the published name.
        make_dirs: create ``final``'s missing parent directory (a blob shard) and retry.

    Returns:
        True if ``final`` was created, False if it already existed (the dedup path: never
        overwrite a published file).
    """
    try:
        return _link_once(tmp, final, make_dirs=make_dirs)
    except OSError as exc:
        # a new shard directory (or a full directory block) on a full disk
        out = translate_oserror(exc, os.path.dirname(final))
        if out is exc:
            raise
        raise out from exc
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def _link_once(tmp: str | Path, final: str | Path, *, make_dirs: bool) -> bool:
    try:
        os.link(tmp, final)
    except FileExistsError:
        return False
    except FileNotFoundError:
        if not make_dirs or not os.path.exists(tmp):
            raise
        os.makedirs(os.path.dirname(final), exist_ok=True)
        try:
            os.link(tmp, final)
        except FileExistsError:
            return False
    return True


def durable_write(
    path: str | Path, data: bytes, *, overwrite: bool = True, durable: bool = True
) -> bool:
    """Write ``data`` to ``path`` atomically and durably.

    Args:
        path: the final file.
        data: its whole content (small files only: configs, refs).
        overwrite: replace an existing file (``os.replace``); with False, publish with no
            overwrite and return False if the file already exists.
        durable: fsync the file and its directory.

    Returns:
        True if ``path`` now holds ``data`` written by this call.
    """
    path = Path(path)
    tmp = unique_tmp(path.parent)
    with removing_on_error(tmp):
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
            created = True
        else:
            created = publish_noclobber(tmp, path)
    if durable:
        fsync_dir(path.parent)
    return created
