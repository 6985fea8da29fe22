"""The :class:`Run` handle: one tracked execution, its inputs and outputs.

``Run`` and ``ArtifactVersion`` return each other (``run.outputs()``, ``v.logged_by()``). So
that neither module imports the other (no circle), a run receives the constructors of the
version handles as :class:`VersionHandles`, handed down by whoever makes the run: the facade,
or a version handle (``castore.handles.version.HANDLES``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from types import TracebackType
from typing import Any, NamedTuple

from castore._parts import Parts
from castore.artifact.commit import start_draft
from castore.errors import NotFoundError, RunError
from castore.handles.query import resolve_ref
from castore.handles.times import to_datetime
from castore.runs import tracking

__all__ = ["Run", "VersionHandles", "run_id_of"]


class VersionHandles(NamedTuple):
    """How a run makes version handles: ``version(parts, row)`` and
    ``draft(parts, version_id, collection, type)``."""

    version: Callable[[Parts, dict[str, Any]], Any]
    draft: Callable[[Parts, str, str, str], Any]


class Run:
    """One run of a training script (or any process): what it used and what it produced.

    Get one from ``store.run()``, ``store.get_run()``, ``store.runs()`` or
    ``version.logged_by()``. As a context manager it ends ``FINISHED``, or ``FAILED`` with
    the exception kept in :attr:`error`.

    Example:
        >>> with store.run("train-42", metadata={"lr": 1e-3}) as run:  # doctest: +SKIP
        ...     data = run.use("mnist:prod")
        ...     with run.draft("mnist-model", type="model") as d:
        ...         d.add_file("model.pt")
        ...     run.update(summary={"f1": 0.93})
    """

    def __init__(self, parts: Parts, row: dict[str, Any], handles: VersionHandles) -> None:
        self._parts = parts
        self._handles = handles
        self._row = row

    def refresh(self) -> Run:
        """Reload the snapshot (a run whose process is gone shows ``CRASHED``)."""
        row = self._parts.catalog.get_run(self.id)
        if row is not None:
            self._row = row
        return self

    # -- attributes ------------------------------------------------------------------------

    @property
    def id(self) -> str:
        """The run id (a UUIDv7)."""
        return str(self._row["id"])

    @property
    def name(self) -> str:
        """The run's name (unique in the store)."""
        return str(self._row["name"])

    @property
    def state(self) -> str:
        """``"RUNNING"``, ``"FINISHED"``, ``"FAILED"`` or ``"CRASHED"`` (as of the snapshot)."""
        return str(self._row["state"])

    @property
    def metadata(self) -> dict[str, Any]:
        """The metadata given at the start (a copy)."""
        value: dict[str, Any] = json.loads(self._row["metadata"] or "{}")
        return value

    @property
    def summary(self) -> dict[str, Any]:
        """The summary, merged by :meth:`update` (a copy)."""
        value: dict[str, Any] = json.loads(self._row["summary"] or "{}")
        return value

    @property
    def started_at(self) -> datetime:
        """When the run started (UTC)."""
        value = to_datetime(self._row["started_at"])
        assert value is not None
        return value

    @property
    def ended_at(self) -> datetime | None:
        """When the run ended (UTC), or None while running or when it crashed unrecorded."""
        return to_datetime(self._row["ended_at"])

    @property
    def host(self) -> str | None:
        """The host the run's process ran on."""
        host: str | None = self._row["host"]
        return host

    @property
    def pid(self) -> int | None:
        """The run's process id on :attr:`host`."""
        pid: int | None = self._row["pid"]
        return pid

    @property
    def error(self) -> str | None:
        """``"ExceptionType: message"`` of a ``FAILED`` run (why a ``CRASHED`` one ended,
        once fsck recorded it), else None."""
        error: str | None = self._row["error"]
        return error

    # -- edges -----------------------------------------------------------------------------

    def _require_running(self) -> None:
        self.refresh()
        if self.state != "RUNNING":
            raise RunError(
                f"run {self.name!r} is {self.state}: an ended run records no more inputs or "
                "outputs; start a new run with store.run()",
                run=self.name,
                state=self.state,
            )

    def use(self, ref: str | Any) -> Any:
        """Record a version as an input of this run and return it.

        The lookup and the record are one transaction: the version used is the one recorded.

        Args:
            ref: a reference string (``"mnist:prod"``) or an ``ArtifactVersion``.

        Returns:
            The :class:`~castore.ArtifactVersion`.

        Raises:
            RunError: the run has ended, or the version descends from this run's outputs.
            NotFoundError: nothing matches the reference.
        """
        self._parts.require_writable("record a run's input")
        self._require_running()  # checked again inside the transaction
        key = ref if isinstance(ref, str) else str(ref.id)
        catalog = self._parts.catalog
        with catalog.write_txn():
            row = resolve_ref(catalog, key)
            tracking.record_use(self._parts, self.id, str(row["id"]))
        return self._handles.version(self._parts, row)

    def draft(
        self,
        collection: str,
        *,
        type: str | None = None,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        tags: Iterable[str] = (),
    ) -> Any:
        """Start a draft whose finalized version records this run as its producer.

        The ``produced`` edge commits in the finalize's own transaction. Arguments as
        ``store.draft()``.

        Raises:
            RunError: the run has ended (also at finalize, which then commits nothing).
        """
        self._require_running()
        draft_id, coll_type = start_draft(
            self._parts, collection, type=type, description=description, metadata=metadata,
            tags=tags,
        )
        draft = self._handles.draft(self._parts, draft_id, collection, coll_type)
        draft.producer = self.id
        return draft

    def inputs(self) -> list[Any]:
        """The versions this run used, in the order used (deleted ones show ``DELETED``)."""
        rows = self._parts.catalog.edge_versions(self.id, "used")
        return [self._handles.version(self._parts, row) for row in rows]

    def outputs(self) -> list[Any]:
        """The versions this run produced, in order (deleted ones show ``DELETED``)."""
        rows = self._parts.catalog.edge_versions(self.id, "produced")
        return [self._handles.version(self._parts, row) for row in rows]

    # -- state -----------------------------------------------------------------------------

    def update(self, *, summary: dict[str, Any]) -> Run:
        """Merge ``summary`` (JSON values) into the run's summary; top-level keys replace."""
        self._row = tracking.update_summary(self._parts, self.id, summary)
        return self

    def finish(self) -> Run:
        """End the run ``FINISHED`` (a run that already ended keeps its state)."""
        self._row = tracking.end(self._parts, self.id)
        return self

    def fail(self, exc: BaseException) -> Run:
        """End the run ``FAILED``, keeping ``"ExceptionType: message"`` in :attr:`error`."""
        self._row = tracking.end(self._parts, self.id, exc)
        return self

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.finish()
        else:
            self.fail(exc)

    # -- identity --------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<Run {self.name} {self.state}>"


def run_id_of(parts: Parts, run: str | Run) -> str:
    """The id of a run given as a handle, an id or a name.

    Raises:
        NotFoundError: no run has that id or name.
    """
    if isinstance(run, Run):
        return run.id
    row = parts.catalog.find_run(run)
    if row is None:
        raise NotFoundError(f"no run with id or name {run!r}; list them with store.runs()", ref=run)
    return str(row["id"])
