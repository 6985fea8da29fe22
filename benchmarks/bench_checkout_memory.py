"""Memory of a fresh checkout of N tiny files: peak RSS and tracemalloc growth (issue 15).

    python benchmarks/bench_checkout_memory.py --files 100000          # the figure we report
    python benchmarks/bench_checkout_memory.py --files 2000 --link hardlink   # smoke run

Builds N text files of 20-500 bytes (``bench_small_files``' ``--tiny`` data, 1,000 per
directory), adds them to a new store (in a child process), then checks the version out into a
new directory, twice, each time in a fresh spawned child:

* **RSS**: ``VmHWM`` of the child (``/proc/self/status``) after opening the store, getting the
  version and loading its pack index (the *baseline*: interpreter, imports, catalogue, and the
  pack index, which is not the checkout's), and after the checkout. Growth = peak - baseline.
* **tracemalloc**: the Python heap the checkout allocates at its peak beyond what was traced
  at the baseline (tracing slows the checkout; its time is not reported).

The figure to watch is bytes per file of growth: DESIGN.md wants a 1M-file checkout under
512 MiB, and a streaming checkout's growth to stay flat rather than grow per file. Never run
this at 1M files on a shared machine (it needs ~5 GiB of disk and tens of minutes).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import in_child, peak_rss_mib
from bench_small_files import make_tiny

NAME = "memory"


def _add(store: str, tree: str) -> dict[str, Any]:
    import castore

    st = castore.init(store, compression="zstd", level=3, durable=False)
    with st.draft(NAME) as draft:
        draft.add_dir(tree)
    st.close()
    return {}


def _open(store: str) -> Any:
    import castore

    st = castore.open(store, create=False)
    version = st.get(NAME)
    st.parts.blobs.pack_index.refresh()  # not the checkout's: counted in the baseline
    return st, version


def _checkout_rss(store: str, target: str, link: str) -> dict[str, Any]:
    st, version = _open(store)
    base = peak_rss_mib()
    t0 = time.perf_counter()
    version.checkout(target, link=link)
    seconds = time.perf_counter() - t0
    peak = peak_rss_mib()
    st.close()
    return {"seconds": seconds, "base_mib": base, "peak_mib": peak}


def _checkout_traced(store: str, target: str, link: str) -> dict[str, Any]:
    tracemalloc.start()
    st, version = _open(store)
    pack_index = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    version.checkout(target, link=link)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    st.close()
    return {"traced_before": before, "traced_peak": peak, "traced_after": current,
            "traced_open": pack_index}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--link", default="copy")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="castore-comem-", dir=args.workdir))
    try:
        n = args.files
        tree, store = work / "tree", work / "store"
        make_tiny(tree, n)
        in_child(_add, str(store), str(tree))
        shutil.rmtree(tree)
        rss = in_child(_checkout_rss, str(store), str(work / "out1"), args.link)
        shutil.rmtree(work / "out1")
        traced = in_child(_checkout_traced, str(store), str(work / "out2"), args.link)
        mib = 1024 * 1024
        grow_rss = (rss["peak_mib"] - rss["base_mib"]) * mib
        grow_traced = traced["traced_peak"] - traced["traced_before"]
        print(f"files                      {n:,} (link={args.link})")
        print(f"checkout seconds           {rss['seconds']:.2f}")
        print(f"import+open+packs RSS      {rss['base_mib']:.1f} MiB (baseline)")
        print(f"checkout peak RSS          {rss['peak_mib']:.1f} MiB")
        print(f"RSS growth                 {grow_rss / mib:.1f} MiB = {grow_rss / n:.0f} B/file")
        print(f"traced at baseline         {traced['traced_before'] / mib:.1f} MiB")
        print(f"tracemalloc peak growth    {grow_traced / mib:.1f} MiB = "
              f"{grow_traced / n:.0f} B/file")
        left = traced["traced_after"] - traced["traced_before"]
        print(f"traced left after          {left / mib:.1f} MiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
