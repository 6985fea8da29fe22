"""The light manifest entry the worktree works on, and the shapes it accepts.

A checkout of a 1M-file version must not hold 1M pydantic models (DESIGN.md growth targets):
the worktree functions take any iterable of entries, as :class:`~castore.models.ManifestEntry`
records or as the plain ``(path, digest, size, ref, executable)`` rows the catalogue streams
(``Catalog.iter_entries``; four-field rows are read as not executable), and keep each as an
:class:`Entry`, a tuple.

A checkout reads its entries in several passes (check everything, write, record the stat
cache), a batch at a time, so that it never holds them all: an :class:`EntryStream` opens them
again for each pass (the catalogue's rows, streamed by path); any other iterable is read once
into a sorted list (:func:`replayable`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple, TypeAlias

from castore.models import ManifestEntry

__all__ = ["Entry", "EntryLike", "EntryStream", "as_entry", "iter_entries", "replayable"]


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


class EntryStream:
    """Entries that can be read more than once, each time streamed anew, sorted by path.

    ``open`` returns a fresh iterable of the same entries in the same order (code-point order
    of the paths, which is SQLite's ``ORDER BY path``) each time it is called.
    """

    __slots__ = ("_open",)

    def __init__(self, open: Callable[[], Iterable[EntryLike]]) -> None:
        self._open = open

    def __iter__(self) -> Iterator[Entry]:
        return iter_entries(self._open())


def replayable(items: Iterable[EntryLike]) -> EntryStream | list[Entry]:
    """``items`` in a form that can be read again, sorted by path.

    An :class:`EntryStream` is returned as it is (nothing is held); anything else is read once
    into a list of :class:`Entry` tuples, sorted by path.
    """
    if isinstance(items, EntryStream):
        return items
    return sorted(iter_entries(items), key=lambda e: e.path)
