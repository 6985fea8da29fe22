"""Growth: 10k, 100k and 1M tiny text files, castore against ``cp -r`` of the same tree (issue 15).

    python benchmarks/bench_growth.py                              # 10k, 100k, 1M (long: see below)
    python benchmarks/bench_growth.py --sizes 500,2000 --rounds 1  # smoke run (seconds)
    python benchmarks/bench_growth.py --sizes 100000 --workdir /scratch/g --keep

For each size N (text files of 20-500 bytes, 1,000 per directory: ``bench_small_files``'
``--tiny`` data), in the same run and in this order per round:

* ``cp -r`` of the tree, then ``sync`` (timed apart); the copy is removed before castore runs;
* add: ``castore.init(store)`` (default settings: xxh3-128, zstd level 3, durable) then
  ``with store.draft(...) as d: d.add_dir(tree)`` (finalized on exit), then ``sync``;
* a fresh checkout by copy (``v.checkout(new_dir, link="copy")``), then ``sync``;
* ``v.verify(checkout)`` of that checkout;
* iterating ``v.files()`` (the count, and the peak RSS: a 1M-file version must stream).

Every castore case runs in its own spawned process (``_common.in_child``): its time covers
the operation only (not the interpreter start or ``import castore``), and its peak RSS is that
process's ``VmHWM`` (interpreter and imports included; the import baseline is printed too).
The cache is warm: the tree was just written or read, and page caches are not dropped (that
needs root and is not required). The ratio to ``cp -r`` that the targets use is
"operation + the sync after it" over "``cp -r`` + the sync after it", so both sides count
getting the data to disk; the ratio without the syncs is printed too.

Stored bytes are allocated blocks (``st_blocks``, as ``du``) of the whole store directory
(the catalogue included and also shown apart; a hardlinked inode once), against the tree's
apparent size, its allocated size, and its zstd level-3 size computed two ways with
``zstandard``: **per file** (each file's bytes compressed alone as one frame, the sizes
summed: the figure the target uses, since a store keeps blobs apart) and the
**concatenation** (every file in path order as one stream: what a solid archive could reach;
printed for information).

Targets (DESIGN.md "growth", printed as PASS/MISS, never asserted): add <= 2x ``cp -r``;
checkout <= 1.5x ``cp -r``; time linear (per-file time grows by no more than 1.2x from one
size to the next); peak RSS of add, checkout and ``files()`` of the largest version < 512 MiB
(the target names the 1M-file version); stored <= 1.1x the per-file zstd size.

``--rounds`` defaults to 3 below 1M files and to 1 at 1M and above (one 1M round takes tens
of minutes on 2 cores); an explicit ``--rounds`` applies to every size. Figures are medians.
Sizes run one after another and each size's files are deleted before the next, unless
``--keep``. The disk space (and inodes) needed is estimated up front; the run refuses if
``shutil.disk_usage`` shows less free.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
from _common import in_child, median, print_table, verdict
from bench_small_files import make_tiny

ADD_RATIO = 2.0
CHECKOUT_RATIO = 1.5
STEP_RATIO = 1.2
RSS_MIB = 512.0
STORED_RATIO = 1.1
#: Estimated allocated bytes per tiny file: a 4 KiB block, its share of a directory, slack.
TREE_BYTES_PER_FILE = 4096 + 160
#: Generous estimate of a store's bytes per tiny file (packs, catalogue rows, manifest).
STORE_BYTES_PER_FILE = 1024
NAME = "growth"


# -- cases, each run in its own spawned process ------------------------------------------------


def _add(store: str, tree: str) -> dict[str, Any]:
    import castore

    st = castore.init(store, compression="zstd", level=3)
    t0 = time.perf_counter()
    with st.draft(NAME) as draft:
        draft.add_dir(tree)
    seconds = time.perf_counter() - t0
    st.close()
    return {"seconds": seconds}


def _checkout(store: str, target: str) -> dict[str, Any]:
    import castore

    st = castore.open(store, create=False)
    version = st.get(NAME)
    t0 = time.perf_counter()
    version.checkout(target, link="copy")
    seconds = time.perf_counter() - t0
    st.close()
    return {"seconds": seconds}


def _verify(store: str, target: str) -> dict[str, Any]:
    import castore

    st = castore.open(store, create=False)
    version = st.get(NAME)
    t0 = time.perf_counter()
    report = version.verify(target)
    seconds = time.perf_counter() - t0
    st.close()
    return {"seconds": seconds, "ok": bool(report.ok)}


def _files(store: str) -> dict[str, Any]:
    import castore

    st = castore.open(store, create=False)
    t0 = time.perf_counter()
    version = st.get(NAME)
    count = 0
    total = 0
    for entry in version.files():
        count += 1
        total += entry.size
    seconds = time.perf_counter() - t0
    st.close()
    return {"seconds": seconds, "count": count, "bytes": total}


# -- measuring -------------------------------------------------------------------------------


def _sync() -> float:
    t0 = time.perf_counter()
    os.sync()
    return time.perf_counter() - t0


def allocated(root: Path) -> int:
    """Allocated bytes under ``root`` (``st_blocks`` x 512, each inode once), like ``du``."""
    if not root.is_dir():
        return root.lstat().st_blocks * 512
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames, "."):
            st = os.lstat(os.path.join(dirpath, name))
            key = (st.st_dev, st.st_ino)
            if key not in seen:
                seen.add(key)
                total += st.st_blocks * 512
    return total


def tree_sizes(root: Path) -> dict[str, int]:
    """Apparent bytes, allocated bytes and zstd level-3 sizes (per file; concatenated)."""
    cctx = zstandard.ZstdCompressor(level=3)
    stream = zstandard.ZstdCompressor(level=3).compressobj()
    apparent = per_file = concat = files = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            with open(os.path.join(dirpath, name), "rb") as fh:
                data = fh.read()
            files += 1
            apparent += len(data)
            per_file += len(cctx.compress(data))
            concat += len(stream.compress(data))
    concat += len(stream.flush())
    return {"files": files, "apparent": apparent, "allocated": allocated(root),
            "zstd_per_file": per_file, "zstd_concat": concat}


def estimate_need(sizes: list[int], keep: bool) -> tuple[int, int]:
    """(bytes, inodes) needed: the tree, a copy (cp or checkout) and a store at a time."""
    per = [n * (2 * TREE_BYTES_PER_FILE + STORE_BYTES_PER_FILE) for n in sizes]
    inodes = [2 * n + n // 500 + 1000 for n in sizes]
    if keep:  # every size's tree and store stay; one copy at a time
        return (sum(n * (TREE_BYTES_PER_FILE + STORE_BYTES_PER_FILE) for n in sizes)
                + max(n * TREE_BYTES_PER_FILE for n in sizes), sum(inodes))
    return max(per), max(inodes)


def run_size(work: Path, n: int, rounds: int) -> dict[str, Any]:
    base = work / f"n{n}"
    tree = base / "tree"
    t0 = time.perf_counter()
    if not tree.exists():
        make_tiny(tree, n)
    gen_seconds = time.perf_counter() - t0
    _sync()
    sizes = tree_sizes(tree)
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in range(rounds):
        copy, store, out = base / "cp", base / f"store{r}", base / "checkout"
        for p in (copy, store, out):
            shutil.rmtree(p, ignore_errors=True)
        _sync()
        t0 = time.perf_counter()
        subprocess.run(["cp", "-r", str(tree), str(copy)], check=True)
        cp = {"seconds": time.perf_counter() - t0, "sync": _sync()}
        shutil.rmtree(copy)
        _sync()
        add = in_child(_add, str(store), str(tree))
        add["sync"] = _sync()
        stored = allocated(store)
        catalogue = sum(allocated(p) for p in store.glob("catalog.db*"))
        checkout = in_child(_checkout, str(store), str(out))
        checkout["sync"] = _sync()
        check = in_child(_verify, str(store), str(out))
        files = in_child(_files, str(store))
        for key, res in (("cp", cp), ("add", add), ("checkout", checkout), ("verify", check),
                         ("files", files)):
            runs.setdefault(key, []).append(res)
        runs.setdefault("stored", []).append({"bytes": stored, "catalogue": catalogue})
        shutil.rmtree(out, ignore_errors=True)
        if r < rounds - 1:
            shutil.rmtree(store, ignore_errors=True)
    return {"n": n, "rounds": rounds, "gen_seconds": gen_seconds, "sizes": sizes, "runs": runs}


# -- reporting -------------------------------------------------------------------------------


def _med(res: dict[str, Any], case: str, key: str = "seconds") -> float:
    return median([float(r[key]) for r in res["runs"][case]])


def _peak(res: dict[str, Any], case: str) -> float:
    return max(float(r["peak_rss_mib"]) for r in res["runs"][case])


def report(results: list[dict[str, Any]]) -> None:
    print("\n## Times (medians, seconds; µs/file; ratio = (op + sync) / (cp -r + sync))\n")
    rows = []
    for res in results:
        n = res["n"]
        cp, cps = _med(res, "cp"), _med(res, "cp", "sync")
        for case in ("cp", "add", "checkout", "verify", "files"):
            secs = _med(res, case)
            sync = _med(res, case, "sync") if "sync" in res["runs"][case][0] else 0.0
            ratio = (secs + sync) / (cp + cps) if case in ("add", "checkout") else float("nan")
            bare = secs / cp if case != "cp" else 1.0
            rows.append([f"{n:,}", case, res["rounds"], secs, sync, secs * 1e6 / n,
                         bare, ratio])
    print_table(["files", "case", "rounds", "seconds", "sync after", "µs/file",
                 "x cp -r (no sync)", "x cp -r+sync"], rows)

    print("\n## Peak RSS (MiB, each case in its own process; import baseline in brackets)\n")
    rows = []
    for res in results:
        n = res["n"]
        cells: list[Any] = [f"{n:,}"]
        for case in ("add", "checkout", "verify", "files"):
            base = min(float(r["rss_before_mib"]) for r in res["runs"][case])
            cells.append(f"{_peak(res, case):,.1f} ({base:,.0f})")
        kib = (_peak(res, "add") - min(float(r["rss_before_mib"]) for r in res["runs"]["add"]))
        cells.append(kib * 1024 / n)
        rows.append(cells)
    print_table(["files", "add", "checkout", "verify", "files()", "add KiB/file over base"],
                rows)

    print("\n## Size on disk (bytes; zstd level 3 via zstandard)\n")
    rows = []
    for res in results:
        s = res["sizes"]
        stored = int(median([r["bytes"] for r in res["runs"]["stored"]]))
        cat = int(median([r["catalogue"] for r in res["runs"]["stored"]]))
        rows.append([f"{res['n']:,}", f"{s['apparent']:,}", f"{s['allocated']:,}",
                     f"{s['zstd_per_file']:,}", f"{s['zstd_concat']:,}", f"{stored:,}",
                     f"{cat:,}", stored / s["zstd_per_file"], stored / s["apparent"]])
    print_table(["files", "apparent", "tree allocated", "zstd per file", "zstd concatenated",
                 "store allocated", "of which catalog.db*", "x zstd per file", "x apparent"],
                rows)

    print("\n## Checks\n")
    for res in results:
        ok = all(r["ok"] for r in res["runs"]["verify"])
        counts = {r["count"] for r in res["runs"]["files"]}
        print(f"{res['n']:,} files: verify ok={ok}; files() yielded {sorted(counts)}; "
              f"tree generated in {res['gen_seconds']:.1f} s")

    print("\n## Targets (DESIGN.md growth)\n")
    rows = []
    for res in results:
        n = res["n"]
        cp = _med(res, "cp") + _med(res, "cp", "sync")
        add = (_med(res, "add") + _med(res, "add", "sync")) / cp
        co = (_med(res, "checkout") + _med(res, "checkout", "sync")) / cp
        stored = median([r["bytes"] for r in res["runs"]["stored"]]) / res["sizes"][
            "zstd_per_file"]
        rows.append([f"{n:,}", "add <= 2x cp -r", f"{add:.2f}x", verdict(add <= ADD_RATIO)])
        rows.append([f"{n:,}", "checkout <= 1.5x cp -r", f"{co:.2f}x",
                     verdict(co <= CHECKOUT_RATIO)])
        rows.append([f"{n:,}", "stored <= 1.1x zstd per file", f"{stored:.2f}x",
                     verdict(stored <= STORED_RATIO)])
    for prev, res in itertools.pairwise(results):
        for case in ("add", "checkout", "verify", "files"):
            a = _med(prev, case) / prev["n"]
            b = _med(res, case) / res["n"]
            step = b / a if a else float("inf")
            rows.append([f"{prev['n']:,} -> {res['n']:,}", f"{case} per-file step <= 1.2x",
                         f"{step:.2f}x", verdict(step <= STEP_RATIO)])
    big = results[-1]
    for case in ("add", "checkout", "files"):
        peak = _peak(big, case)
        note = "" if big["n"] >= 1_000_000 else " (target names 1M files)"
        rows.append([f"{big['n']:,}", f"{case} peak RSS < 512 MiB{note}", f"{peak:.1f} MiB",
                     verdict(peak < RSS_MIB)])
    print_table(["files", "target", "measured", "verdict"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        help="comma-separated file counts (default: 10000,100000,1000000)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds per size (default: 3 below 1M files, 1 at 1M: slow)")
    parser.add_argument("--workdir", default=None,
                        help="working directory (default: a temp dir under /tmp, removed after)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the trees and stores (and the work directory)")
    args = parser.parse_args()
    sizes = sorted(int(s.replace("_", "")) for s in args.sizes.split(",") if s)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="castore-growth-"))
    work.mkdir(parents=True, exist_ok=True)
    need, inodes = estimate_need(sizes, args.keep)
    free = shutil.disk_usage(work).free
    vfs = os.statvfs(work)
    print(f"# bench_growth: sizes {', '.join(f'{n:,}' for n in sizes)}; warm cache")
    print(_common.machine_summary(work))
    print(f"work dir {work}; needs about {need / _common.GiB:.2f} GiB and {inodes:,} inodes "
          f"(free: {free / _common.GiB:.1f} GiB, {vfs.f_favail:,} inodes)")
    if free < need or (vfs.f_files and vfs.f_favail < inodes):
        print("Not enough free space or inodes there: choose a roomier --workdir or fewer "
              "--sizes. Nothing was run.")
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
        raise SystemExit(2)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (a busy machine is "
          "noisy: run with nothing else running)")
    results = []
    started = time.perf_counter()
    try:
        for n in sizes:
            rounds = args.rounds or (1 if n >= 1_000_000 else 3)
            t0 = time.perf_counter()
            results.append(run_size(work, n, rounds))
            print(f"{n:,} files: {rounds} round(s) in {time.perf_counter() - t0:.1f} s",
                  flush=True)
            if not args.keep:
                shutil.rmtree(work / f"n{n}", ignore_errors=True)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    report(results)
    print(f"\ntotal wall time {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
