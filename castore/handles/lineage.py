"""The :class:`Lineage` graph of ``store.lineage()``: nodes, edges and their renderings."""

from __future__ import annotations

from typing import Any

from castore._parts import Parts
from castore.handles.run import Run
from castore.handles.version import HANDLES, ArtifactVersion
from castore.models import Edge

__all__ = ["Lineage", "build_lineage"]

Node = ArtifactVersion | Run


def _label(node: Node) -> str:
    if isinstance(node, Run):
        return f"{node.name} ({node.state})"
    deleted = " (deleted)" if node.state == "DELETED" else ""
    return f"{node.ref}{deleted}"


class Lineage:
    """What produced a version and what used it, as a graph.

    ``nodes`` holds :class:`~castore.ArtifactVersion` and :class:`~castore.Run` handles
    (the root first, then in the order they were made); ``edges`` holds
    :class:`~castore.Edge` values: ``produced`` (run -> version) and ``used``
    (version -> run). Versions deleted since an edge was recorded stay, ``DELETED``.

    Example:
        >>> g = store.lineage("model:prod", direction="upstream")  # doctest: +SKIP
        >>> print(g.to_mermaid())  # doctest: +SKIP
    """

    def __init__(self, root: Node, nodes: list[Node], edges: list[Edge]) -> None:
        self.root = root
        self.nodes = nodes
        self.edges = edges

    def _names(self) -> dict[str, str]:
        return {node.id: f"n{i}" for i, node in enumerate(self.nodes)}

    def to_dot(self) -> str:
        """Graphviz DOT text: runs as boxes, versions as ellipses, edges labelled."""
        names = self._names()
        lines = ["digraph lineage {", "  rankdir=LR;"]
        for node in self.nodes:
            label = _label(node).replace("\\", "\\\\").replace('"', '\\"')
            shape = "box" if isinstance(node, Run) else "ellipse"
            style = ', style="dashed"' if getattr(node, "state", "") == "DELETED" else ""
            lines.append(f'  {names[node.id]} [label="{label}", shape={shape}{style}];')
        for edge in self.edges:
            lines.append(
                f'  {names[edge.source.id]} -> {names[edge.target.id]} [label="{edge.kind}"];'
            )
        lines.append("}")
        return "\n".join(lines) + "\n"

    def to_mermaid(self) -> str:
        """Mermaid flowchart text: runs as rounded boxes, versions as rectangles."""
        names = self._names()
        lines = ["flowchart LR"]
        for node in self.nodes:
            label = _label(node).replace('"', "#quot;")
            if isinstance(node, Run):
                lines.append(f'    {names[node.id]}(["{label}"])')
            else:
                lines.append(f'    {names[node.id]}["{label}"]')
        for edge in self.edges:
            lines.append(f"    {names[edge.source.id]} -->|{edge.kind}| {names[edge.target.id]}")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able nodes and edges (ids, kinds, labels)."""
        nodes: list[dict[str, Any]] = []
        for node in self.nodes:
            if isinstance(node, Run):
                nodes.append({"id": node.id, "kind": "run", "name": node.name,
                              "state": node.state})
            else:
                nodes.append({"id": node.id, "kind": "version", "ref": node.ref,
                              "state": node.state})
        return {
            "root": self.root.id,
            "nodes": nodes,
            "edges": [
                {"source": e.source.id, "target": e.target.id, "kind": e.kind}
                for e in self.edges
            ],
        }

    def __repr__(self) -> str:
        return f"<Lineage of {_label(self.root)}: {len(self.nodes)} nodes, {len(self.edges)} edges>"


def build_lineage(parts: Parts, root: Node, direction: str, depth: int | None) -> Lineage:
    """Walk the catalogue from ``root`` and make the graph's handles (one query per kind)."""
    catalog = parts.catalog
    with catalog.read_txn():
        rows = catalog.lineage_edges(root.id, direction, depth)
        run_ids = sorted({str(r["run_id"]) for r in rows} - {root.id})
        version_ids = sorted({str(r["version_id"]) for r in rows} - {root.id})
        run_rows = catalog.runs_by_ids(run_ids)
        version_rows = catalog.versions_by_ids(version_ids)
    by_id: dict[str, Node] = {root.id: root}
    for run_id in run_ids:
        by_id[run_id] = Run(parts, run_rows[run_id], HANDLES)
    for version_id in version_ids:
        by_id[version_id] = ArtifactVersion(parts, version_rows[version_id])
    edges: list[Edge] = []
    # model_construct: the kinds come from the catalogue's CHECKed column and the nodes are
    # the handles made above; validating 100,000 edges would cost more than the walk.
    for row in sorted(rows, key=lambda r: (r["run_id"], r["version_id"], r["kind"])):
        run, version = by_id[str(row["run_id"])], by_id[str(row["version_id"])]
        if row["kind"] == "produced":
            edges.append(Edge.model_construct(source=run, target=version, kind="produced"))
        else:
            edges.append(Edge.model_construct(source=version, target=run, kind="used"))
    others = sorted((n for i, n in by_id.items() if i != root.id), key=lambda n: n.id)
    nodes: list[Node] = [root, *others]
    return Lineage(root, nodes, edges)
