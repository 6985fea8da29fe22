"""Many processes and threads on one store (reliability.md §3.5, tests 18, 24, 26, 27)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import harness

import castore


def test_eight_processes_finalize_into_one_collection(tmp_path: Path) -> None:
    path = tmp_path / "store"
    castore.init(path, durable=False).close()
    per = 10
    procs = [harness.spawn("writer", path, 100 + seed, per, "one") for seed in range(8)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    with castore.open(path, durable=False) as store:
        versions = store.collection("one").versions()
        numbers = sorted(v.number for v in versions)
        assert len(set(numbers)) == len(numbers)  # unique
        assert numbers[-1] == 8 * per - 1  # never reused, gaps only from the writers' deletes
        assert store.fsck().ok
        harness.assert_readable(store)


def test_fifty_processes_open_one_new_store(tmp_path: Path) -> None:
    """reliability.md test 24: forked (so already imported) children open at a barrier."""
    path = tmp_path / "new"
    go = tmp_path / "go"
    with castore.init(tmp_path / "warm", durable=False) as warm:  # load lazy modules first
        warm.stats()
    pids = []
    for _ in range(50):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                while not go.exists():
                    time.sleep(0.002)
                with castore.open(path, durable=False) as store:
                    store.stats()
                code = 0
            except BaseException as exc:
                import traceback

                (tmp_path / f"error-{os.getpid()}").write_text(repr(exc) + traceback.format_exc())
            finally:
                os._exit(code)
        pids.append(pid)
    go.write_text("go")
    statuses = [os.waitpid(pid, 0)[1] for pid in pids]
    errors = [p.read_text() for p in tmp_path.glob("error-*")]
    assert errors == []
    assert all(os.WIFEXITED(s) and os.WEXITSTATUS(s) == 0 for s in statuses)
    with castore.open(path, durable=False) as store:
        version = store.catalog.execute("PRAGMA user_version").fetchone()[0]
        from castore.index.migrations import SCHEMA_VERSION

        assert version == SCHEMA_VERSION
        assert store.fsck().ok
        harness.finalize(store, "after", {"a": b"a"}).verify()
    assert sorted(p.name for p in path.iterdir() if p.name.startswith("castore")) == [
        "castore.json"
    ]


def test_fork_after_open(tmp_path: Path) -> None:
    """reliability.md test 26: the child uses the parent's Store object; both write."""
    store = castore.init(tmp_path / "store", durable=False)
    harness.finalize(store, "base", {"a": b"before fork"})
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for i in range(10):
                harness.finalize(store, "child", {"c": f"child {i}".encode()})
            store.gc(dry_run=True)
            code = 0
        finally:
            os._exit(code)
    for i in range(10):
        harness.finalize(store, "parent", {"p": f"parent {i}".encode()})
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert [len(store.collection(c).versions()) for c in ("base", "child", "parent")] == [1, 10, 10]
    assert store.fsck().ok
    harness.assert_readable(store)
    store.close()


def test_eight_threads_share_one_store(store: castore.Store, tmp_path: Path) -> None:
    """reliability.md test 27: no cross-talk between threads of one Store."""
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(4):
                files = {f"t{n}/f{i}.txt": f"thread {n} file {i}".encode(), "shared": b"s" * 99}
                v = harness.finalize(store, f"t{n}", files)
                harness.finalize(store, "together", {"who": f"{n}-{i}".encode()})
                target = tmp_path / "out" / f"t{n}-{i}"
                v.checkout(target)
                assert (target / f"t{n}" / f"f{i}.txt").read_bytes() == files[f"t{n}/f{i}.txt"]
                names = sorted(p.name for p in target.iterdir() if not p.name.startswith("."))
                assert names == ["shared", f"t{n}"]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(v.number for v in store.collection("together").versions()) == list(range(32))
    assert store.fsck().ok
    harness.assert_readable(store)
