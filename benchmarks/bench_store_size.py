"""Raw vs zstd on float weights: what compression saves and what it costs (issue 15 "Store size").

    python benchmarks/bench_store_size.py                      # 256 MiB of weights (a few minutes)
    python benchmarks/bench_store_size.py --mib 16 --rounds 1  # smoke run
    python benchmarks/bench_store_size.py --small-files 20000  # also the shared small files

The data is one file of float32 "weights" (``gen_data.weights_f32``: normal, sd 0.02; numpy is
needed, see README), ``--mib`` MiB, and with ``--small-files N`` also N files of the shared
benchmark data (``gen_data.gen_small_dir``: 1-64 KiB, mixed kinds).

Compression is a store setting fixed at creation: ``castore.init(path, compression=, level=,
min_saving=)`` with ``compression`` ``"zstd"`` (default) or ``"none"``, ``level`` 1-22 (default
3) and ``min_saving`` (default 0.1). Under ``"zstd"`` the codec is chosen per blob: a sample
(the first 256 KiB; the whole content of a blob under 4 MiB, read in one chunk) is compressed
at the store's level, and the blob is stored raw unless zstd saves at least ``min_saving``.
Float weights save ~7%, so the default stores them raw and ``min_saving=0`` compresses them.
The last table measures ``zstandard`` directly (compressed size and compress/decompress speed
at levels 1, 3 and 19).

For each store setting (``none``; the default at zstd level 3; ``min_saving=0`` at zstd levels
1, 3 and 19), each operation in its own
spawned process (``_common.in_child``), medians of ``--rounds``: add of the weights (a fresh
durable store per round); stored bytes (allocated blocks of the store directory) and the blob's
codec; a fresh checkout by ``copy``, ``hardlink`` and ``symlink`` (a compressed blob cannot be
linked: castore copies it, and the table says whether the file was linked); reading the file to
its end through ``v.open()`` (MB/s, 10^6 bytes/s). Baselines in the same run: ``cp`` of the file
and a plain sequential read of it. ``os.sync()`` runs (untimed) before every operation; the
cache is warm (caches are not dropped).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
from _common import in_child, mbps, median, print_table

#: (label, compression, level, min_saving) of each store setting measured.
SETTINGS = (("none", "none", 3, 0.1), ("zstd-3", "zstd", 3, 0.1),
            ("zstd-1 ms0", "zstd", 1, 0.0), ("zstd-3 ms0", "zstd", 3, 0.0),
            ("zstd-19 ms0", "zstd", 19, 0.0))
LINKS = ("copy", "hardlink", "symlink")
WEIGHTS = "weights.f32"
CHUNK = 4 * _common.MiB


# -- operations, each run in its own spawned process -------------------------------------------


def _add(
    store: str, compression: str, level: int, min_saving: float, src: str, name: str
) -> dict[str, Any]:
    import castore

    st = castore.init(store, compression=compression, level=level, min_saving=min_saving)
    t0 = time.perf_counter()
    with st.draft(name) as draft:
        if os.path.isdir(src):
            draft.add_dir(src)
        else:
            draft.add_file(src, name=WEIGHTS)
    seconds = time.perf_counter() - t0
    version = st.get(name)
    codecs: dict[str, int] = {}
    stored = 0
    for entry in version.files():
        if entry.digest is None:
            continue
        stat = st.blobs.stat(entry.digest)
        codecs[stat.codec] = codecs.get(stat.codec, 0) + 1
        stored += stat.stored_size
    st.close()
    return {"seconds": seconds, "codecs": codecs, "blob_bytes": stored}


def _checkout(store: str, name: str, target: str, link: str) -> dict[str, Any]:
    import castore

    st = castore.open(store, create=False)
    version = st.get(name)
    t0 = time.perf_counter()
    version.checkout(target, link=link)
    seconds = time.perf_counter() - t0
    st.close()
    linked = 0
    files = 0
    for dirpath, _dirs, names in os.walk(target):
        for n in names:
            p = os.path.join(dirpath, n)
            if n.startswith(".castore"):
                continue
            files += 1
            st_ = os.lstat(p)
            if os.path.islink(p) or st_.st_nlink > 1:
                linked += 1
    return {"seconds": seconds, "linked": linked, "files": files}


def _read(store: str, name: str) -> dict[str, Any]:
    import castore

    st = castore.open(store, create=False)
    version = st.get(name)
    total = 0
    t0 = time.perf_counter()
    with version.open(WEIGHTS) as fh:
        while chunk := fh.read(CHUNK):
            total += len(chunk)
    seconds = time.perf_counter() - t0
    st.close()
    return {"seconds": seconds, "bytes": total}


def _plain_read(path: str) -> dict[str, Any]:
    total = 0
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(CHUNK)
        while n := fh.readinto(buf):
            total += n
    return {"seconds": time.perf_counter() - t0, "bytes": total}


def _zstd(path: str, level: int, threads: int) -> dict[str, Any]:
    """Compress the whole file as one frame, then decompress it (streaming, 4 MiB reads)."""
    size = os.path.getsize(path)
    cctx = zstandard.ZstdCompressor(level=level, threads=threads)
    out = path + f".l{level}.t{threads}.zst"
    t0 = time.perf_counter()
    with open(path, "rb") as src, open(out, "wb") as dst:
        cctx.copy_stream(src, dst, size=size, read_size=CHUNK, write_size=CHUNK)
    compress = time.perf_counter() - t0
    stored = os.path.getsize(out)
    t0 = time.perf_counter()
    with open(out, "rb") as src:
        reader = zstandard.ZstdDecompressor().stream_reader(src, read_size=CHUNK)
        while reader.read(CHUNK):
            pass
    decompress = time.perf_counter() - t0
    os.unlink(out)
    return {"bytes": size, "stored": stored, "compress": compress, "decompress": decompress}


# -- measuring -------------------------------------------------------------------------------


def allocated(root: Path) -> int:
    """Allocated bytes under ``root`` (``st_blocks`` x 512, each inode once), like ``du``."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames, "."):
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def _cp(src: Path, dst: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    subprocess.run(["cp", str(src), str(dst)], check=True)
    return {"seconds": time.perf_counter() - t0}


def run(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    size = args.mib * _common.MiB
    weights = _common.write_data_file(work / "data" / WEIGHTS, size, "f32", seed=1000)
    small = None
    if args.small_files:
        small = work / "data" / "small"
        if not small.exists():
            _common.load_gen_data().gen_small_dir(small, args.small_files)
    _common.warm_file(weights)
    res: dict[str, Any] = {"size": size, "base": {}, "stores": {}}
    for _ in range(args.rounds):
        os.sync()
        out = work / "cp.out"
        res["base"].setdefault("cp", []).append(_cp(weights, out))
        out.unlink()
        os.sync()
        res["base"].setdefault("read", []).append(in_child(_plain_read, str(weights)))
        for label, compression, level, min_saving in SETTINGS:
            store = work / f"store-{label}"
            shutil.rmtree(store, ignore_errors=True)
            os.sync()
            rec = res["stores"].setdefault(label, {})
            add = in_child(_add, str(store), compression, level, min_saving, str(weights),
                           "weights")
            rec.setdefault("add", []).append(add)
            os.sync()
            rec.setdefault("stored", []).append(allocated(store))
            for link in LINKS:
                target = work / f"out-{label}-{link}"
                shutil.rmtree(target, ignore_errors=True)
                os.sync()
                co = in_child(_checkout, str(store), "weights", str(target), link)
                rec.setdefault(link, []).append(co)
                shutil.rmtree(target, ignore_errors=True)
            os.sync()
            rec.setdefault("read", []).append(in_child(_read, str(store), "weights"))
            if small is not None:
                before = allocated(store)
                os.sync()
                sadd = in_child(_add, str(store), compression, level, min_saving, str(small),
                                "small")
                os.sync()
                rec.setdefault("small_add", []).append(sadd)
                rec.setdefault("small_stored", []).append(allocated(store) - before)
                target = work / f"out-{label}-small"
                co = in_child(_checkout, str(store), "small", str(target), "copy")
                rec.setdefault("small_copy", []).append(co)
                shutil.rmtree(target, ignore_errors=True)
            shutil.rmtree(store, ignore_errors=True)
    zrows = []
    for level in args.levels:
        for threads in (0, -1):
            os.sync()
            zrows.append((level, threads, in_child(_zstd, str(weights), level, threads)))
    res["zstd"] = zrows
    if small is not None:
        res["small_bytes"] = sum(p.stat().st_size for p in small.rglob("*") if p.is_file())
        res["small_allocated"] = allocated(small)
    return res


# -- reporting -------------------------------------------------------------------------------


def _sec(runs: list[dict[str, Any]]) -> float:
    return median([float(r["seconds"]) for r in runs])


def report(res: dict[str, Any], args: argparse.Namespace) -> None:
    size = res["size"]
    cp = _sec(res["base"]["cp"])
    plain = _sec(res["base"]["read"])
    print(f"\n## Float32 weights, {args.mib} MiB ({size:,} bytes), medians of {args.rounds}\n")
    print(f"baselines: cp {cp:.2f} s ({mbps(size, cp):,.0f} MB/s); plain read "
          f"{mbps(size, plain):,.0f} MB/s\n")
    rows = []
    for label, rec in res["stores"].items():
        add = rec["add"][-1]
        codecs = ",".join(f"{k}" for k in sorted(add["codecs"]))
        stored = int(median(rec["stored"]))
        row: list[Any] = [label, codecs, f"{add['blob_bytes']:,}", f"{stored:,}",
                          stored / size, _sec(rec["add"]), mbps(size, _sec(rec["add"]))]
        for link in LINKS:
            linked = all(r["linked"] == r["files"] for r in rec[link])
            row.append(f"{_sec(rec[link]):.3f}{'' if linked or link == 'copy' else ' (copied)'}")
        row.append(mbps(size, _sec(rec["read"])))
        peak = max(float(r["peak_rss_mib"]) for r in rec["add"])
        row.append(peak)
        rows.append(row)
    print_table(["store", "codec", "blob bytes", "store allocated", "x input", "add s", "add MB/s",
                 "checkout copy s", "hardlink s", "symlink s", "read MB/s", "add RSS MiB"], rows)
    print("\nblob bytes: the blob as stored; store allocated: `du` of the whole store "
          "(catalogue included). `(copied)`: the link mode fell back to a copy (the blob is "
          "compressed).")

    if "small_bytes" in res:
        print(f"\n## Shared small files: {args.small_files:,} files, {res['small_bytes']:,} "
              f"bytes ({res['small_allocated']:,} allocated)\n")
        rows = []
        for label, rec in res["stores"].items():
            stored = int(median(rec["small_stored"]))
            codecs = rec["small_add"][-1]["codecs"]
            rows.append([label, ", ".join(f"{k} {v:,}" for k, v in sorted(codecs.items())),
                         f"{stored:,}", stored / res["small_bytes"], _sec(rec["small_add"]),
                         _sec(rec["small_copy"])])
        print_table(["store", "blobs by codec", "stored bytes", "x input", "add s",
                     "checkout copy s"], rows)

    print("\n## zstandard directly on the same weights (one frame, streaming)\n")
    rows = []
    for level, threads, z in res["zstd"]:
        rows.append([level, "all cores" if threads else "1", f"{z['stored']:,}",
                     100 * (1 - z["stored"] / z["bytes"]), mbps(z["bytes"], z["compress"]),
                     mbps(z["bytes"], z["decompress"])])
    print_table(["level", "threads", "compressed bytes", "saved %", "compress MB/s",
                 "decompress MB/s"], rows)

    z3 = next((z for lv, t, z in res["zstd"] if lv == 3 and t == 0), None)
    auto = res["stores"].get("zstd-3")
    forced = res["stores"].get("zstd-3 ms0")
    if z3 is None or auto is None or forced is None:
        return
    saved = 100 * (1 - z3["stored"] / z3["bytes"])
    others = ", ".join(f"level {lv} {100 * (1 - z['stored'] / z['bytes']):.1f}% at "
                       f"{mbps(z['bytes'], z['compress']):,.0f} MB/s"
                       for lv, t, z in res["zstd"] if t == 0 and lv != 3)
    codec = ",".join(sorted(auto["add"][-1]["codecs"]))
    copy = _sec(auto["copy"])
    fstored, astored = median(forced["stored"]), median(auto["stored"])
    text = (
        f"On {args.mib} MiB of float32 weights, zstd level 3 saves {saved:.1f}% "
        f"({z3['bytes'] - z3['stored']:,} bytes; {others or 'no other level measured'}). "
        f"The default store (zstd level 3, codec chosen per blob, raw unless zstd saves 10%) "
        f"stored them as {codec}: a checkout can hardlink ({_sec(auto['hardlink']):.3f} s) or "
        f"symlink ({_sec(auto['symlink']):.3f} s) them, and a copy ({copy:.3f} s, "
        f"{mbps(size, copy):,.0f} MB/s) needs no decoding, where a zstd blob is decoded "
        f"({mbps(z3['bytes'], z3['decompress']):,.0f} MB/s single-threaded, before the "
        f"write) and can never be linked. With min_saving=0 the store is "
        f"{100 * (1 - fstored / astored):.1f}% smaller on them; its add takes "
        f"{_sec(forced['add']) / _sec(auto['add']):.2f}x the default's time, its copy "
        f"checkout {_sec(forced['copy']) / copy:.2f}x and its hardlink checkout "
        f"{_sec(forced['hardlink']) / _sec(auto['hardlink']):.1f}x (a copy, not a link)."
    )
    print("\n## Conclusion\n")
    print(textwrap.fill(text, width=96))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=256, help="size of the weights file (MiB)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small-files", type=int, default=0,
                        help="also add N files of the shared benchmark data (default: none)")
    parser.add_argument("--levels", default="1,3,19",
                        help="zstd levels for the direct zstandard table (default: 1,3,19)")
    parser.add_argument("--workdir", default=None,
                        help="working directory (default: a temp dir under /tmp, removed after)")
    parser.add_argument("--keep", action="store_true", help="keep the data files")
    args = parser.parse_args()
    args.levels = [int(v) for v in args.levels.split(",") if v]
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="castore-size-"))
    work.mkdir(parents=True, exist_ok=True)
    # the data, one store (raw: input size), one checkout, one zstd frame; small files x 3
    need = 4 * args.mib * _common.MiB + args.small_files * 3 * 40 * 1024
    free = shutil.disk_usage(work).free
    print("# bench_store_size: raw vs zstd on float weights; warm cache")
    print(_common.machine_summary(work))
    print(f"work dir {work}; needs about {need / _common.GiB:.2f} GiB "
          f"(free {free / _common.GiB:.1f} GiB); load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    if free < need:
        print("Not enough free space there: choose a roomier --workdir or a smaller --mib. "
              "Nothing was run.")
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
        raise SystemExit(2)
    started = time.perf_counter()
    try:
        res = run(work, args)
    finally:
        if not args.keep:
            shutil.rmtree(work if not args.workdir else work / "data", ignore_errors=True)
    report(res, args)
    print(f"\ntotal wall time {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
