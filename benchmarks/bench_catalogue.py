"""Benchmark of the catalogue and drafts (issue 3). A script, not a test: it prints figures.

    .venv/bin/python benchmarks/bench_catalogue.py [--workdir DIR] [--files 20000]
        [--versions 100000] [--no-durable]

1. add + finalize of FILES small files (1-64 KiB mixed CSV, JSONL, float32, random), generated
   with ``../shared/bench/gen_data.py`` (imported by path), into a fresh (durable) store;
2. re-add of the unchanged directory (the stat cache: nothing is re-read);
3. re-add after 1% of the files changed;
4. ``get("name:alias")``, ``get("name")`` and filtered ``versions()`` at VERSIONS versions
   (run it with ``--versions 100000`` and ``--versions 1000000``), including a metadata
   operator filter and a sort by a metadata key.

The baseline measured in the same run is one cold-ish read of every file (``open`` + ``read``),
so the ratios say how far from "just reading the bytes" the add is. Targets (DESIGN.md):
>= 5,000 files/s first add, re-add after 1% <= 10% of the first, get < 2 ms, listing < 50 ms.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import castore

GEN_DATA = Path(__file__).resolve().parents[2] / "shared" / "bench" / "gen_data.py"


def load_gen_data():
    spec = importlib.util.spec_from_file_location("gen_data", GEN_DATA)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def read_all(root: Path) -> float:
    start = time.perf_counter()
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                while f.read(1 << 20):
                    pass
    return time.perf_counter() - start


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def bench_files(workdir: Path, nfiles: int, durable: bool) -> None:
    gen = load_gen_data()
    data = workdir / f"small-{nfiles}"
    if not data.exists():
        print(f"generating {nfiles} files in {data} ...", flush=True)
        gen.gen_small_dir(data, nfiles)
    total_bytes = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
    store_dir = workdir / "store-files"
    shutil.rmtree(store_dir, ignore_errors=True)
    store = castore.init(store_dir, durable=durable)

    def add():
        with store.draft("bench", type="dataset") as draft:
            draft.add_dir(data)
        return draft.version

    baseline = read_all(data)
    first, v0 = timed(add)
    again, v_same = timed(add)
    changed = gen.mutate(data, 0.01, seed=int(time.time()))
    after, v1 = timed(add)
    store.close()
    print(f"\n== add + finalize {nfiles} files ({total_bytes / 1e6:.0f} MB), durable={durable}")
    print(f"baseline read of every file : {baseline:7.2f} s ({nfiles / baseline:8.0f} files/s)")
    print(
        f"first add + finalize        : {first:7.2f} s ({nfiles / first:8.0f} files/s, "
        f"{total_bytes / first / 1e6:.0f} MB/s) -> {v0.ref}, {first / baseline:.2f}x baseline"
    )
    print(
        f"re-add unchanged (no-op)    : {again:7.2f} s ({again / first:6.1%} of first)"
        f" -> {v_same.ref}"
    )
    print(
        f"re-add after {len(changed)} changed     : {after:7.2f} s ({after / first:6.1%} of "
        f"first) -> {v1.ref}"
    )


def bench_versions(workdir: Path, nversions: int, reuse: bool = False) -> None:
    store_dir = workdir / "store-versions"
    per = 100
    ncoll = max(1, nversions // per)
    if reuse and store_dir.exists():
        store = castore.open(store_dir, durable=False)
        if store.count() == ncoll * per:
            print(f"\n== catalogue at {ncoll * per} versions (reused from {store_dir})")
            return _measure(store, ncoll)
        store.close()
    shutil.rmtree(store_dir, ignore_errors=True)
    store = castore.init(store_dir, durable=False)
    catalog = store.catalog
    start = time.perf_counter()
    made = 0
    for first in range(0, ncoll, 100):  # one write transaction per 100 collections
        with catalog.write_txn():
            for c in range(first, min(first + 100, ncoll)):
                kind = "model" if c % 10 == 0 else "dataset"
                coll = catalog.ensure_collection(f"c{c:05d}", kind)
                for n in range(per):
                    vid = catalog.create_version(
                        coll["id"],
                        metadata={"split": "train" if n % 2 else "test", "i": n, "lr": n / 1000},
                        tags=["nightly"] if n % 5 == 0 else (),
                    )
                    catalog.commit_version(
                        vid,
                        digest=f"xxh3-128:{c:08x}{n:08x}{'0' * 16}",
                        size=n * 1000,
                        file_count=n,
                        ttl=None,
                    )
                    if n == per // 2:
                        catalog.set_alias(coll["id"], "prod", vid)
                    made += 1
    build = time.perf_counter() - start
    print(
        f"\n== catalogue at {made} versions ({ncoll} collections), built in {build:.1f} s "
        f"({made / build:.0f} versions/s)"
    )
    assert store.count() == made
    _measure(store, ncoll)


def _measure(store: castore.Store, ncoll: int) -> None:
    def ms(fn, repeat: int) -> float:
        fn()  # warm
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1000

    mid = f"c{ncoll // 2:05d}"
    cases = [
        (f'get("{mid}:prod")', lambda: store.get(f"{mid}:prod"), 2.0),
        (f'get("{mid}")', lambda: store.get(mid), 2.0),
        (f'get("{mid}:v42")', lambda: store.get(f"{mid}:v42"), 2.0),
        ("get(version id)", lambda: store.get(store.get(mid).id), 4.0),
        (
            "versions(collection, tags, metadata)",
            lambda: store.versions(mid, tags=["nightly"], metadata={"split": "test"}),
            50.0,
        ),
        (
            'versions(type="model", metadata=...) page 1',
            lambda: store.versions(type="model", metadata={"split": "train"}, limit=50),
            50.0,
        ),
        ('versions(alias="prod", sort="-size")', lambda: store.versions(alias="prod"), 50.0),
        ("versions() newest 50 of all", lambda: store.versions(limit=50), 50.0),
        (
            'count(metadata={"split": "train"})',
            lambda: store.count(metadata={"split": "train"}),
            50.0,
        ),
        ("latest() of every collection", lambda: store.latest(), 200.0),
        # Richer queries (issue 14): an operator over the (key, value) index, and a sort by a
        # metadata key (the index read in order, stopping at the page).
        (
            'versions(metadata={"lr": {"$gte": 0.09}}) page 1',
            lambda: store.versions(metadata={"lr": {"$gte": 0.09}}, limit=50),
            50.0,
        ),
        (
            'versions(type="model", metadata={"i": {"$in": [3, 7]}})',
            lambda: store.versions(type="model", metadata={"i": {"$in": [3, 7]}}, limit=50),
            50.0,
        ),
        (
            'versions(sort="-metadata.lr") page 1',
            lambda: store.versions(sort="-metadata.lr", limit=50),
            50.0,
        ),
        (
            'versions(collection, sort="metadata.lr")',
            lambda: store.versions(mid, sort="metadata.lr", limit=50),
            50.0,
        ),
    ]
    for label, fn, target in cases:
        value = ms(fn, 50 if target <= 4 else 10)
        verdict = "ok" if value <= target else "SLOW"
        print(f"{label:45s} {value:8.3f} ms  (target < {target:g} ms: {verdict})")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/castore-bench-catalogue"))
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--versions", type=int, default=100000)
    parser.add_argument("--no-durable", action="store_true")
    parser.add_argument("--skip-files", action="store_true")
    parser.add_argument("--skip-versions", action="store_true")
    parser.add_argument(
        "--reuse-versions", action="store_true", help="measure an existing 100k catalogue"
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} cpus, python {platform.python_version()}"
    )
    if not args.skip_files:
        bench_files(args.workdir, args.files, not args.no_durable)
    if not args.skip_versions:
        bench_versions(args.workdir, args.versions, args.reuse_versions)


if __name__ == "__main__":
    main()
