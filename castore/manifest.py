"""The one codec of the version document: written by finalize, read by rebuild (and bundles).

A committed version is also stored as a blob holding its canonical JSON document (sorted keys,
no whitespace), so the catalogue can be rebuilt from blobs alone. The reader accepts exactly
what the writer writes and checks it: every path is a canonical artifact path, the entries
hash to the document's digest, and counts and sizes agree. Anything else is not a manifest.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from castore.errors import CastoreError
from castore.paths import validate_path
from castore.refs import validate_name, validate_tag
from castore.storage.hashing import new_hasher

__all__ = [
    "FORMAT_KEY",
    "MATERIALIZER_NAME",
    "ManifestRow",
    "RowLike",
    "artifact_digest",
    "encode_manifest",
    "decode_manifest",
    "iter_manifest",
]

#: The key (and value 1) that opens every version document.
FORMAT_KEY = "castore_manifest"
_FORMAT = 1
_DIGEST = re.compile(r"^[a-z0-9-]+:[0-9a-f]+$")
_KEYS = frozenset(
    {FORMAT_KEY, "id", "collection", "type", "number", "digest", "size", "file_count",
     "description", "metadata", "tags", "created_at", "ttl", "producer", "entries"}
)
#: Keys a document carries only when they have a value (documents written before them keep
#: their bytes, and so their digests).
_OPTIONAL_KEYS = frozenset({"materializer", "link_source"})
#: What a materializer name may be (``"numpy.ndarray"``, ``"json"``, ``"my-lib.Model"``).
MATERIALIZER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,127}$")

# (path, digest, size, ref, executable): a manifest entry as the catalogue stores it
ManifestRow = tuple[str, str | None, int, str | None, bool]
#: What the writers accept: also the four-field row of castore before the executable bit
#: (read as not executable).
RowLike = ManifestRow | tuple[str, str | None, int, str | None]


def artifact_digest(
    algorithm: str, rows: Iterable[RowLike], *, presorted: bool = False
) -> str:
    """The content digest of a version: the hash over its sorted ``path, digest, size`` lines.

    External references without a checksum contribute their URI in place of the digest. An
    executable entry's line ends in ``\\0x`` before the newline; other lines are exactly the
    bytes castore hashed before it recorded the executable bit, so every existing version
    keeps its digest (a path never holds ``\\0``, so the two line forms cannot collide).
    ``presorted=True`` streams rows already in path order (the catalogue's ``ORDER BY
    path``) instead of sorting them in memory; rows out of order raise ``ValueError``.
    """
    hasher = new_hasher(algorithm)
    for row in _in_order(rows) if presorted else sorted(rows):
        path, digest, size, ref = row[:4]
        mark = "\0x" if any(row[4:]) else ""
        hasher.update(f"{path}\0{digest or ref or ''}\0{size}{mark}\n".encode())
    return f"{algorithm}:{hasher.hexdigest()}"


def _in_order(rows: Iterable[RowLike]) -> Iterator[RowLike]:
    """``rows``, checked to come in strictly increasing path order."""
    last: str | None = None
    for row in rows:
        if last is not None and row[0] <= last:
            raise ValueError(f"entries are not in path order: {row[0]!r} after {last!r}")
        last = row[0]
        yield row


def encode_manifest(row: dict[str, Any], tags: list[str], rows: Sequence[RowLike]) -> bytes:
    """The canonical JSON of a committed version (its catalogue ``row``, tags and entries).

    An entry carries ``"exec": true`` only when it is executable, and the document carries
    ``"materializer"`` only when ``store.save()`` wrote the version and ``"link_source"`` only
    for a link, so the documents of other versions are byte for byte what castore wrote before
    either existed.
    """
    return b"".join(iter_manifest(row, tags, sorted(rows)))


#: Encoded entries per piece yielded by :func:`iter_manifest`.
_PIECE_ENTRIES = 4096


def iter_manifest(
    row: dict[str, Any], tags: list[str], rows: Iterable[RowLike]
) -> Iterator[bytes]:
    """:func:`encode_manifest`'s bytes in pieces, from ``rows`` streamed in path order.

    A version of a million files is never held as one document: each piece holds at most a
    few thousand entries. The pieces joined are exactly :func:`encode_manifest`'s bytes.

    Raises:
        ValueError: ``rows`` are not in strictly increasing path order.
    """
    created = datetime.fromtimestamp(row["created_at"] / 1_000_000, tz=UTC).isoformat()
    document = {
        FORMAT_KEY: _FORMAT,
        "id": row["id"],
        "collection": row["collection"],
        "type": row["type"],
        "number": row["number"],
        "digest": row["digest"],
        "size": row["size"],
        "file_count": row["file_count"],
        "description": row["description"],
        "metadata": json.loads(row["metadata"] or "{}"),
        "tags": sorted(tags),
        "created_at": created,
        "ttl": row["ttl"],
        "producer": row["producer"],
        **({"link_source": row["link_source"]} if row.get("link_source") else {}),
        "entries": [],
    }
    if row.get("materializer"):
        document["materializer"] = row["materializer"]
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    # Keys are sorted, so every key before "entries" is a number or a JSON string (whose
    # quotes are escaped): the first match is the top-level key.
    marker = '"entries":['
    split = text.index(marker) + len(marker)
    yield text[:split].encode()
    piece: list[dict[str, Any]] = []
    lead = ""  # the comma between two pieces
    for entry in _in_order(rows):
        path, digest, size, ref = entry[:4]
        item: dict[str, Any] = {"path": path, "digest": digest, "size": size}
        if ref:
            item["ref"] = ref
        if any(entry[4:]):
            item["exec"] = True
        piece.append(item)
        if len(piece) >= _PIECE_ENTRIES:
            yield _encode_piece(lead, piece)
            piece, lead = [], ","
    if piece:
        yield _encode_piece(lead, piece)
    yield text[split:].encode()


def _encode_piece(lead: str, items: list[dict[str, Any]]) -> bytes:
    """Entries as the document's list holds them: one ``json.dumps`` per piece (the C
    encoder), without the brackets."""
    return (lead + json.dumps(items, sort_keys=True, separators=(",", ":"))[1:-1]).encode()


class ManifestDecodeError(CastoreError, ValueError):
    """Bytes that are not a valid version document (the reason says which check failed)."""


def _fail(reason: str) -> ManifestDecodeError:
    return ManifestDecodeError(f"not a valid castore version document: {reason}")


def _entries(raw: Any) -> list[ManifestRow]:
    if not isinstance(raw, list):
        raise _fail("'entries' is not a list")
    rows: list[ManifestRow] = []
    for item in raw:
        if not isinstance(item, dict) or not {"path", "digest", "size"} <= item.keys():
            raise _fail("an entry is not an object with path, digest and size")
        unknown = item.keys() - {"path", "digest", "size", "ref", "exec"}
        if unknown:
            raise _fail(f"an entry has unknown keys {sorted(unknown)}")
        path, digest, size, ref = item["path"], item["digest"], item["size"], item.get("ref")
        if not isinstance(path, str):
            raise _fail("an entry's path is not a string")
        try:
            validate_path(path)
        except ValueError as exc:
            raise _fail(f"entry path {path!r} is not a canonical artifact path ({exc})") from None
        if digest is not None and not (isinstance(digest, str) and _DIGEST.match(digest)):
            raise _fail(f"entry {path!r} has a malformed digest")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise _fail(f"entry {path!r} has an invalid size")
        if ref is not None and not isinstance(ref, str):
            raise _fail(f"entry {path!r} has a non-string ref")
        if digest is None and ref is None:
            raise _fail(f"entry {path!r} has neither a digest nor a ref")
        # the writer omits "exec" unless it is true: anything else is not its document
        if "exec" in item and item["exec"] is not True:
            raise _fail(f"entry {path!r} has an 'exec' other than true")
        rows.append((path, digest, size, ref, "exec" in item))
    paths = [r[0] for r in rows]
    if len(set(paths)) != len(paths):
        raise _fail("two entries share a path")
    return rows


def decode_manifest(data: bytes, *, algorithm: str) -> dict[str, Any]:
    """Check a version document of a store hashing with ``algorithm`` and return its fields.

    Returns:
        The version's fields (``id``, ``collection``, ``type``, ``number``, ``digest``,
        ``size``, ``file_count``, ``description``, ``metadata``, ``tags``, ``created_at`` in
        µs, ``ttl``, ``producer``, ``materializer`` (None unless ``store.save()`` wrote the
        version), ``link_source`` (None unless a link)) and ``entries`` as ``(path, digest,
        size, ref, executable)`` tuples.

    Raises:
        ManifestDecodeError: the bytes are not exactly what :func:`encode_manifest` writes, or
            the entries do not hash to the document's digest.
    """
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        raise _fail("not JSON") from None
    if not isinstance(doc, dict) or doc.get(FORMAT_KEY) != _FORMAT:
        raise _fail(f"no {FORMAT_KEY!r}: {_FORMAT}")
    if not _KEYS <= doc.keys() <= _KEYS | _OPTIONAL_KEYS:
        odd = (doc.keys() ^ _KEYS) - _OPTIONAL_KEYS
        raise _fail(f"keys differ from a version document's: {sorted(odd)}")
    materializer = doc.get("materializer")
    # the writer omits it unless set: an empty or null one is not its document
    if "materializer" in doc and not (
        isinstance(materializer, str) and MATERIALIZER_NAME.match(materializer)
    ):
        raise _fail("materializer is not a materializer name")
    link = doc.get("link_source")
    if "link_source" in doc and not (
        isinstance(link, str) and _canonical_uuid(link)
    ):
        raise _fail("link_source is not a canonical version id")
    try:
        vid = str(uuid.UUID(doc["id"])) if isinstance(doc["id"], str) else None
        validate_name(doc["collection"])
        validate_name(doc["type"], "type")
        tags = [validate_tag(t) for t in doc["tags"]]
    except (ValueError, TypeError, AttributeError) as exc:
        raise _fail(f"bad id, name, type or tag ({exc})") from None
    if vid != doc["id"]:
        raise _fail("the id is not a canonical UUID")
    number = doc["number"]
    if isinstance(number, bool) or not isinstance(number, int) or number < 0:
        raise _fail("the version number is not a non-negative integer")
    if not isinstance(doc["metadata"], dict):
        raise _fail("metadata is not an object")
    ttl = doc["ttl"]
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0):
        raise _fail("ttl is not a positive number")
    if doc["description"] is not None and not isinstance(doc["description"], str):
        raise _fail("description is not a string")
    if doc["producer"] is not None and not isinstance(doc["producer"], str):
        raise _fail("producer is not a string")
    try:
        created = datetime.fromisoformat(doc["created_at"])
    except (TypeError, ValueError):
        raise _fail("created_at is not an ISO date") from None
    if created.tzinfo is None:
        raise _fail("created_at has no time zone")
    rows = _entries(doc["entries"])
    expected = artifact_digest(algorithm, rows)
    if doc["digest"] != expected:
        raise _fail(f"its entries hash to {expected}, not to the stated digest {doc['digest']}")
    if doc["size"] != sum(r[2] for r in rows) or doc["file_count"] != len(rows):
        raise _fail("size or file_count disagree with the entries")
    return {
        "id": vid,
        "collection": doc["collection"],
        "type": doc["type"],
        "number": number,
        "digest": expected,
        "size": doc["size"],
        "file_count": len(rows),
        "description": doc["description"],
        "metadata": doc["metadata"],
        "tags": tags,
        "created_at": int(created.timestamp() * 1_000_000),
        "ttl": ttl,
        "producer": doc["producer"],
        "materializer": materializer,
        "link_source": link,
        "entries": rows,
    }


def _canonical_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False
