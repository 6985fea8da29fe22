"""Hash algorithms: ``xxh3-128`` (default), ``blake3`` (optional extra) and ``sha256``."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from castore.digest import ALGORITHMS, Digest
from castore.errors import ConfigurationError

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_ALGORITHM",
    "CRYPTOGRAPHIC",
    "Hasher",
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
