"""Runs and lineage through the public API (API.md "Runs and lineage")."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import castore
from castore import _process


def _log(store: castore.Store, name: str, content: bytes, **kw: object) -> castore.ArtifactVersion:
    with store.draft(name, **kw) as d:  # type: ignore[arg-type]
        d.add_bytes(content, "f.bin")
    assert d.version is not None
    return d.version


def test_run_records_inputs_outputs_and_summary(store: castore.Store) -> None:
    data = _log(store, "data", b"d0")
    data.add_alias("prod")
    with store.run("train-42", metadata={"lr": 1e-3}) as run:
        assert run.state == "RUNNING" and run.pid == os.getpid() and run.host
        used = run.use("data:prod")
        assert used == data
        with run.draft("model", type="model") as d:
            d.add_bytes(b"weights", "model.pt")
        run.update(summary={"f1": 0.93})
        run.update(summary={"loss": 0.1})
    assert run.state == "FINISHED" and run.ended_at is not None and run.error is None
    assert run.ended_at >= run.started_at and run.started_at.tzinfo is not None
    assert run.metadata == {"lr": 1e-3}
    assert run.summary == {"f1": 0.93, "loss": 0.1}
    model = store.get("model")
    assert run.inputs() == [data] and run.outputs() == [model]
    assert model.logged_by() == run and model.producer == run.id
    assert data.used_by() == [run] and data.logged_by() is None
    again = store.get_run("train-42")
    assert again == store.get_run(run.id) and again.summary == run.summary


def test_generated_name_and_unique_names(store: castore.Store) -> None:
    run = store.run()
    assert run.name.startswith("run-")
    store.run("a").finish()
    with pytest.raises(castore.RunError, match="already exists"):
        store.run("a")
    with pytest.raises(castore.InvalidReferenceError):
        store.run("bad name!")
    with pytest.raises(castore.InvalidReferenceError):
        store.run(run.id)  # a name that looks like an id would shadow one
    with pytest.raises(ValueError):
        store.run("nan", metadata={"x": float("nan")})


def test_get_run_missing(store: castore.Store) -> None:
    with pytest.raises(castore.NotFoundError):
        store.get_run("nope")
    with pytest.raises(castore.NotFoundError):
        store.versions(produced_by="nope")


def test_failed_run_keeps_error(store: castore.Store) -> None:
    with pytest.raises(ZeroDivisionError), store.run("boom") as run:
        1 / 0  # noqa: B018
    assert run.state == "FAILED" and run.error is not None
    assert run.error.startswith("ZeroDivisionError: division")
    assert store.get_run("boom").error == run.error


def test_without_with_finish_and_fail(store: castore.Store) -> None:
    run = store.run("manual")
    run.fail(ValueError("bad data"))
    assert run.state == "FAILED" and run.error == "ValueError: bad data"
    run.finish()  # an ended run keeps its state
    assert run.state == "FAILED"


def test_ended_run_refuses_edges(store: castore.Store) -> None:
    _log(store, "data", b"x")
    run = store.run("done")
    run.finish()
    with pytest.raises(castore.RunError) as info:
        run.use("data")
    assert info.value.state == "FINISHED"  # type: ignore[attr-defined]
    with pytest.raises(castore.RunError):
        run.draft("out")


def test_run_ending_before_finalize_commits_nothing(store: castore.Store) -> None:
    run = store.run("late")
    d = run.draft("out")
    d.add_bytes(b"x", "x")
    run.finish()
    with pytest.raises(castore.RunError):
        d.finalize()
    assert store.count("out") == 0


def test_use_accepts_handles_and_is_idempotent(store: castore.Store) -> None:
    data = _log(store, "data", b"x")
    with store.run("r") as run:
        run.use(data)
        run.use("data")
    assert run.inputs() == [data]


def test_use_of_own_output_records_no_edge_and_cycles_are_refused(
    store: castore.Store,
) -> None:
    a = store.run("a")
    with a.draft("v2") as d:
        d.add_bytes(b"2", "x")
    assert a.use("v2") == store.get("v2")  # its own output: no used edge
    assert a.inputs() == []
    with store.run("b") as b:
        b.use("v2")
        with b.draft("v3") as d:
            d.add_bytes(b"3", "x")
    with pytest.raises(castore.RunError, match="circle"):
        a.use("v3")
    a.finish()


def test_reused_version_keeps_its_producer(store: castore.Store) -> None:
    with store.run("first") as first, first.draft("m") as d:
        d.add_bytes(b"same", "x")
    with store.run("second") as second, second.draft("m") as d:
        d.add_bytes(b"same", "x")
    assert store.get("m").logged_by() == first
    assert second.outputs() == []


def test_runs_filters_sort_and_pages(store: castore.Store) -> None:
    for i in range(5):
        run = store.run(f"r{i}", metadata={"i": i, "even": i % 2 == 0})
        if i < 4:
            run.finish() if i % 2 else run.fail(RuntimeError("x"))
    page = store.runs()
    assert [r.name for r in page] == ["r4", "r3", "r2", "r1", "r0"] and page.total == 5
    assert [r.name for r in store.runs(sort="name", limit=2, offset=1)] == ["r1", "r2"]
    assert store.runs(limit=2).has_more
    assert [r.name for r in store.runs(state="RUNNING")] == ["r4"]
    assert {r.name for r in store.runs(state="FAILED")} == {"r0", "r2"}
    assert [r.name for r in store.runs(metadata={"i": 3})] == ["r3"]
    assert {r.name for r in store.runs(metadata={"even": True})} == {"r0", "r2", "r4"}
    with pytest.raises(ValueError):
        store.runs(state="DONE")
    with pytest.raises(ValueError):
        store.runs(sort="size")


def test_versions_produced_by_and_used_by(store: castore.Store) -> None:
    d1 = _log(store, "d1", b"1")
    _log(store, "d2", b"2")
    with store.run("t") as run:
        run.use("d1")
        for name in ("m1", "m2"):
            with run.draft(name) as d:
                d.add_bytes(name.encode(), "x")
    assert {v.ref for v in store.versions(produced_by="t")} == {"m1:v0", "m2:v0"}
    assert {v.ref for v in store.versions(produced_by=run)} == {"m1:v0", "m2:v0"}
    assert [v.ref for v in store.versions(used_by=run.id)] == [d1.ref]
    assert store.count(produced_by="t") == 2 and store.count(used_by="t") == 1
    assert store.count("m1", produced_by="t") == 1


def test_prune_only_unused_spares_used_and_produced(store: castore.Store) -> None:
    for name in ("used", "made", "idle"):
        _log(store, name, b"0" + name.encode())
        _log(store, name, b"1" + name.encode())  # v1 holds latest, v0 is a candidate
    with store.run("r") as run:
        run.use("used:v0")
    made = store.run("p")
    with made.draft("made") as d:
        d.add_bytes(b"2made", "x")  # made:v2, produced
    made.finish()
    store.get("made:v2").delete()  # latest moves back; produced v2 is deleted, edge stays
    report = store.prune(only_unused=True, dry_run=True)
    assert report.versions_deleted == ["idle:v0", "made:v0"]


def test_deleting_a_version_keeps_the_run_and_marks_the_edge(store: castore.Store) -> None:
    _log(store, "data", b"x")
    with store.run("r") as run:
        run.use("data")
        with run.draft("out") as d:
            d.add_bytes(b"y", "y")
    store.get("data").delete()
    store.collection("out").delete()  # the version row goes too: the edge remembers it
    store.gc(grace=0)
    inputs = store.get_run("r").inputs()
    assert [(v.ref, v.state) for v in inputs] == [("data:v0", "DELETED")]
    rows = store.catalog.all_rows("SELECT version_deleted FROM run_edges WHERE kind = 'used'")
    assert rows == [{"version_deleted": 1}]
    assert [(v.ref, v.state) for v in store.get_run("r").outputs()] == [("out:v0", "DELETED")]
    assert store.get_run("r").state == "FINISHED"
    g = store.lineage(run, direction="both")
    assert "data:v0 (deleted)" in g.to_mermaid()


def test_read_only_store_refuses_runs(tmp_path: Path) -> None:
    castore.init(tmp_path / "s").close()
    with castore.open(tmp_path / "s", read_only=True) as ro:
        with pytest.raises(castore.ReadOnlyStoreError):
            ro.run("x")
        assert ro.runs().total == 0


# -- crashes ---------------------------------------------------------------------------------

def test_reused_pid_is_not_mistaken_for_the_run(store: castore.Store) -> None:
    run = store.run("mine")
    assert store.get_run("mine").state == "RUNNING"
    # The same host and pid, but another process start: the pid was reused.
    token = _process.start_token(os.getpid())
    if token is None:
        pytest.skip("no /proc here: only the pid can be checked")
    store.catalog.execute(
        "UPDATE runs SET process_start = ? WHERE id = ?", (token + "0", run.id)
    )
    assert store.get_run("mine").state == "CRASHED"
    assert [r.name for r in store.runs(state="CRASHED")] == ["mine"]


def test_run_of_another_host_is_left_running(store: castore.Store) -> None:
    run = store.run("far")
    store.catalog.execute("UPDATE runs SET host = 'elsewhere', pid = 1 WHERE id = ?", (run.id,))
    assert store.get_run("far").state == "RUNNING"


def test_export_and_import_run_records(tmp_path: Path) -> None:
    a = castore.open(tmp_path / "a")
    _log(a, "data", b"x")
    with a.run("r", metadata={"k": 1}) as run:
        run.use("data")
        with run.draft("m") as d:
            d.add_bytes(b"m", "m")
    ids = [a.get("data").id, a.get("m").id]
    records = a.catalog.export_run_records(ids)
    assert json.loads(json.dumps(records)) == records
    assert [r["name"] for r in records["runs"]] == ["r"]
    assert sorted(e["kind"] for e in records["edges"]) == ["produced", "used"]
    # The receiving store knows the same version ids (what a bundle import makes).
    b = castore.open(tmp_path / "b")
    b.catalog.execute("PRAGMA foreign_keys = OFF")
    for table in ("collections", "versions"):
        rows = a.catalog.all_rows(f"SELECT * FROM {table}")
        for row in rows:
            cols = ", ".join(row)
            marks = ", ".join("?" * len(row))
            b.catalog.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", list(row.values()))
    assert b.catalog.import_run_records(records) == 2
    assert b.catalog.import_run_records(records) == 0
    assert b.get("m").logged_by() is not None and b.get_run("r").metadata == {"k": 1}
    a.close()
    b.close()
