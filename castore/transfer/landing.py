"""Incoming versions (import and pull), checked and committed all or nothing.

Every layer is staged into the store's ``tmp/`` (re-hashed with the store's algorithm while
its sha256 is checked), every version document is decoded with ``castore.manifest`` and every
file matched against it, and the run records of each config validated (``oci.RunRecords``),
before anything is published. Then the blobs are published and the versions land in two
transactions, the way finalize commits a draft:

1. each new version is inserted ``PENDING`` with its entries and tags and a ``drafts`` record
   naming this process (host and pid, which gc's stale-draft rule reads);
2. one transaction writes each version's document and marker, makes it ``COMMITTED`` with its
   id and number, sets its aliases, keeps a link a link when its source lands too or is here
   (otherwise it lands as the plain version its complete entries make it), and records the
   runs and edges its config carries (``index.runs.import_run_records``).

A crash or a full disk before the second COMMIT leaves the store's committed versions as they
were: at worst stale drafts (fsck warns; gc discards them with their markers) and orphan
blobs (which gc removes), never a marker of a version the catalogue does not know.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from castore import _faults, _process
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
    RunRecords,
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
    #: the runs and edges its config carries (``index.runs.import_run_records``'s input)
    runs: dict[str, Any] | None = None


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


def _runs(config: dict[str, Any], version_id: str, what: str) -> dict[str, Any] | None:
    """The run records a config carries, checked (hostile input), or None.

    Other top-level keys are ignored (docs/format.md: a later format may add some).
    """
    if "runs" not in config and "run_edges" not in config:
        return None
    try:
        records = RunRecords.model_validate(
            {"runs": config.get("runs", []), "edges": config.get("run_edges", [])})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise BundleError(f"{what} carries invalid run records: {where}: "
                          f"{first['msg']}") from None
    records.check(version_id, what)
    return records.as_records()


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
    doc["_runs"] = _runs(config, doc["id"], f"config {manifest.config.digest} of {source.what}")
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
            item = incoming[desc.digest] = Incoming(doc, desc, runs=doc.pop("_runs"))
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
    if existing is not None and not (existing["state"] == "PENDING"
                                     and _stale_draft(parts.catalog, doc["id"])):
        raise _held(doc, existing["state"])
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


def _check(catalog: Any, items: list[Incoming], *, renumber: bool, force: bool) -> None:
    """Raise the conflicts of type, number and alias the incoming versions meet here."""
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
            if holder is not None and holder[0] != doc["id"] and not renumber:
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


def _stale_draft(catalog: Any, version_id: str) -> bool:
    """True when ``version_id`` is pending here under a process that is gone (an import
    killed between its two transactions: gc would discard it)."""
    draft = catalog.one("SELECT pid, host FROM drafts WHERE version_id = ?", (version_id,))
    return draft is not None and _process.is_gone(draft["host"], draft["pid"], None)


def _held(doc: dict[str, Any], state: str) -> VersionConflictError:
    ref = f"{doc['collection']}:v{doc['number']}"
    why = ("pending here: an import in progress in a running process" if state == "PENDING"
           else f"{state.lower()} in this store")
    return VersionConflictError(
        f"version {doc['id']} ({ref}) is {why}; it cannot come back under the same id", ref=ref)


def _reserve(parts: Parts, items: list[Incoming], *, renumber: bool, force: bool) -> list[str]:
    """Insert the new versions as ``PENDING`` drafts of this process (one transaction).

    They exist before any marker names them, so a crash before the final COMMIT leaves stale
    drafts (gc discards them with their markers), never versions the catalogue does not know.

    Returns:
        The ids of the drafts inserted.
    """
    catalog = parts.catalog
    host, pid, _ = _process.current()
    reserved: list[str] = []
    with catalog.write_txn():
        _check(catalog, items, renumber=renumber, force=force)
        now = catalog.now()
        for item in items:
            doc = item.doc
            existing = catalog.get_version(doc["id"])
            if existing is not None and existing["state"] == "COMMITTED":
                item.present = True  # another import landed it meanwhile
                continue
            if existing is not None:
                if existing["state"] != "PENDING" or not _stale_draft(catalog, doc["id"]):
                    raise _held(doc, existing["state"])
                parts.markers.remove(doc["id"])  # left by a killed import, like gc does
                catalog.discard_draft(doc["id"])
            coll = catalog.ensure_collection(doc["collection"], doc["type"])
            created, ttl = doc["created_at"], doc["ttl"]
            catalog.execute(
                "INSERT INTO versions (id, collection_id, number, state, digest, size, "
                "file_count, description, metadata, created_at, updated_at, ttl, expires_at, "
                "producer, materializer) VALUES (?, ?, NULL, 'PENDING', ?, ?, ?, ?, ?, ?, ?, "
                "?, ?, ?, ?)",
                (
                    doc["id"], coll["id"], doc["digest"], doc["size"], doc["file_count"],
                    doc["description"], json.dumps(doc["metadata"], sort_keys=True), created,
                    created, ttl, None if ttl is None else created + int(ttl * 1_000_000),
                    doc["producer"], doc.get("materializer"),
                ),
            )
            catalog.put_entries(doc["id"], item.rows)
            catalog.add_tags(doc["id"], doc["tags"])
            catalog.execute(
                "INSERT INTO drafts (version_id, base_version, pid, host, created_at) "
                "VALUES (?, NULL, ?, ?, ?)", (doc["id"], pid, host, now))
            reserved.append(doc["id"])
    return reserved


def _link_source(catalog: Any, doc: dict[str, Any], incoming: dict[str, Incoming]) -> str | None:
    """The source to keep a link to: one that lands here too or is here, with its content.

    A link whose source is neither stays what its entries make it: a plain version.
    """
    source_id = doc.get("link_source")
    if not source_id or source_id == doc["id"]:
        return None
    item = incoming.get(source_id)
    if item is not None:
        if item.doc.get("link_source") or item.doc["digest"] != doc["digest"]:
            return None
        return str(source_id)
    row = catalog.live_version(source_id)
    if row is None or row["link_source"] or row["digest"] != doc["digest"]:
        return None
    return str(source_id)


def _commit(parts: Parts, items: list[Incoming], *, renumber: bool, force: bool,
            result: Result) -> None:
    """Reserve the versions as drafts, then commit them, their documents, markers, aliases
    and runs in one transaction; on an error, the drafts and markers go again."""
    catalog = parts.catalog
    reserved = _reserve(parts, items, renumber=renumber, force=force)
    try:
        _faults.point("import.reserved")
        _finish(parts, items, renumber=renumber, force=force, result=result)
    except BaseException:
        with catalog.write_txn():
            for version_id in reserved:
                parts.markers.remove(version_id)
                catalog.discard_draft(version_id)
        raise


def _finish(parts: Parts, items: list[Incoming], *, renumber: bool, force: bool,
            result: Result) -> None:
    catalog, blobs = parts.catalog, parts.blobs
    by_id = {item.doc["id"]: item for item in items}
    with catalog.write_txn():
        _check(catalog, items, renumber=renumber, force=force)  # things may have moved since
        for item in items:
            doc = item.doc
            coll = catalog.get_collection(doc["collection"])
            assert coll is not None
            if not item.present:
                pending = catalog.get_version(doc["id"])
                if pending is None or pending["state"] != "PENDING":
                    raise VersionConflictError(
                        f"the incoming draft {doc['id']} of {doc['collection']!r} was "
                        "discarded meanwhile (by gc?); import again",
                        ref=f"{doc['collection']}:v{doc['number']}")
                number = doc["number"]
                if catalog.execute("SELECT 1 FROM versions WHERE collection_id = ? AND "
                                   "number = ?", (coll["id"], number)).fetchone():
                    number = max(
                        int(catalog.execute(
                            "SELECT COALESCE(MAX(number), -1) + 1 FROM versions "
                            "WHERE collection_id = ?", (coll["id"],)).fetchone()[0]),
                        int(coll["next_number"]))
                link = _link_source(catalog, doc, by_id)
                row = {**doc, "number": number, "link_source": link,
                       "metadata": json.dumps(doc["metadata"], sort_keys=True)}
                document = encode_manifest(row, doc["tags"], item.rows)
                staged = blobs.stage_bytes(document, sync=blobs.durable)
                blobs.publish(staged)
                parts.markers.write(doc["id"], str(staged.digest))
                _faults.point("import.markers_written")
                catalog.execute(
                    "UPDATE versions SET state = 'COMMITTED', number = ?, link_source = ?, "
                    "manifest_blob = ? WHERE id = ?",
                    (number, link, str(staged.digest), doc["id"]))
                catalog.execute("DELETE FROM drafts WHERE version_id = ?", (doc["id"],))
                catalog.execute(
                    "UPDATE collections SET next_number = MAX(next_number, ?) WHERE id = ?",
                    (number + 1, coll["id"]))
                doc["number"] = number
            for alias in item.aliases:
                catalog.set_alias(coll["id"], alias, doc["id"])
            catalog.repoint_latest(coll["id"])
            result.versions.append(f"{doc['collection']}:v{doc['number']}")
        for item in items:  # every version is in: edges between them can land
            if item.runs is not None:
                catalog.import_run_records(item.runs)
