"""Hash algorithms: ``xxh3-128`` (default), ``blake3`` (optional extra) and ``sha256``."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from castore.digest import ALGORITHMS, Digest
from castore.errors import ConfigurationError, IntegrityError

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_ALGORITHM",
    "CRYPTOGRAPHIC",
    "Hasher",
    "VerifyingReader",
    "check_algorithm",
    "hash_bytes",
    "hash_file",
    "new_hasher",
]

DEFAULT_ALGORITHM = "xxh3-128"
#: Algorithms strong enough that equal digests mean equal content even against an adversary.
CRYPTOGRAPHIC = frozenset({"blake3", "sha256"})
#: Read size for streaming: large enough for throughput, small enough for bounded memory.
CHUNK_SIZE = 4 * 1024 * 1024


class Hasher(Protocol):
    """The part of the hashlib interface castore uses."""

    def update(self, data: bytes | memoryview, /) -> object: ...

    def hexdigest(self) -> str: ...


def _xxh3_128() -> Hasher:
    import xxhash

    return xxhash.xxh3_128()


def _blake3() -> Hasher:
    try:
        from blake3 import blake3
    except ImportError as exc:
        raise ConfigurationError(
            "hash algorithm 'blake3' needs the blake3 package: pip install 'castore[blake3]'"
        ) from exc
    return blake3()  # type: ignore[no-any-return,unused-ignore]


def _sha256() -> Hasher:
    return hashlib.sha256()


_FACTORIES: dict[str, Callable[[], Hasher]] = {
    "xxh3-128": _xxh3_128,
    "blake3": _blake3,
    "sha256": _sha256,
}
assert set(_FACTORIES) == set(ALGORITHMS)


def check_algorithm(algorithm: str) -> str:
    """Return ``algorithm`` if castore supports it (and it is installed), else raise.

    Raises:
        ConfigurationError: unknown algorithm, or its optional package is missing.
    """
    if algorithm not in _FACTORIES:
        raise ConfigurationError(
            f"unknown hash algorithm {algorithm!r}; choose one of {', '.join(_FACTORIES)}"
        )
    _FACTORIES[algorithm]()
    return algorithm


def new_hasher(algorithm: str) -> Hasher:
    """A fresh incremental hasher for ``algorithm``."""
    try:
        factory = _FACTORIES[algorithm]
    except KeyError:
        check_algorithm(algorithm)
        raise
    return factory()


def hash_bytes(algorithm: str, data: bytes | memoryview) -> Digest:
    """The digest of ``data``."""
    hasher = new_hasher(algorithm)
    hasher.update(data)
    return Digest.of(algorithm, hasher.hexdigest())


def hash_file(algorithm: str, path: str | Path) -> tuple[Digest, int]:
    """Stream ``path`` through the hasher; return its digest and size."""
    hasher = new_hasher(algorithm)
    size = 0
    buf = bytearray(CHUNK_SIZE)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(view):
            hasher.update(view[:n])
            size += n
    return Digest.of(algorithm, hasher.hexdigest()), size


class Source(Protocol):
    """What :class:`VerifyingReader` reads from: a file or a decoder."""

    def read(self, n: int, /) -> bytes: ...

    def close(self) -> None: ...


class VerifyingReader(io.RawIOBase):
    """Streams ``source`` and raises :class:`IntegrityError` unless it ends with ``digest``
    and ``size``: wrong bytes are never returned silently.

    Args:
        source: the bytes to check (closed with the reader).
        digest: the expected digest, or None to check the size only.
        size: the expected size, or -1 if unknown; reading past it raises at once.
        what: how to name the data in errors (``"blob xxh3-128:…"``, a path).
    """

    def __init__(self, source: Source, *, digest: str | None, size: int, what: str) -> None:
        super().__init__()
        self._source = source
        self._digest = digest
        self._size = size
        self._what = what
        self._hasher = new_hasher(Digest.parse(digest).algorithm) if digest else None
        self._seen = 0
        self._done = False

    @property
    def expected_size(self) -> int:
        """The expected size (-1 when unknown)."""
        return self._size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._done:
            return 0
        data = self._source.read(len(buffer))
        if not data:
            self._finish()
            return 0
        self._seen += len(data)
        if 0 <= self._size < self._seen:
            self._done = True
            raise IntegrityError(
                f"{self._what} holds more than its {self._size} bytes (run castore fsck)",
                digest=self._digest,
            )
        if self._hasher is not None:
            self._hasher.update(data)
        n = len(data)
        buffer[:n] = data
        return n

    def _finish(self) -> None:
        self._done = True
        actual = (
            Digest.of(Digest.parse(self._digest).algorithm, self._hasher.hexdigest())
            if self._digest and self._hasher
            else None
        )
        if (self._size >= 0 and self._seen != self._size) or actual != self._digest:
            raise IntegrityError(
                f"{self._what} is damaged: read {self._seen} bytes"
                + (f" hashing to {actual}" if actual else "")
                + f", expected {self._size} bytes"
                + (f" with digest {self._digest}" if self._digest else "")
                + " (run castore fsck)",
                digest=self._digest,
            )

    def close(self) -> None:
        if not self.closed:
            self._source.close()
        super().close()
