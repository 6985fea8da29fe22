"""The in-memory pack index: digest → location of every packed blob, in ~50 bytes a blob.

A dict of digest strings to entry objects costs ~240–330 bytes a blob (the string, the entry,
its ints, the dict slot): up to ~330 MiB at a million packed blobs, in every process that reads
packs. So the table holds plain bytes and arrays instead:

- per pack, one :class:`_Pack`: its raw digests end to end in one ``bytes`` (fixed width, in
  index order, so row ``r`` is ``digests[r*w:(r+1)*w]``) and one ``array`` of 3 numbers a row,
  side by side (offset, length << 1 | zstd, size; 4-byte items when every value fits, else 8);
- across packs, 65,536 buckets (the first two bytes of a raw digest), each one ``bytes`` of
  16-byte records: the digest's first 8 bytes, then ``<II`` (pack number, row).

A lookup takes its bucket, finds the 8-byte prefix with ``bytes.find`` (C speed; a hit must be
record-aligned), checks the full digest against the pack's column, so prefixes shared by
different digests only cost another search, and builds one :class:`PackEntry`. Every row has
its record, appended in the order packs are indexed, so a digest several packs hold (a crash in
the middle of a rewrite, or a repack between publishing the new pack and dropping the old) is
found in the pack indexed first, and in the next one from the moment that pack is removed.

Not thread-safe for writers: the caller serialises :meth:`PackTable.add` and
:meth:`PackTable.remove`. Readers need no lock: a pack's columns never change, a bucket is
replaced whole (one list store) rather than changed in place, and a pack being removed leaves
the number → pack map first, so its records are skipped while they are cut out.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Iterator
from typing import NamedTuple

from castore.storage.codec import Codec

__all__ = ["PackEntry", "PackTable", "Row"]

_LOC = struct.Struct("<II")  # (pack number, row) after a record's 8-byte digest prefix
_RECORD = 8 + _LOC.size
_unpack_loc = _LOC.unpack_from
_new_tuple = tuple.__new__  # PackEntry(...) without its Python-level __new__: half the time
_CODECS: tuple[Codec, Codec] = ("raw", "zstd")

#: One validated index row: (digest, offset, length, codec, size).
Row = tuple[str, int, int, Codec, int]


class PackEntry(NamedTuple):
    """Where a packed blob's stored bytes are (built on demand by each lookup: a named tuple,
    which builds three times faster than a frozen dataclass)."""

    pack: str
    offset: int
    length: int
    codec: Codec
    size: int


def _column(values: list[int]) -> array[int]:
    """``values`` as an array of 4-byte items, or 8-byte ones when a value needs them."""
    try:
        return array("I", values)
    except OverflowError:
        return array("Q", values)


class _Pack:
    """One pack's index rows, as columns."""

    __slots__ = ("algo", "columns", "digests", "name", "no", "width")

    def __init__(self, name: str, no: int, rows: list[Row]) -> None:
        self.name = name
        self.no = no
        self.algo = rows[0][0].partition(":")[0] if rows else ""
        self.digests = bytes.fromhex("".join(r[0].partition(":")[2] for r in rows))
        self.width = len(self.digests) // len(rows) if rows else 0
        # row r is columns[3r:3r+3]: offset, length << 1 | (codec is zstd), size; side by
        # side, so a lookup reads one cache line where separate columns cost three
        self.columns = _column([n for r in rows for n in (r[1], r[2] << 1 | (r[3] == "zstd"),
                                                          r[4])])

    def __len__(self) -> int:
        return len(self.columns) // 3

    def raw(self, row: int) -> bytes:
        w = self.width
        return self.digests[row * w:row * w + w]

    def digest(self, row: int) -> str:
        return f"{self.algo}:{self.raw(row).hex()}"

    def entry(self, row: int) -> PackEntry:
        c, i = self.columns, 3 * row
        return PackEntry(self.name, c[i], c[i + 1] >> 1, _CODECS[c[i + 1] & 1], c[i + 2])


class PackTable:
    """Digest → :class:`PackEntry` over a set of packs (see the module docstring)."""

    def __init__(self) -> None:
        self._buckets: list[bytes] = [b""] * (1 << 16)
        self._by_no: dict[int, _Pack] = {}
        self._by_name: dict[str, _Pack] = {}
        # records minus distinct digests: copies of a digest in several packs (or twice in
        # one), which digests() must not list twice
        self._dups = 0
        self._next = 0

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def names(self) -> list[str]:
        """The packs indexed, in the order they were added."""
        return list(self._by_name)

    # -- reading (no lock needed) -----------------------------------------------------------

    def find(self, digest: str) -> PackEntry | None:
        """The location of ``digest``, or None (also for a malformed digest)."""
        # the hot path of checkout and reads: _locate and _Pack.entry written out in line
        algo, _, hexpart = digest.partition(":")
        try:
            raw = bytes.fromhex(hexpart)
        except ValueError:
            return None
        if len(raw) < 8:
            return None
        key = raw[:8]
        bucket = self._buckets[raw[0] << 8 | raw[1]]
        at = bucket.find(key)
        while at >= 0:
            if not at % _RECORD:
                no, row = _unpack_loc(bucket, at + 8)
                pack = self._by_no.get(no)  # None: the pack is being removed
                if pack is not None and pack.algo == algo:
                    w = pack.width
                    if pack.digests[row * w:row * w + w] == raw:
                        if raw.hex() != hexpart:  # fromhex also takes upper case and blanks
                            return None
                        c, i = pack.columns, 3 * row
                        return _new_tuple(PackEntry, (pack.name, c[i], c[i + 1] >> 1,
                                                      _CODECS[c[i + 1] & 1], c[i + 2]))
            at = bucket.find(key, at + 1)  # another digest with this prefix, or unaligned
        return None

    def _locate(self, raw: bytes, algo: str) -> tuple[_Pack, int] | None:
        bucket = self._buckets[raw[0] << 8 | raw[1]]
        key = raw[:8]
        at = bucket.find(key)
        while at >= 0:
            if not at % _RECORD:
                no, row = _unpack_loc(bucket, at + 8)
                pack = self._by_no.get(no)  # None: the pack is being removed
                if pack is not None and pack.algo == algo and pack.raw(row) == raw:
                    return pack, row
            at = bucket.find(key, at + 1)  # another digest with this prefix, or unaligned
        return None

    def entries(self, name: str) -> list[tuple[str, PackEntry]]:
        """Every row of one pack (a copy held elsewhere too included), in its index order."""
        pack = self._by_name.get(name)
        if pack is None:
            return []
        return [(pack.digest(r), pack.entry(r)) for r in range(len(pack))]

    def packs(self) -> dict[str, list[str]]:
        """Pack name → its digests, in index order."""
        return {name: [p.digest(r) for r in range(len(p))]
                for name, p in list(self._by_name.items())}

    def digests(self) -> Iterator[str]:
        """Every digest once, as of this call (the caller holds the writers' lock for it)."""
        packs = list(self._by_no.values())
        later = set()  # (pack number, row) of copies whose digest has an earlier record
        if self._dups:
            for pack in packs:
                for row in range(len(pack)):
                    hit = self._locate(pack.raw(row), pack.algo)
                    if hit is not None and (hit[0].no, hit[1]) != (pack.no, row):
                        later.add((pack.no, row))
        return self._iter_digests(packs, later)

    @staticmethod
    def _iter_digests(packs: list[_Pack], later: set[tuple[int, int]]) -> Iterator[str]:
        for pack in packs:
            for row in range(len(pack)):
                if not later or (pack.no, row) not in later:
                    yield pack.digest(row)

    # -- writing (the caller holds a lock) --------------------------------------------------

    def add(self, name: str, rows: list[Row]) -> None:
        """Index a pack's validated rows (a pack already indexed is left as it is: its file
        never changes)."""
        if name in self._by_name:
            return
        if self._next > 0xFFFFFFFF:
            raise OverflowError("pack numbers exhausted")  # 4 billion packs indexed by one process
        pack = _Pack(name, self._next, rows)
        self._next += 1
        self._by_no[pack.no] = pack
        self._by_name[name] = pack
        buckets = self._buckets
        for row in range(len(pack)):
            raw = pack.raw(row)
            if self._locate(raw, pack.algo) is not None:
                self._dups += 1
            i = raw[0] << 8 | raw[1]
            buckets[i] = buckets[i] + raw[:8] + _LOC.pack(pack.no, row)  # after the others

    def remove(self, name: str) -> None:
        """Forget a pack; a digest it held that another pack holds too is found there."""
        pack = self._by_name.pop(name, None)
        if pack is None:
            return
        del self._by_no[pack.no]  # from here readers skip its records (and find other copies)
        buckets = self._buckets
        for row in range(len(pack)):
            raw = pack.raw(row)
            record = raw[:8] + _LOC.pack(pack.no, row)
            i = raw[0] << 8 | raw[1]
            bucket = buckets[i]
            at = bucket.find(record)
            while at >= 0 and at % _RECORD:
                at = bucket.find(record, at + 1)
            if at >= 0:  # always: every row has its record
                buckets[i] = bucket[:at] + bucket[at + _RECORD:]
        if self._dups:  # records - distinct digests: the digests it alone held were distinct
            alone = {raw for raw in map(pack.raw, range(len(pack)))
                     if self._locate(raw, pack.algo) is None}
            self._dups -= len(pack) - len(alone)
