"""Verbs of offline experiment tracking: ``runs`` (list runs) and ``lineage`` (the graph)."""

from __future__ import annotations

from typing import Any

import click

from castore.cli import formatting as fmt
from castore.cli.common import State, output_options, pass_state

__all__ = ["lineage", "run_dict", "runs"]

_STATES = ("RUNNING", "FINISHED", "FAILED", "CRASHED")


def run_dict(run: Any) -> dict[str, Any]:
    """A run as JSON-able values."""
    return {
        "id": run.id, "name": run.name, "state": run.state, "metadata": run.metadata,
        "summary": run.summary, "started_at": run.started_at, "ended_at": run.ended_at,
        "host": run.host, "pid": run.pid, "error": run.error,
    }


@click.command(short_help="List runs (what each used and produced).")
@click.option("--state", "state_", type=click.Choice(_STATES), help="Only runs in this state.")
@click.option("--sort", default="-started_at", show_default=True, metavar="KEY",
              help="started_at, ended_at, name or state; '-' for descending.")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="At most this many runs (0: no limit).")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many.")
@output_options
@pass_state
def runs(state: State, state_: str | None, sort: str, limit: int, offset: int) -> None:
    """List runs, newest first. A run whose process died without ending it shows CRASHED.

    \b
    Examples:
      castore runs
      castore runs --state FAILED --json
    """
    store = state.open()
    page = store.runs(state=state_, sort=sort, limit=limit or None, offset=offset)
    if state.json:
        fmt.echo_json({"total": page.total, "runs": [run_dict(r) for r in page]})
        return
    if state.quiet:
        for run in page:
            click.echo(run.name)
        return
    rows = [
        [run.name, run.state, fmt.relative_time(run.started_at),
         str(len(run.inputs())), str(len(run.outputs())), (run.error or "")[:40]]
        for run in page
    ]
    click.echo(fmt.render_table(["NAME", "STATE", "STARTED", "IN", "OUT", "ERROR"], rows))
    if page.has_more:
        fmt.err(f"{page.total - offset - len(page)} more; use --limit/--offset")


def _label(node: Any) -> str:
    if hasattr(node, "ref"):
        return f"{node.ref}" + (" (deleted)" if node.state == "DELETED" else "")
    return f"run {node.name} [{node.state}]"


def _tree(graph: Any, upstream: bool) -> list[str]:
    """The graph as an indented tree from its root, one direction."""
    children: dict[str, list[tuple[str, Any]]] = {}
    for edge in graph.edges:
        here, there = (edge.target, edge.source) if upstream else (edge.source, edge.target)
        children.setdefault(here.id, []).append((edge.kind, there))
    lines: list[str] = []
    seen: set[str] = set()

    def walk(node: Any, prefix: str) -> None:
        kids = children.get(node.id, [])
        for i, (kind, child) in enumerate(kids):
            last = i == len(kids) - 1
            again = " (see above)" if child.id in seen else ""
            verb = ("<- " if upstream else "-> ") + kind
            lines.append(f"{prefix}{'└── ' if last else '├── '}{verb}: {_label(child)}{again}")
            if not again:
                seen.add(child.id)
                walk(child, prefix + ("    " if last else "│   "))

    seen.add(graph.root.id)
    walk(graph.root, "")
    return lines


@click.command(short_help="Show what produced a version and what used it.")
@click.argument("ref")
@click.option("--format", "format_", type=click.Choice(["tree", "dot", "mermaid", "json"]),
              default="tree", show_default=True, help="Output format.")
@click.option("--direction", type=click.Choice(["upstream", "downstream", "both"]),
              default="both", show_default=True,
              help="upstream: what it came from; downstream: what came from it.")
@click.option("--depth", type=click.IntRange(min=0), default=None,
              help="At most this many edges from REF (default: all).")
@output_options
@pass_state
def lineage(state: State, ref: str, format_: str, direction: str, depth: int | None) -> None:
    """Show the lineage of a version: the runs that produced it and what they used
    (upstream), the runs that used it and what they produced (downstream).

    \b
    Examples:
      castore lineage model:prod --direction upstream
      castore lineage data:v3 --direction downstream --format mermaid
      castore lineage model:prod --format dot | dot -Tsvg > lineage.svg
    """
    store = state.open()
    graph = store.lineage(ref, direction=direction, depth=depth)
    if state.json or format_ == "json":
        fmt.echo_json(graph.to_dict())
    elif format_ == "dot":
        click.echo(graph.to_dot(), nl=False)
    elif format_ == "mermaid":
        click.echo(graph.to_mermaid(), nl=False)
    else:
        click.echo(_label(graph.root))
        if direction in ("upstream", "both"):
            for line in _tree(graph, upstream=True):
                click.echo(line)
        if direction in ("downstream", "both"):
            for line in _tree(graph, upstream=False):
                click.echo(line)
