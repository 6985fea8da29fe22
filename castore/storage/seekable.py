"""A seekable, verifying reader of one blob (raw or zstd) or referenced file.

How every returned byte is checked (docs/concepts.md, "Seeking and verification"):

- **Sequential reads from the start** stream exactly as before: the content is hashed as it
  passes and the digest and size are checked at the end of the stream (``IntegrityError``
  there, as for any streaming read).
- **A ranged read** (any read after a seek away from the streaming position) first needs the
  blob *verified*: one full pass over its content checks the digest and size and, in the same
  pass, records an xxh3-128 digest of every :data:`SEEK_CHUNK` bytes of the content. A
  damaged blob raises ``IntegrityError`` before any ranged byte is returned.
- **Every ranged read** then reads whole chunks and checks each against its chunk digest, so
  damage that happens after the verification is caught too.
- **Verified once per process**: the chunk digests are kept in a bounded in-memory cache keyed
  by the digest and the file's device, inode, size, mtime and ctime, so another ``open()`` of
  the same unchanged blob seeks without the full pass; a streaming read that reaches the end
  fills the cache as well. A file written since (new mtime or ctime) is verified again.

Raw blobs are read with ``os.pread``. zstd blobs (one frame) are decoded forward from the
current decoder position; a backward seek restarts the decoder from the start of the blob, so
a random read costs up to one decode of the content before it (docs/concepts.md states it).
"""

from __future__ import annotations

import io
import os
import threading
from collections import OrderedDict
from collections.abc import Callable

import xxhash

from castore.errors import IntegrityError
from castore.storage.hashing import Source, VerifyingReader

__all__ = ["SEEK_CHUNK", "SeekableReader", "buffered", "forget_verified"]

#: Ranged reads read and check whole chunks of this many content bytes.
SEEK_CHUNK = 64 * 1024
#: At most this many chunk digests (16 bytes each) are cached per process: 4 Mi chunks of
#: 64 KiB cover 256 GiB of verified content in 64 MiB of memory.
CACHE_CHUNKS = 4 * 1024 * 1024

#: readall() reads at most this much per call.
READ_ALL_PIECE = 4 * 1024 * 1024

_StatKey = tuple[str, int, int, int, int, int]


class _VerifiedCache:
    """Chunk digests of blobs verified in this process, least recently used dropped first."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._entries: OrderedDict[_StatKey, list[bytes]] = OrderedDict()
        self._chunks = 0
        self._lock = threading.Lock()

    def get(self, key: _StatKey) -> list[bytes] | None:
        with self._lock:
            chunks = self._entries.get(key)
            if chunks is not None:
                self._entries.move_to_end(key)
            return chunks

    def put(self, key: _StatKey, chunks: list[bytes]) -> None:
        if len(chunks) > self._limit:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._chunks -= len(old)
            self._entries[key] = chunks
            self._chunks += len(chunks)
            while self._chunks > self._limit:
                _, dropped = self._entries.popitem(last=False)
                self._chunks -= len(dropped)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._chunks = 0


_VERIFIED = _VerifiedCache(CACHE_CHUNKS)


def forget_verified() -> None:
    """Empty this process's cache of verified blobs (tests; after repairing a store)."""
    _VERIFIED.clear()


class _ChunkDigests:
    """Splits a stream of content into :data:`SEEK_CHUNK` pieces and digests each."""

    def __init__(self) -> None:
        self.digests: list[bytes] = []
        self._hasher = xxhash.xxh3_128()
        self._filled = 0

    def update(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            take = min(len(view), SEEK_CHUNK - self._filled)
            self._hasher.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == SEEK_CHUNK:
                self._close_chunk()

    def _close_chunk(self) -> None:
        self.digests.append(self._hasher.digest())
        self._hasher.reset()
        self._filled = 0

    def finish(self) -> list[bytes]:
        if self._filled:
            self._close_chunk()
        return self.digests


class SeekableReader(io.RawIOBase):
    """A seekable raw reader of verified content (wrap it in ``io.BufferedReader``).

    Args:
        path: the file holding the content (a blob, or a referenced file).
        zstd: True when the file is one zstd frame (decoded forward), False for raw content.
        open_source: opens a fresh decoded stream of the content from its start.
        digest: the expected digest of the content, or None to check the size only.
        size: the expected content size.
        what: how to name the content in errors.
    """

    def __init__(
        self,
        path: str,
        *,
        zstd: bool,
        open_source: Callable[[], Source],
        digest: str | None,
        size: int,
        what: str,
    ) -> None:
        super().__init__()
        self._zstd = zstd
        self._open_source = open_source
        self._digest = digest
        self._size = size
        self._what = what
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            st = os.fstat(self._fd)
            self._key: _StatKey = (
                digest or f"size:{size}",
                st.st_dev,
                st.st_ino,
                st.st_size,
                st.st_mtime_ns,
                st.st_ctime_ns,
            )
            self._chunks = _VERIFIED.get(self._key)
            self._pos = 0
            # Streaming phase: reads at the streaming position go through a VerifyingReader.
            self._stream: VerifyingReader | None = None
            self._stream_pos = 0
            self._stream_chunks: _ChunkDigests | None = None
            # Ranged phase (zstd): a decoder and the content offset it stands at.
            self._decoder: Source | None = None
            self._decoder_pos = 0
            self._last: tuple[int, bytes] | None = None
        except BaseException:
            os.close(self._fd)
            raise

    @property
    def expected_size(self) -> int:
        """The content size."""
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._checkClosed()
        if whence == os.SEEK_SET:
            pos = offset
        elif whence == os.SEEK_CUR:
            pos = self._pos + offset
        elif whence == os.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        self._checkClosed()
        want = len(buffer)
        if want == 0 or self._pos >= self._size:
            if self._chunks is None and self._pos == self._stream_pos == self._size:
                # A sequential reader at the end: finish the stream so the digest is checked.
                self._stream_read(buffer)
            return 0
        if self._chunks is None and self._pos == self._stream_pos:
            return self._stream_read(buffer)
        return self._ranged_read(buffer)

    # -- streaming (sequential from the start) -----------------------------------------------

    def _stream_read(self, buffer: memoryview) -> int:
        if self._stream is None:
            self._stream = VerifyingReader(
                self._open_source(), digest=self._digest, size=self._size, what=self._what
            )
            self._stream_chunks = _ChunkDigests()
        n = self._stream.readinto(buffer)
        assert self._stream_chunks is not None
        if n:
            self._stream_chunks.update(buffer[:n])
            self._stream_pos += n
            self._pos += n
            if self._stream_pos == self._size:
                self._stream_end()
        else:
            self._stream_end()
        return n

    def _stream_end(self) -> None:
        """Read the stream to its end (checking the digest), then cache the chunk digests."""
        assert self._stream is not None and self._stream_chunks is not None
        if self._stream.readinto(memoryview(bytearray(1))):
            raise IntegrityError(  # pragma: no cover - VerifyingReader raises first
                f"{self._what} holds more than its {self._size} bytes", digest=self._digest
            )
        self._chunks = self._stream_chunks.finish()
        _VERIFIED.put(self._key, self._chunks)
        self._drop_stream()

    def _drop_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
        self._stream = None
        self._stream_chunks = None

    # -- ranged reads ----------------------------------------------------------------------

    def _verify(self) -> list[bytes]:
        """One full pass: check digest and size, record the chunk digests."""
        self._drop_stream()
        chunks = _ChunkDigests()
        reader = VerifyingReader(
            self._open_source(), digest=self._digest, size=self._size, what=self._what
        )
        buf = memoryview(bytearray(1 << 20))
        try:
            while n := reader.readinto(buf):
                chunks.update(buf[:n])
        finally:
            reader.close()
        digests = chunks.finish()
        _VERIFIED.put(self._key, digests)
        return digests

    def _ranged_read(self, buffer: memoryview) -> int:
        if self._chunks is None:
            self._chunks = self._verify()
        done = 0
        while done < len(buffer) and self._pos < self._size:
            index, offset = divmod(self._pos, SEEK_CHUNK)
            chunk = self._chunk(index)
            take = min(len(buffer) - done, len(chunk) - offset)
            buffer[done : done + take] = chunk[offset : offset + take]
            done += take
            self._pos += take
            if done and len(buffer) <= SEEK_CHUNK:
                break  # a short read (allowed for raw IO): a small read costs one chunk
        return done

    def _chunk(self, index: int) -> bytes:
        """Chunk ``index`` of the content, checked against its digest."""
        if self._last is not None and self._last[0] == index:
            return self._last[1]
        start = index * SEEK_CHUNK
        length = min(SEEK_CHUNK, self._size - start)
        data = self._read_zstd(start, length) if self._zstd else self._pread(start, length)
        assert self._chunks is not None
        if (
            len(data) != length
            or index >= len(self._chunks)
            or xxhash.xxh3_128_digest(data) != self._chunks[index]
        ):
            raise IntegrityError(
                f"{self._what} changed since it was verified: bytes {start}–{start + length} "
                "differ (run castore fsck)",
                digest=self._digest,
            )
        self._last = (index, data)
        return data

    def _pread(self, start: int, length: int) -> bytes:
        parts: list[bytes] = []
        got = 0
        while got < length:
            data = os.pread(self._fd, length - got, start + got)
            if not data:
                break
            parts.append(data)
            got += len(data)
        return b"".join(parts)

    def _read_zstd(self, start: int, length: int) -> bytes:
        if self._decoder is None or self._decoder_pos > start:
            if self._decoder is not None:
                self._decoder.close()
            self._decoder = self._open_source()
            self._decoder_pos = 0
        while self._decoder_pos < start:
            skipped = self._decoder.read(min(1 << 20, start - self._decoder_pos))
            if not skipped:
                return b""
            self._decoder_pos += len(skipped)
        parts: list[bytes] = []
        got = 0
        while got < length:
            data = self._decoder.read(length - got)
            if not data:
                break
            parts.append(data)
            got += len(data)
        self._decoder_pos += got
        return b"".join(parts)

    def readall(self) -> bytes:
        """The rest of the content, read in large pieces (RawIOBase's default reads 8 KiB)."""
        parts: list[bytes] = []
        buf = memoryview(bytearray(max(1, min(READ_ALL_PIECE, self._size - self._pos + 1))))
        while n := self.readinto(buf):
            parts.append(bytes(buf[:n]))
        return b"".join(parts)

    def close(self) -> None:
        if not self.closed:
            try:
                self._drop_stream()
                if self._decoder is not None:
                    self._decoder.close()
                    self._decoder = None
            finally:
                os.close(self._fd)
        super().close()


def buffered(raw: SeekableReader) -> io.BufferedReader:
    """``raw`` behind a buffer of one chunk: a random small read then costs one chunk, not the
    4 MiB that sequential copies use (they read past the buffer anyway)."""
    return io.BufferedReader(raw, max(8192, min(SEEK_CHUNK, raw.expected_size + 1)))
