"""Many small files: fresh checkout time by link mode against ``cp -r``, and peak RSS.

Each case runs in a fresh process (``python bench_small_files.py --child ...``) that times only
the operation and reports its peak RSS (``VmHWM``), so one case's memory never pollutes
another's. ``--compare DIR`` runs the same cases with the castore package found in ``DIR``
too (e.g. an older commit unpacked with ``git archive <commit> castore | tar -x -C DIR``),
round-robin with the current tree, so a busy machine slows both alike::

    python benchmarks/bench_small_files.py                          # 20,000 files, 3 rounds
    python benchmarks/bench_small_files.py --files 2000 --rounds 1  # smoke run
    python benchmarks/bench_small_files.py --files 100000 --tiny --cases add,copy   # growth RSS
    python benchmarks/bench_small_files.py --compare /tmp/before

Data: ``--files`` files of 1-64 KiB in 100 directories (``bench_checkout.make_data``), or with
``--tiny`` text files of 20-500 bytes (the growth benchmark's kind). Targets (DESIGN.md):
checkout by copy within 1.5x ``cp -r``; hardlink and symlink never slower than copy; peak RSS
of a 1M-file version < 512 MiB (so ~0.5 KiB per file).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TREE = HERE.parent
CASES = ("add", "copy", "hardlink", "symlink", "cp")


def make_tiny(root: Path, files: int, seed: int = 1) -> None:
    """``files`` text files of 20-500 bytes, 1,000 per directory."""
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "model", "layer", "epoch", "loss"]
    for i in range(files):
        d = root / f"d{i // 1000:04d}"
        if i % 1000 == 0:
            d.mkdir(parents=True, exist_ok=True)
        n = rng.randint(3, 80)
        (d / f"f{i:07d}.txt").write_text(" ".join(rng.choice(words) for _ in range(n)))


def _peak_rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(op: str, store: str, path: str) -> None:
    """Run one case in this process; print ``{"seconds": ..., "rss_mib": ...}``."""
    import castore

    st = castore.open(store, create=True)
    started = time.perf_counter()
    if op == "add":
        with st.draft("bench") as draft:
            draft.add_dir(path)
    else:
        st.get("bench").checkout(path, link=op)
    seconds = time.perf_counter() - started
    st.close()
    print(json.dumps({"seconds": seconds, "rss_mib": _peak_rss_mib()}))


def run_case(tree: Path, op: str, store: Path, path: Path) -> dict[str, float]:
    if op == "cp":
        started = time.perf_counter()
        subprocess.run(["cp", "-r", str(store), str(path)], check=True)
        return {"seconds": time.perf_counter() - started, "rss_mib": float("nan")}
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run(
        [sys.executable, __file__, "--child", op, str(store), str(path)],
        env=env, check=True, capture_output=True, text=True, cwd=tempfile.gettempdir(),
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--tiny", action="store_true", help="20-500 byte text files")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--compare", default=None, help="a directory holding another castore")
    parser.add_argument("--dir", default=None, help="working directory (default: a temp dir)")
    parser.add_argument("--child", nargs=3, metavar=("OP", "STORE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    cases = [c for c in args.cases.split(",") if c]
    trees = {"now": TREE}
    if args.compare:
        trees["compare"] = Path(args.compare).resolve()
    work = Path(args.dir or tempfile.mkdtemp(prefix="castore-small-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    if not data.exists():
        if args.tiny:
            make_tiny(data, args.files)
        else:
            sys.path.insert(0, str(HERE))
            from bench_checkout import make_data

            make_data(data, args.files, 0)
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    try:
        for _ in range(args.rounds):
            for name, tree in trees.items():
                store = work / f"store-{name}"
                for op in cases:
                    if op == "cp" and name != "now":
                        continue
                    if op == "add" or not store.exists():
                        shutil.rmtree(store, ignore_errors=True)
                        res = run_case(tree, "add", store, data)
                        if op == "add":
                            results.setdefault((name, op), []).append(res)
                            continue
                    out = work / f"out-{name}-{op}"
                    shutil.rmtree(out, ignore_errors=True)
                    src = data if op == "cp" else store
                    results.setdefault((name, op), []).append(run_case(tree, op, src, out))
                    shutil.rmtree(out, ignore_errors=True)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()[0]
    cp = statistics.median(r["seconds"] for r in results.get(("now", "cp"), [{"seconds": 0}]))
    print(f"{args.files} {'tiny' if args.tiny else 'small'} files, {args.rounds} rounds, medians; "
          f"load average {load:.1f} on {os.cpu_count()} cores (a busy machine is noisy)")
    print(f"{'tree':8} {'case':9} {'seconds':>8} {'x cp -r':>8} {'peak RSS MiB':>13}")
    for (name, op), runs in results.items():
        secs = statistics.median(r["seconds"] for r in runs)
        rss = max(r["rss_mib"] for r in runs)
        ratio = f"{secs / cp:8.2f}" if cp else "       -"
        print(f"{name:8} {op:9} {secs:8.2f} {ratio} {rss:13.1f}")


if __name__ == "__main__":
    main()
