"""Benchmark of the catalogue and drafts (issue 3). A script, not a test: it prints figures.

    .venv/bin/python benchmarks/bench_catalogue.py [--workdir DIR] [--files 20000]
        [--versions 100000] [--no-durable]

1. add + finalize of FILES small files (1-64 KiB mixed CSV, JSONL, float32, random), generated
   with ``../shared/bench/gen_data.py`` (imported by path), into a fresh (durable) store;
2. re-add of the unchanged directory (the stat cache: nothing is re-read);
3. re-add after 1% of the files changed;
4. ``get("name:alias")``, ``get("name")`` and filtered ``versions()`` at VERSIONS versions
   (run it with ``--versions 100000`` and ``--versions 1000000``), including a metadata
   operator filter and a sort by a metadata key.;
5. lineage (issue 13): ``lineage(depth=None)`` over a chain of RUNS runs (each uses the
   previous run's output and produces one version) and over a fan-out of FANOUT versions
   produced by one run and used by another, and ``versions(produced_by=)`` (first page, and
   ``count``) against that fan-out. Target: < 50 ms for ``versions(produced_by=)``, and at
   FANOUT=1M within 2x of the figure at 10k (run it with ``--fanout 10000`` and
   ``--fanout 1000000``).

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
from castore import _process as castore_process

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


def _best(fn, repeat: int = 5) -> float:
    return min(timed(fn)[0] for _ in range(repeat))


def bench_lineage(workdir: Path, nruns: int, fanout: int) -> None:
    store_dir = workdir / "store-lineage"
    shutil.rmtree(store_dir, ignore_errors=True)
    store = castore.init(store_dir, durable=False)
    catalog = store.catalog
    identity = (castore_process.current())

    def commit(coll_id: int, i: int) -> str:
        vid = catalog.create_version(coll_id)
        catalog.commit_version(
            vid, digest=f"xxh3-128:{i:032x}", size=1, file_count=1, ttl=None
        )
        return vid

    # A chain: data -> run0 -> m0 -> run1 -> m1 -> ... (RUNS runs, 2*RUNS+1 nodes).
    start = time.perf_counter()
    with catalog.write_txn():
        coll = catalog.ensure_collection("chain", "model")["id"]
        first = previous = commit(coll, 0)
        for i in range(nruns):
            run = catalog.create_run(name=f"chain-{i}", metadata={"i": i}, identity=identity)
            catalog.add_edge(run["id"], previous, "used")
            previous = commit(coll, i + 1)
            catalog.add_edge(run["id"], previous, "produced")
            catalog.end_run(run["id"], "FINISHED")
    print(f"\n== lineage: chain of {nruns} runs built in {time.perf_counter() - start:.1f} s")
    last = store.get(previous)
    up = _best(lambda: store.lineage(last, direction="upstream"), 3)
    down = _best(lambda: store.lineage(store.get(first), direction="downstream"), 3)
    g = store.lineage(last, direction="upstream")
    assert len(g.nodes) == 2 * nruns + 1, len(g.nodes)
    sql = _best(lambda: catalog.lineage_edges(last.id, "upstream", None), 3)
    print(f"lineage(depth=None) upstream over {len(g.nodes)} nodes: {up * 1000:.1f} ms "
          f"(walk in SQL alone: {sql * 1000:.1f} ms); downstream: {down * 1000:.1f} ms")
    print(f"lineage(depth=10): {_best(lambda: store.lineage(last, depth=10)) * 1000:.2f} ms")

    # A fan-out: one run uses the dataset and produces FANOUT versions; one run uses them all.
    start = time.perf_counter()
    with catalog.write_txn():
        coll = catalog.ensure_collection("fan", "model")["id"]
        source = commit(coll, 10**9)
        maker = catalog.create_run(name="fan-maker", metadata={}, identity=identity)
        user = catalog.create_run(name="fan-user", metadata={}, identity=identity)
        catalog.add_edge(maker["id"], source, "used")
        for i in range(fanout):
            vid = commit(coll, 10**9 + 1 + i)
            catalog.add_edge(maker["id"], vid, "produced")
            catalog.add_edge(user["id"], vid, "used")
    print(f"\n== lineage: fan-out of {fanout} versions built in "
          f"{time.perf_counter() - start:.1f} s")
    root = store.get(source)
    down = _best(lambda: store.lineage(root, direction="downstream"), 3)
    sql = _best(lambda: catalog.lineage_edges(root.id, "downstream", None), 3)
    g = store.lineage(root, direction="downstream")
    assert len(g.nodes) == fanout + 3, len(g.nodes)
    print(f"lineage(depth=None) downstream over {len(g.nodes)} nodes, {len(g.edges)} edges: "
          f"{down * 1000:.0f} ms (walk in SQL alone: {sql * 1000:.0f} ms)")
    page = _best(lambda: store.versions(produced_by="fan-maker"))
    page_used = _best(lambda: store.versions(used_by="fan-user"))
    count = _best(lambda: store.count(produced_by="fan-maker"))
    assert store.count(produced_by="fan-maker") == fanout
    print(f"versions(produced_by=) first page of {fanout}: {page * 1000:.2f} ms (target < 50 ms); "
          f"versions(used_by=): {page_used * 1000:.2f} ms; count(produced_by=): "
          f"{count * 1000:.2f} ms")
    small = _best(lambda: store.versions(produced_by="chain-7", limit=50))
    print(f"versions(produced_by=) of a run with one output: {small * 1000:.2f} ms")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/castore-bench-catalogue"))
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--versions", type=int, default=100000)
    parser.add_argument("--no-durable", action="store_true")
    parser.add_argument("--skip-files", action="store_true")
    parser.add_argument("--skip-versions", action="store_true")
    parser.add_argument("--runs", type=int, default=10000, help="length of the run chain")
    parser.add_argument("--fanout", type=int, default=100000, help="versions of one run")
    parser.add_argument("--skip-lineage", action="store_true")
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
    if not args.skip_lineage:
        bench_lineage(args.workdir, args.runs, args.fanout)


if __name__ == "__main__":
    main()
