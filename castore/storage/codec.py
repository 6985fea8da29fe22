"""Per-blob codec: raw or one zstd frame, decided from a sample of the content.

Raw blobs can be hard-linked, symlinked or reflinked at checkout; zstd blobs save space. Stored
zstd data is only ever decoded by streaming with a window limit and an output cap, so a
decompression bomb raises instead of exhausting memory or disk.
"""

from __future__ import annotations

from typing import BinaryIO, Literal

import zstandard

from castore.errors import IntegrityError

__all__ = [
    "MAX_WINDOW_SIZE",
    "MIN_SAVING",
    "SAMPLE_SIZE",
    "ZSTD_MAGIC",
    "choose_codec",
    "open_decoder",
]

Codec = Literal["raw", "zstd"]

#: How much of the start of the content is tried before choosing a codec.
SAMPLE_SIZE = 256 * 1024
#: zstd must save at least this fraction of the sample, else the blob is stored raw.
MIN_SAVING = 0.10
#: Largest zstd window accepted when decoding (castore writes frames with far smaller windows).
MAX_WINDOW_SIZE = 1 << 27
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def choose_codec(sample: bytes | memoryview, *, compression: str, level: int) -> Codec:
    """``"zstd"`` when compressing ``sample`` saves at least :data:`MIN_SAVING`, else ``"raw"``."""
    if compression == "none" or len(sample) < 64:
        return "raw"
    head = bytes(sample[:SAMPLE_SIZE])
    compressed = zstandard.ZstdCompressor(level=level).compress(head)
    return "zstd" if len(compressed) <= len(head) * (1 - MIN_SAVING) else "raw"


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
