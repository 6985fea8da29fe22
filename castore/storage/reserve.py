"""The space reserve: a pre-allocated file a store releases when its disk is full.

On a 100 % full disk nothing can free space if freeing needs space first: opening the
catalogue maps a ``-shm`` file, and a delete grows the ``-wal`` before it commits (the blob
files go only after COMMIT, so deleting them first is not an option). The store keeps
``STORE/reserve``, :data:`RESERVE_BYTES` of allocated blocks made while space was plentiful;
when the catalogue meets a full disk, the operation releases it and tries once more
(``Parts.freeing_space``). gc makes it again once it has freed space.

The reserve is an optimisation, like the maintenance lock: a store without one works, it
only cannot dig itself out of a full disk.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["RESERVE_BYTES", "RESERVE_NAME", "ensure_reserve", "release_reserve"]

RESERVE_NAME = "reserve"
#: Room for the ``-shm`` (32 KiB) and the ``-wal`` of a delete of some thousand entries.
RESERVE_BYTES = 1 << 20
#: The reserve is only made while this many times its size stays free beside it.
_MARGIN = 4


def ensure_reserve(root: Path, size: int = RESERVE_BYTES) -> bool:
    """Make ``root/reserve`` if it is missing and space is plentiful; never raises.

    Returns:
        True when the reserve exists afterwards.
    """
    final = root / RESERVE_NAME
    if final.exists():
        return True
    try:
        stat = os.statvfs(root)
        if stat.f_bavail * stat.f_frsize < _MARGIN * size:
            return False  # taking it now would fill the disk it is meant to rescue
        tmp = root / f".{RESERVE_NAME}-{secrets.token_hex(6)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                os.posix_fallocate(fd, 0, size)  # real blocks, not a sparse file
            except OSError:
                os.write(fd, bytes(size))
            os.link(tmp, final)  # no overwrite: another process may have made it
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    except FileExistsError:
        return True
    except OSError:
        return False
    return True


def release_reserve(root: Path) -> bool:
    """Delete ``root/reserve``; True when there was one to free."""
    try:
        os.unlink(root / RESERVE_NAME)
    except FileNotFoundError:
        return False
    except OSError:
        return False
    return True
