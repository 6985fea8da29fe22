"""Starting and ending runs, and recording what they used, over the parts of a store.

The handle (``castore.handles.run.Run``) calls these; the catalogue keeps the rules (an ended
run refuses new edges, one producer per version, no cycles) inside its write transactions.
"""

from __future__ import annotations

import json
import re
from typing import Any

from castore import _process
from castore._parts import Parts
from castore.errors import InvalidReferenceError, NotFoundError
from castore.refs import validate_name

__all__ = ["check_json", "end", "record_use", "start", "update_summary"]

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def check_json(value: dict[str, Any], what: str) -> dict[str, Any]:
    """Raise ``TypeError``/``ValueError`` unless ``value`` is a JSON-serialisable dict."""
    if not isinstance(value, dict):
        raise TypeError(f"{what} must be a dict, not {type(value).__name__}")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be JSON-serialisable (no NaN): {exc}") from exc
    return value


def start(parts: Parts, name: str | None, metadata: dict[str, Any] | None) -> dict[str, Any]:
    """Record a new ``RUNNING`` run of this process and return its row.

    Raises:
        InvalidReferenceError: a malformed name, or one that looks like a run id.
        RunError: another run holds the name.
    """
    parts.require_writable("start a run")
    if name is not None:
        validate_name(name, "run name")
        if _UUID.fullmatch(name):
            raise InvalidReferenceError(
                f"run name {name!r} looks like a run id (a UUID); choose another name", ref=name
            )
    if metadata is not None:
        check_json(metadata, "metadata")
    return parts.catalog.create_run(name=name, metadata=metadata, identity=_process.current())


def end(parts: Parts, run_id: str, error: BaseException | None = None) -> dict[str, Any]:
    """End a run: ``FINISHED``, or ``FAILED`` keeping ``"Type: message"`` of ``error``.

    A run that already ended keeps its state. Returns the run's row.
    """
    parts.require_writable("end a run")
    if error is None:
        parts.catalog.end_run(run_id, "FINISHED")
    else:
        text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        parts.catalog.end_run(run_id, "FAILED", text)
    return _row(parts, run_id)


def record_use(parts: Parts, run_id: str, version_id: str) -> None:
    """Record a ``used`` edge; call it inside the transaction that looked the version up."""
    parts.require_writable("record a run's input")
    parts.catalog.add_edge(run_id, version_id, "used")


def update_summary(parts: Parts, run_id: str, summary: dict[str, Any]) -> dict[str, Any]:
    """Merge ``summary`` into a run's summary; return its row."""
    parts.require_writable("update a run")
    check_json(summary, "summary")
    return parts.catalog.merge_summary(run_id, summary)


def _row(parts: Parts, run_id: str) -> dict[str, Any]:
    row = parts.catalog.get_run(run_id)
    if row is None:
        raise NotFoundError(f"no run with id {run_id}", ref=run_id)
    return row
