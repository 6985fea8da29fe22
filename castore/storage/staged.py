"""A staged blob (hashed and written, not yet published) and reading one back."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from castore.digest import Digest
from castore.errors import IntegrityError
from castore.storage._blobio import read_exact
from castore.storage.codec import Codec, open_decoder
from castore.storage.fsutil import create_readonly, removing_on_error, write_all
from castore.storage.hashing import CHUNK_SIZE, Source

__all__ = [
    "InMemory", "PutResult", "StagedBlob", "decoded", "decoded_bytes", "same_content", "spill",
]


@dataclass(frozen=True)
class StagedBlob:
    """Content written to a temp file in ``tmp/``, hashed, not yet published."""

    digest: Digest
    size: int
    codec: Codec
    stored_size: int
    tmp: Path
    source_stat: os.stat_result | None = None
    #: a small blob's stored bytes, held in memory for a pack (then ``tmp`` was never written)
    data: bytes | None = None


@dataclass(frozen=True)
class PutResult:
    """A blob now in the store; ``new`` is False when it was already there (dedup)."""

    digest: Digest
    size: int
    codec: Codec
    stored_size: int
    new: bool


def spill(staged: StagedBlob, sync: bool) -> StagedBlob:
    """Write an in-memory staged blob to its temp file (to be published loose, on its own)."""
    assert staged.data is not None
    with removing_on_error(staged.tmp):
        fd = create_readonly(staged.tmp, os.O_WRONLY)
        try:
            write_all(fd, staged.data)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
    return StagedBlob(staged.digest, staged.size, staged.codec, staged.stored_size,
                      staged.tmp, staged.source_stat)


def decoded_bytes(stored: bytes, codec: Codec, cap: int | None, name: str = "staged") -> Source:
    """A decoder over stored bytes held in memory."""
    if codec == "raw":
        return io.BytesIO(stored)
    return open_decoder(io.BytesIO(stored), cap=cap, name=name)


def decoded(path: Path, codec: Codec, cap: int | None) -> Source:
    """A decoder over a stored file."""
    fh = open(path, "rb")  # noqa: SIM115 - ownership passes to the decoder or caller
    if codec == "raw":
        return fh
    return open_decoder(fh, cap=cap, name=path.name)


def same_content(staged: StagedBlob, path: Path, codec: Codec) -> bool:
    """True when a staged blob decodes to the same bytes as a stored file."""
    cap = staged.size
    new = (decoded_bytes(staged.data, staged.codec, cap)
           if staged.data is not None else decoded(staged.tmp, staged.codec, cap))
    old = decoded(path, codec, cap)
    try:
        while True:
            a = read_exact(new.read, CHUNK_SIZE)
            b = read_exact(old.read, CHUNK_SIZE)
            if a != b:
                return False
            if not a:
                return True
    except IntegrityError:
        return False
    finally:
        new.close()
        old.close()


class InMemory(io.RawIOBase):
    """A read-only, seekable raw stream over verified bytes (a packed blob's content)."""

    def __init__(self, load: Callable[[], bytes], size: int) -> None:
        self._load: Callable[[], bytes] | None = load
        self._view = memoryview(b"")
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._load is not None:  # read and checked whole at the first read
            self._view, self._load = memoryview(self._load()), None
        chunk = self._view[self._pos : self._pos + len(buffer)]
        n = len(chunk)
        memoryview(buffer).cast("B")[:n] = chunk
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos
