"""The disk budget (``Store.set_budget``): evict blobs a remote holds, least recently used first.

The budget lives in the catalogue's ``settings`` table (key ``budget``, bytes of blob files).
:func:`evict` runs at the end of gc: while the blob files take more than the budget, it picks
the blobs that ``blob_remotes`` says a remote holds, least recently used first (the later of
the blob file's access and modification time: reads set the access time, with the per-day
precision of ``relatime`` mounts; a fetch-back sets both), asks the remote whether it still
holds each one (``Parts.fetcher.held``) and deletes only the confirmed ones. The only copy of
anything is never evicted; the versions stay listed, and a read fetches the blob back
(``castore.transfer.fetchback``). Manifests (version documents) are never evicted.
"""

from __future__ import annotations

import os

from castore._parts import Parts
from castore.errors import CastoreError, NotFoundError
from castore.index import maintenance as _catalog_maint
from castore.storage.locking import DEFAULT_LOCK_TIMEOUT, maintenance_lock

__all__ = ["BUDGET_KEY", "evict", "get_budget", "plan_evict", "remote_only", "set_budget"]

BUDGET_KEY = "budget"


def get_budget(parts: Parts) -> int | None:
    """The budget in bytes, or None."""
    try:
        value = parts.catalog.get_setting(BUDGET_KEY)
    except CastoreError:  # a read-only catalogue from before step 9
        return None
    return None if value is None else int(value)


def set_budget(parts: Parts, max_bytes: int | None) -> None:
    """Keep (or, with None, stop keeping) the blob files under ``max_bytes``."""
    if max_bytes is not None and (
        isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0
    ):
        raise ValueError(f"a budget is a non-negative number of bytes (or None), "
                         f"got {max_bytes!r}")
    parts.catalog.set_setting(BUDGET_KEY, max_bytes)


def _stored(parts: Parts) -> dict[str, tuple[int, float]]:
    found: dict[str, tuple[int, float]] = {}
    for digest in parts.blobs.iter_digests():  # a packed one: its pack's times
        try:
            st = os.stat(parts.blobs.path_of(digest))
            size = parts.blobs.stat(digest).stored_size
        except (FileNotFoundError, KeyError, NotFoundError):
            continue
        found[str(digest)] = (size, max(st.st_atime, st.st_mtime))
    return found


def _picks(parts: Parts, budget: int) -> list[tuple[str, int]]:
    """The remote-held blobs to evict, least recently used first, to get under ``budget``."""
    stored = _stored(parts)
    over = sum(size for size, _ in stored.values()) - budget
    for name, digests in parts.blobs.pack_index.packs().items():  # a pack's own index
        try:
            over += os.stat(parts.layout.packs / name).st_size
        except FileNotFoundError:
            continue
        over -= sum(stored[d][0] for d in digests if d in stored)
    if over <= 0:
        return []
    held = parts.catalog.remote_held_digests() & stored.keys()
    picked: list[tuple[str, int]] = []
    for digest in sorted(held, key=lambda d: (stored[d][1], d)):
        if over <= 0:
            break
        picked.append((digest, stored[digest][0]))
        over -= stored[digest][0]
    return picked


def plan_evict(parts: Parts) -> tuple[int, int]:
    """``(blobs, bytes)`` :func:`evict` would evict now (without asking the remotes)."""
    budget = get_budget(parts)
    if budget is None or parts.fetcher is None:
        return 0, 0
    picked = _picks(parts, budget)
    return len(picked), sum(size for _, size in picked)


def evict(parts: Parts, *, lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT) -> tuple[int, int]:
    """Evict remote-held blobs, least recently used first, until under the budget.

    Returns:
        ``(blobs evicted, bytes freed)``.
    """
    budget = get_budget(parts)
    if budget is None or parts.fetcher is None:
        return 0, 0
    with maintenance_lock(parts.layout.locks, timeout=lock_timeout):
        picked = _picks(parts, budget)
        if not picked:
            return 0, 0
        confirmed = parts.fetcher.held(parts, [d for d, _ in picked])
        count = freed = 0
        for digest, _ in picked:
            if digest in confirmed:
                gone = parts.blobs.delete(digest)
                if gone:
                    count += 1
                    freed += gone
    return count, freed


def remote_only(parts: Parts) -> tuple[int, int]:
    """``(blobs, bytes)`` the versions need that are stored only on a remote (evicted)."""
    sizes = _catalog_maint.referenced_digest_sizes(parts.catalog)
    missing = [d for d, size in sizes.items() if size >= 0 and not parts.blobs.exists(d)]
    if not missing:
        return 0, 0
    try:
        homes = parts.catalog.blob_homes(missing)
    except CastoreError:  # a read-only catalogue from before step 9
        return 0, 0
    there = [d for d in missing if d in homes]
    return len(there), sum(sizes[d] for d in there)
