"""Readers of stored blobs: a loose file, a packed blob's bytes, a staged blob.

Every reader checks digest and size: streamed through, at the end; after a seek, the whole
content once (:mod:`castore.storage.seekable`). :func:`read_packed` is checkout's hot path for
small blobs: one ranged read of an open pack, one decode, one hash.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from castore.errors import IntegrityError
from castore.storage.codec import Codec, content_size, decode_whole
from castore.storage.hashing import CHUNK_SIZE, Hasher, VerifyingReader
from castore.storage.packs import PackEntry, PackIndex
from castore.storage.seekable import SeekableReader, buffered
from castore.storage.staged import InMemory, StagedBlob, decoded, decoded_bytes

__all__ = ["decode_checked", "open_in_memory", "open_staged", "open_stored_file", "read_packed"]


def open_stored_file(path: Path, codec: Codec, digest: str, size: int | None) -> io.BufferedReader:
    """A seekable, checked reader of a loose blob file (``size``: the expected content size)."""
    if size is None:
        size = os.stat(path).st_size if codec == "raw" else content_size(path)
    if size < 0:
        # A zstd blob without its size trailer: stream it (not seekable) as before.
        stream = VerifyingReader(
            decoded(path, codec, None), digest=digest, size=-1, what=f"blob {digest}"
        )
        return io.BufferedReader(stream, CHUNK_SIZE)
    cap = size
    raw = SeekableReader(
        str(path),
        zstd=codec == "zstd",
        open_source=lambda: decoded(path, codec, cap),
        digest=digest,
        size=size,
        what=f"blob {digest}",
    )
    return buffered(raw)


def open_in_memory(
    stored: bytes, entry: PackEntry, digest: str, size: int | None
) -> io.BufferedReader:
    """A seekable reader of a packed blob's stored bytes, decoded and checked at first read."""
    cap = entry.size if size is None else size

    def load() -> bytes:  # at the first read: decoded and checked whole, kept in memory
        with VerifyingReader(decoded_bytes(stored, entry.codec, cap, digest), digest=digest,
                             size=cap, what=f"blob {digest}") as reader:
            return reader.readall()

    return io.BufferedReader(InMemory(load, cap))


def read_packed(
    index: PackIndex, entry: PackEntry, digest: str, size: int, hasher: Hasher
) -> bytes:
    """A packed blob's content, checked (``hasher``: a fresh one of the store's algorithm).

    Raises:
        FileNotFoundError: the pack is gone.
        IntegrityError: the content does not match ``digest`` and ``size``.
    """
    return decode_checked(index.read(entry), entry, digest, size, hasher)


def decode_checked(
    stored: bytes, entry: PackEntry, digest: str, size: int, hasher: Hasher
) -> bytes:
    """The content of a packed blob's ``stored`` bytes, checked against ``digest`` and ``size``.

    Raises:
        IntegrityError: the content does not match.
    """
    data = stored if entry.codec == "raw" else decode_whole(stored, size=size, name=digest)
    hasher.update(data)
    if len(data) != size or digest.partition(":")[2] != hasher.hexdigest():
        raise IntegrityError(
            f"blob {digest} is damaged: its packed content does not match its digest "
            "(run castore fsck)",
            digest=digest,
        )
    return data


def open_staged(staged: StagedBlob) -> io.BufferedReader:
    """A checked reader of a staged (not yet published) blob's content."""
    source = (decoded_bytes(staged.data, staged.codec, staged.size)
              if staged.data is not None else
              decoded(staged.tmp, staged.codec, staged.size))
    raw = VerifyingReader(
        source,
        digest=staged.digest, size=staged.size, what=f"staged blob {staged.digest}",
    )
    return io.BufferedReader(raw, max(8192, min(CHUNK_SIZE, staged.size + 1)))
