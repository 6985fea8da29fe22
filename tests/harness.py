"""Test harness for crash, fault and concurrency tests (reliability.md §3.2).

- :func:`snapshot`: the model oracle. What a user can see of a store (collections, committed
  versions with their files, aliases, tags), free of ids and times, so two stores that went
  through the same operations compare equal.
- Subprocess workers: ``python tests/harness.py SCENARIO STORE [ARGS...]`` runs one scenario
  in a fresh interpreter (``CASTORE_CRASH_AT`` makes it die at a labelled point);
  :func:`spawn` and :func:`run` start them.
- Fault shims: :func:`enospc_after`, :func:`enospc_on_mkdir`, :func:`failing_fsync`,
  :func:`eio_on_read`.
- :func:`finalize`: build a version from ``{path: bytes}`` in one call.
"""

from __future__ import annotations

import errno
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import castore

ROOT = Path(__file__).resolve().parent.parent
Snapshot = dict[str, Any]


# -- building versions ---------------------------------------------------------------------


def finalize(
    store: castore.Store,
    collection: str,
    files: dict[str, bytes],
    *,
    aliases: list[str] | tuple[str, ...] = (),
    type: str = "dataset",
) -> Any:
    """Draft ``files`` into ``collection`` and finalize; return the version."""
    draft = store.draft(collection, type=type)
    for name, data in sorted(files.items()):
        draft.add_bytes(data, name)
    return draft.finalize(aliases=list(aliases))


def finalize_dir(
    store: castore.Store,
    collection: str,
    files: dict[str, bytes],
    *,
    aliases: list[str] | tuple[str, ...] = (),
) -> Any:
    """Like :func:`finalize`, through ``add_dir``: the small blobs of one batch share a pack
    (``add_bytes`` gives each blob a pack of its own)."""
    import shutil
    import tempfile

    src = Path(tempfile.mkdtemp(prefix="castore-files-"))
    try:
        for name, data in files.items():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes(data)
        return store.draft(collection).add_dir(src).finalize(aliases=list(aliases))
    finally:
        shutil.rmtree(src, ignore_errors=True)


def files_for(
    seed: int, count: int = 3, *, max_size: int = 4096, shared: int = 4
) -> dict[str, bytes]:
    """Deterministic file contents: some unique to ``seed``, some shared between seeds."""
    rng = random.Random(seed)
    out: dict[str, bytes] = {}
    for i in range(count):
        if i == 0:
            out[f"shared/{seed % shared}.bin"] = f"shared-{seed % shared}".encode() * 64
        else:
            out[f"f{i}.bin"] = rng.randbytes(rng.randint(0, max_size))
    return out


# -- the model oracle ----------------------------------------------------------------------


def snapshot(store: castore.Store) -> Snapshot:
    """What a user can see of the store, independent of ids and times."""
    state: Snapshot = {}
    for coll in store.collections():
        versions = {}
        for v in coll.versions():
            versions[v.number] = {
                "digest": v.digest,
                "files": {e.path: (e.digest, e.size) for e in v.files()},
                "tags": sorted(v.tags),
            }
        aliases = {
            alias: v.number
            for v in coll.versions()
            for alias in v.aliases
        }
        state[coll.name] = {"type": coll.type, "versions": versions, "aliases": aliases}
    return {name: s for name, s in state.items() if s["versions"]}


def assert_readable(store: castore.Store) -> int:
    """Every committed version reads back whole (each blob re-hashed); return how many."""
    count = 0
    for coll in store.collections():
        for v in coll.versions():
            v.verify()
            count += 1
    return count


def settle_packs(store: castore.Store, *, rounds: int = 3) -> set[str]:
    """Run gc(grace=0) until no pack is due for deletion or rewrite; assert that happens
    within ``rounds`` and that every blob left unreferenced is in a pack kept below the
    rewrite threshold (never a loose file). Return those orphans."""
    from castore.maintenance import repack

    for _ in range(rounds):
        store.gc(grace=timedelta(0))
        orphans = {str(f.digest) for f in store.fsck().findings if f.kind == "orphan_blob"}
        assert not [d for d in orphans if repack.is_loose(store.blobs, d)], orphans
        live = {str(d) for d in store.blobs.iter_digests()} - orphans
        if repack.plan(store.blobs, live=live, cutoff=time.time() + 1) == []:
            return orphans
    raise AssertionError(f"packs still due for gc after {rounds} rounds")


def errors_of(report: castore.FsckReport) -> list[Any]:
    """The error findings of an fsck report."""
    return [f for f in report.findings if f.severity == "error"]


# -- fault shims -----------------------------------------------------------------------------


@contextmanager
def enospc_after(nbytes: int, *, at: str = "staging") -> Iterator[None]:
    """Writes fail with ENOSPC once ``nbytes`` bytes have been written.

    ``at="staging"``: blob writes of an add; ``at="checkout"``: file writes of a checkout or
    download (the placement in ``castore.worktree.linking``).
    """
    import castore.storage.blobs as blobs_mod
    import castore.worktree.linking as linking_mod

    mod: Any = {"staging": blobs_mod, "checkout": linking_mod}[at]
    real = mod._write_all
    written = [0]

    def write_all(fd: int, data: Any) -> int:
        size = len(memoryview(data))
        if written[0] + size > nbytes:
            room = max(0, nbytes - written[0])
            if room:
                real(fd, memoryview(data)[:room])
                written[0] += room
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written[0] += size
        return real(fd, data)

    import castore.storage.packs as packs_mod

    real_pack = packs_mod.write_all
    mod._write_all = write_all
    if at == "staging":  # small blobs are written into packs
        packs_mod.write_all = write_all  # type: ignore[assignment]
    try:
        yield
    finally:
        mod._write_all = real
        packs_mod.write_all = real_pack  # type: ignore[assignment]


@contextmanager
def enospc_on_mkdir(under: Path | str) -> Iterator[list[str]]:
    """Creating a directory below ``under`` fails with ENOSPC; yields the refused paths.

    Covers ``os.mkdir`` and ``os.makedirs`` (a blob shard, a spread ``tmp/`` directory, a
    checkout's staging or parent directory).
    """
    real_mkdir = os.mkdir
    base = os.path.realpath(under)
    refused: list[str] = []

    def mkdir(path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        full = os.fspath(path)
        if dir_fd is not None:
            full = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), full)
        if os.path.realpath(full).startswith(base + os.sep):
            refused.append(full)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), full)
        real_mkdir(path, mode, dir_fd=dir_fd)

    os.mkdir = mkdir  # os.makedirs calls os.mkdir
    try:
        yield refused
    finally:
        os.mkdir = real_mkdir


@contextmanager
def failing_fsync(err: int = errno.EIO) -> Iterator[list[int]]:
    """``os.fsync`` and ``syncfs`` fail with ``err``; yields the list of failed fds."""
    import castore.storage.blobs as blobs_mod
    import castore.storage.fsutil as fsutil

    real_fsync, real_syncfs, real_blob_syncfs = os.fsync, fsutil.syncfs, blobs_mod.syncfs
    failed: list[int] = []

    def fsync(fd: int) -> None:
        failed.append(fd)
        raise OSError(err, os.strerror(err))

    def syncfs(path: Any) -> None:
        failed.append(-1)
        raise OSError(err, os.strerror(err), str(path))

    os.fsync = fsync
    fsutil.syncfs = syncfs
    blobs_mod.syncfs = syncfs
    try:
        yield failed
    finally:
        os.fsync = real_fsync
        fsutil.syncfs = real_syncfs
        blobs_mod.syncfs = real_blob_syncfs


def damage_blob(store: castore.Store, digest: str) -> None:
    """Change the last stored byte of one blob, loose or packed (its pack stays readable)."""
    entry = store.blobs.packed(digest)
    path = Path(store.blobs.path_of(digest))
    path.chmod(0o644)
    end = entry.offset + entry.length if entry else path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(end - 1)
        last = fh.read(1)
        fh.seek(end - 1)
        fh.write(bytes([last[0] ^ 0xFF]) if last else b"x")


@contextmanager
def eio_on_read(store: castore.Store, digest: str) -> Iterator[None]:
    """Reading the blob ``digest`` fails with EIO; other blobs read normally."""
    import castore.storage.reading as reading_mod
    from castore.storage.packs import PackIndex

    real, real_read = reading_mod.decoded, PackIndex.read
    target = Path(store.blobs.path_of(digest))
    entry = store.blobs.packed(digest)

    def decoded(path: Path, codec: Any, cap: Any) -> Any:
        if Path(path) == target:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))
        return real(path, codec, cap)

    def read(self: PackIndex, where: Any) -> bytes:
        if where == entry:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(target))
        return real_read(self, where)

    reading_mod.decoded = decoded  # type: ignore[assignment]
    PackIndex.read = read  # type: ignore[method-assign]
    try:
        yield
    finally:
        reading_mod.decoded = real  # type: ignore[assignment]
        PackIndex.read = real_read  # type: ignore[method-assign]


# -- subprocess workers --------------------------------------------------------------------


def spawn(
    scenario: str, store: Path | str, *args: object, crash_at: str | None = None, **popen: Any
) -> subprocess.Popen[str]:
    """Start ``python tests/harness.py scenario store args...`` in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if k != "CASTORE_CRASH_AT"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if crash_at:
        env["CASTORE_CRASH_AT"] = crash_at
    return subprocess.Popen(
        [sys.executable, str(Path(__file__)), scenario, str(store), *map(str, args)],
        env=env,
        cwd=str(ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def run(
    scenario: str,
    store: Path | str,
    *args: object,
    crash_at: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run a scenario to its end; return the completed process."""
    proc = spawn(scenario, store, *args, crash_at=crash_at)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# Crash scenario: a base store, then a fixed list of operations that walks every
# finalize, alias and gc crash point.


#: In ``ds:v1``'s pack only; dies with it, so gc rewrites that pack around ``e.txt``.
CRASH_DEAD = random.Random(7).randbytes(3000)


def build_crash_base(path: Path) -> None:
    """``ds:v0`` and ``ds:v1`` (alias ``prod``), sharing one blob; ``ds:v1``'s small blobs
    share one pack."""
    with castore.init(path, durable=True) as store:
        finalize(store, "ds", {"a.txt": b"A0", "b.txt": b"shared" * 100})
        finalize_dir(
            store, "ds",
            {"a.txt": b"A1", "b.txt": b"shared" * 100, "d.bin": CRASH_DEAD, "e.txt": b"E"},
            aliases=["prod"],
        )


def crash_ops() -> list[Callable[[castore.Store], Any]]:
    """The operations of the crash scenario, in order (the gc rewrites ``ds:v1``'s pack)."""
    return [
        lambda s: finalize(
            s, "ds",
            {"a.txt": b"A2", "b.txt": b"shared" * 100, "c.bin": b"C" * 5000, "e.txt": b"E"},
            aliases=["best"],
        ),
        lambda s: s.get("ds:v0").add_alias("prod"),
        lambda s: s.get("ds:v1").delete(),
        lambda s: s.gc(grace=timedelta(0)),
    ]


def _scenario_crash_ops(store_path: str) -> None:
    with castore.open(store_path) as store:
        for op in crash_ops():
            op(store)


def _scenario_writer(
    store_path: str, seed: str, count: str, collection: str = "shared", mode: str = "bytes"
) -> None:
    """Finalize ``count`` versions; each is verified right after it commits. ``mode="dir"``
    adds each version's files through add_dir, so they share a pack."""
    with castore.open(store_path, durable=False) as store:
        base = int(seed) * 100_000
        for i in range(int(count)):
            if mode == "dir":  # blobs of earlier versions again: dedup hits into their packs
                files = files_for(base + i, count=4)
                files["prev.bin"] = files_for(base + max(0, i - 1), count=4)["f1.bin"]
                files["older.bin"] = files_for(base + max(0, i - 4), count=4)["f2.bin"]
                v = finalize_dir(store, collection, files)
            else:
                v = finalize(store, collection, files_for(base + i))
            v.verify()
            # A dedup hit on a blob another version made unreferenced (tests 20-21).
            if i % 3 == 2:
                old = store.versions(collection=collection, sort="number", limit=1).items
                if old and not old[0].aliases:
                    try:
                        old[0].delete()
                    except castore.CastoreError:
                        pass
        print("done", flush=True)


def _scenario_gc_loop(store_path: str, stop_file: str, max_loops: str = "100000") -> None:
    """Run gc with grace 0 until ``stop_file`` exists."""
    loops = 0
    with castore.open(store_path, durable=False) as store:
        while not os.path.exists(stop_file) and loops < int(max_loops):
            store.gc(grace=timedelta(0))
            loops += 1
    print(f"loops {loops}", flush=True)


def _scenario_open(store_path: str, go_file: str) -> None:
    """Wait for ``go_file``, then open (creating) the store and write one version."""
    while not os.path.exists(go_file):
        time.sleep(0.005)
    with castore.open(store_path, durable=False) as store:
        store.stats()
    print("opened", flush=True)


def _scenario_hold_lock(store_path: str, seconds: str) -> None:
    """Take the maintenance lock, say so, and hold it."""
    from castore.storage.locking import maintenance_lock

    with maintenance_lock(Path(store_path) / "locks"):
        print("locked", flush=True)
        time.sleep(float(seconds))


def _scenario_hold_write(store_path: str, seconds: str) -> None:
    """Hold SQLite's write lock on the catalogue (BEGIN IMMEDIATE)."""
    import sqlite3

    conn = sqlite3.connect(str(Path(store_path) / "catalog.db"), isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    time.sleep(float(seconds))
    conn.execute("ROLLBACK")


def _scenario_count(store_path: str, counter: str, times: str) -> None:
    """Read-modify-write a counter file under the maintenance lock."""
    from castore.storage.locking import StoreLock

    lock = StoreLock(Path(store_path) / "locks")
    path = Path(counter)
    for _ in range(int(times)):
        with lock:
            value = int(path.read_text() or "0")
            path.write_text(str(value + 1))


def _scenario_import(store_path: str, bundle: str) -> None:
    """Import a bundle (crash tests of import)."""
    with castore.open(store_path) as store:
        store.import_bundle(bundle)
        print("done", flush=True)


def _scenario_push(store_path: str, remote: str, force: str = "0") -> None:
    """Push everything (crash and concurrency tests of push); print the outcome."""
    with castore.open(store_path) as store:
        try:
            store.push(remote, force=force == "1")
        except castore.AliasConflictError:
            print("conflict", flush=True)
            return
        print("done", flush=True)


SCENARIOS: dict[str, Callable[..., None]] = {
    "import": _scenario_import,
    "push": _scenario_push,
    "crash_ops": _scenario_crash_ops,
    "writer": _scenario_writer,
    "gc_loop": _scenario_gc_loop,
    "open": _scenario_open,
    "hold_lock": _scenario_hold_lock,
    "hold_write": _scenario_hold_write,
    "count": _scenario_count,
}


if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](*sys.argv[2:])
