"""Runs across real processes: a killed run reads CRASHED; eight processes log runs at once."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

import castore

_CHILD = """
import sys, time, castore
store = castore.open(sys.argv[1])
run = store.run("child")
print("started", flush=True)
time.sleep(60)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(castore.__file__).parents[1])}


def test_killed_process_is_reported_crashed(tmp_path: Path) -> None:
    castore.init(tmp_path / "s").close()
    with subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path / "s")], stdout=subprocess.PIPE, env=_env()
    ) as child:
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == b"started"
            with castore.open(tmp_path / "s") as store:
                assert store.get_run("child").state == "RUNNING"
                assert store.runs(state="RUNNING").total == 1
                child.kill()  # SIGKILL: the run is never ended
                child.wait()
                assert store.get_run("child").state == "CRASHED"
                assert [r.name for r in store.runs(state="CRASHED")] == ["child"]
                assert [r.state for r in store.runs()] == ["CRASHED"]
                assert store.runs(state="RUNNING").total == 0
                with pytest.raises(castore.RunError):
                    store.get_run("child").use("anything")
                report = store.fsck()
                assert report.ok
                [finding] = [f for f in report.findings if f.kind == "crashed_run"]
                assert finding.severity == "warning" and finding.ref == "child"
                assert not finding.repaired
                repaired = store.fsck(repair=True)
                assert [f.repaired for f in repaired.findings if f.kind == "crashed_run"] == [True]
                row = store.catalog.one("SELECT state, error FROM runs WHERE name = 'child'")
                assert row is not None and row["state"] == "CRASHED"
                assert "ended without" in row["error"]
                assert not [f for f in store.fsck().findings if f.kind == "crashed_run"]
                assert store.fsck().ok
        finally:
            child.kill()


def _worker(args: tuple[str, int]) -> list[str]:
    root, index = args
    made = []
    with castore.open(root) as store:
        for i in range(5):
            with store.run(f"w{index}-{i}", metadata={"worker": index}) as run:
                run.use("data")
                with run.draft(f"model-{index}") as d:
                    d.add_bytes(f"{index}-{i}".encode(), "m")
                assert d.version is not None
                made.append(d.version.id)
                run.update(summary={"i": i})
    return made


def test_eight_processes_log_runs_at_once(tmp_path: Path) -> None:
    root = tmp_path / "s"
    with castore.open(root) as store, store.draft("data") as d:
        d.add_bytes(b"data", "d")
    with ProcessPoolExecutor(8) as pool:
        results = list(pool.map(_worker, [(str(root), i) for i in range(8)]))
    with castore.open(root) as store:
        runs = store.runs(limit=None)
        assert runs.total == 40 and {r.state for r in runs} == {"FINISHED"}
        assert len(store.get("data").used_by()) == 40
        for index, made in enumerate(results):
            for i, version_id in enumerate(made):
                version = store.get(version_id)
                logged = version.logged_by()
                assert logged is not None and logged.name == f"w{index}-{i}"
                assert logged.summary == {"i": i}
            assert store.count(f"model-{index}") == 5
        assert len(store.lineage("data", direction="downstream").nodes) == 1 + 40 + 40
        assert store.fsck().ok
