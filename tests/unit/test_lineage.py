"""Lineage against a hand-built graph: depth, both directions, diamonds, renderings."""

from __future__ import annotations

import pytest

import castore


def _produce(run: castore.Run, name: str) -> castore.ArtifactVersion:
    with run.draft(name) as d:
        d.add_bytes(name.encode(), "x")
    assert d.version is not None
    return d.version


@pytest.fixture
def graph(store: castore.Store) -> castore.Store:
    """raw -> prep -> {train, test} -> fit (diamond) -> model -> serve."""
    with store.draft("raw") as d:
        d.add_bytes(b"raw", "x")
    with store.run("prep") as prep:
        prep.use("raw")
        _produce(prep, "train")
        _produce(prep, "test")
    with store.run("fit") as fit:
        fit.use("train")
        fit.use("test")
        _produce(fit, "model")
    with store.run("serve") as serve:
        serve.use("model")
    return store


def _names(g: castore.Lineage) -> set[str]:
    return {n.name if isinstance(n, castore.Run) else n.collection for n in g.nodes}


def _edges(g: castore.Lineage) -> set[tuple[str, str, str]]:
    def name(n: object) -> str:
        return n.name if isinstance(n, castore.Run) else n.collection  # type: ignore[attr-defined]

    return {(name(e.source), e.kind, name(e.target)) for e in g.edges}


def test_upstream_whole_graph_with_diamond(graph: castore.Store) -> None:
    g = graph.lineage("model", direction="upstream")
    assert g.nodes[0] == graph.get("model")
    assert _names(g) == {"model", "fit", "train", "test", "prep", "raw"}
    assert _edges(g) == {
        ("fit", "produced", "model"), ("train", "used", "fit"), ("test", "used", "fit"),
        ("prep", "produced", "train"), ("prep", "produced", "test"), ("raw", "used", "prep"),
    }


@pytest.mark.parametrize(
    ("depth", "expected"),
    [
        (0, {"model"}),
        (1, {"model", "fit"}),
        (2, {"model", "fit", "train", "test"}),
        (3, {"model", "fit", "train", "test", "prep"}),
        (4, {"model", "fit", "train", "test", "prep", "raw"}),
        (9, {"model", "fit", "train", "test", "prep", "raw"}),
    ],
)
def test_depth_counts_edges(graph: castore.Store, depth: int, expected: set[str]) -> None:
    assert _names(graph.lineage("model", direction="upstream", depth=depth)) == expected


def test_downstream_and_both(graph: castore.Store) -> None:
    down = graph.lineage("raw", direction="downstream")
    assert _names(down) == {"raw", "prep", "train", "test", "fit", "model", "serve"}
    assert len(down.edges) == 7
    both = graph.lineage("train", direction="both", depth=2)
    # upstream: prep, raw; downstream: fit, model; never the sibling "test"
    assert _names(both) == {"train", "prep", "raw", "fit", "model"}
    assert _names(graph.lineage("train")) == _names(graph.lineage("train", depth=None))


def test_lineage_from_a_run(graph: castore.Store) -> None:
    g = graph.lineage(graph.get_run("fit"), direction="downstream")
    assert _names(g) == {"fit", "model", "serve"}


def test_a_version_without_runs_is_a_lone_node(store: castore.Store) -> None:
    with store.draft("alone") as d:
        d.add_bytes(b"x", "x")
    g = store.lineage("alone")
    assert len(g.nodes) == 1 and g.edges == []


def test_renderings(graph: castore.Store) -> None:
    g = graph.lineage("model", direction="upstream", depth=1)
    mermaid = g.to_mermaid()
    assert mermaid.splitlines()[0] == "flowchart LR"
    assert 'n0["model:v0"]' in mermaid and '(["fit (FINISHED)"])' in mermaid
    assert "n1 -->|produced| n0" in mermaid
    dot = g.to_dot()
    assert dot.startswith("digraph lineage {") and '[label="produced"]' in dot
    doc = g.to_dict()
    assert doc["root"] == graph.get("model").id and len(doc["nodes"]) == 2
    assert doc["edges"] == [{"source": graph.get_run("fit").id, "target": doc["root"],
                             "kind": "produced"}]


def test_bad_arguments(graph: castore.Store) -> None:
    with pytest.raises(ValueError):
        graph.lineage("model", direction="sideways")
    with pytest.raises(ValueError):
        graph.lineage("model", depth=-1)
    with pytest.raises(castore.NotFoundError):
        graph.lineage("nothing")


def test_walk_terminates_on_a_forged_cycle(graph: castore.Store) -> None:
    # Cycles cannot be recorded through the API; a damaged catalogue may still hold one.
    serve, raw = graph.get_run("serve"), graph.get("raw")
    graph.catalog.execute(
        "INSERT INTO run_edges (run_id, version_id, kind, at, collection, number) "
        "VALUES (?, ?, 'used', 0, 'raw', 0)", (graph.get_run("prep").id, graph.get("model").id),
    )
    g = graph.lineage(raw, direction="downstream")
    assert serve in g.nodes and len({n.id for n in g.nodes}) == len(g.nodes)
