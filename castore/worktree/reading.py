"""Read one stored entry: the light part of :mod:`castore.worktree.operations`.

``castore cat`` and ``ArtifactVersion.open`` need only this; keeping it apart spares them
the import of checkout and verify (``shutil``, ``tempfile`` and the staging engine).
"""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, BinaryIO

from castore.errors import IntegrityError, NotFoundError
from castore.storage.fsutil import translate_oserror
from castore.worktree import linking as _l
from castore.worktree.entries import EntryLike, as_entry

if TYPE_CHECKING:
    from castore.storage.blobs import BlobStore

__all__ = ["SPOOL_MEMORY", "copy_verified", "open_entry", "read_bytes"]


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


#: Content up to this size is verified in memory before release; larger content is spooled
#: to an anonymous temp file (bounded by the manifest size, which the reader enforces).
SPOOL_MEMORY = 8 * 1024 * 1024


def copy_verified(
    blobs: BlobStore,
    entry: EntryLike,
    out: BinaryIO,
    *,
    spool_dir: str | os.PathLike[str] | None = None,
    memory_limit: int = SPOOL_MEMORY,
) -> int:
    """Write one entry's content to ``out``, only after all of it has been verified.

    A streaming reader checks the digest only at the end, so copying it straight to ``out``
    releases damaged bytes before the error (``castore cat`` wrote the
    damaged megabyte to stdout, then exited 3). The content is spooled first, in memory up to
    ``memory_limit`` bytes, else in an anonymous temp file (nothing is left by a crash).

    Args:
        blobs: the store's blobs.
        entry: the entry to copy.
        out: a binary stream; nothing is written to it unless the content is good.
        spool_dir: the directory for the temp file (the store's ``tmp/``); None: the
            system's temp directory.
        memory_limit: the largest content kept in memory.

    Returns:
        The number of bytes written.

    Raises:
        NotFoundError: the blob (or referenced file) is missing.
        IntegrityError: the content does not match its digest or size; ``out`` is untouched.
        OutOfSpaceError: the temp file did not fit.
    """
    item = as_entry(entry)
    spool: BinaryIO
    if item.size <= memory_limit:  # the reader stops at the manifest size: memory is enough
        spool = io.BytesIO()  # (no tempfile import for `castore cat` of a small file)
    else:
        import tempfile

        spool = tempfile.SpooledTemporaryFile(  # type: ignore[assignment]  # noqa: SIM115
            max_size=memory_limit, dir=_spool_directory(spool_dir)
        )
    with open_entry(blobs, item) as reader, spool:
        try:
            _copy(reader, spool)  # raises at EOF if damaged
        except OSError as exc:
            translated = translate_oserror(exc, _spool_directory(spool_dir))
            if translated is exc:
                raise
            raise translated from exc
        size = spool.tell()
        spool.seek(0)
        _copy(spool, out)
    return size


def _spool_directory(spool_dir: str | os.PathLike[str] | None) -> str:
    if spool_dir is not None:
        return os.fspath(spool_dir)
    import tempfile

    return tempfile.gettempdir()


def _copy(src: BinaryIO, dst: BinaryIO) -> None:
    """``shutil.copyfileobj`` in ``CHUNK`` reads (without importing shutil)."""
    while chunk := src.read(_l.CHUNK):
        dst.write(chunk)
