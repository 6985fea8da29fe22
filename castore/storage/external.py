"""External references: content recorded by URI (``http(s)://``, ``s3://``) and fetched on use.

A reference records the URI, the size and either a content digest (the store's algorithm) or
the server's ETag, carried in the digest column as ``etag:<hex of the ETag's bytes>`` so that
the catalogue and the version document keep their shape (``etag`` is no hash algorithm: it is
never looked up as a blob, and the version digest covers it, so a changed ETag is a changed
version). On fetch the ETag must be the recorded one, the size must match (reading past it
stops at once) and a content digest is re-hashed: wrong bytes are never returned.

``http(s)://`` goes through the standard library's ``urllib`` (no dependency); ``s3://``
through obstore (``pip install 'castore[s3]'``), configured by the usual ``AWS_*`` environment
variables (``AWS_ENDPOINT_URL`` for MinIO, moto or Ceph; plain ``http://`` endpoints allowed).
Self-contained on purpose: the S3 remote may share it later.
"""

from __future__ import annotations

import io
import os
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from castore.errors import IntegrityError, RemoteError
from castore.storage.hashing import VerifyingReader, new_hasher

__all__ = [
    "ETAG",
    "REMOTE_SCHEMES",
    "RemoteObject",
    "etag_digest",
    "hash_remote",
    "is_etag",
    "is_remote",
    "list_prefix",
    "open_remote",
    "stat_remote",
]

REMOTE_SCHEMES = ("http", "https", "s3")
#: The pseudo-algorithm of a digest that is an ETag.
ETAG = "etag"
#: Seconds to wait for a server before giving up.
TIMEOUT = 30.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteObject:
    """What a server says of an object: its size (-1 if unknown) and ETag (None if none)."""

    size: int
    etag: str | None


def is_remote(uri: str | None) -> bool:
    """Whether ``uri`` is a reference castore fetches over the network."""
    return bool(uri) and urllib.parse.urlparse(uri or "").scheme in REMOTE_SCHEMES


def etag_digest(etag: str) -> str:
    """The digest-column form of an ETag (``etag:<hex>``)."""
    return f"{ETAG}:{etag.encode().hex()}"


def is_etag(digest: str | None) -> bool:
    """Whether a digest column holds an ETag rather than a content digest."""
    return bool(digest) and (digest or "").startswith(ETAG + ":")


def _etag_of(digest: str | None) -> str | None:
    if digest and digest.startswith(ETAG + ":"):
        return bytes.fromhex(digest.split(":", 1)[1]).decode()
    return None


# -- s3 ------------------------------------------------------------------------------------------


def _s3(uri: str) -> tuple[Any, str]:
    """The obstore S3Store of the URI's bucket and the object key."""
    try:
        from obstore.store import S3Store
    except ImportError:
        raise ImportError(
            f"fetching {uri} needs obstore: pip install 'castore[s3]'"
        ) from None
    parsed = urllib.parse.urlparse(uri)
    if not parsed.netloc or not parsed.path.strip("/"):
        raise ValueError(f"{uri!r} is not an s3://bucket/key URI")
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    options: dict[str, Any] = {}
    if endpoint and endpoint.startswith("http://"):
        options["client_options"] = {"allow_http": True}
    if endpoint:
        options["endpoint"] = endpoint
    return S3Store(parsed.netloc, **options), urllib.parse.unquote(parsed.path.lstrip("/"))


def _s3_error(uri: str, exc: Exception) -> RemoteError:
    # obstore's message carries a multi-line debug dump: its first line says what failed
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return RemoteError(f"cannot reach {uri}: {type(exc).__name__}: {first}")


# -- http ----------------------------------------------------------------------------------------


def _http(uri: str, method: str, headers: dict[str, str] | None = None) -> Any:
    # Imported here: urllib.request (http.client, ssl, email) costs every command ~15 ms, and
    # only references to http(s) URLs need it.
    import urllib.error
    import urllib.request

    request = urllib.request.Request(uri, method=method, headers=headers or {})
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise RemoteError(f"cannot fetch {uri}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise RemoteError(f"cannot reach {uri}: {exc}") from exc


# -- the protocol --------------------------------------------------------------------------------


def stat_remote(uri: str) -> RemoteObject:
    """Ask the server for the object's size and ETag (HEAD).

    Raises:
        RemoteError: the object cannot be reached or does not exist.
        ImportError: an ``s3://`` URI without obstore installed.
    """
    if urllib.parse.urlparse(uri).scheme == "s3":
        store, key = _s3(uri)
        import obstore

        try:
            meta = obstore.head(store, key)
        except Exception as exc:  # obstore raises its own tree; name the URI
            raise _s3_error(uri, exc) from exc
        return RemoteObject(size=int(meta["size"]), etag=meta.get("e_tag"))
    with _http(uri, "HEAD") as response:
        length = response.headers.get("Content-Length")
        return RemoteObject(
            size=int(length) if length and length.isdigit() else -1,
            etag=response.headers.get("ETag"),
        )


def hash_remote(uri: str, algorithm: str) -> tuple[str, int]:
    """Stream the object once and return its digest (``algorithm``) and size."""
    hasher = new_hasher(algorithm)
    size = 0
    with _open_raw(uri, etag=None) as source:
        while chunk := source.read(_CHUNK):
            hasher.update(chunk)
            size += len(chunk)
    return f"{algorithm}:{hasher.hexdigest()}", size


def list_prefix(uri: str, *, max_objects: int | None) -> list[tuple[str, int, str | None]]:
    """``(uri, size, etag)`` of every object under an ``s3://bucket/prefix/``, by key.

    Raises:
        ValueError: more than ``max_objects`` objects.
        RemoteError: the bucket cannot be listed.
    """
    store, prefix = _s3(uri.rstrip("/") + "/x")
    prefix = prefix[:-1]
    bucket = urllib.parse.urlparse(uri).netloc
    found: list[tuple[str, int, str | None]] = []
    try:
        for batch in store.list(prefix=prefix):
            for meta in batch:
                found.append((f"s3://{bucket}/{meta['path']}", int(meta["size"]), meta["e_tag"]))
                if max_objects is not None and len(found) > max_objects:
                    raise ValueError(
                        f"{uri} holds more than max_objects={max_objects} objects; pass a "
                        "larger max_objects (or None) to reference them all"
                    )
    except ValueError:
        raise
    except Exception as exc:
        raise _s3_error(uri, exc) from exc
    return sorted(found)


class _Chunks(io.RawIOBase):
    """A raw reader over an iterator of byte chunks (obstore's stream)."""

    def __init__(self, chunks: Iterator[Any], uri: str) -> None:
        super().__init__()
        self._chunks = chunks
        self._uri = uri
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._buffer:
            try:
                self._buffer = bytes(next(self._chunks))
            except StopIteration:
                return 0
            except Exception as exc:
                raise _s3_error(self._uri, exc) from exc
        n = min(len(buffer), len(self._buffer))
        buffer[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


def _open_raw(uri: str, *, etag: str | None) -> BinaryIO:
    """The object's bytes, refused unless it still has ``etag`` (when given)."""
    if urllib.parse.urlparse(uri).scheme == "s3":
        store, key = _s3(uri)
        import obstore

        try:
            result = obstore.get(store, key)
        except Exception as exc:
            raise _s3_error(uri, exc) from exc
        found = result.meta.get("e_tag")
        chunks: Iterator[Any] = iter(result.stream(min_chunk_size=_CHUNK))
        raw: BinaryIO = io.BufferedReader(_Chunks(chunks, uri), _CHUNK)
    else:
        response = _http(uri, "GET")
        found = response.headers.get("ETag")
        raw = response
    if etag is not None and found != etag:
        raw.close()
        raise IntegrityError(
            f"{uri} changed since it was referenced: its ETag is {found!r}, not {etag!r}",
            digest=etag_digest(etag),
        )
    return raw


def open_remote(uri: str, *, digest: str | None, size: int, what: str) -> BinaryIO:
    """A verified stream of a referenced object: its ETag, size and digest are checked.

    Raises:
        RemoteError: the object cannot be reached.
        IntegrityError: its ETag differs from the recorded one (at once), or (while reading)
            its size or content does not match.
    """
    etag = _etag_of(digest)
    raw = _open_raw(uri, etag=etag)
    check = None if etag is not None else digest
    return io.BufferedReader(
        VerifyingReader(raw, digest=check, size=size, what=what), _CHUNK
    )
