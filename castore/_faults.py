"""Labelled crash points at I/O boundaries, for crash-consistency tests.

``CASTORE_CRASH_AT=label:n`` (or just ``label`` for n = 1) makes the process die with
``os._exit(137)`` at the n-th time it reaches :func:`point` with that label, as a ``kill -9``
would. ``CASTORE_CRASH_AT=*:n`` dies at the n-th labelled point whatever its label, so a test
can walk every point in order ("fail at step N for all N", SQLite's pattern). The variable
is read once, when castore is imported (tests set it in the environment of the process they
start); with it unset the hook costs one comparison: reading ``os.environ`` on every call
took a tenth of the time of adding 100,000 small files.
"""

from __future__ import annotations

import os
import sys
from collections import Counter

__all__ = ["LABELS", "point"]

#: The labels in use; tests iterate over them.
LABELS = (
    "blob.tmp_written",
    "blob.fsynced",
    "blob.renamed",
    "blob.dir_fsynced",
    "pack.written",
    "pack.published",
    "cat.begin",
    "cat.rows_inserted",
    "cat.committed",
    "alias.moved",
    "gc.listed",
    "gc.deleted_one",
    "gc.repack_published",
    "gc.repack_trashed",
    "checkout.batch_placed",
    "checkout.tmp_written",
    "checkout.renamed",
    "checkout.extra_removed",
    "import.staged",
    "import.published",
    "import.reserved",
    "import.markers_written",
    "push.blob_sent",
    "push.manifests_sent",
    "remote.blob_written",
    "remote.blob_renamed",
    "remote.ref_locked",
)

_hits: Counter[str] = Counter()


def _target(spec: str | None) -> tuple[str, int] | None:
    if not spec:
        return None
    label, _, count = spec.rpartition(":") if ":" in spec else (spec, "", "1")
    return label, int(count or "1")


_TARGET = _target(os.environ.get("CASTORE_CRASH_AT"))


def point(label: str) -> None:
    """Die here (exit status 137) if ``CASTORE_CRASH_AT`` names this point and hit count."""
    target = _TARGET
    if target is None:
        return
    name, nth = target
    if name not in (label, "*"):
        return
    _hits[name] += 1
    if _hits[name] == nth:
        sys.stderr.flush()
        os._exit(137)
