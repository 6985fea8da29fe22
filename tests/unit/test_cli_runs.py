"""``castore runs`` and ``castore lineage``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import castore
from castore.cli.app import cli


@pytest.fixture
def root(tmp_path: Path) -> str:
    with castore.open(tmp_path / "s") as store:
        with store.draft("data") as d:
            d.add_bytes(b"x", "x")
        with store.run("train-1") as run:
            run.use("data")
            with run.draft("model") as d:
                d.add_bytes(b"m", "m")
        with pytest.raises(RuntimeError), store.run("eval-1") as run:
            run.use("model")
            raise RuntimeError("bad eval")
    return str(tmp_path / "s")


def _run(root: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["-C", root, *args])
    return result.exit_code, result.output


def test_runs_lists_filters_and_json(root: str) -> None:
    code, out = _run(root, "runs")
    assert code == 0 and "train-1" in out and "FAILED" in out and "bad eval" in out
    code, out = _run(root, "runs", "--state", "FAILED", "--json")
    doc = json.loads(out)
    assert doc["total"] == 1 and doc["runs"][0]["name"] == "eval-1"
    assert doc["runs"][0]["error"] == "RuntimeError: bad eval"
    code, out = _run(root, "runs", "-q", "--sort", "name")
    assert out.split() == ["eval-1", "train-1"]


def test_lineage_formats(root: str) -> None:
    code, out = _run(root, "lineage", "model")
    assert code == 0
    assert out.splitlines() == [
        "model:v0",
        "└── <- produced: run train-1 [FINISHED]",
        "    └── <- used: data:v0",
        "└── -> used: run eval-1 [FAILED]",
    ]
    code, out = _run(root, "lineage", "data", "--direction", "downstream", "--format", "mermaid")
    assert out.startswith("flowchart LR") and "-->|produced|" in out
    code, out = _run(root, "lineage", "model", "--format", "dot", "--depth", "1")
    assert out.startswith("digraph") and "data:v0" not in out
    code, out = _run(root, "lineage", "model", "--format", "json", "--direction", "upstream")
    doc = json.loads(out)
    assert {n.get("ref") or n.get("name") for n in doc["nodes"]} == {"model:v0", "train-1",
                                                                     "data:v0"}
    code, out = _run(root, "lineage", "missing")
    assert code == 4
