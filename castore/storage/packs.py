"""Pack files: many small blobs in one file, each pack with its own index (format 2).

A pack is ``packs/<name>.pack``::

    b"CASPACK1"                               8-byte magic
    stored bytes of blob 1, blob 2, ...       each exactly as its loose file would hold it
                                              (raw bytes, or a zstd frame + size trailer)
    index                                     JSON: [[digest, offset, length, codec, size], ...]
    footer                                    <Q index length> <Q xxh64 of index> b"CASPIDX1"

A writer builds its pack in ``tmp/``, fsyncs it once and links it to its final name with no
overwrite (the name is random), so a published pack never changes. The index is read from the
trailer alone, so fsck and rebuild need no catalogue. An index must be well formed to be used:
digests of one known algorithm in lowercase hex, integer offsets, lengths and sizes inside the
blob area; else the pack counts as damaged (indexed as empty; fsck reports it).

Readers keep an in-memory map from digest to location (:class:`PackIndex`), built lazily by
reading every trailer and refreshed when ``packs/`` changes. It is compact (see
:mod:`castore.storage._packtable`): per pack, the raw digests end to end in one ``bytes`` and
offsets, lengths and sizes in ``array`` columns; across packs, 65,536 buckets of 16-byte records
(an 8-byte digest prefix, pack number, row) searched with ``bytes.find``. About 50 bytes a
packed blob at a million blobs, where a dict of digest strings to entry objects took ~240–330.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import xxhash

from castore import _faults
from castore.digest import ALGORITHMS
from castore.errors import IntegrityError
from castore.storage._packtable import PackEntry, PackTable, Row
from castore.storage.codec import Codec
from castore.storage.fsutil import (
    create_readonly,
    fsync_dir,
    publish_noclobber,
    removing_on_error,
    unique_tmp,
    write_all,
)

__all__ = [
    "MAGIC", "PACK_MAX", "PACK_THRESHOLD", "PackEntry", "PackIndex", "encode_pack", "pack_rows",
]

MAGIC = b"CASPACK1"
_FOOTER = struct.Struct("<QQ8s")
_FOOTER_MAGIC = b"CASPIDX1"
#: Blobs whose stored size is below this go into packs; larger ones stay loose (linkable).
PACK_THRESHOLD = 64 * 1024
#: A writer starts a new pack past this many stored bytes.
PACK_MAX = 16 * 1024 * 1024
SUFFIX = ".pack"
#: Packs kept open by one store handle for reading.
_OPEN_MAX = 64


def pack_rows(items: list[tuple[str, bytes, Codec, int]]) -> list[Row]:
    """The index rows of a pack holding ``(digest, stored, codec, size)`` items, in order."""
    rows: list[Row] = []
    offset = len(MAGIC)
    for digest, stored, codec, size in items:
        rows.append((digest, offset, len(stored), codec, size))
        offset += len(stored)
    return rows


def encode_pack(items: list[tuple[str, bytes, Codec, int]]) -> list[bytes]:
    """The byte pieces of a pack holding ``(digest, stored, codec, size)`` items."""
    body = json.dumps(pack_rows(items), separators=(",", ":")).encode()
    footer = _FOOTER.pack(len(body), xxhash.xxh64_intdigest(body), _FOOTER_MAGIC)
    return [MAGIC, *(stored for _, stored, _, _ in items), body, footer]


def read_index(path: str | Path) -> list[tuple[str, PackEntry]]:
    """The entries of one pack, from its trailer. Raises IntegrityError if it is damaged."""
    name = os.path.basename(path)
    return [(d, PackEntry(name, offset, length, codec, size))
            for d, offset, length, codec, size in read_rows(path)]


def read_rows(path: str | Path) -> list[Row]:
    """The validated rows of one pack's index. Raises IntegrityError if it is damaged.

    The index may be hostile: every digest must be well formed and of one algorithm (the
    in-memory index keeps a pack's digests as fixed-width bytes), every number an int, every
    range inside the pack's blob area.
    """
    name = os.path.basename(path)
    with open(path, "rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        if end < len(MAGIC) + _FOOTER.size:
            raise IntegrityError(f"pack {name} is truncated")
        fh.seek(end - _FOOTER.size)
        length, check, magic = _FOOTER.unpack(fh.read(_FOOTER.size))
        start = end - _FOOTER.size - length
        if magic != _FOOTER_MAGIC or start < len(MAGIC):
            raise IntegrityError(f"pack {name} has no valid index trailer")
        fh.seek(start)
        body = fh.read(length)
    if xxhash.xxh64_intdigest(body) != check:
        raise IntegrityError(f"pack {name}: its index does not match its checksum")
    try:
        return _valid_rows(json.loads(body), start)
    except (ValueError, TypeError) as exc:
        raise IntegrityError(f"pack {name} has a malformed index ({exc})") from exc


def _valid_rows(rows: object, start: int) -> list[Row]:
    """``rows`` (parsed JSON) checked; ValueError or TypeError names the first bad one."""
    if not isinstance(rows, list):
        raise TypeError("not a list of rows")
    out: list[Row] = []
    algo = None
    for digest, offset, size_stored, codec, size in rows:
        if not isinstance(digest, str) or not all(
            type(n) is int for n in (offset, size_stored, size)
        ):
            raise TypeError(f"bad entry for {digest!r}")
        this, _, hexpart = digest.partition(":")
        if algo is None:
            algo = this
        if this != algo or len(hexpart) != ALGORITHMS.get(algo):
            raise ValueError(f"bad digest {digest!r}")
        if (codec not in ("raw", "zstd") or not 0 <= size < 1 << 64 or size_stored < 0
                or offset < len(MAGIC) or offset + size_stored > start):
            raise ValueError(f"bad entry for {digest}")
        # the codec as the module's own string: one object, not one per blob
        out.append((digest, offset, size_stored, "raw" if codec == "raw" else "zstd", size))
    hexes = "".join(r[0].partition(":")[2] for r in out)
    if bytes.fromhex(hexes).hex() != hexes:  # upper case or blanks: not a digest we write
        raise ValueError("a digest is not lowercase hex")
    return out


def new_name() -> str:
    """A fresh, random pack file name."""
    return uuid.uuid4().hex + SUFFIX


class _OpenPack:
    """A pack opened for reading, closed when the last reference to it goes."""

    __slots__ = ("fd",)

    def __init__(self, path: Path) -> None:
        self.fd = -1  # set first: __del__ runs even when the open below raises
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def fileno(self) -> int:
        return self.fd

    def __del__(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)


#: The key of a ``holds`` batch's ``seen`` that records the refresh (no pack is named "").
_REFRESHED = ""


class PackIndex:
    """Digest → location over every pack of one store, refreshed when ``packs/`` changes.

    The map itself is a compact :class:`~castore.storage._packtable.PackTable` (~50 bytes a
    blob); lookups take no lock, changes to it are made under ``_lock``.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._stamp: int | None = None
        self._table = PackTable()
        self._lock = threading.Lock()
        # Open packs, for ranged reads without an open() per blob. A handle is dropped from
        # here, never closed by hand: a thread still reading through it keeps it alive.
        self._open: dict[str, _OpenPack] = {}

    def _dir_stamp(self) -> int | None:
        try:
            return os.stat(self.directory).st_mtime_ns
        except FileNotFoundError:
            return None

    def refresh(self, *, force: bool = False) -> None:
        """Read the trailers of packs that appeared; forget packs that are gone."""
        with self._lock:
            self._refresh(force)

    def _refresh(self, force: bool) -> None:
        stamp = self._dir_stamp()
        if not force and stamp == self._stamp and self._stamp is not None:
            return
        self._stamp = stamp
        try:
            names = {n for n in os.listdir(self.directory) if n.endswith(SUFFIX)}
        except FileNotFoundError:
            names = set()
        known = set(self._table.names())
        for gone in known - names:  # a digest it held may still be in another pack
            self._open.pop(gone, None)
            self._table.remove(gone)
        for name in sorted(names - known):
            self._add(name)

    def add(self, name: str, rows: list[Row] | None = None) -> None:
        """Index one pack (a damaged one is indexed as empty: fsck reports it); ``rows``: its
        index as this process just wrote it (:func:`pack_rows`), so its trailer is not read
        back."""
        with self._lock:
            self._add(name, rows)

    def _add(self, name: str, rows: list[Row] | None = None) -> None:
        if name in self._table:
            return  # a published pack never changes
        if rows is None:
            try:
                rows = read_rows(self.directory / name)
            except (IntegrityError, OSError):
                rows = []
        self._table.add(name, rows)

    def lookup(self, digest: str) -> PackEntry | None:
        """The location of a packed blob, or None."""
        found = self._table.find(digest)
        if found is not None and not os.path.exists(self.directory / found.pack):
            self.forget(found.pack)  # gc removed it: the blob may be in another pack
            found = None
        if found is None:
            self.refresh()
            found = self._table.find(digest)
        return found

    def find(self, digest: str) -> PackEntry | None:
        """Like :meth:`lookup` without a ``stat`` of the pack: for readers, which fall back
        (:meth:`forget`, then look again) when :meth:`read` finds the pack gone."""
        found = self._table.find(digest)
        if found is None:
            self.refresh()
            found = self._table.find(digest)
        return found

    def holds(self, digest: str, seen: dict[str, bool]) -> bool:
        """True when a published pack holds ``digest``; ``seen`` remembers, across calls, which
        pack files were found, so a batch looks at each pack once instead of once per blob,
        and that ``packs/`` was looked at for new packs (once a batch, not once a miss: a
        batch of new content misses every time)."""
        entry = self._table.find(digest)
        if entry is None and _REFRESHED not in seen:
            self.refresh()
            seen[_REFRESHED] = True
            entry = self._table.find(digest)
        if entry is None:
            return False
        if entry.pack not in seen:
            seen[entry.pack] = os.path.exists(self.directory / entry.pack)
        return seen[entry.pack] or self.lookup(digest) is not None

    def read(self, entry: PackEntry) -> bytes:
        """The stored bytes of one packed blob: a ranged read of the pack, kept open.

        Raises:
            FileNotFoundError: the pack is gone (gc rewrote or removed it).
            IntegrityError: the pack is cut short.
        """
        handle = self._open.get(entry.pack)
        if handle is None:
            handle = _OpenPack(self.directory / entry.pack)
            with self._lock:
                if len(self._open) >= _OPEN_MAX:
                    self._open.pop(next(iter(self._open)))
                handle = self._open.setdefault(entry.pack, handle)
        data = os.pread(handle.fileno(), entry.length, entry.offset)
        if len(data) != entry.length:
            raise IntegrityError(f"pack {entry.pack} is truncated")
        return data

    def entries(self, name: str) -> list[tuple[str, PackEntry]]:
        """The entries of one indexed pack, from memory (reading a pack's trailer again would
        touch its atime, which the budget's LRU reads)."""
        return self._table.entries(name)

    def close(self) -> None:
        """Let go of the open packs (a pack gc removed is freed once no reader holds it)."""
        with self._lock:
            self._open.clear()

    def forget(self, name: str) -> None:
        """Drop a pack this process removed."""
        with self._lock:
            self._open.pop(name, None)
            self._table.remove(name)
            self._stamp = None

    def drop(self, entry: PackEntry, digest: str, tmp_dir: Path, *, sync: bool) -> None:
        """Remove one blob: rewrite its pack without it, publish that, then unlink the old."""
        new = rewrite_without(self.directory, unique_tmp(tmp_dir), entry.pack, {digest},
                              sync=sync)
        if new is not None:
            self.add(new)
        os.unlink(self.directory / entry.pack)
        self.forget(entry.pack)

    def quarantine(
        self, entry: PackEntry, digest: str, tmp_dir: Path, target_dir: Path, *, sync: bool
    ) -> Path:
        """Copy a (damaged) packed blob's stored bytes aside, then drop it from its pack."""
        target_dir.mkdir(exist_ok=True)
        target = target_dir / f"{digest.partition(':')[2]}.packed.{uuid.uuid4().hex[:8]}"
        try:
            stored = read_stored(self.directory, entry)
        except IntegrityError:  # the pack itself is cut short: all of it goes aside, as it is
            target = target_dir / f"{entry.pack}.{uuid.uuid4().hex[:8]}"
            os.rename(self.directory / entry.pack, target)
            self.forget(entry.pack)
            if sync:
                fsync_dir(self.directory)
            return target
        _publish_new(unique_tmp(tmp_dir), target, [stored], sync=sync)
        if sync:
            fsync_dir(target_dir)
        self.drop(entry, digest, tmp_dir, sync=sync)
        return target

    def packs(self) -> dict[str, list[str]]:
        """Pack name → its digests (current as of this call)."""
        with self._lock:
            self._refresh(True)
            return self._table.packs()

    def digests(self) -> Iterator[str]:
        """Every packed digest (once)."""
        with self._lock:
            self._refresh(True)
            found = self._table.digests()
        yield from found

    def damaged(self) -> list[str]:
        """Packs whose trailer cannot be read."""
        bad = []
        for name in sorted(self.packs()):
            try:
                read_index(self.directory / name)
            except (IntegrityError, OSError):
                bad.append(name)
        return bad


def write_pack(
    tmp: Path, directory: Path, items: list[tuple[str, bytes, Codec, int]], *, sync: bool
) -> str:
    """Write ``items`` to a new pack in ``tmp``, then publish it in ``directory``; its name."""
    directory.mkdir(exist_ok=True)
    name = new_name()
    _publish_new(tmp, directory / name, encode_pack(items), sync=sync, written="pack.written")
    _faults.point("pack.published")
    if sync:
        fsync_dir(directory)
    return name


def _publish_new(
    tmp: Path, target: Path, pieces: list[bytes], *, sync: bool, written: str | None = None
) -> None:
    """Write ``pieces`` to the new read-only file ``tmp`` (fsynced when ``sync``), then link it
    to ``target`` with no overwrite; ``written`` is the crash point between write and fsync."""
    with removing_on_error(tmp):
        fd = create_readonly(tmp, os.O_WRONLY)
        try:
            for piece in pieces:
                write_all(fd, piece)
            if written is not None:
                _faults.point(written)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
    publish_noclobber(tmp, target)


def read_stored(directory: Path, entry: PackEntry) -> bytes:
    """The stored bytes of one packed blob (FileNotFoundError if its pack is gone)."""
    with open(directory / entry.pack, "rb") as fh:
        data = os.pread(fh.fileno(), entry.length, entry.offset)
    if len(data) != entry.length:
        raise IntegrityError(f"pack {entry.pack} is truncated")
    return data


def rewrite_without(
    directory: Path, tmp: Path, name: str, drop: set[str], *, sync: bool
) -> str | None:
    """Copy a pack's blobs except ``drop`` into a new published pack (None if none is left).

    The old pack is left in place: the caller removes it once the new one is published, so
    every kept blob is always in some pack.
    """
    rows = read_index(directory / name)
    keep = [(d, read_stored(directory, e), e.codec, e.size) for d, e in rows if d not in drop]
    if not keep:
        return None
    return write_pack(tmp, directory, keep, sync=sync)
