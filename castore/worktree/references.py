"""Choosing what a checkout or download writes: path patterns, and references reachable.

``select_rows`` runs before the checkout engine plans anything (rule 1 of
:mod:`castore.worktree.operations`): it keeps the entries the patterns allow and asks every
``http(s)://`` and ``s3://`` reference's server for its size and ETag, so that an unreachable
or changed object fails the whole operation before the target changes, or, with
``allow_missing_references=True``, is left out (a missing ``file://`` reference too).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from urllib.parse import unquote, urlparse

from castore.errors import IntegrityError, RemoteError
from castore.storage.external import ETAG, etag_digest, is_etag, is_remote, stat_remote
from castore.worktree.entries import EntryStream

__all__ = ["Row", "select_rows", "select_stream"]

# (path, digest, size, ref, executable), as the catalogue streams them
Row = tuple[str, str | None, int, str | None, bool]


def _patterns(value: str | Iterable[str] | None, what: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    found = list(value)
    if not all(isinstance(p, str) for p in found):
        raise TypeError(f"{what} must be strings (fnmatch patterns)")
    return found


def _reachable(row: Row) -> bool:
    """Whether a reference can be fetched; raises if its object changed since recorded."""
    path, digest, size, ref, _ = row
    assert ref is not None
    if not is_remote(ref):
        parsed = urlparse(ref)
        return parsed.scheme != "file" or Path(unquote(parsed.path)).is_file()
    try:
        found = stat_remote(ref)
    except RemoteError:
        return False
    if (0 <= found.size != size) or (
        is_etag(digest) and found.etag is not None and etag_digest(found.etag) != digest
    ):
        raise IntegrityError(
            f"{ref} (referenced by {path!r}) changed since it was recorded: size "
            f"{found.size} and {ETAG} {found.etag!r}, recorded {size}; nothing was written",
            digest=digest,
            paths=[path],
        )
    return True


def _matches(path: str, allow: list[str] | None, ignore: list[str]) -> bool:
    if allow is not None and not any(fnmatch.fnmatchcase(path, p) for p in allow):
        return False
    return not any(fnmatch.fnmatchcase(path, p) for p in ignore)


def select_rows(
    rows: Iterable[Row],
    *,
    allow_patterns: str | Iterable[str] | None = None,
    ignore_patterns: str | Iterable[str] | None = None,
    allow_missing_references: bool = False,
    skipped: set[str] | None = None,
) -> Iterator[Row]:
    """The rows to write: matching ``allow_patterns`` (any; default all), matching no
    ``ignore_patterns``, and whose references are reachable.

    Patterns are ``fnmatch`` patterns on the whole path, as huggingface_hub uses them: ``*``
    also crosses ``/``.

    ``skipped``, when given, receives the paths of the references left out as unreachable.

    Raises:
        RemoteError: a remote reference cannot be reached (and not
            ``allow_missing_references``).
        IntegrityError: a remote object's size or ETag differs from the recorded one.
    """
    allow = _patterns(allow_patterns, "allow_patterns")
    ignore = _patterns(ignore_patterns, "ignore_patterns") or []
    for row in rows:
        path = row[0]
        if not _matches(path, allow, ignore):
            continue
        ref = row[3]
        checked = ref is not None and (is_remote(ref) or allow_missing_references)
        if checked and not _reachable(row):
            if allow_missing_references:
                if skipped is not None:
                    skipped.add(path)
                continue
            raise RemoteError(
                f"cannot fetch {ref} (referenced by {path!r}); nothing was written. Pass "
                "allow_missing_references=True to skip unreachable references"
            )
        yield row


def select_stream(
    open_rows: Callable[[], Iterable[Row]],
    *,
    allow_patterns: str | Iterable[str] | None = None,
    ignore_patterns: str | Iterable[str] | None = None,
    allow_missing_references: bool = False,
    each_batch: Callable[[list[Row]], None] | None = None,
    batch: int = 4096,
) -> EntryStream:
    """:func:`select_rows` over rows that can be read again (``open_rows()`` each time).

    The first pass does what :func:`select_rows` does, and hands each batch of the rows it
    keeps to ``each_batch`` before they are read (the store fetches back the blobs evicted
    under a budget); later passes keep the same rows without asking any server again.
    """
    allow = _patterns(allow_patterns, "allow_patterns")
    ignore = _patterns(ignore_patterns, "ignore_patterns") or []
    skipped: set[str] = set()
    first_done = False

    def first() -> Iterator[Row]:
        nonlocal first_done
        skipped.clear()
        it = select_rows(
            open_rows(), allow_patterns=allow, ignore_patterns=ignore,
            allow_missing_references=allow_missing_references, skipped=skipped,
        )
        while rows := list(islice(it, batch)):
            if each_batch is not None:
                each_batch(rows)
            yield from rows
        first_done = True

    def again() -> Iterator[Row]:
        for row in open_rows():
            if row[0] not in skipped and _matches(row[0], allow, ignore):
                yield row

    return EntryStream(lambda: again() if first_done else first())
