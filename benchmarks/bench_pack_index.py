"""Memory and lookup speed of the in-memory pack index, against the old dict layout (issue 15).

    python benchmarks/bench_pack_index.py                 # 100k and 1M packed blobs
    python benchmarks/bench_pack_index.py --sizes 100000  # one size

For each size, real pack files (``PER_PACK`` synthetic xxh3-128 digests each, one stored byte a
blob) are written with ``encode_pack`` into a temp dir. Then, each measured with tracemalloc
(what stays allocated once built; peak in brackets):

* **dict (old)**: the layout PackIndex had before: ``{digest str: frozen slots dataclass}``
  plus ``{pack name: [digest str, ...]}``, built from the same trailers;
* **PackIndex**: ``castore.storage.packs.PackIndex`` after ``refresh()``.

Lookups/s: ``find()`` of ``LOOKUPS`` digests drawn from the index (all hits), best of 3; the
baseline is an old-style ``find`` (a method doing ``dict.get``, then building nothing).
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table

from castore.storage.packs import PackIndex, encode_pack, new_name, read_index

PER_PACK = 10_000
LOOKUPS = 200_000


@dataclass(frozen=True, slots=True)
class OldEntry:
    """PackEntry as it was: one per packed blob."""

    pack: str
    offset: int
    length: int
    codec: str
    size: int


class OldIndex:
    """The old in-memory layout, built from the same trailers."""

    def __init__(self, directory: Path) -> None:
        self._packs: dict[str, list[str]] = {}
        self._where: dict[str, OldEntry] = {}
        for name in sorted(os.listdir(directory)):
            rows = read_index(directory / name)
            self._packs[name] = [d for d, _ in rows]
            for digest, e in rows:
                self._where.setdefault(digest, OldEntry(e.pack, e.offset, e.length, e.codec,
                                                        e.size))

    def find(self, digest: str) -> OldEntry | None:
        return self._where.get(digest)


def write_packs(directory: Path, count: int, rng: random.Random) -> list[str]:
    digests = [f"xxh3-128:{rng.getrandbits(128):032x}" for _ in range(count)]
    for start in range(0, count, PER_PACK):
        items = [(d, b"x", "raw", 1) for d in digests[start:start + PER_PACK]]
        with open(directory / new_name(), "wb") as fh:
            fh.writelines(encode_pack(items))  # type: ignore[arg-type]
    return digests


def measured(build: Callable[[], object]) -> tuple[object, int, int]:
    gc.collect()
    tracemalloc.start()
    built = build()
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return built, current, peak


def lookups_per_s(find: Callable[[str], object], sample: list[str]) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for d in sample:
            find(d)
        best = min(best, time.perf_counter() - t0)
    return len(sample) / best


def run(count: int) -> list[list[str]]:
    rng = random.Random(count)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-packidx-") as tmp:
        directory = Path(tmp)
        digests = write_packs(directory, count, rng)
        sample = rng.choices(digests, k=min(LOOKUPS, 4 * count))

        def new() -> PackIndex:
            index = PackIndex(directory)
            index.refresh()
            return index

        for label, build in (("dict (old)", lambda: OldIndex(directory)), ("PackIndex", new)):
            t0 = time.perf_counter()
            index, current, peak = measured(build)
            seconds = time.perf_counter() - t0
            find = index.find  # type: ignore[attr-defined]
            assert all(find(d) is not None for d in sample[:1000])
            rows.append([f"{count:,}", label, f"{current / count:.0f}", f"{peak / count:.0f}",
                         f"{lookups_per_s(find, sample):,.0f}", f"{seconds:.1f}"])
            del index, find
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000",
                        help="comma-separated numbers of packed blobs")
    args = parser.parse_args()
    rows = []
    for count in (int(s) for s in args.sizes.split(",")):
        rows.extend(run(count))
    print_table(["blobs", "layout", "bytes/blob", "peak bytes/blob", "lookups/s",
                 "build s (traced)"], rows)


if __name__ == "__main__":
    main()
