"""Per-blob codec: raw or one zstd frame, decided from a sample of the content.

Raw blobs can be hard-linked, symlinked or reflinked at checkout; zstd blobs save space. Stored
zstd data is only ever decoded by streaming with a window limit and an output cap, so a
decompression bomb raises instead of exhausting memory or disk.
"""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path
from typing import BinaryIO

import zstandard

from castore.errors import IntegrityError

# The one definition of the codec names lives with the records (BlobStat, L1), which storage
# may import and which may not import storage; this module is where storage code takes it from.
from castore.models import DEFAULT_MIN_SAVING, Codec

__all__ = [
    "MAX_WINDOW_SIZE",
    "MIN_SAVING",
    "SAMPLE_SIZE",
    "TRAILER",
    "ZSTD_MAGIC",
    "Codec",
    "choose_codec",
    "compressor",
    "content_size",
    "decode_whole",
    "encode_whole",
    "open_decoder",
    "trailer",
]

#: How much of the start of the content is tried before choosing a codec.
SAMPLE_SIZE = 256 * 1024
#: zstd must save at least this fraction of the sample, else the blob is stored raw: the
#: default of a store's ``min_saving`` setting, defined with the setting's record.
MIN_SAVING = DEFAULT_MIN_SAVING
#: Largest zstd window accepted when decoding (castore writes frames with far smaller windows).
MAX_WINDOW_SIZE = 1 << 27
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: A zstd skippable frame closing every compressed blob: magic, length 8, content size (LE).
TRAILER = struct.Struct("<IIQ")
_TRAILER_MAGIC = 0x184D2A5C

_local = threading.local()


def choose_codec(
    sample: bytes | memoryview, *, compression: str, level: int, min_saving: float = MIN_SAVING
) -> Codec:
    """``"zstd"`` when compressing ``sample`` saves at least ``min_saving``, else ``"raw"``."""
    if compression == "none" or len(sample) < 64:
        return "raw"
    head = bytes(sample[:SAMPLE_SIZE])
    compressed = zstandard.ZstdCompressor(level=level).compress(head)
    return "zstd" if len(compressed) <= len(head) * (1 - min_saving) else "raw"


def trailer(size: int) -> bytes:
    """The skippable frame that records ``size`` (the content size) at the end of a blob."""
    return TRAILER.pack(_TRAILER_MAGIC, 8, size)


def encode_whole(
    content: bytes | memoryview, *, compression: str, level: int, min_saving: float
) -> tuple[Codec, bytes | memoryview]:
    """The codec and stored bytes of content held whole in memory: a zstd frame and its
    trailer where that saves ``min_saving``, else the content itself."""
    n = len(content)
    if compression == "zstd" and n >= 64:
        frame = compressor(level).compress(content)
        if len(frame) + TRAILER.size <= n * (1 - min_saving):
            return "zstd", frame + trailer(n)
    return "raw", content


def content_size(path: str | Path) -> int:
    """The content size recorded in a zstd blob's trailer (-1 if it has none)."""
    with open(path, "rb") as fh:
        try:
            fh.seek(-TRAILER.size, os.SEEK_END)
        except OSError:
            return -1
        magic, length, size = TRAILER.unpack(fh.read(TRAILER.size))
    return size if magic == _TRAILER_MAGIC and length == 8 else -1


def compressor(level: int, threads: int = 0) -> zstandard.ZstdCompressor:
    """This thread's zstd compressor for ``level`` (a compressor is reusable, not shareable).

    ``threads=-1`` gives a compressor that spreads one large frame over every core (zstd's
    own workers): text compresses ~1.6x faster on two cores (research/perf.md).
    """
    cache: dict[tuple[int, int], zstandard.ZstdCompressor] | None = getattr(
        _local, "compressors", None
    )
    if cache is None:
        cache = _local.compressors = {}
    cctx = cache.get((level, threads))
    if cctx is None:
        cctx = cache[level, threads] = zstandard.ZstdCompressor(
            level=level, write_content_size=True, threads=threads
        )
    return cctx


class _CappedDecoder:
    """Streams the decoded content of a zstd frame, refusing more than ``cap`` bytes."""

    def __init__(self, fh: BinaryIO, cap: int | None, name: str) -> None:
        dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW_SIZE)
        self._reader = dctx.stream_reader(fh, read_size=1 << 20, closefd=True)
        self._cap = cap
        self._out = 0
        self._name = name

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = 1 << 20
        if self._cap is not None:
            # Ask for one byte past the cap so an oversize frame is noticed.
            n = max(0, min(n, self._cap + 1 - self._out))
            if n == 0:
                return b""
        try:
            data = self._reader.read(n)
        except zstandard.ZstdError as exc:
            raise IntegrityError(
                f"blob {self._name} is not a valid zstd frame: {exc}", digest=self._name
            ) from exc
        self._out += len(data)
        if self._cap is not None and self._out > self._cap:
            raise IntegrityError(
                f"blob {self._name} decodes to more than the expected {self._cap} bytes "
                "(corrupt or hostile data)",
                digest=self._name,
            )
        return data

    def close(self) -> None:
        self._reader.close()  # type: ignore[no-untyped-call]


def open_decoder(fh: BinaryIO, *, cap: int | None, name: str) -> _CappedDecoder:
    """Wrap an open zstd blob file in a capped streaming decoder (takes ownership of ``fh``)."""
    return _CappedDecoder(fh, cap, name)


def decode_whole(stored: bytes, *, size: int, name: str) -> bytes:
    """The content of a small zstd blob held in memory, decoded in one call.

    The frame header's content size must be ``size`` (a frame claiming more is refused before
    anything is allocated); a frame without one is decoded with output capped at ``size + 1``.

    Raises:
        IntegrityError: not a valid frame, or it does not decode to ``size`` bytes.
    """
    dctx: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if dctx is None:
        dctx = _local.decompressor = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW_SIZE)
    try:
        declared = zstandard.frame_content_size(stored)
        if declared not in (-1, size):
            raise IntegrityError(
                f"blob {name} declares {declared} bytes of content, expected {size} "
                "(corrupt or hostile data)",
                digest=name,
            )
        data = dctx.decompress(stored, max_output_size=size + 1 if declared == -1 else 0)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"blob {name} is not a valid zstd frame: {exc}", digest=name) from exc
    if len(data) != size:
        raise IntegrityError(
            f"blob {name} decodes to {len(data)} bytes, expected {size}", digest=name
        )
    return data
