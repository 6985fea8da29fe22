"""The compact pack index against a plain dict model, on real pack files.

Packs come and go (added by a writer, found by a refresh, removed through ``forget``, a refresh
or a ``lookup`` that finds the pack gone); digests repeat across packs and inside one, share
their 8-byte prefix (so the index's prefix records collide), share a bucket, line up with the
bytes of another record at an unaligned position, or share raw bytes under two algorithms;
some packs are damaged. After every step the index must answer as the model does.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)

from castore.storage.packs import PackEntry, PackIndex, encode_pack, new_name

# 8-byte prefixes (16 hex): the first three share bucket 0000, and "…01" is found inside the
# records of "0000000000000000" (its key's last 7 zero bytes and the first byte of <II 1, 0>)
PREFIXES = ["0000000000000000", "0000000000000001", "0000000000000100", "00001234abcd5678",
            "ffffffffffffffff", "9f2c00000000e1e1"]
SUFFIXES = ["0" * 16, "deadbeefdeadbeef"]
WIDE = ["ab" * 32, "ab" * 31 + "ac", PREFIXES[0] * 4]
# one algorithm per pack (a pack mixing them is damaged); sha256 and blake3 share raw bytes
POOLS = {"xxh3-128": [f"xxh3-128:{p}{s}" for p in PREFIXES for s in SUFFIXES],
         "sha256": [f"sha256:{h}" for h in WIDE], "blake3": [f"blake3:{h}" for h in WIDE]}
POOL = [d for pool in POOLS.values() for d in pool]

Row = tuple[str, int, int, str, int]


class PackIndexMachine(RuleBasedStateMachine):
    packs = Bundle("packs")

    @initialize()
    def start(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="castore-packidx-"))
        self.index = PackIndex(self.dir)
        self.model: dict[str, list[Row]] = {}  # pack name → its rows, for every pack on disk
        self.bad: set[str] = set()

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def _publish(self, name: str, via: str) -> None:
        if via == "add":
            self.index.add(name)
        else:
            self.index.refresh(force=True)

    @rule(target=packs, algo=st.sampled_from(sorted(POOLS)),
          chosen=st.lists(st.tuples(st.integers(0, len(POOLS["xxh3-128"]) - 1),
                                    st.integers(0, 3), st.booleans()), max_size=8),
          via=st.sampled_from(["add", "refresh"]))
    def new_pack(self, algo: str, chosen: list[tuple[int, int, bool]], via: str) -> str:
        items = []
        for i, n, zstd in chosen:
            digest = POOLS[algo][i % len(POOLS[algo])]
            # sizes past 4 GiB (a zstd bomb's claim) make the index keep 8-byte columns
            items.append((digest, b"s" * n, "zstd" if zstd else "raw",
                          n + (1 << 33) * zstd))
        return self._write(items, via)

    @rule(target=packs, source=packs, order=st.sampled_from(["same", "reversed", "half"]),
          via=st.sampled_from(["add", "refresh"]))
    def copy_pack(self, source: str, order: str, via: str) -> str:
        """Another pack with the same blobs, as a crash in the middle of a rewrite leaves."""
        items = [(d, b"s" * length, codec, size) for d, _, length, codec, size
                 in self.model.get(source, [])]
        items = {"same": items, "reversed": items[::-1], "half": items[::2]}[order]
        return self._write(items, via)

    def _write(self, items: list[tuple[str, bytes, str, int]], via: str) -> str:
        pieces = encode_pack(items)  # type: ignore[arg-type]
        name = new_name()
        (self.dir / name).write_bytes(b"".join(pieces))
        rows, offset = [], 8
        for digest, stored, codec, size in items:
            rows.append((digest, offset, len(stored), codec, size))
            offset += len(stored)
        self.model[name] = rows
        self._publish(name, via)
        return name

    @rule(target=packs, how=st.sampled_from(["cut", "upper", "mixed", "flip"]),
          via=st.sampled_from(["add", "refresh"]))
    def damaged_pack(self, how: str, via: str) -> str:
        digest = POOL[0]
        if how == "upper":
            digest = "xxh3-128:" + POOL[0][9:].upper().replace("0", "A")
        items = [(digest, b"x", "raw", 1)]
        if how == "mixed":
            items.append((POOL[-1], b"y", "raw", 1))
        data = b"".join(encode_pack(items))  # type: ignore[arg-type]
        if how == "cut":
            data = data[:-5]
        elif how == "flip":
            data = data[:12] + bytes([data[12] ^ 1]) + data[13:]  # inside the index: checksum
        name = new_name()
        (self.dir / name).write_bytes(data)
        self.model[name] = []
        self.bad.add(name)
        self._publish(name, via)
        return name

    @rule(name=packs)
    def add_again(self, name: str) -> None:
        self.index.add(name)  # a published pack never changes: nothing to do

    @rule(name=consumes(packs), via=st.sampled_from(["forget", "refresh", "lookup"]))
    def remove_pack(self, name: str, via: str) -> None:
        (self.dir / name).unlink()
        del self.model[name]
        self.bad.discard(name)
        if via == "forget":
            self.index.forget(name)
        elif via == "refresh":
            self.index.refresh(force=True)
        else:  # a writer's dedup check: the pack named is gone, so it looks again
            for digest in POOL:
                self._check(digest, self.index.lookup(digest))
            self.index.refresh(force=True)

    def _check(self, digest: str, entry: PackEntry | None) -> None:
        holders = {PackEntry(name, *row[1:]) for name, rows in self.model.items()  # type: ignore[arg-type]
                   for row in rows if row[0] == digest}
        if holders:
            assert entry in holders, (digest, entry, holders)
        else:
            assert entry is None, (digest, entry)

    @invariant()
    def answers_as_the_model(self) -> None:
        for digest in POOL:
            self._check(digest, self.index.find(digest))
        for name, rows in self.model.items():
            assert self.index.entries(name) == [(r[0], PackEntry(name, *r[1:]))  # type: ignore[arg-type]
                                                for r in rows]
        assert self.index.packs() == {n: [r[0] for r in rows] for n, rows in self.model.items()}
        got = list(self.index.digests())
        assert sorted(got) == sorted({r[0] for rows in self.model.values() for r in rows})

    @invariant()
    def damaged_packs_are_reported(self) -> None:
        assert self.index.damaged() == sorted(self.bad)


PackIndexMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=25,
                                              deadline=None)
TestPackIndexMachine = PackIndexMachine.TestCase
