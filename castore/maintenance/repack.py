"""gc of packs: delete dead packs and rewrite mostly-dead ones (restic's ``prune``).

A blob in a pack is *dead here* when nothing needs it (no committed or pending version, no
unknown-version root) or when another copy is the one kept (a loose file, or the pack named
first among those holding it: duplicates come from a crash mid-rewrite or concurrent packing).
A pack older than the grace period goes when every blob in it is dead here, and is rewritten
when its dead bytes reach :data:`REWRITE_DEAD_FRACTION` of its size. The rewrite follows the
loose-blob protocol of invariant 6, per pack:

1. Outside any lock, the live blobs of the packs to rewrite are read, verified, and copied
   into new packs, which are fsynced and published (``gc.repack_published``). From then on
   every live blob is in two published packs.
2. Inside gc's ``BEGIN IMMEDIATE`` transaction, references are read again (writers' pending
   drafts count). An old pack is moved to ``trash/`` (``gc.repack_trashed``) only if every
   blob it holds that is needed now is also somewhere that stays: a loose file, a pack not
   going, or a new pack. A blob a writer registered since the scan (a dedup hit on a dead
   blob) keeps the old pack where it is, for the next gc.
3. After COMMIT the trash is emptied.

SQLite's write lock orders gc against writers: a writer that registered a blob first keeps
its pack; a writer that comes after finds the old pack gone (its pack index looks again) and
either finds the blob in a new pack or stores its own copy. A crash before step 2 leaves
duplicates (the next gc drops them); a crash inside it leaves garbage in ``trash/``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from castore import _faults
from castore.errors import IntegrityError, NotFoundError
from castore.storage.codec import Codec
from castore.storage.fsutil import unique_tmp
from castore.storage.hashing import new_hasher
from castore.storage.packs import (
    MAGIC,
    PACK_MAX,
    PackEntry,
    pack_rows,
    read_stored,
    write_pack,
)
from castore.storage.reading import decode_checked

if TYPE_CHECKING:
    from castore.storage.blobs import BlobStore

__all__ = [
    "REWRITE_DEAD_FRACTION", "PackPlan", "Rewrite", "apply", "is_loose", "plan", "rewrite",
]

#: A pack is rewritten when its dead bytes are at least this fraction of its file size.
#: At one half, every byte copied frees at least one byte, so the copying gc does over a
#: store's life is bounded by the space it gives back (restic's prune repacks on a similar
#: rule); a pack with less dead space waits until more of it dies.
REWRITE_DEAD_FRACTION = 0.5
#: Bytes of a pack that are not blob bytes, besides its index: the magic and the footer.
_OVERHEAD = len(MAGIC) + 24


@dataclass
class PackPlan:
    """What gc does with one pack: ``keep`` is copied into a new pack, ``drop`` is not."""

    name: str
    size: int
    keep: list[tuple[str, PackEntry]]
    drop: list[tuple[str, PackEntry]]
    #: digests of ``drop`` that nothing needs (the rest are copies kept elsewhere)
    dead: set[str]

    @property
    def estimated_new_size(self) -> int:
        """About the size of the pack holding ``keep`` (0 when nothing is kept)."""
        if not self.keep:
            return 0
        index = sum(len(d) + 40 for d, _ in self.keep)
        return _OVERHEAD + sum(e.length for _, e in self.keep) + index


@dataclass
class Rewrite:
    """Packs written for the plans; ``done`` names the plans whose live blobs they hold."""

    new_packs: dict[str, int] = field(default_factory=dict)
    holders: dict[str, set[str]] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)


def is_loose(blobs: BlobStore, digest: str) -> bool:
    """True when the blob is stored as its own file (a pack may hold it too)."""
    try:  # ``packed`` is None when a loose file exists (or nothing holds the blob)
        return blobs.packed(digest) is None and blobs.exists(digest)
    except NotFoundError:  # a digest of another algorithm: never stored here
        return False


def _holders(packs: dict[str, list[str]]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for name, digests in packs.items():
        for digest in digests:
            found.setdefault(digest, set()).add(name)
    return found


def plan(
    blobs: BlobStore, *, live: set[str], cutoff: float, fraction: float = REWRITE_DEAD_FRACTION
) -> list[PackPlan]:
    """The packs to delete or rewrite, found without any lock.

    Args:
        blobs: the store's blobs.
        live: digests something needs (referenced by committed or pending versions, roots).
        cutoff: packs modified after this (seconds) are left alone (the grace period).
        fraction: rewrite a pack once its dead bytes are this share of its size.
    """
    packs = blobs.pack_index.packs()
    if not packs:
        return []
    loose = set(blobs.iter_loose())
    holders = _holders(packs)
    plans = []
    for name in sorted(packs):
        if not packs[name]:
            continue  # empty or unreadable index: never touched (fsck reports a damaged one)
        try:
            st = os.stat(blobs.layout.packs / name)
            if st.st_mtime > cutoff:
                continue
            rows = blobs.pack_index.entries(name)
        except (OSError, IntegrityError):
            continue
        keep, drop, dead = [], [], set()
        for digest, entry in rows:
            if digest not in live:
                drop.append((digest, entry))
                dead.add(digest)
            elif digest in loose or min(holders[digest]) != name:
                drop.append((digest, entry))  # another copy is the one kept
            else:
                keep.append((digest, entry))
        dead_bytes = sum(e.length for _, e in drop)
        if drop and (not keep or dead_bytes >= fraction * st.st_size):
            plans.append(PackPlan(name, st.st_size, keep, drop, dead))
    return plans


def _verified(blobs: BlobStore, digest: str, entry: PackEntry) -> bytes:
    """The stored bytes of a packed blob, after checking they decode to ``digest``."""
    stored = read_stored(blobs.layout.packs, entry)
    decode_checked(stored, entry, digest, entry.size, new_hasher(blobs.algorithm))
    return stored


def rewrite(blobs: BlobStore, plans: Iterable[PackPlan]) -> Rewrite:
    """Copy the live blobs of ``plans`` into new published packs (step 1; no lock held).

    A plan whose blobs cannot be read or verified is left out (its pack is kept for fsck).
    """
    out = Rewrite()
    batch: list[tuple[str, bytes, Codec, int]] = []
    owners: list[str] = []
    size = 0

    def flush() -> None:
        nonlocal size
        if batch:
            name = write_pack(unique_tmp(blobs.layout.tmp_dir()), blobs.layout.packs, batch,
                              sync=blobs.durable)
            blobs.pack_index.add(name, pack_rows(batch))
            out.new_packs[name] = os.stat(blobs.layout.packs / name).st_size
            for digest, *_ in batch:
                out.holders.setdefault(digest, set()).add(name)
            out.done.update(owners)
            _faults.point("gc.repack_published")
        batch.clear()
        owners.clear()
        size = 0

    for p in plans:
        if not p.keep:
            out.done.add(p.name)
            continue
        try:
            items = [(d, _verified(blobs, d, e), e.codec, e.size) for d, e in p.keep]
        except (OSError, IntegrityError):
            continue  # damaged or gone: the pack stays as it is
        if size and size + sum(len(s) for _, s, _, _ in items) > PACK_MAX:
            flush()
        batch.extend(items)
        owners.append(p.name)
        size += sum(len(s) for _, s, _, _ in items)
    flush()
    return out


def _held_elsewhere(
    blobs: BlobStore, digest: str, name: str, holders: dict[str, set[str]], gone: set[str]
) -> bool:
    if any(os.path.exists(blobs.layout.packs / other)
           for other in holders.get(digest, ()) if other != name and other not in gone):
        return True
    return is_loose(blobs, digest)


def apply(
    blobs: BlobStore, plans: list[PackPlan], done: Rewrite, *, live: set[str]
) -> tuple[int, int, int]:
    """Move the old packs to ``trash/`` (step 2; inside gc's write transaction).

    Args:
        live: what is needed now, read under the write lock.

    Returns:
        ``(packs moved, dead blobs in them, their bytes)``.
    """
    holders = _holders(blobs.pack_index.packs())
    for digest, names in done.holders.items():
        holders.setdefault(digest, set()).update(names)
    gone: set[str] = set()
    moved = dead = freed = 0
    for p in plans:
        if p.name not in done.done:
            continue
        if any(d in live and not _held_elsewhere(blobs, d, p.name, holders, gone)
               for d, _ in p.drop):
            continue  # a writer needs a blob only this pack holds: kept for the next gc
        size = blobs.move_pack_to_trash(p.name)
        if size:
            gone.add(p.name)
            moved += 1
            dead += sum(1 for d in p.dead if d not in live)
            freed += size
            _faults.point("gc.repack_trashed")
    return moved, dead, freed
