"""External references of a draft: what ``add_reference`` records for a URI.

A reference is an entry with a URI (``ref``) instead of a blob. ``file://`` files are hashed
with the store's algorithm; ``http(s)://`` and ``s3://`` objects are recorded with their size
and ETag (or, when the server sends none, their digest: :mod:`castore.storage.external`). A
``file://`` directory or an ``s3://bucket/prefix/`` becomes one reference per object below it,
at most ``max_objects``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

from castore.errors import NotFoundError
from castore.manifest import ManifestRow
from castore.storage.external import (
    etag_digest,
    hash_remote,
    is_remote,
    list_prefix,
    stat_remote,
)
from castore.storage.hashing import hash_file

__all__ = ["MAX_OBJECTS", "reference_rows", "remote_fingerprint"]

#: Objects a directory or prefix reference may add unless ``max_objects`` says otherwise
#: (W&B's default).
MAX_OBJECTS = 10_000_000


def remote_fingerprint(
    uri: str, algorithm: str, *, checksum: bool | str, size: int | None
) -> tuple[str | None, int]:
    """The digest column and size of an ``http(s)://`` or ``s3://`` reference.

    ``checksum`` as a digest string is recorded as given (and checked on fetch; with ``size``
    too, the server is not asked: a reference can be recorded offline);
    ``checksum=True`` records the server's ETag, or, when it sends none, the content's digest
    (the object is streamed once); ``False`` records the size only.

    Raises:
        RemoteError: the object cannot be reached.
    """
    if isinstance(checksum, str) and size is not None:
        return checksum, size  # both given: recorded offline, checked on fetch
    found = stat_remote(uri)
    if isinstance(checksum, str):
        return checksum, found.size
    if checksum and found.etag:
        return etag_digest(found.etag), found.size
    if checksum or found.size < 0:
        digest, streamed = hash_remote(uri, algorithm)
        return (digest if checksum else None), streamed
    return None, found.size


def _too_many(where: str, max_objects: int) -> ValueError:
    return ValueError(
        f"{where} holds more than max_objects={max_objects} files; pass a larger max_objects "
        "(or None) to reference them all"
    )


def _directory(
    root: Path, prefix: str, algorithm: str, *, checksum: bool, max_objects: int | None
) -> list[ManifestRow]:
    """One ``file://`` reference per regular file below ``root`` (symlinks not followed)."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            if path.is_symlink() or not path.is_file():
                continue
            found.append(path)
            if max_objects is not None and len(found) > max_objects:
                raise _too_many(repr(str(root)), max_objects)
    rows: list[ManifestRow] = []
    for path in found:
        rel = path.relative_to(root).as_posix()
        digest, size = (
            hash_file(algorithm, path) if checksum else (None, path.stat().st_size)
        )
        rows.append((f"{prefix}/{rel}" if prefix else rel, digest, size, path.as_uri(), False))
    return rows


def _prefix(uri: str, prefix: str, max_objects: int | None) -> list[ManifestRow]:
    """One reference per object under an ``s3://bucket/prefix/`` (size and ETag)."""
    base = unquote(urlparse(uri).path.lstrip("/"))
    rows: list[ManifestRow] = []
    for found, size, etag in list_prefix(uri, max_objects=max_objects):
        rel = unquote(urlparse(found).path.lstrip("/"))[len(base) :]
        target = f"{prefix}/{rel}" if prefix else rel
        rows.append((target, etag_digest(etag) if etag else None, size, found, False))
    return rows


def reference_rows(
    uri: str,
    name: str | None,
    algorithm: str,
    *,
    checksum: bool | str,
    size: int | None,
    max_objects: int | None,
    check_name: Callable[[str], None],
) -> list[ManifestRow]:
    """The entries ``add_reference(uri, name, ...)`` records (``check_name`` runs on a single
    file's name before anything is read)."""
    parsed = urlparse(uri)
    if not parsed.scheme:
        raise ValueError(f"reference {uri!r} has no scheme; use e.g. 'file:///abs/path'")
    name = name if name is not None else os.path.basename(unquote(parsed.path).rstrip("/"))
    digest: str | None = checksum if isinstance(checksum, str) else None
    if parsed.scheme == "file":
        local = Path(unquote(parsed.path))
        if local.is_dir():
            return _directory(
                local, name, algorithm, checksum=checksum is True, max_objects=max_objects
            )
        check_name(name)
        if not local.is_file():
            raise NotFoundError(f"referenced file {str(local)!r} does not exist", ref=uri)
        if checksum is True:
            digest, size = hash_file(algorithm, local)
        else:
            size = local.stat().st_size
    elif is_remote(uri):
        if parsed.scheme == "s3" and uri.endswith("/"):
            return _prefix(uri, name, max_objects)
        check_name(name)
        digest, size = remote_fingerprint(uri, algorithm, checksum=checksum, size=size)
    else:
        check_name(name)
    return [(name, digest, size or 0, uri, False)]
