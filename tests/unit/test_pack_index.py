"""The in-memory pack index: hostile pack indexes, malformed digests, readers beside writers."""

from __future__ import annotations

import json
import struct
import threading
from pathlib import Path

import pytest
import xxhash

from castore.errors import IntegrityError
from castore.storage.packs import MAGIC, PackEntry, PackIndex, encode_pack, new_name, read_index

XXH = "xxh3-128:" + "0123456789abcdef" * 2
OTHER = "xxh3-128:" + "fedcba9876543210" * 2


def write(directory: Path, items: list[tuple[str, bytes, str, int]]) -> str:
    name = new_name()
    (directory / name).write_bytes(b"".join(encode_pack(items)))  # type: ignore[arg-type]
    return name


def write_index(directory: Path, rows: object, blob_area: int = 100) -> str:
    """A pack whose trailer holds ``rows`` as they are (checksum right, content hostile)."""
    body = json.dumps(rows).encode()
    name = new_name()
    (directory / name).write_bytes(
        MAGIC + b"\0" * blob_area + body
        + struct.pack("<QQ8s", len(body), xxhash.xxh64_intdigest(body), b"CASPIDX1"))
    return name


MALFORMED = {
    "upper case hex": [[XXH.upper().replace("XXH3-128", "xxh3-128"), 8, 1, "raw", 1]],
    "short hex": [[XXH[:-2], 8, 1, "raw", 1]],
    "long hex": [[XXH + "00", 8, 1, "raw", 1]],
    "blank in hex": [[XXH[:-2] + " 0", 8, 1, "raw", 1]],
    "not hex": [[XXH[:-2] + "zz", 8, 1, "raw", 1]],
    "unknown algorithm": [["md5:" + "00" * 16, 8, 1, "raw", 1]],
    "no algorithm": [["0" * 32, 8, 1, "raw", 1]],
    "mixed algorithms": [[XXH, 8, 1, "raw", 1], ["sha256:" + "ab" * 32, 9, 1, "raw", 1]],
    "digest not a string": [[12, 8, 1, "raw", 1]],
    "float offset": [[XXH, 8.0, 1, "raw", 1]],
    "bool length": [[XXH, 8, True, "raw", 1]],
    "negative length": [[XXH, 8, -1, "raw", 1]],
    "negative size": [[XXH, 8, 1, "raw", -1]],
    "size past 64 bits": [[XXH, 8, 1, "zstd", 1 << 64]],
    "range past the blob area": [[XXH, 8, 200, "raw", 1]],
    "offset inside the magic": [[XXH, 2, 1, "raw", 1]],
    "unknown codec": [[XXH, 8, 1, "lz4", 1]],
    "short row": [[XXH, 8, 1, "raw"]],
    "rows not a list": {"a": 1},
    "row not a list": [7],
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_index_makes_the_pack_damaged(tmp_path: Path, case: str) -> None:
    good = write(tmp_path, [(OTHER, b"other", "raw", 5)])
    bad = write_index(tmp_path, MALFORMED[case])
    with pytest.raises(IntegrityError, match="malformed index"):
        read_index(tmp_path / bad)
    index = PackIndex(tmp_path)
    assert index.find(XXH) is None
    assert index.entries(bad) == []
    assert index.packs() == {good: [OTHER], bad: []}
    assert index.damaged() == [bad]
    assert index.find(OTHER) == PackEntry(good, len(MAGIC), 5, "raw", 5)
    assert list(index.digests()) == [OTHER]


def test_a_well_formed_hostile_index_is_used(tmp_path: Path) -> None:
    """Ranges may overlap and a digest may repeat inside one pack: both are readable."""
    name = write_index(tmp_path, [[XXH, 8, 4, "raw", 4], [XXH, 8, 4, "raw", 4],
                                  [OTHER, 10, 0, "zstd", 1 << 40]])
    index = PackIndex(tmp_path)
    assert index.find(XXH) == PackEntry(name, 8, 4, "raw", 4)
    assert index.find(OTHER) == PackEntry(name, 10, 0, "zstd", 1 << 40)
    assert [d for d, _ in index.entries(name)] == [XXH, XXH, OTHER]
    assert index.entries(name) == read_index(tmp_path / name)
    assert sorted(index.digests()) == sorted([XXH, OTHER])
    (tmp_path / name).unlink()
    index.forget(name)
    assert index.find(XXH) is None
    assert index.packs() == {}


@pytest.mark.parametrize("digest", [
    "", ":", "xxh3-128", "xxh3-128:", "xxh3-128:0", "xxh3-128:zz", XXH.upper()[9:],
    "xxh3-128:" + XXH[9:].upper(), "xxh3-128:" + XXH[9:-2] + " 0", "sha256:" + XXH[9:],
    "blake3:" + XXH[9:] * 2, XXH + "00", XXH[:-2], " " + XXH, XXH[9:],
])
def test_a_malformed_or_foreign_digest_is_not_found(tmp_path: Path, digest: str) -> None:
    write(tmp_path, [(XXH, b"x", "raw", 1)])
    index = PackIndex(tmp_path)
    assert index.find(XXH) is not None
    assert index.find(digest) is None
    assert index.lookup(digest) is None


def test_same_raw_digest_of_two_algorithms_are_two_blobs(tmp_path: Path) -> None:
    sha, b3 = "sha256:" + "ab" * 32, "blake3:" + "ab" * 32
    one = write(tmp_path, [(sha, b"s", "raw", 1)])
    two = write(tmp_path, [(b3, b"bb", "raw", 2)])
    index = PackIndex(tmp_path)
    assert index.find(sha) == PackEntry(one, 8, 1, "raw", 1)
    assert index.find(b3) == PackEntry(two, 8, 2, "raw", 2)
    (tmp_path / one).unlink()
    index.forget(one)
    assert index.find(sha) is None
    assert index.find(b3) is not None
    assert sorted(index.digests()) == [b3]


def test_readers_never_miss_a_blob_two_packs_hold_while_they_come_and_go(
    tmp_path: Path,
) -> None:
    """Both packs hold every digest; a writer forgets and re-adds them in turn (each forget
    hands the digests to the other pack's copies); readers must always find every one."""
    digests = [f"xxh3-128:{i:016x}{i * 7919:016x}" for i in range(300)]
    digests += [f"xxh3-128:{'ab' * 8}{i:016x}" for i in range(50)]  # one shared prefix
    items = [(d, b"x", "raw", 1) for d in digests]
    a, b = write(tmp_path, items), write(tmp_path, items[::-1])
    index = PackIndex(tmp_path)
    index.refresh()
    stop = threading.Event()
    misses: list[str] = []

    def writer() -> None:
        for _ in range(60):
            for name in (a, b):
                index.forget(name)
                index.add(name)
        stop.set()

    def reader() -> None:
        while not stop.is_set():
            for d in digests:
                entry = index.find(d)
                if entry is None or entry.pack not in (a, b):
                    misses.append(d)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader)
                                                   for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert misses == []
    assert sorted(index.digests()) == sorted(digests)
    assert {n: sorted(ds) for n, ds in index.packs().items()} == {
        a: sorted(digests), b: sorted(digests)}
