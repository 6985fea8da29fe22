"""Checkout benchmark: castore checkout/verify against cp, a sequential read and DVC.

Data: ``--small`` files of 1–64 KiB (log-uniform sizes, half random, half text-like) in 100
directories, plus one ``--big-mib`` MiB random file. Everything runs in one process and one
working directory, so the ratios compare like with like (STYLE.md rule 16)::

    python benchmarks/bench_checkout.py                       # 20,000 files + 1 GiB
    python benchmarks/bench_checkout.py --small 2000 --big-mib 64
    python benchmarks/bench_checkout.py --dvc /tmp/dvcvenv/bin/dvc

Targets (DESIGN.md): copy ≥ 2× faster than ``dvc checkout`` (copy); hardlink ≥ DVC's hardlink
checkout; an already-correct checkout ≤ 10% of a fresh one; verify ≥ 0.5× cold read throughput.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import castore
from castore.worktree import operations as materialize

WORDS = b"the quick brown fox jumps over a lazy dog model weights tensor layer epoch".split()


def make_data(root: Path, small: int, big_mib: int, seed: int = 1) -> tuple[int, int]:
    """Write the data set; return (files, bytes)."""
    rng = random.Random(seed)
    total = 0
    for i in range(small):
        d = root / f"d{i % 100:02d}"
        if i < 100:
            d.mkdir(parents=True, exist_ok=True)
        size = int(math.exp(rng.uniform(math.log(1024), math.log(64 * 1024))))
        if i % 2:
            data = os.urandom(size)
        else:
            data = b" ".join(rng.choice(WORDS) for _ in range(size // 4))[:size]
        (d / f"f{i:05d}.bin").write_bytes(data)
        total += len(data)
    if big_mib:
        with open(root / "big.bin", "wb") as fh:
            for _ in range(big_mib):
                fh.write(os.urandom(1 << 20))
        total += big_mib << 20
    return small + (1 if big_mib else 0), total


def drop_caches() -> bool:
    """Try to drop the page cache (needs root and a writable /proc/sys); True if it worked."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return True
    except OSError:
        return False


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def sequential_read(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                while os.read(fd, 1 << 20):
                    pass
            finally:
                os.close(fd)


def run_dvc(dvc: str, data: Path, work: Path, nfiles: int) -> dict[str, float]:
    """dvc add the data, then time ``dvc checkout`` with cache.type copy and hardlink."""
    repo = work / "dvcrepo"
    repo.mkdir()
    shutil.copytree(data, repo / "data")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}

    def dvc_run(*args: str) -> None:
        subprocess.run([dvc, *args], cwd=repo, check=True, env=env, capture_output=True)

    dvc_run("init", "--no-scm", "-q")
    dvc_run("config", "core.autostage", "false")
    out: dict[str, float] = {}
    out["dvc add"] = timed(lambda: dvc_run("add", "-q", "data"))
    for kind in ("copy", "hardlink"):
        dvc_run("config", "cache.type", kind)
        shutil.rmtree(repo / "data")
        drop_caches()
        out[f"dvc checkout {kind}"] = timed(lambda: dvc_run("checkout", "-q", "data.dvc"))
        got = sum(len(f) for _, _, f in os.walk(repo / "data"))
        assert got == nfiles, f"dvc checked out {got} files, expected {nfiles}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=20_000, help="number of small files")
    parser.add_argument("--big-mib", type=int, default=1024, help="size of the big file (MiB)")
    parser.add_argument("--dir", default=None, help="working directory (default: a temp dir)")
    parser.add_argument("--dvc", default=None, help="path of a dvc executable (optional)")
    args = parser.parse_args()
    dvc = args.dvc or shutil.which("dvc")
    if dvc is None and Path("/tmp/dvcvenv/bin/dvc").exists():
        dvc = "/tmp/dvcvenv/bin/dvc"

    work = Path(tempfile.mkdtemp(prefix="castore-bench-", dir=args.dir))
    try:
        data = work / "data"
        nfiles, nbytes = make_data(data, args.small, args.big_mib)
        mb = nbytes / 1e6
        print(f"data: {nfiles} files, {mb:,.0f} MB in {work}")
        rows: list[tuple[str, float]] = []

        def row(name: str, seconds: float) -> None:
            rows.append((name, seconds))
            print(
                f"  {name:<38} {seconds:8.2f} s  {nfiles / seconds:10,.0f} files/s  "
                f"{mb / seconds:8,.0f} MB/s",
                flush=True,
            )

        cold = drop_caches()
        row(
            "baseline: sequential read" + (" (cold)" if cold else " (warm)"),
            timed(lambda: sequential_read(data)),
        )
        row("baseline: shutil.copytree", timed(lambda: shutil.copytree(data, work / "ct")))
        shutil.rmtree(work / "ct")
        row(
            "baseline: cp -r",
            timed(lambda: subprocess.run(["cp", "-r", str(data), str(work / "cp")], check=True)),
        )
        shutil.rmtree(work / "cp")

        store = castore.init(work / "store", durable=False)
        t0 = time.perf_counter()
        with store.draft("bench", type="dataset") as draft:
            draft.add_dir(data)
        version = draft.version
        print(f"  (castore add: {time.perf_counter() - t0:.2f} s)")

        drop_caches()
        row(
            "castore checkout copy (empty dir)",
            timed(lambda: version.checkout(work / "co_copy", link="copy")),
        )
        drop_caches()
        row(
            "castore checkout hardlink (empty dir)",
            timed(lambda: version.checkout(work / "co_hard", link="hardlink")),
        )
        row(
            "castore checkout again (already correct)",
            timed(lambda: version.checkout(work / "co_copy", link="copy")),
        )
        row("castore verify (stat cache)", timed(lambda: version.verify(work / "co_copy")))
        entries = list(version.files())
        cold = drop_caches()
        row(
            "castore verify (full re-hash" + (", cold)" if cold else ", warm)"),
            timed(lambda: materialize.verify_dir(store.blobs, entries, work / "co_copy")),
        )
        store.close()

        # the same data in a store that keeps every blob raw, so that every file can be linked
        raw_store = castore.init(work / "store_raw", compression="none", durable=False)
        with raw_store.draft("bench", type="dataset") as draft:
            draft.add_dir(data)
        raw_version = draft.version
        drop_caches()
        row(
            "castore checkout hardlink (raw store)",
            timed(lambda: raw_version.checkout(work / "co_hard_raw", link="hardlink")),
        )
        drop_caches()
        row(
            "castore checkout copy (raw store)",
            timed(lambda: raw_version.checkout(work / "co_copy_raw", link="copy")),
        )
        raw_store.close()

        if dvc:
            try:
                for name, seconds in run_dvc(dvc, data, work, nfiles).items():
                    row(name, seconds)
            except (subprocess.CalledProcessError, AssertionError) as exc:
                print(f"  dvc failed: {exc}")
        else:
            print("  dvc: not installed (pip install dvc), skipped")

        t = dict(rows)
        print("ratios:")
        fresh = t["castore checkout copy (empty dir)"]
        print(
            f"  already-correct / fresh copy checkout: "
            f"{t['castore checkout again (already correct)'] / fresh:.3f} (target ≤ 0.10)"
        )
        seq = next(v for k, v in t.items() if k.startswith("baseline: sequential read"))
        full = next(v for k, v in t.items() if k.startswith("castore verify (full"))
        print(f"  verify throughput / sequential read: {seq / full:.2f} (target ≥ 0.5)")
        print(f"  copy checkout vs cp -r: {t['baseline: cp -r'] / fresh:.2f}× the speed of cp")
        if "dvc checkout copy" in t:
            print(
                f"  copy checkout speed-up over dvc: {t['dvc checkout copy'] / fresh:.2f}× "
                "(target ≥ 2)"
            )
            hard = t["castore checkout hardlink (empty dir)"]
            hard_raw = t["castore checkout hardlink (raw store)"]
            print(
                f"  hardlink checkout speed-up over dvc: "
                f"{t['dvc checkout hardlink'] / hard:.2f}× (target ≥ 1); "
                f"raw store: {t['dvc checkout hardlink'] / hard_raw:.2f}×"
            )
            copy_raw = t["castore checkout copy (raw store)"]
            print(
                f"  copy checkout (raw store) speed-up over dvc: "
                f"{t['dvc checkout copy'] / copy_raw:.2f}×"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
