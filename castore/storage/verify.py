"""Re-hash many blobs at once and say which are missing and which are corrupt.

The one blob check of castore: ``fsck`` (every stored blob) and a version's ``verify()`` (the
blobs its entries name) both call :func:`verify_many`; what a caller makes of the answer (a
finding, a damaged path) is its own business.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from castore.errors import CastoreError, NotFoundError

if TYPE_CHECKING:
    from castore.storage.blobs import BlobStore

__all__ = ["DEFAULT_VERIFY_WORKERS", "BlobDamage", "verify_many"]

#: Threads re-hashing blobs at once by default (reads overlap; xxh3 and zstd release the GIL).
DEFAULT_VERIFY_WORKERS = min(32, 8 * (os.cpu_count() or 1))
#: Digests handed to a thread at a time: a future per tiny blob costs more than reading it.
_BATCH = 64


@dataclass(frozen=True)
class BlobDamage:
    """What :func:`verify_many` found wrong; false when every blob verified.

    Attributes:
        missing: digests with no stored blob (deleted meanwhile, or never stored).
        corrupt: digest → the problem found (hash or size mismatch, a bad zstd frame, a read
            error such as EIO).
    """

    missing: frozenset[str] = frozenset()
    corrupt: Mapping[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.missing or self.corrupt)

    @property
    def digests(self) -> frozenset[str]:
        """Every digest that is missing or corrupt."""
        return self.missing | self.corrupt.keys()


def verify_many(
    blobs: BlobStore,
    expected: Iterable[tuple[str, int | None]],
    *,
    workers: int | None = None,
) -> BlobDamage:
    """Re-hash blobs in a thread pool; checking goes on past a damaged or unreadable one.

    Args:
        blobs: the store's blobs.
        expected: ``(digest, size)`` pairs; ``size`` is the expected content size, or None (or
            negative) when unknown. A digest listed twice is checked once, with its first size.
        workers: threads reading at once (default: :data:`DEFAULT_VERIFY_WORKERS`).

    Returns:
        The missing and the corrupt digests.
    """
    sizes: dict[str, int | None] = {}
    for digest, size in expected:
        sizes.setdefault(digest, None if size is None or size < 0 else size)
    digests = sorted(sizes)

    def check(batch: list[str]) -> list[tuple[str, str | None]]:
        found: list[tuple[str, str | None]] = []
        for digest in batch:
            try:
                blobs.verify(digest, size=sizes[digest])
            except NotFoundError:
                found.append((digest, None))
            except OSError as exc:
                found.append((digest, f"cannot be read: {exc}"))
            except CastoreError as exc:  # IntegrityError; a digest of another algorithm
                found.append((digest, str(exc)))
        return found

    batches = [digests[i : i + _BATCH] for i in range(0, len(digests), _BATCH)]
    missing: set[str] = set()
    corrupt: dict[str, str] = {}
    n = max(1, min(workers or DEFAULT_VERIFY_WORKERS, len(batches)))
    # Imported here: concurrent.futures imports logging, which read-only commands never need.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="castore-verify") as pool:
        for found in pool.map(check, batches):
            for digest, problem in found:
                if problem is None:
                    missing.add(digest)
                else:
                    corrupt[digest] = problem
    return BlobDamage(frozenset(missing), corrupt)
