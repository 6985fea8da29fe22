"""Random 4 KiB reads through the seekable ``ArtifactVersion.open()`` (issue 14).

    python benchmarks/bench_open.py [--size-mib 1024] [--reads 2000] [--dir DIR]
    python benchmarks/bench_open.py --size-mib 8 --reads 50     # tiny smoke run

Two versions of one file each: a large raw blob (incompressible bytes) and a large compressed
blob (CSV-like text, stored zstd). For each, in the same run: the first ranged read of a cold
process cache (one full verifying pass), then ``--reads`` random 4 KiB reads at random offsets
through one open reader (reads/s), each read checked against its 64 KiB chunk digest. Baseline:
``os.pread`` of 4 KiB at the same offsets on the raw blob file itself (no checks). Compressed
random reads decode forward (a backward seek restarts the frame), so they are measured with
fewer reads (``--reads // 20``, at least 5). Prints figures; never asserts.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import castore
from castore.storage.seekable import forget_verified

MiB = 1024 * 1024
READ = 4096


def make_files(root: Path, size: int) -> tuple[Path, Path]:
    raw, text = root / "raw.bin", root / "table.csv"
    rng = random.Random(14)
    with open(raw, "wb") as f:
        left = size
        while left:
            n = min(left, 4 * MiB)
            f.write(rng.randbytes(n))
            left -= n
    with open(text, "wb") as f:
        written, i = 0, 0
        while written < size:
            line = b"%d,%d,sample-%d,%.6f\n" % (i, rng.randrange(10**6), i % 977, rng.random())
            f.write(line[: size - written])
            written += min(len(line), size - written)
            i += 1
    return raw, text


def random_reads(f: object, offsets: list[int]) -> float:
    t0 = time.perf_counter()
    for off in offsets:
        f.seek(off)  # type: ignore[attr-defined]
        f.read(READ)  # type: ignore[attr-defined]
    return len(offsets) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--reads", type=int, default=2000)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    size = args.size_mib * MiB
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        raw, text = make_files(root, size)
        store = castore.init(root / "store", durable=False)
        with store.draft("bench", type="dataset") as d:
            d.add_file(raw)
            d.add_file(text)
        v = store.get("bench")
        rng = random.Random(1)
        print(f"size {args.size_mib} MiB, {args.reads} random {READ}-byte reads")
        print("| blob | codec | first ranged read (s) | random reads/s | pread baseline/s |")
        print("|---|---|---|---|---|")
        for name in ("raw.bin", "table.csv"):
            entry = v.get_entry(name)
            codec = store.blobs.stat(entry.digest).codec
            n = args.reads if codec == "raw" else max(5, args.reads // 20)
            offsets = [rng.randrange(0, size - READ) for _ in range(n)]
            forget_verified()
            with v.open(name) as f:
                t0 = time.perf_counter()
                f.seek(size // 2)
                f.read(READ)
                first = time.perf_counter() - t0
                rate = random_reads(f, offsets)
            base = "—"
            if codec == "raw":
                fd = os.open(store.blobs.path_of(entry.digest), os.O_RDONLY)
                try:
                    t0 = time.perf_counter()
                    for off in offsets:
                        os.pread(fd, READ, off)
                    base = f"{len(offsets) / (time.perf_counter() - t0):,.0f}"
                finally:
                    os.close(fd)
            print(f"| {name} | {codec} | {first:.3f} | {rate:,.0f} | {base} |")
        store.close()


if __name__ == "__main__":
    sys.exit(main())
