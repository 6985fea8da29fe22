"""Several processes finalizing into one collection get unique, dense numbers and lose nothing."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import castore

PROCESSES = 4
FINALIZES = 50


def _worker(path: str, worker: int, barrier) -> list[tuple[int, str]]:
    store = castore.open(path, durable=False)
    barrier.wait()
    made = []
    try:
        for i in range(FINALIZES):
            with store.draft("shared", type="dataset") as draft:
                draft.add_bytes(f"worker {worker} item {i}".encode(), name=f"w{worker}/{i}.txt")
                draft.add_bytes(b"common", name="common.txt")
            made.append((draft.version.number, draft.version.id))
    finally:
        store.close()
    return made


def test_four_processes_fifty_finalizes_each(tmp_path: Path) -> None:
    path = tmp_path / "store"
    castore.init(path, durable=False).close()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(PROCESSES)
        with ctx.Pool(PROCESSES) as pool:
            results = pool.starmap(_worker, [(str(path), w, barrier) for w in range(PROCESSES)])
    made = [item for result in results for item in result]
    numbers = sorted(number for number, _ in made)
    assert numbers == list(range(PROCESSES * FINALIZES))
    with castore.open(path) as store:
        assert store.count("shared") == PROCESSES * FINALIZES
        assert store.get("shared").number == PROCESSES * FINALIZES - 1
        assert store.drafts() == []
        for number, version_id in made:
            version = store.get(f"shared:v{number}")
            assert version.id == version_id
            assert version.file_count == 2
            worker_file = next(e for e in version.files() if e.path != "common.txt")
            assert store.blobs.read_bytes(worker_file.digest).decode().startswith("worker")
