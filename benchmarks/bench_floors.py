"""Floors of the small-file rows of the side-by-side table: what the kernel, the disk and zstd
cost for the same work, with no store around it (issue 15 "Done when").

    python benchmarks/bench_floors.py /tmp/hw/data/small            # the harness's 20,000 files
    python benchmarks/bench_floors.py DIR --rounds 5 --threads 2

For the tree DIR (e.g. ``gen_data.py``'s ``data/small``), each floor in its own spawned process,
medians of ``--rounds``, warm page cache (the tree was just read), seconds:

* **add**: read every file (open, read, close) in ``--threads`` threads; the same plus zstd
  level 3 of each file that saves >= 10% (castore's default policy), the results concatenated
  into 16 MiB pack-sized files written and fsynced once each; ``tar cf`` of the tree to a file
  (the kernel's view of "read everything and write it once").
* **re-add after 1% changed**: ``os.walk`` + ``lstat`` of every file (what any tool must do to
  find the changed ones); 20,000 ``(version, path, digest, size)`` rows inserted into a fresh
  SQLite table in one WAL transaction (what recording a version of 20,000 files costs in
  SQLite).
* **checkout**: write every file's bytes, held in memory, to a new tree (mkdir, open, write,
  close per file) in ``--threads`` threads; ``cp -r`` of the tree; ``tar xf`` of the archive
  above.
* **castore, the same work in the same run** (public API, default store settings, no CLI
  start): add of the tree to a new store; the same add again (the tree unchanged: a walk, the
  stat cache and 20,000 entry rows, the work of a re-add); a fresh checkout by copy.

The difference between a castore row and the floor of the same work is castore's own cost
(Python per file, hashing, the catalogue, verification).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import in_child, median, print_table

PACK = 16 * 1024 * 1024


def _files(root: str) -> list[str]:
    out = []
    for dirpath, _dirs, names in os.walk(root):
        out.extend(os.path.join(dirpath, n) for n in names)
    out.sort()
    return out


def _read_one(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        return os.read(fd, size + 1)
    finally:
        os.close(fd)


def read_all(root: str, threads: int) -> dict[str, Any]:
    files = _files(root)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(len(b) for b in pool.map(_read_one, files, chunksize=64))
    return {"seconds": time.perf_counter() - t0, "bytes": total, "files": len(files)}


def read_compress_pack(root: str, threads: int, out: str) -> dict[str, Any]:
    import zstandard

    files = _files(root)

    def one(path: str) -> bytes:
        data = _read_one(path)
        frame = zstandard.ZstdCompressor(level=3).compress(data)
        return frame if len(frame) <= 0.9 * len(data) else data

    t0 = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    written = 0
    pack: list[bytes] = []
    size = 0
    n = 0

    def flush() -> None:
        nonlocal pack, size, n, written
        fd = os.open(os.path.join(out, f"{n}.pack"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            os.write(fd, b"".join(pack))
            os.fsync(fd)
        finally:
            os.close(fd)
        written += size
        pack, size, n = [], 0, n + 1

    with ThreadPoolExecutor(threads) as pool:
        for stored in pool.map(one, files, chunksize=64):
            pack.append(stored)
            size += len(stored)
            if size >= PACK:
                flush()
    if pack:
        flush()
    return {"seconds": time.perf_counter() - t0, "stored": written}


def walk_stat(root: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    n = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            os.lstat(os.path.join(dirpath, name))
            n += 1
    return {"seconds": time.perf_counter() - t0, "files": n}


def sqlite_rows(root: str, db: str) -> dict[str, Any]:
    rows = [("0199c455-21ee-74c6-b747-19a82f1a1e67", p, "xxh3-128:" + "0" * 32, 1)
            for p in _files(root)]
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE entries (version_id TEXT, path TEXT, digest TEXT, size INT, "
                 "PRIMARY KEY (version_id, path)) WITHOUT ROWID")
    conn.execute("CREATE INDEX idx_digest ON entries(digest)")
    t0 = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO entries VALUES (?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    seconds = time.perf_counter() - t0
    conn.close()
    return {"seconds": seconds, "rows": len(rows)}


def write_tree(root: str, threads: int, out: str) -> dict[str, Any]:
    files = _files(root)
    contents = [(os.path.relpath(p, root), _read_one(p)) for p in files]
    t0 = time.perf_counter()
    for d in sorted({os.path.dirname(rel) for rel, _ in contents}):
        os.makedirs(os.path.join(out, d), exist_ok=True)

    def one(item: tuple[str, bytes]) -> None:
        fd = os.open(os.path.join(out, item[0]), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, item[1])
        finally:
            os.close(fd)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, contents, chunksize=64))
    return {"seconds": time.perf_counter() - t0}


def castore_add(tree: str, store: str) -> dict[str, Any]:
    import castore

    with castore.open(store) as st:
        t0 = time.perf_counter()
        with st.draft("tree") as draft:
            draft.add_dir(tree)
        return {"seconds": time.perf_counter() - t0}


def castore_checkout(store: str, out: str) -> dict[str, Any]:
    import castore

    with castore.open(store) as st:
        t0 = time.perf_counter()
        st.get("tree").checkout(out, link="copy")
        return {"seconds": time.perf_counter() - t0}


def command(argv: list[str], cwd: str | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, cwd=cwd)
    return {"seconds": time.perf_counter() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("tree", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    tree = str(args.tree.resolve())
    results: dict[str, list[float]] = {}
    extra: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="castore-floors-") as work:
        for _ in range(args.rounds):
            def add(label: str, res: dict[str, Any]) -> None:
                results.setdefault(label, []).append(float(res["seconds"]))
                extra[label] = res

            os.sync()
            add("add: read every file", in_child(read_all, tree, args.threads))
            os.sync()
            add("add: read + zstd-3 where it pays + 16 MiB packs, fsynced",
                in_child(read_compress_pack, tree, args.threads, f"{work}/packs"))
            shutil.rmtree(f"{work}/packs")
            os.sync()
            add("add: tar cf", in_child(command, ["tar", "cf", f"{work}/t.tar", "-C", tree, "."]))
            shutil.rmtree(f"{work}/store", ignore_errors=True)
            os.sync()
            add("castore: add (API, new store)", in_child(castore_add, tree, f"{work}/store"))
            os.sync()
            add("castore: add again, unchanged (API)",
                in_child(castore_add, tree, f"{work}/store"))
            os.sync()
            add("re-add: walk + lstat", in_child(walk_stat, tree))
            add("re-add: 20k entry rows in SQLite, one transaction",
                in_child(sqlite_rows, tree, f"{work}/e.db"))
            for name in os.listdir(work):
                if name.startswith("e.db"):
                    os.unlink(f"{work}/{name}")
            os.sync()
            add("checkout: write the files from memory",
                in_child(write_tree, tree, args.threads, f"{work}/out"))
            shutil.rmtree(f"{work}/out")
            os.sync()
            add("castore: checkout, copy (API)",
                in_child(castore_checkout, f"{work}/store", f"{work}/out"))
            shutil.rmtree(f"{work}/out")
            os.sync()
            add("checkout: cp -r", in_child(command, ["cp", "-r", tree, f"{work}/out"]))
            shutil.rmtree(f"{work}/out")
            os.sync()
            os.makedirs(f"{work}/out")
            add("checkout: tar xf", in_child(command, ["tar", "xf", f"{work}/t.tar"],
                                             f"{work}/out"))
            shutil.rmtree(f"{work}/out")
            os.unlink(f"{work}/t.tar")
    files = extra["add: read every file"]["files"]
    size = extra["add: read every file"]["bytes"]
    print(f"\n## Floors for {files:,} files, {size:,} bytes ({tree}), medians of {args.rounds}, "
          f"{args.threads} threads\n")
    print_table(["floor", "seconds", "µs/file"],
                [[label, median(ts), 1e6 * median(ts) / files] for label, ts in results.items()])
    stored = extra["add: read + zstd-3 where it pays + 16 MiB packs, fsynced"]["stored"]
    print(f"\nzstd-3 where it pays, packed: {stored:,} bytes ({stored / size:.3f} of the input)")


if __name__ == "__main__":
    main()
