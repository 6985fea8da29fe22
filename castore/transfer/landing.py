"""Incoming versions (import and pull), checked and committed all or nothing.

Every layer is staged into the store's ``tmp/`` (re-hashed with the store's algorithm while
its sha256 is checked), every version document is decoded with ``castore.manifest`` and every
file matched against it before anything is published. Then the blobs are published, and one
catalogue transaction writes each version's document and marker and inserts it with its id
and number (``maintenance.rebuild.insert_version``'s rules). A crash or a full disk before
the COMMIT leaves the store's versions as they were (orphan blobs at worst, which gc removes).
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from castore import _faults
from castore._parts import Parts
from castore._progress import Progress
from castore.digest import ALGORITHMS
from castore.errors import (
    AliasConflictError,
    BundleError,
    CastoreError,
    InvalidPathError,
    VersionConflictError,
)
from castore.manifest import ManifestRow, artifact_digest, decode_manifest, encode_manifest
from castore.paths import validate_path
from castore.refs import LATEST
from castore.storage.blobs import StagedBlob
from castore.transfer.oci import (
    ANN_TITLE,
    ARTIFACT_TYPE,
    EMPTY_TYPE,
    FILE_TYPE,
    GROUP_TYPE,
    MAX_CONFIG,
    MAX_JSON,
    Descriptor,
    ImageManifest,
    parse_json,
    split_ref_name,
)

__all__ = ["Incoming", "Source", "land"]


@dataclass
class Source:
    """Where incoming bytes come from: a staged bundle or a remote."""

    what: str
    #: the JSON document ``desc`` names (size-capped and checked against its digest)
    read_json: Callable[[Descriptor, int], bytes]
    #: the layer ``desc`` staged into the store (checked against its sha256)
    stage: Callable[[Descriptor], StagedBlob]


@dataclass
class Incoming:
    """One version on its way in."""

    doc: dict[str, Any]
    manifest: Descriptor
    rows: list[ManifestRow] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    present: bool = False  # already in this store


@dataclass
class Result:
    """What :func:`land` did."""

    versions: list[str]
    blobs_sent: int = 0
    bytes_sent: int = 0
    blobs_skipped: int = 0
    bytes_skipped: int = 0
    #: this store's digests of the single-file layers the source holds (for ``blob_remotes``)
    held: list[str] = field(default_factory=list)


def _version(source: Source, desc: Descriptor, algorithm: str) -> tuple[dict[str, Any],
                                                                         ImageManifest]:
    what = f"manifest {desc.digest} of {source.what}"
    manifest = parse_json(source.read_json(desc, MAX_JSON), ImageManifest, what)
    if manifest.artifactType != ARTIFACT_TYPE:
        raise BundleError(f"{what} is not a castore version (artifactType "
                          f"{manifest.artifactType!r})")
    raw = source.read_json(manifest.config, MAX_CONFIG)
    try:
        config = json.loads(raw)
        document = json.dumps(config["castore_version"], sort_keys=True,
                              separators=(",", ":")).encode()
    except (ValueError, TypeError, KeyError):
        raise BundleError(f"config {manifest.config.digest} of {source.what} holds no castore "
                          "version document") from None
    head = str(config["castore_version"].get("digest", "")) if isinstance(
        config["castore_version"], dict) else ""
    algo = head.partition(":")[0]
    if algo not in ALGORITHMS:
        raise BundleError(f"config {manifest.config.digest} of {source.what}: unknown hash "
                          f"algorithm {algo!r}")
    try:
        doc = decode_manifest(document, algorithm=algo)
    except (CastoreError, ValueError) as exc:
        raise BundleError(f"config {manifest.config.digest} of {source.what}: {exc}") from None
    doc["algorithm"] = algo
    return doc, manifest


def _canonical(name: str, collection: str) -> str:
    """``collection:selector`` from a ref name or a registry tag ``collection-selector``."""
    if ":" not in name and name.startswith(collection + "-"):
        return f"{collection}:{name[len(collection) + 1:]}"
    return name


def _member_path(name: str, what: str) -> str:
    try:
        return validate_path(name)
    except (InvalidPathError, ValueError) as exc:
        raise BundleError(f"{what}: member {name!r} is not a valid artifact path ({exc})") from None


def _stage_group(parts: Parts, staged: StagedBlob, wanted: dict[str, ManifestRow], what: str,
                 into: dict[str, StagedBlob], cleanup: list[StagedBlob]) -> None:
    try:
        with parts.blobs.open_staged(staged) as fh, tarfile.open(fileobj=fh, mode="r|") as tar:
            for member in tar:
                if not member.isreg():
                    raise BundleError(f"{what}: member {member.name!r} is not a regular file")
                path = _member_path(member.name, what)
                row = wanted.get(path)
                if row is None or path in into:
                    raise BundleError(f"{what}: member {member.name!r} is not a file of the "
                                      "version, or appears twice")
                if member.size != row[2]:
                    raise BundleError(f"{what}: member {member.name!r} has {member.size} "
                                      f"bytes, the version says {row[2]}")
                body = tar.extractfile(member)
                assert body is not None
                blob = parts.blobs.stage_stream(body, size=member.size,  # type: ignore[arg-type]
                                                sync=False)
                cleanup.append(blob)
                into[path] = blob
    except tarfile.TarError as exc:
        raise BundleError(f"{what} is not a readable tar: {exc}") from None


def land(
    parts: Parts,
    source: Source,
    names: dict[str, Descriptor],
    *,
    renumber: bool,
    force: bool,
    bar: Progress,
) -> Result:
    """Check, stage and commit the versions ``names`` (ref name -> manifest) point at."""
    catalog, blobs = parts.catalog, parts.blobs
    incoming: dict[str, Incoming] = {}
    for name, desc in sorted(names.items()):
        item = incoming.get(desc.digest)
        if item is None:
            doc, manifest = _version(source, desc, parts.algorithm)
            item = incoming[desc.digest] = Incoming(doc, desc)
            item.rows = doc["entries"]
            item.doc["_manifest"] = manifest
        parsed = split_ref_name(_canonical(name, item.doc["collection"]))
        if parsed is None or parsed[0] != item.doc["collection"]:
            raise BundleError(f"ref {name!r} of {source.what} names a version of "
                              f"{item.doc['collection']!r}")
        if parsed[2] is not None and parsed[2] != LATEST:
            item.aliases.append(parsed[2])
    if bar.total == 0:  # a pull learns the size once the manifests are read
        bar.total = sum(
            layer.size for item in incoming.values() for layer in item.doc["_manifest"].layers)
    result = Result(versions=[])
    cleanup: list[StagedBlob] = []
    published: list[tuple[str, str, int]] = []
    try:
        for item in incoming.values():
            _stage_version(parts, source, item, result, cleanup, published, bar)
        _faults.point("import.staged")
        for staged in cleanup:
            if staged.tmp.exists():
                blobs.publish(staged, check_collision=True, sync=False)
        blobs.sync()
        _faults.point("import.published")
    except BaseException:
        for staged in cleanup:
            blobs.discard(staged)
        raise
    _commit(parts, list(incoming.values()), renumber=renumber, force=force, result=result)
    if published:
        catalog.remember_sha256(published)
    return result


def _stage_version(parts: Parts, source: Source, item: Incoming, result: Result,
                   cleanup: list[StagedBlob], published: list[tuple[str, str, int]],
                   bar: Progress) -> None:
    doc = item.doc
    ref = f"{doc['collection']}:v{doc['number']}"
    manifest: ImageManifest = doc.pop("_manifest")
    same = doc["algorithm"] == parts.algorithm
    wanted = {r[0]: r for r in item.rows if r[3] is None}
    existing = parts.catalog.get_version(doc["id"])
    if existing is not None and existing["state"] == "COMMITTED":
        item.present = True
        return
    if existing is not None:
        raise VersionConflictError(
            f"version {doc['id']} ({ref}) is {existing['state'].lower()} in this store; it "
            "cannot come back under the same id", ref=ref)
    arrived: dict[str, StagedBlob] = {}
    for layer in manifest.layers:
        what = f"layer {layer.digest} of {ref} in {source.what}"
        if layer.mediaType == EMPTY_TYPE:
            continue
        if layer.mediaType == GROUP_TYPE and layer.note("vnd.castore.group") is not None:
            staged = source.stage(layer)
            try:
                _stage_group(parts, staged, wanted, what, arrived, cleanup)
            finally:
                parts.blobs.discard(staged)
            n = int(layer.note("vnd.castore.group") or 0)
            result.blobs_sent += n
            result.bytes_sent += layer.size
            bar.add(layer.size)
            continue
        if layer.mediaType != FILE_TYPE:
            raise BundleError(f"{what} has media type {layer.mediaType!r}, not a castore layer")
        path = _member_path(layer.note(ANN_TITLE) or "", what)
        row = wanted.get(path)
        if row is None or path in arrived or row[2] != layer.size:
            raise BundleError(f"{what}: {path!r} is not a file of the version, appears twice, "
                              "or its size differs from the version document's")
        if same and row[1] is not None and parts.blobs.exists(row[1]):
            result.blobs_skipped += 1
            result.bytes_skipped += layer.size
            result.held.append(row[1])
            bar.add(layer.size)
            arrived[path] = None  # type: ignore[assignment]  # already stored
            continue
        staged = source.stage(layer)
        cleanup.append(staged)
        arrived[path] = staged
        published.append((str(staged.digest), layer.digest.removeprefix("sha256:"), layer.size))
        result.held.append(str(staged.digest))
        result.blobs_sent += 1
        result.bytes_sent += layer.size
        bar.add(layer.size)
    missing = sorted(wanted.keys() - arrived.keys())
    if missing:
        raise BundleError(f"{source.what} lacks the content of {ref}: {missing[0]!r}"
                          + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    rows: list[ManifestRow] = []
    for path, digest, size, refv, executable in item.rows:
        got = arrived.get(path)
        if refv is None and got is not None:
            if got.size != size:
                raise BundleError(f"file {path!r} of {ref} in {source.what} has {got.size} "
                                  f"bytes, the version says {size}")
            if same and str(got.digest) != digest:
                raise BundleError(f"file {path!r} of {ref} in {source.what} does not match "
                                  f"its digest {digest} (it hashes to {got.digest})")
            digest = str(got.digest)
        rows.append((path, digest, size, refv, executable))
    if not same:  # re-key: the store's own algorithm throughout, never mixed
        if any(r[3] is not None and r[1] is not None for r in rows):
            rows = [(p, d if r is None else None, s, r, x) for p, d, s, r, x in rows]
        doc["digest"] = artifact_digest(parts.algorithm, rows)
    item.rows = rows


def _insert(catalog: Any, coll: dict[str, Any], manifest_digest: str, row: dict[str, Any],
            rows: list[ManifestRow]) -> None:
    """Insert a committed version with its id and number (as a catalogue rebuild does)."""
    created, ttl = row["created_at"], row["ttl"]
    catalog.execute(
        "INSERT INTO versions (id, collection_id, number, state, digest, size, file_count, "
        "description, metadata, created_at, updated_at, ttl, expires_at, manifest_blob, "
        "producer) VALUES (?, ?, ?, 'COMMITTED', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            row["id"], coll["id"], row["number"], row["digest"], row["size"],
            row["file_count"], row["description"], row["metadata"], created, created, ttl,
            None if ttl is None else created + int(ttl * 1_000_000), manifest_digest,
            row["producer"],
        ),
    )
    catalog.put_entries(row["id"], rows)
    catalog.add_tags(row["id"], row["tags"])
    catalog.execute(
        "UPDATE collections SET next_number = MAX(next_number, ?) WHERE id = ?",
        (row["number"] + 1, coll["id"]),
    )


def _commit(parts: Parts, items: list[Incoming], *, renumber: bool, force: bool,
            result: Result) -> None:
    catalog, blobs = parts.catalog, parts.blobs
    with catalog.write_txn():
        for item in items:
            doc = item.doc
            coll = catalog.get_collection(doc["collection"])
            if coll is not None and coll["type"] != doc["type"]:
                raise VersionConflictError(
                    f"collection {doc['collection']!r} here has type {coll['type']!r}, the "
                    f"incoming one {doc['type']!r}", ref=doc["collection"])
            if not item.present and coll is not None:
                holder = catalog.execute(
                    "SELECT id FROM versions WHERE collection_id = ? AND number = ?",
                    (coll["id"], doc["number"])).fetchone()
                if holder is not None and not renumber:
                    raise VersionConflictError(
                        f"{doc['collection']}:v{doc['number']} is already a different version "
                        f"here ({holder[0]}); pass renumber=True to import it as the next "
                        "number", ref=f"{doc['collection']}:v{doc['number']}")
            for alias in item.aliases:
                if coll is None:
                    continue
                now = catalog.version_by_alias(coll["id"], alias)
                if now is not None and now["id"] != doc["id"] and not force:
                    raise AliasConflictError(
                        f"alias {doc['collection']}:{alias} here points at "
                        f"v{now['number']}; pass force=True to move it",
                        alias=alias, ref=f"{doc['collection']}:{alias}")
        for item in items:
            doc = item.doc
            if not item.present:
                row = {**doc, "metadata": json.dumps(doc["metadata"], sort_keys=True)}
                coll = catalog.ensure_collection(doc["collection"], doc["type"])
                taken = catalog.execute(
                    "SELECT 1 FROM versions WHERE collection_id = ? AND number = ?",
                    (coll["id"], doc["number"])).fetchone()
                if taken:
                    row["number"] = max(
                        int(catalog.execute(
                            "SELECT COALESCE(MAX(number), -1) + 1 FROM versions "
                            "WHERE collection_id = ?", (coll["id"],)).fetchone()[0]),
                        int(coll["next_number"]))
                document = encode_manifest(row, doc["tags"], item.rows)
                staged = blobs.stage_bytes(document, sync=blobs.durable)
                blobs.publish(staged)
                parts.markers.write(doc["id"], str(staged.digest))
                _faults.point("import.markers_written")
                _insert(catalog, coll, str(staged.digest), {**row, "tags": doc["tags"]},
                        item.rows)
                doc["number"] = row["number"]
            coll = catalog.get_collection(doc["collection"])
            assert coll is not None
            for alias in item.aliases:
                catalog.set_alias(coll["id"], alias, doc["id"])
            catalog.repoint_latest(coll["id"])
            result.versions.append(f"{doc['collection']}:v{doc['number']}")
