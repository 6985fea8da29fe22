"""Runs and lineage of the Store facade (offline experiment tracking)."""

from __future__ import annotations

from typing import Any

from castore.errors import NotFoundError
from castore.facade.base import StoreBase
from castore.handles.lineage import Lineage, build_lineage
from castore.handles.query import resolve_ref
from castore.handles.run import Run
from castore.handles.version import HANDLES, ArtifactVersion
from castore.index.runs import RUN_STATES
from castore.models import Page
from castore.runs import tracking

__all__ = ["RunsMixin"]


class RunsMixin(StoreBase):
    """``run``, ``get_run``, ``runs`` and ``lineage``."""

    def run(self, name: str | None = None, *, metadata: dict[str, Any] | None = None) -> Run:
        """Start a run of this process: record what it uses and produces.

        Args:
            name: a unique name (letters, digits, ``_ - .``); generated when None.
            metadata: JSON-serialisable settings of the run (hyper-parameters...).

        Returns:
            A ``RUNNING`` :class:`~castore.Run`; as a context manager it ends ``FINISHED``,
            or ``FAILED`` with the error kept.

        Raises:
            RunError: another run has this name.
            InvalidReferenceError: a malformed name.

        Example:
            >>> with store.run("train-42", metadata={"lr": 1e-3}) as run:  # doctest: +SKIP
            ...     data = run.use("mnist:prod")
        """
        return Run(self.parts, tracking.start(self.parts, name, metadata), HANDLES)

    def get_run(self, key: str) -> Run:
        """The run with this id or name.

        Raises:
            NotFoundError: there is none.
        """
        row = self.parts.catalog.find_run(key)
        if row is None:
            raise NotFoundError(f"no run with id or name {key!r}; list them with store.runs()",
                                ref=key)
        return Run(self.parts, row, HANDLES)

    def runs(
        self,
        *,
        state: str | None = None,
        metadata: dict[str, Any] | None = None,
        sort: str = "-started_at",
        limit: int | None = 50,
        offset: int = 0,
    ) -> Page[Run]:
        """Runs, one page at a time; a ``RUNNING`` run whose process is gone is ``CRASHED``.

        Args:
            state: ``"RUNNING"``, ``"FINISHED"``, ``"FAILED"`` or ``"CRASHED"`` (None: all).
            metadata: runs whose metadata has these top-level values.
            sort: ``started_at``, ``ended_at``, ``name`` or ``state``; ``-`` for descending.
            limit: page size (None: all); offset: runs to skip.

        Raises:
            ValueError: an unknown state or sort key, or a negative limit or offset.
        """
        if state is not None and state not in RUN_STATES:
            raise ValueError(f"state must be one of {', '.join(RUN_STATES)} or None, not {state!r}")
        if (limit is not None and limit < 0) or offset < 0:
            raise ValueError(f"limit and offset must not be negative ({limit}, {offset})")
        rows, total = self.parts.catalog.query_runs(
            state=state, metadata=metadata, sort=sort, limit=limit, offset=offset
        )
        return Page[Run](
            items=[Run(self.parts, row, HANDLES) for row in rows],
            total=total,
            limit=limit,
            offset=offset,
            has_more=offset + len(rows) < total,
        )

    def lineage(
        self,
        node: str | ArtifactVersion | Run,
        *,
        direction: str = "both",
        depth: int | None = None,
    ) -> Lineage:
        """The lineage graph around a version (or a run), walked in the catalogue.

        Args:
            node: a reference string, an ``ArtifactVersion`` or a ``Run``.
            direction: ``"upstream"`` (what it came from), ``"downstream"`` (what came
                from it) or ``"both"``.
            depth: how many edges from ``node`` (None: the whole reachable graph).

        Returns:
            A :class:`~castore.Lineage` with ``nodes``, ``edges``, ``to_dot()`` and
            ``to_mermaid()``.

        Raises:
            ValueError: an unknown direction or a negative depth.
            NotFoundError: the reference matches nothing.

        Example:
            >>> g = store.lineage("model:prod", direction="upstream")  # doctest: +SKIP
            >>> print(g.to_mermaid())  # doctest: +SKIP
        """
        if direction not in ("upstream", "downstream", "both"):
            raise ValueError(
                f"direction must be 'upstream', 'downstream' or 'both', not {direction!r}"
            )
        if depth is not None and (not isinstance(depth, int) or depth < 0):
            raise ValueError(f"depth must be a non-negative integer or None, got {depth!r}")
        root: ArtifactVersion | Run
        if isinstance(node, str):
            root = ArtifactVersion(self.parts, resolve_ref(self.parts.catalog, node))
        else:
            root = node
        return build_lineage(self.parts, root, direction, depth)
