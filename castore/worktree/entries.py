"""The light manifest entry the worktree works on, and the shapes it accepts.

A checkout of a 1M-file version must not hold 1M pydantic models (DESIGN.md growth targets):
the worktree functions take any iterable of entries, as :class:`~castore.models.ManifestEntry`
records or as the plain ``(path, digest, size, ref, executable)`` rows the catalogue streams
(``Catalog.iter_entries``; four-field rows are read as not executable), and keep each as an
:class:`Entry`, a tuple.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple, TypeAlias

from castore.models import ManifestEntry

__all__ = ["Entry", "EntryLike", "as_entry", "iter_entries"]


class Entry(NamedTuple):
    """One file of a version: the fields of :class:`~castore.models.ManifestEntry`, as a tuple."""

    path: str
    digest: str | None
    size: int
    ref: str | None = None
    executable: bool = False


#: What the worktree functions accept for one entry.
EntryLike: TypeAlias = (
    Entry
    | ManifestEntry
    | tuple[str, str | None, int, str | None]
    | tuple[str, str | None, int, str | None, bool]
)


def as_entry(item: EntryLike) -> Entry:
    """``item`` as an :class:`Entry` (the same object when it is one already)."""
    if isinstance(item, Entry):
        return item
    if isinstance(item, tuple):
        return Entry(*item)
    return Entry(item.path, item.digest, item.size, item.ref, item.executable)


def iter_entries(items: Iterable[EntryLike]) -> Iterator[Entry]:
    """Each of ``items`` as an :class:`Entry`, one at a time."""
    for item in items:
        yield as_entry(item)
