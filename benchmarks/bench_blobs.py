"""Blob-store put throughput and peak memory against copy+fsync of the same file (issue 2).

    python benchmarks/bench_blobs.py [--size-mib 1024] [--runs 3] [--dir DIR]
                                     [--cases incompressible,csv] [--no-hash] [--profile]

For each case (1 GiB incompressible bytes; 1 GiB of CSV-like text), in the same run and
alternating the order every run: ``shutil.copyfile`` + fsync of the file and its directory,
then ``castore.init(...).blobs.put_file`` into a fresh durable store (the default), and
``put_file`` into a ``durable=False`` store (to show what fsync costs). Each operation runs in
its own spawned process, so its peak RSS (``getrusage``, interpreter and imports included) is
its own. The source is in the page cache for every operation alike; ``os.sync()`` runs
before each one so no operation pays for the previous one's writeback.

Also a hashing baseline: ``hashlib.sha256`` and ``xxhash.xxh3_128`` over the same file from the
page cache (4 MiB reads).

Targets (printed as PASS/MISS, never asserted): incompressible put >= 0.7 x copy+fsync
throughput; peak RSS of a put < 150 MiB. ``--size-mib 4096`` is the "adding a 4 GiB file"
memory target. MB/s is 10^6 bytes/s; figures are medians of ``--runs``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
import xxhash

import castore

CASES = {
    # name: (gen_data kind, seed, distinct 64 MiB pieces (0 = all distinct))
    "incompressible": ("random", 1000, 0),
    "csv": ("csv", 2000, 4),
}
TARGET_RATIO = 0.7
TARGET_RSS_MIB = 150.0
CHUNK = 4 * _common.MiB


# -- operations, each run in its own spawned process -------------------------------------------


def op_copy(src: str, dst: str) -> dict[str, Any]:
    """shutil.copyfile, fsync the copy and its directory."""
    t0 = time.perf_counter()
    shutil.copyfile(src, dst)
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    dfd = os.open(os.path.dirname(dst), os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return {"s": time.perf_counter() - t0}


def op_put(src: str, store_dir: str, durable: bool) -> dict[str, Any]:
    """castore.init(store_dir, durable=...).blobs.put_file(src); only the put is timed."""
    with castore.init(store_dir, durable=durable) as store:
        t0 = time.perf_counter()
        res = store.blobs.put_file(src)
        seconds = time.perf_counter() - t0
    return {"s": seconds, "codec": res.codec, "stored": res.stored_size, "digest": str(res.digest)}


def op_hash(src: str, algorithm: str) -> dict[str, Any]:
    """Hash the file from the page cache with 4 MiB reads."""
    h = hashlib.sha256() if algorithm == "sha256" else xxhash.xxh3_128()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    t0 = time.perf_counter()
    with open(src, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(view[:n])
    return {"s": time.perf_counter() - t0, "hex": h.hexdigest()}


# -- driver ---------------------------------------------------------------------------------


def measure(name: str, src: Path, work: Path, runs: int, with_hash: bool) -> dict[str, Any]:
    size = src.stat().st_size
    times: dict[str, list[float]] = {}
    rss: dict[str, list[float]] = {}
    base: dict[str, list[float]] = {}
    info: dict[str, Any] = {}

    def one(label: str, fn: Any, *args: Any) -> None:
        os.sync()
        r = _common.in_child(fn, *args)
        times.setdefault(label, []).append(r["s"])
        rss.setdefault(label, []).append(r["peak_rss_mib"])
        base.setdefault(label, []).append(r["rss_before_mib"])
        if "codec" in r:
            info[label] = r

    _common.warm_file(src)
    for i in range(runs):
        out = work / f"out-{name}-{i}"
        out.mkdir()
        ops = [
            ("copy+fsync", op_copy, str(src), str(out / "copy.bin")),
            ("put (durable)", op_put, str(src), str(out / "store"), True),
            ("put (durable=False)", op_put, str(src), str(out / "store-nosync"), False),
        ]
        for label, fn, *args in ops if i % 2 == 0 else reversed(ops):
            print(f"  {name} run {i + 1}/{runs}: {label}", file=sys.stderr, flush=True)
            one(label, fn, *args)
        shutil.rmtree(out)
        if with_hash:
            for algo in ("sha256", "xxh3_128"):
                one(f"hash {algo} (page cache)", op_hash, str(src), algo)
    copy_s = _common.median(times["copy+fsync"])
    rows = []
    for label, ts in times.items():
        s = _common.median(ts)
        rows.append(
            [
                label,
                _common.mbps(size, s),
                copy_s / s,
                _common.median(rss[label]),
                _common.median(base[label]),
            ]
        )
    put = info.get("put (durable)", {})
    return {
        "name": name,
        "size": size,
        "rows": rows,
        "codec": put.get("codec"),
        "stored": put.get("stored"),
        "ratio": copy_s / _common.median(times["put (durable)"]),
        "put_rss": max(rss["put (durable)"]),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size-mib", type=int, default=1024, help="file size per case (MiB)")
    ap.add_argument("--runs", type=int, default=3, help="runs per operation (median reported)")
    ap.add_argument("--dir", help="work directory (kept; data is reused when the size matches)")
    ap.add_argument("--cases", default=",".join(CASES), help="comma list of: " + ", ".join(CASES))
    ap.add_argument("--no-hash", action="store_true", help="skip the hashing baseline")
    a = ap.parse_args(argv)
    cases = [c for c in a.cases.split(",") if c]
    unknown = set(cases) - set(CASES)
    if unknown:
        ap.error(f"unknown case(s) {', '.join(sorted(unknown))}; choose from {', '.join(CASES)}")
    work = Path(a.dir) if a.dir else Path(tempfile.mkdtemp(prefix="castore-bench-blobs-"))
    work.mkdir(parents=True, exist_ok=True)
    size = a.size_mib * _common.MiB
    print(f"# bench_blobs: {a.size_mib} MiB per case, {a.runs} runs, work dir {work}")
    print(f"# machine: {_common.machine_summary(work)}")
    print(f"# castore {getattr(castore, '__version__', '?')}, durable store (default settings)")
    results = []
    try:
        for name in cases:
            kind, seed, unique = CASES[name]
            src = work / "data" / f"{name}-{a.size_mib}MiB.bin"
            print(f"  generating {src} ...", file=sys.stderr, flush=True)
            _common.write_data_file(src, size, kind, seed=seed, unique=unique)
            results.append(measure(name, src, work, a.runs, not a.no_hash))
    finally:
        if not a.dir:
            shutil.rmtree(work, ignore_errors=True)
    for r in results:
        print(
            f"\n## {r['name']}: {r['size'] / _common.MiB:.0f} MiB, put stored it as "
            f"{r['codec']} ({r['stored'] / r['size']:.1%} of the size)\n"
        )
        _common.print_table(
            ["operation", "MB/s", "x copy+fsync", "peak RSS MiB", "RSS after imports MiB"],
            r["rows"],
        )
    print("\n## targets\n")
    for r in results:
        if r["name"] == "incompressible":
            print(
                f"- incompressible put >= {TARGET_RATIO} x copy+fsync: {r['ratio']:.2f} x "
                f"-> {_common.verdict(r['ratio'] >= TARGET_RATIO)}"
            )
    for r in results:
        print(
            f"- {r['name']} put peak RSS < {TARGET_RSS_MIB:.0f} MiB ({r['size'] / _common.MiB:.0f}"
            f" MiB file): {r['put_rss']:.1f} MiB -> "
            f"{_common.verdict(r['put_rss'] < TARGET_RSS_MIB)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
