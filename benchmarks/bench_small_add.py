"""Add N small files (1-64 KiB, half compressible) to a new store; print seconds and disk use.

    PYTHONPATH=. python benchmarks/bench_small_add.py --files 20000 [--format 1]

``--format 1`` makes the store a format-1 store (loose blobs only) before the add, so the same
castore measures before (loose) and after (packs). Prints the load average it started with.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import castore


def _tree(root: Path, files: int, seed: int = 1) -> int:
    rng = random.Random(seed)
    total = 0
    for i in range(files):
        size = rng.randint(1024, 64 * 1024)
        data = rng.randbytes(size) if i % 2 else (b"line %d of a text file\n" % i) * (size // 24)
        path = root / f"d{i % 100:02}" / f"f{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        total += len(data)
    return total


def _du(root: Path) -> int:
    return sum(p.lstat().st_blocks * 512 for p in root.rglob("*"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--format", type=int, default=2, choices=(1, 2))
    args = parser.parse_args()
    load = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="castore-bench-"))
    try:
        size = _tree(work / "src", args.files)
        store_path = work / "store"
        castore.open(store_path).close()
        if args.format == 1:
            cfg = json.loads((store_path / "castore.json").read_text())
            cfg["format"] = 1
            (store_path / "castore.json").write_text(json.dumps(cfg))
        with castore.open(store_path) as store:
            start = time.perf_counter()
            store.draft("bench").add_dir(work / "src").finalize()
            seconds = time.perf_counter() - start
        print(json.dumps({
            "files": args.files, "format": args.format, "input_bytes": size,
            "add_seconds": round(seconds, 3), "store_disk_bytes": _du(store_path),
            "load_before": [round(x, 2) for x in load],
        }))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
