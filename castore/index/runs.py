"""Runs and lineage in the catalogue: the ``runs`` and ``run_edges`` tables (``migrations._v5``).

A run records what one process did: its state, metadata and summary, the process that ran it
(host, pid, start token of ``castore._process``) and its edges: ``used`` (version -> run) and
``produced`` (run -> version). Rules kept here, inside the write transactions:

- an edge is only added to a run that is ``RUNNING`` and whose process is alive
  (:class:`RunError` otherwise);
- a version has at most one producer (a partial unique index, and ``versions.producer``
  mirrors it so ``versions(produced_by=)`` is an index lookup);
- a run never uses a version that descends from its own outputs, so the graph has no cycle
  (the walk still bounds its depth, so a damaged catalogue cannot make it loop);
- runs are never deleted, and edges outlive their versions (triggers mark them).

A ``RUNNING`` run whose process is gone is reported ``CRASHED`` (reads never write); fsck
with ``repair=True`` stores the state.
"""

from __future__ import annotations

import json
from typing import Any

from castore import _process
from castore.errors import RunError
from castore.index.database import Database
from castore.index.ids import uuid7
from castore.index.queries import VERSION_SELECT

__all__ = [
    "RUN_SORT_KEYS",
    "RUN_STATES",
    "add_edge",
    "create_run",
    "crashed_running_ids",
    "edge_versions",
    "effective_state",
    "end_run",
    "export_run_records",
    "find_run",
    "get_run",
    "import_run_records",
    "is_crashed",
    "lineage_edges",
    "mark_crashed",
    "merge_summary",
    "query_runs",
    "runs_by_ids",
    "runs_of_version",
    "versions_by_ids",
]

RUN_STATES = ("RUNNING", "FINISHED", "FAILED", "CRASHED")
RUN_SORT_KEYS = {
    "started_at": "started_at",
    "ended_at": "ended_at",
    "name": "name",
    "state": "state",
}
#: Record fields a bundle carries (``export_run_records``), in table order.
_RUN_FIELDS = (
    "id", "name", "state", "metadata", "summary", "host", "pid", "process_start",
    "started_at", "ended_at", "error",
)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=False)


# -- runs ------------------------------------------------------------------------------------


def create_run(
    db: Database,
    *,
    name: str | None,
    metadata: dict[str, Any] | None,
    identity: _process.Identity,
) -> dict[str, Any]:
    """Insert a ``RUNNING`` run (its name generated when None) and return its row.

    Raises:
        RunError: another run holds ``name``.
    """
    run_id = uuid7()
    if name is None:
        name = f"run-{run_id[-12:]}"
    host, pid, token = identity
    with db.write_txn():
        if db.one("SELECT id FROM runs WHERE name = ?", (name,)) is not None:
            raise RunError(
                f"a run named {name!r} already exists; choose another name (names are "
                "unique, so get_run(name) finds one run) or pass name=None",
                run=name,
            )
        db.insert(
            "runs",
            {
                "id": run_id,
                "name": name,
                "state": "RUNNING",
                "metadata": _dumps(metadata or {}),
                "summary": "{}",
                "host": host,
                "pid": pid,
                "process_start": token,
                "started_at": db.now(),
            }
        )
        row = get_run(db, run_id)
    assert row is not None
    return row


def is_crashed(row: dict[str, Any]) -> bool:
    """True when ``row`` is stored ``RUNNING`` but its process is gone."""
    return row["state"] == "RUNNING" and _process.is_gone(
        row["host"], row["pid"], row["process_start"]
    )


def effective_state(row: dict[str, Any]) -> str:
    """The state to report: ``CRASHED`` for a ``RUNNING`` run whose process is gone."""
    return "CRASHED" if is_crashed(row) else str(row["state"])


def _reported(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is not None and is_crashed(row):
        row = {**row, "state": "CRASHED"}
    return row


def get_run(db: Database, run_id: str) -> dict[str, Any] | None:
    """A run row by id (its state as reported), or None."""
    return _reported(db.one("SELECT * FROM runs WHERE id = ?", (run_id,)))


def find_run(db: Database, key: str) -> dict[str, Any] | None:
    """A run row by id, else by name (its state as reported), or None."""
    row = db.one("SELECT * FROM runs WHERE id = ?", (key,))
    if row is None:
        row = db.one("SELECT * FROM runs WHERE name = ?", (key,))
    return _reported(row)


def crashed_running_ids(db: Database) -> list[str]:
    """Ids of runs stored ``RUNNING`` whose process is gone."""
    rows = db.all_rows(
        "SELECT id, state, host, pid, process_start FROM runs WHERE state = 'RUNNING'"
    )
    return [str(row["id"]) for row in rows if is_crashed(row)]


def end_run(db: Database, run_id: str, state: str, error: str | None = None) -> bool:
    """Move a ``RUNNING`` run to ``state`` (``FINISHED``, ``FAILED`` or ``CRASHED``).

    Returns:
        False when the run had already ended (nothing changed).
    """
    assert state in RUN_STATES and state != "RUNNING"
    with db.write_txn():
        cur = db.execute(
            "UPDATE runs SET state = ?, ended_at = ?, error = ? WHERE id = ? "
            "AND state = 'RUNNING'",
            (state, db.now(), error, run_id),
        )
    return cur.rowcount > 0


def mark_crashed(db: Database, run_ids: list[str]) -> int:
    """Store ``CRASHED`` for runs whose process is gone (fsck's repair); the number changed."""
    changed = 0
    with db.write_txn():
        for run_id in run_ids:
            row = db.one("SELECT * FROM runs WHERE id = ?", (run_id,))
            if row is not None and is_crashed(row):
                changed += end_run(
                    db, run_id, "CRASHED", f"its process {row['pid']} on {row['host']} ended "
                    "without ending the run",
                )
    return changed


def merge_summary(db: Database, run_id: str, summary: dict[str, Any]) -> dict[str, Any]:
    """Merge ``summary`` into the run's summary (top-level keys replaced); return the row."""
    with db.write_txn():
        row = db.one("SELECT summary FROM runs WHERE id = ?", (run_id,))
        if row is None:
            raise RunError(f"no run with id {run_id}", run=run_id)
        merged = {**json.loads(row["summary"] or "{}"), **summary}
        db.execute("UPDATE runs SET summary = ? WHERE id = ?", (_dumps(merged), run_id))
        found = get_run(db, run_id)
    assert found is not None
    return found


def query_runs(
    db: Database,
    *,
    state: str | None,
    metadata: dict[str, Any] | None,
    sort: str,
    limit: int | None,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """Run rows matching the filters of ``Store.runs`` (states as reported), and the total."""
    where: list[str] = []
    params: dict[str, Any] = {}
    dead = crashed_running_ids(db) if state in ("RUNNING", "CRASHED") or state is None else []
    if state == "RUNNING":
        where.append("state = 'RUNNING' AND id NOT IN (SELECT value FROM json_each(:dead))")
        params["dead"] = json.dumps(dead)
    elif state == "CRASHED":
        where.append("(state = 'CRASHED' OR id IN (SELECT value FROM json_each(:dead)))")
        params["dead"] = json.dumps(dead)
    elif state is not None:
        where.append("state = :state")
        params["state"] = state
    for i, (key, value) in enumerate((metadata or {}).items()):
        params[f"mk{i}"] = '$."' + str(key).replace('"', '\\"') + '"'
        expr = f"json_extract(metadata, :mk{i})"
        if value is None:
            where.append(f"{expr} IS NULL")
        elif isinstance(value, dict | list):
            where.append(f"{expr} = json(:mv{i})")
            params[f"mv{i}"] = _dumps(value)
        else:
            where.append(f"{expr} = :mv{i}")
            params[f"mv{i}"] = int(value) if isinstance(value, bool) else value
    clause = " WHERE " + " AND ".join(where) if where else ""
    desc = sort.startswith("-")
    key = sort.lstrip("+-")
    if key not in RUN_SORT_KEYS:
        raise ValueError(
            f"cannot sort runs by {key!r}; use one of {', '.join(RUN_SORT_KEYS)} "
            "(prefix '-' for descending)"
        )
    order = f"{RUN_SORT_KEYS[key]} {'DESC' if desc else 'ASC'}, id {'DESC' if desc else 'ASC'}"
    sql = f"SELECT * FROM runs{clause} ORDER BY {order}"
    if limit is not None:
        sql += " LIMIT :limit OFFSET :offset"
        params.update(limit=limit, offset=offset)
    elif offset:
        sql += " LIMIT -1 OFFSET :offset"
        params["offset"] = offset
    with db.read_txn():
        rows = db.all_rows(sql, params)
        count_params = {k: v for k, v in params.items() if k not in ("limit", "offset")}
        total = int(db.execute(f"SELECT COUNT(*) FROM runs{clause}", count_params).fetchone()[0])
    gone = set(dead)
    return [{**r, "state": "CRASHED"} if r["id"] in gone else r for r in rows], total


# -- edges -----------------------------------------------------------------------------------


def _descends_from_run(db: Database, run_id: str, version_id: str) -> bool:
    """True when ``version_id`` is downstream of ``run_id`` (using it would close a cycle)."""
    produced = db.execute(
        "SELECT 1 FROM run_edges WHERE run_id = ? AND kind = 'produced' LIMIT 1", (run_id,)
    ).fetchone()
    if produced is None:  # nothing downstream yet: the common case, one index probe
        return False
    return version_id in {
        str(row["version_id"]) for row in lineage_edges(db, run_id, "downstream", None)
    }


def add_edge(db: Database, run_id: str, version_id: str, kind: str) -> bool:
    """Record that run ``run_id`` used or produced the committed version ``version_id``.

    Joins the caller's write transaction (the lookup of the use, the commit of the
    finalize), so the edge and what it records commit together.

    Returns:
        False when nothing was recorded: the edge exists, the version already has another
        producer (a finalize that reused an identical version), or the run uses its own
        output.

    Raises:
        RunError: the run does not exist or has ended, or ``version_id`` descends from the
            run's outputs (the graph would get a cycle).
    """
    assert kind in ("used", "produced")
    with db.write_txn():
        row = db.one("SELECT * FROM runs WHERE id = ?", (run_id,))
        if row is None:
            raise RunError(f"no run with id {run_id}", run=run_id)
        state = effective_state(row)
        if state != "RUNNING":
            raise RunError(
                f"run {row['name']!r} is {state}: an ended run records no more inputs or "
                "outputs; start a new run with store.run()",
                run=str(row["name"]),
                state=state,
            )
        version = db.one(
            "SELECT v.id, v.number, v.producer, c.name AS collection FROM versions v "
            "JOIN collections c ON c.id = v.collection_id WHERE v.id = ?",
            (version_id,),
        )
        assert version is not None
        if kind == "produced":
            if version["producer"] is not None and version["producer"] != run_id:
                return False
            db.execute("UPDATE versions SET producer = ? WHERE id = ?", (run_id, version_id))
        else:
            if version["producer"] == run_id:
                return False  # its own output: already linked, and a use would be a cycle
            if _descends_from_run(db, run_id, version_id):
                raise RunError(
                    f"run {row['name']!r} cannot use {version['collection']}:v"
                    f"{version['number']}: it descends from the run's own outputs, and "
                    "lineage would go round in a circle",
                    run=str(row["name"]),
                    state=state,
                )
        cur = db.execute(
            "INSERT OR IGNORE INTO run_edges (run_id, version_id, kind, at, collection, "
            "number, version_deleted) VALUES (?, ?, ?, ?, ?, ?, 0)",
            (run_id, version_id, kind, db.now(), version["collection"], version["number"]),
        )
    return cur.rowcount > 0


def _version_row(row: dict[str, Any]) -> dict[str, Any]:
    """The version row of an edge row; a synthetic ``DELETED`` one when the row is gone."""
    edge_collection, edge_number = row.pop("e_collection"), row.pop("e_number")
    version_id = row.pop("e_version")
    if row["id"] is None:
        return {
            "id": version_id, "collection": edge_collection, "type": "", "number": edge_number,
            "state": "DELETED", "digest": None, "size": 0, "file_count": 0,
            "description": None, "metadata": "{}", "created_at": 0, "updated_at": 0,
            "ttl": None, "expires_at": None, "producer": None, "manifest_blob": None,
            "collection_id": None,
        }
    return row


_EDGE_VERSIONS = (
    "SELECT e.version_id AS e_version, e.collection AS e_collection, e.number AS e_number, "
    "v.*, c.name AS collection, c.type AS type FROM run_edges e "
    "LEFT JOIN versions v ON v.id = e.version_id "
    "LEFT JOIN collections c ON c.id = v.collection_id"
)


def edge_versions(db: Database, run_id: str, kind: str) -> list[dict[str, Any]]:
    """Version rows a run used or produced, in the order recorded (deleted ones included)."""
    rows = db.all_rows(
        f"{_EDGE_VERSIONS} WHERE e.run_id = ? AND e.kind = ? ORDER BY e.at, e.version_id",
        (run_id, kind),
    )
    return [_version_row(r) for r in rows]


def versions_by_ids(db: Database, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Version rows by id (deleted and gone ones included, as edges remember them)."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for row in db.all_rows(f"{VERSION_SELECT} WHERE v.id IN ({marks})", chunk):
            found[str(row["id"])] = row
        missing = [i for i in chunk if i not in found]
        if missing:
            marks = ", ".join("?" * len(missing))
            for row in db.all_rows(
                f"{_EDGE_VERSIONS} WHERE e.version_id IN ({marks}) GROUP BY e.version_id",
                missing,
            ):
                version = _version_row(row)
                found[str(version["id"])] = version
    return found


def runs_by_ids(db: Database, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Run rows by id, states as reported."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for row in db.all_rows(f"SELECT * FROM runs WHERE id IN ({marks})", chunk):
            reported = _reported(row)
            assert reported is not None
            found[str(row["id"])] = reported
    return found


def runs_of_version(db: Database, version_id: str, kind: str) -> list[dict[str, Any]]:
    """Runs that used (or produced) a version, oldest first, states as reported."""
    rows = db.all_rows(
        "SELECT r.* FROM run_edges e JOIN runs r ON r.id = e.run_id "
        "WHERE e.version_id = ? AND e.kind = ? ORDER BY r.started_at, r.id",
        (version_id, kind),
    )
    return [r for r in (_reported(row) for row in rows) if r is not None]


# -- lineage ---------------------------------------------------------------------------------

# One step of the walk, per direction: (edge kind, the column matching the current node, the
# column of the next node). Upstream: a version came from its producer, a run from what it
# used; downstream the other way round.
_STEPS = {
    "upstream": (("produced", "version_id", "run_id"), ("used", "run_id", "version_id")),
    "downstream": (("produced", "run_id", "version_id"), ("used", "version_id", "run_id")),
}


def lineage_edges(
    db: Database, start: str, direction: str, depth: int | None
) -> list[dict[str, Any]]:
    """The edges reached from node ``start`` (a run or version id) walking ``direction``.

    One recursive CTE per direction. ``depth`` counts edges from ``start`` (None: all).
    Cycles cannot be recorded (:func:`add_edge`), but the walk is bounded anyway: by
    ``depth``, else by the number of edges (no path without a repeat is longer), and
    ``UNION`` drops rows already seen.

    Returns:
        ``{"run_id", "version_id", "kind"}`` rows, each edge once.
    """
    if direction == "both":
        seen: dict[tuple[str, str, str], dict[str, Any]] = {}
        for way in ("upstream", "downstream"):
            for row in lineage_edges(db, start, way, depth):
                seen.setdefault((row["run_id"], row["version_id"], row["kind"]), row)
        return list(seen.values())
    if direction not in _STEPS:
        raise ValueError(
            f"direction must be 'upstream', 'downstream' or 'both', not {direction!r}"
        )
    if depth is not None and depth < 0:
        raise ValueError(f"depth must not be negative, got {depth}")
    # MAX(rowid) >= the number of edges, read in one index seek (COUNT(*) scans).
    bound = depth if depth is not None else int(
        db.execute("SELECT COALESCE(MAX(rowid), 0) FROM run_edges").fetchone()[0]
    )
    steps = "\nUNION\n".join(
        f"SELECT e.{nxt}, w.depth + 1, e.run_id, e.version_id, e.kind "
        f"FROM walk w JOIN run_edges e ON e.{here} = w.node AND e.kind = '{kind}' "
        "WHERE w.depth < :bound"
        for kind, here, nxt in _STEPS[direction]
    )
    sql = (
        "WITH RECURSIVE walk(node, depth, run_id, version_id, kind) AS ("
        f"SELECT :start, 0, NULL, NULL, NULL\nUNION\n{steps}) "
        "SELECT DISTINCT run_id, version_id, kind FROM walk WHERE kind IS NOT NULL"
    )
    return db.all_rows(sql, {"start": start, "bound": bound})


# -- records for bundles and remotes ---------------------------------------------------------


def export_run_records(db: Database, version_ids: list[str]) -> dict[str, Any]:
    """The run records of some versions, as JSON-able values, for a bundle or remote.

    The hook for carrying lineage across an air gap: the bundle code puts this document beside
    the version documents and gives it to :func:`import_run_records` on the other side.

    Returns:
        ``{"runs": [run record...], "edges": [{"run_id", "version_id", "kind", "at",
        "collection", "number"}...]}``: every edge touching the versions, and the runs at
        their other end (states as stored; ``metadata`` and ``summary`` decoded).
    """
    edges: list[dict[str, Any]] = []
    for start in range(0, len(version_ids), 500):
        chunk = version_ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        edges += db.all_rows(
            "SELECT run_id, version_id, kind, at, collection, number FROM run_edges "
            f"WHERE version_id IN ({marks}) ORDER BY at, run_id, version_id",
            chunk,
        )
    run_ids = sorted({e["run_id"] for e in edges})
    runs = []
    for start in range(0, len(run_ids), 500):
        chunk = run_ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for row in db.all_rows(f"SELECT * FROM runs WHERE id IN ({marks})", chunk):
            record = {key: row[key] for key in _RUN_FIELDS}
            record["metadata"] = json.loads(row["metadata"] or "{}")
            record["summary"] = json.loads(row["summary"] or "{}")
            runs.append(record)
    return {"runs": runs, "edges": edges}


def import_run_records(db: Database, records: dict[str, Any]) -> int:
    """Record runs and edges exported by :func:`export_run_records` (the receiving side).

    Runs already known (by id) keep their row; a run whose name is taken here by another
    run is stored as ``<name>-<id tail>``. Edges are added for versions present here; a
    ``produced`` edge for a version that already has a producer is skipped. Joins the
    caller's write transaction.

    Returns:
        The number of edges added.
    """
    added = 0
    with db.write_txn():
        for run in records.get("runs", []):
            if db.one("SELECT 1 FROM runs WHERE id = ?", (run["id"],)) is not None:
                continue
            name = str(run["name"])
            if db.one("SELECT 1 FROM runs WHERE name = ?", (name,)) is not None:
                name = f"{name}-{str(run['id'])[-12:]}"
            db.insert(
                "runs",
                {
                    **{key: run.get(key) for key in _RUN_FIELDS},
                    "name": name,
                    "metadata": _dumps(run.get("metadata") or {}),
                    "summary": _dumps(run.get("summary") or {}),
                }
            )
        for edge in records.get("edges", []):
            version = db.one(
                "SELECT producer FROM versions WHERE id = ?", (edge["version_id"],)
            )
            if version is None or db.one(
                "SELECT 1 FROM runs WHERE id = ?", (edge["run_id"],)
            ) is None:
                continue
            if edge["kind"] == "produced":
                if version["producer"] not in (None, edge["run_id"]):
                    continue
                db.execute(
                    "UPDATE versions SET producer = ? WHERE id = ?",
                    (edge["run_id"], edge["version_id"]),
                )
            cur = db.execute(
                "INSERT OR IGNORE INTO run_edges (run_id, version_id, kind, at, collection, "
                "number, version_deleted) VALUES (?, ?, ?, ?, ?, ?, 0)",
                (edge["run_id"], edge["version_id"], edge["kind"], edge["at"],
                 edge.get("collection"), edge.get("number")),
            )
            added += cur.rowcount
    return added
