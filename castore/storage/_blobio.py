"""Low-level helpers of the blob writer: reusable buffers, full reads and the kernel copy.

Private to :mod:`castore.storage`; :mod:`castore.storage.blobs` composes them.
"""

from __future__ import annotations

import errno
import mmap
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from castore import _faults
from castore.storage.fsutil import create_readonly, removing_on_error
from castore.storage.hashing import CHUNK_SIZE, Hasher

__all__ = [
    "KERNEL_COPY",
    "KERNEL_MIN",
    "changed",
    "chunk_buffer",
    "copy_in_kernel",
    "copy_to_new_file",
    "is_hex",
    "read_exact",
    "read_full",
]

#: Files at least this large that are stored raw are copied in the kernel (copy_file_range).
KERNEL_MIN = 8 * 1024 * 1024
KERNEL_COPY = hasattr(os, "copy_file_range")
#: copy_file_range errors meaning "not between these files": fall back to read/write.
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM}
_HEX = frozenset("0123456789abcdef")

_local = threading.local()


def chunk_buffer() -> memoryview:
    """This thread's reusable read buffer (allocating 4 MiB per small file costs more than
    reading it)."""
    view: memoryview | None = getattr(_local, "buffer", None)
    if view is None:
        view = _local.buffer = memoryview(bytearray(CHUNK_SIZE))
    return view


def read_full(stream: BinaryIO, view: memoryview) -> int:
    """Fill ``view`` from ``stream`` as far as it goes; 0 only at EOF."""
    total = 0
    readinto = getattr(stream, "readinto", None)
    while total < len(view):
        if readinto is not None:
            n = readinto(view[total:])
        else:
            data = stream.read(len(view) - total)
            n = len(data)
            view[total : total + n] = data
        if not n:
            break
        total += n
    return total


def read_exact(read: Callable[[int], bytes], n: int) -> bytes:
    """Up to ``n`` bytes from ``read``, fewer only at EOF."""
    parts: list[bytes] = []
    want = n
    while want:
        data = read(want)
        if not data:
            break
        parts.append(data)
        want -= len(data)
    return b"".join(parts)


def changed(a: os.stat_result, b: os.stat_result) -> bool:
    """True when a file's size, times or inode differ between two stats (it was written)."""
    return (a.st_size, a.st_mtime_ns, a.st_ctime_ns, a.st_ino) != (
        b.st_size,
        b.st_mtime_ns,
        b.st_ctime_ns,
        b.st_ino,
    )


def is_hex(name: str) -> bool:
    """True for a non-empty string of lowercase hex digits."""
    return bool(name) and _HEX.issuperset(name)


def copy_in_kernel(src: int, dst: int, hasher: Hasher) -> int | None:
    """Copy all of ``src`` into ``dst`` inside the kernel, hashing the copied bytes.

    ``copy_file_range`` copies each chunk; the chunk is then hashed from ``dst``'s pages through
    a read-only ``mmap``, so the digest is of exactly the stored bytes. ``dst`` must be open for
    reading and writing.

    Returns:
        The bytes copied, or None (nothing copied) when the kernel cannot copy between these
        two files (e.g. across filesystems): the caller falls back to read/write.
    """
    total = 0
    while True:
        try:
            n = os.copy_file_range(src, dst, CHUNK_SIZE, total, total)
        except OSError as exc:
            if total == 0 and exc.errno in _NO_KERNEL_COPY:
                return None
            raise
        if not n:
            break
        start = total - total % mmap.ALLOCATIONGRANULARITY
        length = total + n - start
        with (
            mmap.mmap(dst, length, access=mmap.ACCESS_READ, offset=start) as m,
            memoryview(m) as view,
        ):
            hasher.update(view[total - start :])
        total += n
    return total if total else None


def copy_to_new_file(src: int, tmp: Path, hasher: Hasher, *, sync: bool) -> int | None:
    """Copy all of ``src`` into the new read-only file ``tmp`` in the kernel (see
    :func:`copy_in_kernel`), fsynced when ``sync``; None (and no ``tmp``) when the kernel
    cannot copy between the two files."""
    with removing_on_error(tmp):
        fd = create_readonly(tmp, os.O_RDWR)
        try:
            total = copy_in_kernel(src, fd, hasher)
            if total is not None:
                _faults.point("blob.tmp_written")
                if sync:
                    os.fsync(fd)
                    _faults.point("blob.fsynced")
        finally:
            os.close(fd)
    if total is None:
        os.unlink(tmp)
    return total
