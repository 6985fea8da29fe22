"""What travels with a version through bundles and remotes: runs, links, materializers."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness
import pytest

import castore
from castore.errors import BundleError


def _lineage(store: castore.Store, ref: str) -> tuple[set[tuple[str, str]], set[tuple[str, ...]]]:
    """The lineage of ``ref`` as names and states, and edges by name."""
    g = store.lineage(ref, direction="both")

    def name(n: object) -> str:
        if isinstance(n, castore.Run):
            return f"run:{n.name}"
        return f"{n.collection}:v{n.number}"  # type: ignore[attr-defined]

    nodes = {(name(n), n.state) for n in g.nodes}
    edges = {(name(e.source), e.kind, name(e.target)) for e in g.edges}
    return nodes, edges


def _with_runs(path: Path) -> castore.Store:
    a = castore.init(path, durable=False)
    with a.draft("data") as d:
        d.add_bytes(b"rows", "data.csv")
    with a.run("train", metadata={"lr": 0.1}) as run:
        run.use("data:v0")
        with run.draft("model", type="model") as d:
            d.add_bytes(b"weights", "model.bin")
        run.update(summary={"f1": 0.9})
    with pytest.raises(ValueError), a.run("broken") as bad:
        bad.use("data:v0")
        raise ValueError("boom")
    return a


def _carry(a: castore.Store, b: castore.Store, tmp_path: Path, how: str,
           refs: list[str] | None) -> castore.TransferReport:
    if how == "bundle":
        a.export(tmp_path / "x.tar", refs=refs)
        return b.import_bundle(tmp_path / "x.tar")
    a.push(str(tmp_path / "remote"), refs=refs)
    return b.pull(str(tmp_path / "remote"), refs=refs)


@pytest.mark.parametrize("how", ["bundle", "remote"])
def test_lineage_survives_the_air_gap(tmp_path: Path, how: str) -> None:
    a = _with_runs(tmp_path / "a")
    b = castore.init(tmp_path / "b", durable=False)
    _carry(a, b, tmp_path, how, ["data:v0", "model:v0"])
    for ref in ("model:v0", "data:v0"):
        assert _lineage(b, ref) == _lineage(a, ref)
    nodes, edges = _lineage(b, "data:v0")
    assert ("run:broken", "FAILED") in nodes and ("run:train", "FINISHED") in nodes
    assert ("run:train", "produced", "model:v0") in edges
    run = b.get_run("train")
    assert (run.id, run.metadata, run.summary) == (
        a.get_run("train").id, {"lr": 0.1}, {"f1": 0.9})
    assert b.get_run("broken").error == a.get_run("broken").error
    assert b.get("model:v0").logged_by().name == "train"  # type: ignore[union-attr]
    assert {r.name for r in b.get("data:v0").used_by()} == {"train", "broken"}
    assert [v.collection for v in b.versions(produced_by="train")] == ["model"]
    assert b.fsck().ok
    # a second transfer changes nothing
    runs = b.catalog.all_rows("SELECT * FROM runs ORDER BY id")
    edges_before = b.catalog.all_rows("SELECT * FROM run_edges ORDER BY run_id, version_id")
    snap = harness.snapshot(b)
    report = _carry(a, b, tmp_path, how, ["data:v0", "model:v0"])
    assert report.blobs_sent == 0
    assert harness.snapshot(b) == snap
    assert b.catalog.all_rows("SELECT * FROM runs ORDER BY id") == runs
    assert b.catalog.all_rows(
        "SELECT * FROM run_edges ORDER BY run_id, version_id") == edges_before


def test_lineage_added_later_travels_and_names_may_clash(tmp_path: Path) -> None:
    a = _with_runs(tmp_path / "a")
    b = castore.init(tmp_path / "b", durable=False)
    with b.draft("mine") as d:
        d.add_bytes(b"m", "m")
    with b.run("train") as local:  # its name is taken here by another run
        local.use("mine")
    _carry(a, b, tmp_path, "bundle", ["data:v0"])
    with a.run("evaluate") as ev:  # after the first transfer
        ev.use("data:v0")
    _carry(a, b, tmp_path, "bundle", ["data:v0"])
    used = {r.name for r in b.get("data:v0").used_by()}
    assert "evaluate" in used and "broken" in used
    imported = a.get_run("train").id
    assert b.get_run(imported).name == f"train-{imported[-12:]}"
    assert b.get_run("train").id == local.id
    assert b.fsck().ok


def test_versions_without_runs_keep_their_config(tmp_path: Path) -> None:
    a = castore.init(tmp_path / "a", durable=False)
    harness.finalize(a, "ds", {"x": b"x"})
    a.export(tmp_path / "x.tar")
    with tarfile.open(tmp_path / "x.tar") as tar:
        blobs = [tar.extractfile(m).read()  # type: ignore[union-attr]
                 for m in tar.getmembers() if m.name.startswith("blobs/")]
    configs = [blob for blob in blobs if blob.startswith(b'{"castore_version":')]
    assert len(configs) == 1 and sorted(json.loads(configs[0])) == ["castore_version"]


# -- hostile run records ---------------------------------------------------------------------


def _rewrite(src: Path, dst: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Copy a bundle with every version config passed through ``change`` (digests redone)."""
    with tarfile.open(src) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]

    def put(data: bytes) -> dict[str, Any]:
        sha = hashlib.sha256(data).hexdigest()
        members[f"blobs/sha256/{sha}"] = data
        return {"digest": f"sha256:{sha}", "size": len(data)}

    index = json.loads(members["index.json"])
    for desc in index["manifests"]:
        manifest = json.loads(members["blobs/sha256/" + desc["digest"][7:]])
        config = json.loads(members["blobs/sha256/" + manifest["config"]["digest"][7:]])
        change(config)
        manifest["config"].update(put(json.dumps(config).encode()))
        desc.update(put(json.dumps(manifest).encode()))
    members["index.json"] = json.dumps(index).encode()
    with tarfile.open(dst, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_unknown_config_keys_are_ignored(tmp_path: Path) -> None:
    a = _with_runs(tmp_path / "a")
    a.export(tmp_path / "x.tar", refs=["model:v0"])
    _rewrite(tmp_path / "x.tar", tmp_path / "later.tar", lambda c: c.update(future=[1]))
    b = castore.init(tmp_path / "b", durable=False)
    b.import_bundle(tmp_path / "later.tar")
    assert b.get("model:v0").logged_by().name == "train"  # type: ignore[union-attr]


def _first_run(config: dict[str, Any]) -> dict[str, Any]:
    return config["runs"][0] if config.get("runs") else {}


HOSTILE: dict[str, Callable[[dict[str, Any]], None]] = {
    "unknown run field": lambda c: _first_run(c).update(evil=True),
    "pid as text": lambda c: _first_run(c).update(pid="12"),
    "bad state": lambda c: _first_run(c).update(state="DONE"),
    "bad run id": lambda c: _first_run(c).update(id="../../etc"),
    "huge metadata": lambda c: _first_run(c).update(metadata={"x": "y" * (1 << 20)}),
    "runs not a list": lambda c: c.update(runs={"a": 1}) if "runs" in c else None,
    "edge to another version": lambda c: [
        e.update(version_id="00000000-0000-7000-8000-000000000000")
        for e in c.get("run_edges", [])],
    "edge from a run not carried": lambda c: c.update(runs=[]) if "runs" in c else None,
    "used and produced": lambda c: c["run_edges"].append(
        {**c["run_edges"][0], "kind": "used"}) if any(
        e["kind"] == "produced" for e in c.get("run_edges", [])) else None,
    "too many runs": lambda c: c.update(runs=[_first_run(c)] * 10_001) if "runs" in c else None,
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_run_records_are_refused(tmp_path: Path, case: str) -> None:
    a = _with_runs(tmp_path / "a")
    a.export(tmp_path / "x.tar", refs=["model:v0"])
    _rewrite(tmp_path / "x.tar", tmp_path / "bad.tar", HOSTILE[case])
    b = castore.init(tmp_path / "b", durable=False)
    harness.finalize(b, "other", {"x": b"x"})
    before = harness.snapshot(b)
    with pytest.raises(BundleError) as info:
        b.import_bundle(tmp_path / "bad.tar")
    assert "config" in str(info.value)
    assert harness.snapshot(b) == before
    assert b.catalog.all_rows("SELECT * FROM runs") == []
    assert b.fsck().ok and not b.fsck().findings


# -- links -----------------------------------------------------------------------------------


def _with_link(path: Path) -> castore.Store:
    a = castore.init(path, durable=False)
    harness.finalize(a, "ds", {"a.txt": b"A", "b/c.bin": b"C" * 5000})
    a.get("ds:v0").link("registry", aliases=["staging"])
    return a


def test_a_link_and_its_source_travel_together(tmp_path: Path) -> None:
    a = _with_link(tmp_path / "a")
    b = castore.init(tmp_path / "b", durable=False)
    a.export(tmp_path / "x.tar", refs=["ds:v0", "registry:staging"])
    b.import_bundle(tmp_path / "x.tar")
    reg = b.get("registry:staging")
    assert reg.is_link and reg.source is not None
    assert reg.source.id == a.get("ds:v0").id
    assert [v.id for v in b.get("ds:v0").linked_versions()] == [reg.id]
    with pytest.raises(castore.AliasConflictError):
        b.get("ds:v0").delete()  # the link holds its source here too
    assert b.fsck().ok


@pytest.mark.parametrize("how", ["bundle", "remote"])
def test_a_link_whose_source_is_already_here(tmp_path: Path, how: str) -> None:
    a = _with_link(tmp_path / "a")
    b = castore.init(tmp_path / "b", durable=False)
    _carry(a, b, tmp_path, how, ["ds:v0"])
    (tmp_path / "x.tar").unlink(missing_ok=True)
    report = _carry(a, b, tmp_path, how, ["registry:v0"])
    assert report.blobs_sent == 0
    reg = b.get("registry:v0")
    assert reg.is_link and reg.source.id == b.get("ds:v0").id  # type: ignore[union-attr]
    assert b.fsck().ok


def test_a_link_without_its_source_lands_as_a_plain_version(tmp_path: Path) -> None:
    a = _with_link(tmp_path / "a")
    b = castore.init(tmp_path / "b", durable=False)
    a.export(tmp_path / "x.tar", refs=["registry:staging"])
    b.import_bundle(tmp_path / "x.tar")
    reg = b.get("registry:staging")
    assert not reg.is_link and reg.source is None
    assert reg.digest == a.get("ds:v0").digest
    assert {f.path for f in reg.files()} == {"a.txt", "b/c.bin"}
    reg.checkout(tmp_path / "out")
    assert (tmp_path / "out/b/c.bin").read_bytes() == b"C" * 5000
    assert b.fsck().ok
    # its source arriving later does not turn it into a link (it is a version of its own)
    a.export(tmp_path / "y.tar", refs=["ds:v0"])
    b.import_bundle(tmp_path / "y.tar")
    assert not b.get("registry:staging").is_link
    b.get("ds:v0").delete()  # nothing links to it here
    assert b.fsck().ok


def test_a_forged_link_to_other_content_is_plain(tmp_path: Path) -> None:
    a = _with_link(tmp_path / "a")
    harness.finalize(a, "other", {"z": b"zzz"})
    other = a.get("other:v0").id
    a.export(tmp_path / "x.tar", refs=["registry:v0", "other:v0"])

    def forge(config: dict[str, Any]) -> None:
        doc = config["castore_version"]
        if doc.get("link_source"):
            doc["link_source"] = other

    _rewrite(tmp_path / "x.tar", tmp_path / "forged.tar", forge)
    b = castore.init(tmp_path / "b", durable=False)
    b.import_bundle(tmp_path / "forged.tar")
    assert not b.get("registry:v0").is_link
    assert b.fsck().ok


# -- materializers ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["bundle", "remote"])
def test_materializers_survive_transfer(tmp_path: Path, how: str) -> None:
    np = pytest.importorskip("numpy")
    a = castore.init(tmp_path / "a", durable=False)
    a.save({"lr": 0.1, "layers": [1, 2]}, "config")
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    a.save(array, "weights")
    b = castore.init(tmp_path / "b", durable=False)
    _carry(a, b, tmp_path, how, ["config:v0", "weights:v0"])
    for ref in ("config:v0", "weights:v0"):
        assert b.get(ref).materializer == a.get(ref).materializer is not None
    assert b.load("config:v0") == {"lr": 0.1, "layers": [1, 2]}
    got = b.load("weights:v0")
    assert got.dtype == array.dtype and (got == array).all()
    assert b.get("weights:v0").load().shape == (3, 4)
    assert b.fsck().ok


# -- the two transactions of an import -------------------------------------------------------


def test_a_failed_import_drops_its_drafts_and_a_live_one_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from castore.transfer import landing

    a = _with_runs(tmp_path / "a")
    a.export(tmp_path / "x.tar")
    b = castore.init(tmp_path / "b", durable=False)
    harness.finalize(b, "other", {"x": b"x"})
    before = harness.snapshot(b)
    markers = sorted(b.parts.markers)
    finish = landing._finish
    seen: list[str] = []

    def failing(*args: Any, **kwargs: Any) -> None:
        pending = b.catalog.all_rows("SELECT version_id, pid FROM drafts")
        assert len(pending) == 2 and {r["pid"] for r in pending} == {__import__("os").getpid()}
        # this process is alive: its drafts are an import in progress, not leftovers
        with pytest.raises(castore.VersionConflictError) as info:
            b.import_bundle(tmp_path / "x.tar")
        seen.append(str(info.value))
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(landing, "_finish", failing)
    with pytest.raises(RuntimeError):
        b.import_bundle(tmp_path / "x.tar")
    assert "import in progress" in seen[0]
    assert b.catalog.all_rows("SELECT * FROM drafts") == []
    assert sorted(b.parts.markers) == markers
    assert harness.snapshot(b) == before
    monkeypatch.setattr(landing, "_finish", finish)
    b.import_bundle(tmp_path / "x.tar")
    assert _lineage(b, "model:v0") == _lineage(a, "model:v0")
    assert b.fsck().ok
