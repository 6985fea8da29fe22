"""Transfer benchmark: export and import of a generated tree against ``tar cf`` / ``tar xf``.

Data: ``--small`` files of 1-64 KiB in 100 directories plus one ``--big-mib`` MiB random file
(the issue's set: 20,000 files and 1 GiB). Everything runs in one working directory so the
ratios compare like with like; each castore operation runs in a fresh spawned process for its
peak RSS::

    python benchmarks/bench_transfer.py                         # 20,000 files + 1 GiB
    python benchmarks/bench_transfer.py --small 200 --big-mib 4 # smoke run

Targets (DESIGN.md): export and import ≥ 0.5 × the throughput of ``tar cf`` / ``tar xf`` of
the same tree; a second push of unchanged versions ≤ 5% of the first; bounded peak RSS.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import in_child, mbps, print_table, timed, verdict


def make_tree(root: Path, small: int, big_mib: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    total = 0
    for i in range(small):
        size = int(2 ** rng.uniform(10, 16))
        data = os.urandom(size) if i % 2 else (b"text line %d\n" % i) * (size // 12 + 1)
        path = root / f"d{i % 100:02d}" / f"f{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data[:size])
        total += size
    if big_mib:
        with open(root / "big.bin", "wb") as fh:
            for _ in range(big_mib):
                fh.write(os.urandom(1 << 20))
        total += big_mib << 20
    return total


def _export(store: str, bundle: str) -> dict[str, Any]:
    import castore

    with castore.open(store) as s:
        seconds, report = timed(lambda: s.export(bundle))
    return {"seconds": seconds, "bytes": report.bytes_sent}


def _import(store: str, bundle: str) -> dict[str, Any]:
    import castore

    with castore.open(store, create=True) as s:
        seconds, report = timed(lambda: s.import_bundle(bundle))
    return {"seconds": seconds, "bytes": report.bytes_sent}


def _push(store: str, remote: str) -> dict[str, Any]:
    import castore

    with castore.open(store) as s:
        seconds, report = timed(lambda: s.push(remote))
    return {"seconds": seconds, "bytes": report.bytes_sent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-transfer-", dir=args.dir))
    try:
        tree = work / "tree"
        size = make_tree(tree, args.small, args.big_mib)
        import castore

        with castore.init(work / "src") as s:
            s.draft("bench").add_dir(tree).finalize()
        # the sha256 of each blob is computed by the first export and remembered: time a
        # warm export (the steady state) after a first one
        first = in_child(_export, str(work / "src"), str(work / "first.tar"))
        warm = in_child(_export, str(work / "src"), str(work / "b.tar"))
        imp = in_child(_import, str(work / "dst"), str(work / "b.tar"))
        tar_c, _ = timed(lambda: subprocess.run(
            ["tar", "cf", str(work / "t.tar"), "-C", str(tree), "."], check=True))
        (work / "untar").mkdir()
        tar_x, _ = timed(lambda: subprocess.run(
            ["tar", "xf", str(work / "t.tar"), "-C", str(work / "untar")], check=True))
        push1 = in_child(_push, str(work / "src"), str(work / "remote"))
        push2 = in_child(_push, str(work / "src"), str(work / "remote"))
        rows = [
            ["export (first, hashes sha256)", f"{first['seconds']:.2f}",
             f"{mbps(size, first['seconds']):.0f}", f"{first['peak_rss_mib']:.0f}"],
            ["export (warm)", f"{warm['seconds']:.2f}", f"{mbps(size, warm['seconds']):.0f}",
             f"{warm['peak_rss_mib']:.0f}"],
            ["tar cf", f"{tar_c:.2f}", f"{mbps(size, tar_c):.0f}", "-"],
            ["import", f"{imp['seconds']:.2f}", f"{mbps(size, imp['seconds']):.0f}",
             f"{imp['peak_rss_mib']:.0f}"],
            ["tar xf", f"{tar_x:.2f}", f"{mbps(size, tar_x):.0f}", "-"],
            ["push (first)", f"{push1['seconds']:.2f}", "", f"{push1['peak_rss_mib']:.0f}"],
            ["push (unchanged)", f"{push2['seconds']:.2f}", "", f"{push2['peak_rss_mib']:.0f}"],
        ]
        print(f"{args.small} files + {args.big_mib} MiB = {size / 2**20:.0f} MiB")
        print_table(["operation", "seconds", "MB/s", "peak RSS MiB"], rows)
        print(f"export ≥ 0.5 × tar cf: {verdict(warm['seconds'] <= 2 * tar_c)}")
        print(f"import ≥ 0.5 × tar xf: {verdict(imp['seconds'] <= 2 * tar_x)}")
        print(f"second push ≤ 5% of first: {verdict(push2['seconds'] <= 0.05 * push1['seconds'])}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
