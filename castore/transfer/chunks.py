"""A file-like reader over a stream of byte chunks from a remote (S3, an OCI registry)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

from castore.errors import RemoteError

__all__ = ["ChunkReader"]


class ChunkReader(io.RawIOBase):
    """Reads ``chunks`` as one file; an error mid-stream becomes :class:`RemoteError` naming
    ``remote`` and ``what``. ``on_close`` releases the underlying response, if any."""

    def __init__(
        self,
        chunks: Iterable[Any],
        what: str,
        remote: str,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._chunks = iter(chunks)
        self._buffer = memoryview(b"")
        self._what = what
        self._remote = remote
        self._on_close = on_close

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._buffer:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                return 0
            except Exception as exc:  # the client library's errors, raised mid-stream
                raise RemoteError(
                    f"remote {self._remote}: reading {self._what} failed: {exc}",
                    remote=self._remote,
                ) from exc
            self._buffer = memoryview(bytes(chunk))
        n = min(len(buffer), len(self._buffer))
        buffer[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def close(self) -> None:
        if self._on_close is not None and not self.closed:
            self._on_close()
        super().close()
