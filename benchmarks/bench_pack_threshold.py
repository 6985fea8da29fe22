"""Which blobs go into packs: add, checkout and store size by pack threshold (issue 15).

    python benchmarks/bench_pack_threshold.py /tmp/hw/data/small          # the harness's files
    python benchmarks/bench_pack_threshold.py DIR --thresholds 0,16384,65536 --rounds 1

A blob whose stored size is under ``castore.storage.packs.PACK_THRESHOLD`` (64 KiB) goes into
its draft batch's pack; others stay loose files, which checkout can hardlink, symlink or
reflink. For each threshold (0 = nothing packed, as in a format-1 store), in a fresh process
with the threshold patched in, medians of ``--rounds``: add of DIR through the API into a new
durable store; a fresh checkout by copy and by hardlink; the store's allocated bytes (``du``)
and its number of files (inodes). Warm cache; ``os.sync()`` (untimed) before every step.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import in_child, median, print_table


def _patch(threshold: int) -> None:
    import castore.storage.blobs as blobs_mod

    blobs_mod.PACK_THRESHOLD = threshold  # type: ignore[attr-defined]


def add(tree: str, store: str, threshold: int) -> dict[str, Any]:
    import castore

    _patch(threshold)
    with castore.open(store) as st:
        t0 = time.perf_counter()
        with st.draft("tree") as draft:
            draft.add_dir(tree)
        return {"seconds": time.perf_counter() - t0}


def checkout(store: str, out: str, link: str, threshold: int) -> dict[str, Any]:
    import castore

    _patch(threshold)
    with castore.open(store) as st:
        t0 = time.perf_counter()
        st.get("tree").checkout(out, link=link)
        return {"seconds": time.perf_counter() - t0}


def _du(root: str) -> tuple[int, int]:
    blocks = files = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            blocks += st.st_blocks * 512
            files += 1
    return blocks, files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("tree", type=Path)
    parser.add_argument("--thresholds", default="0,4096,16384,65536")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tree = str(args.tree.resolve())
    thresholds = [int(t) for t in args.thresholds.split(",")]
    res: dict[int, dict[str, list[float]]] = {t: {} for t in thresholds}
    with tempfile.TemporaryDirectory(prefix="castore-packs-") as work:
        for _ in range(args.rounds):
            for threshold in thresholds:
                rec = res[threshold]
                store = f"{work}/store"
                shutil.rmtree(store, ignore_errors=True)
                os.sync()
                rec.setdefault("add", []).append(in_child(add, tree, store, threshold)["seconds"])
                os.sync()
                size, files = _du(store)
                rec.setdefault("bytes", []).append(size)
                rec.setdefault("files", []).append(files)
                for link in ("copy", "hardlink"):
                    out = f"{work}/out"
                    shutil.rmtree(out, ignore_errors=True)
                    os.sync()
                    rec.setdefault(link, []).append(
                        in_child(checkout, store, out, link, threshold)["seconds"])
                    shutil.rmtree(out, ignore_errors=True)
    print(f"\n## Pack threshold on {tree}, medians of {args.rounds}\n")
    print_table(
        ["threshold", "add s", "checkout copy s", "checkout hardlink s", "store MB", "store files"],
        [[t if t else "0 (no packs)", median(r["add"]), median(r["copy"]), median(r["hardlink"]),
          median(r["bytes"]) / 1e6, int(median(r["files"]))] for t, r in res.items()],
    )


if __name__ == "__main__":
    main()
