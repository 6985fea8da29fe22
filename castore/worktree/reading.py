"""Read one stored entry: the light part of :mod:`castore.worktree.operations`.

``castore cat`` and ``ArtifactVersion.open`` need only this; keeping it apart spares them
the import of checkout and verify (``shutil``, ``tempfile`` and the staging engine).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO

from castore.errors import IntegrityError, NotFoundError
from castore.worktree import linking as _l
from castore.worktree.entries import EntryLike, as_entry

if TYPE_CHECKING:
    from castore.storage.blobs import BlobStore

__all__ = ["open_entry", "read_bytes"]


def open_entry(blobs: BlobStore, entry: EntryLike) -> BinaryIO:
    """A streaming reader of one entry's content; digest and size are checked at EOF.

    Raises:
        NotFoundError: a referenced (``file://``) file is missing.
        IntegrityError: the stored content is missing, or (while reading) does not match;
            ``paths`` names the entry.
        RemoteError: the entry references a non-``file://`` location.
    """
    item = as_entry(entry)
    try:
        return _l.open_source(blobs, item)
    except NotFoundError as exc:
        if item.ref is not None:
            raise
        # A stored file whose blob is gone is damage to the store, not a wrong name.
        raise IntegrityError(
            f"the stored content of {item.path!r} ({item.digest}) is missing; run "
            "`castore fsck --repair`, then add the file again or import a good copy",
            digest=item.digest,
            paths=[item.path],
        ) from exc


def read_bytes(blobs: BlobStore, entry: EntryLike) -> bytes:
    """The whole (verified) content of one entry."""
    with open_entry(blobs, entry) as fh:
        return fh.read()
