"""Versions to OCI manifests and blobs, and sending them to a sink (export and push).

:func:`plan` turns committed versions into image manifests: the config is the version
document (``castore.manifest.encode_manifest``, with the current tags, ``link_source`` and
``materializer``) with the runs that produced or used the version (``runs``, ``run_edges``), the
layers the files.
sha256 digests come from the catalogue's ``blob_sha256`` table; a blob missing there is read
once, hashed, and remembered. A version of more than :data:`MAX_FILE_LAYERS` files groups its
files under :data:`SMALL` bytes into tar layers (built in a temp file, hashed as written), so a
manifest stays under 4 MiB. :func:`send` moves what the sink lacks, then the refs.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from castore import _faults
from castore._parts import Parts
from castore._progress import Progress, ProgressArg
from castore.errors import AliasConflictError, BundleError, VersionConflictError
from castore.manifest import ManifestRow, artifact_digest, encode_manifest
from castore.refs import LATEST
from castore.storage.hashing import CHUNK_SIZE
from castore.transfer.oci import (
    ANN_COLLECTION,
    ANN_CREATED,
    ANN_DIGEST,
    ANN_GROUP,
    ANN_ID,
    ANN_NUMBER,
    ANN_TITLE,
    ARTIFACT_TYPE,
    CONFIG_TYPE,
    EMPTY_JSON,
    EMPTY_TYPE,
    FILE_TYPE,
    GROUP_TYPE,
    MANIFEST_TYPE,
    MAX_JSON,
    Descriptor,
    dumps,
    split_ref_name,
)
from castore.transfer.remote import Remote

__all__ = ["Counts", "Layer", "Planned", "plan", "send"]

MAX_FILE_LAYERS = 1000
SMALL = 1024 * 1024
GROUP_BYTES = 64 * 1024 * 1024
GROUP_FILES = 10_000


@dataclass
class Layer:
    """One layer: a file's blob, a tar of small files, a config or the empty descriptor."""

    desc: Descriptor
    digest: str | None = None  # the castore digest of a file layer
    rows: list[ManifestRow] = field(default_factory=list)  # a group's members
    data: bytes | None = None  # a config's or the empty layer's bytes
    files: int = 1


@dataclass
class Planned:
    """A version as an OCI manifest, its layers and the refs to point at it."""

    row: dict[str, Any]
    ref: str
    manifest: bytes
    desc: Descriptor
    config: Layer
    layers: list[Layer]


@dataclass
class Counts:
    """Blobs (file contents) sent and skipped."""

    blobs_sent: int = 0
    bytes_sent: int = 0
    blobs_skipped: int = 0
    bytes_skipped: int = 0


def _sha256_of(parts: Parts, digests: set[str]) -> dict[str, tuple[str, int]]:
    known = parts.catalog.known_sha256(digests)
    new: list[tuple[str, str, int]] = []
    for digest in sorted(digests - known.keys()):
        hasher = hashlib.sha256()
        size = 0
        with parts.blobs.open(digest) as fh:
            while chunk := fh.read1(CHUNK_SIZE):
                hasher.update(chunk)
                size += len(chunk)
        known[digest] = (hasher.hexdigest(), size)
        new.append((digest, hasher.hexdigest(), size))
    if new and not parts.read_only:
        parts.catalog.remember_sha256(new)
    return known


def _tarinfo(path: str, size: int, executable: bool) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path)
    info.size = size
    info.mode = 0o755 if executable else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class _HashingWriter(io.RawIOBase):
    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.hasher = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.hasher.update(data)
        self.size += len(data)
        return self.fh.write(data)


def write_group(parts: Parts, rows: list[ManifestRow], out: BinaryIO) -> tuple[str, int]:
    """Write the tar layer of ``rows`` (deterministic) to ``out``; return its sha256 and size."""
    writer = _HashingWriter(out)
    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for path, digest, size, _ref, executable in rows:
            assert digest is not None
            with parts.blobs.open(digest, size=size) as fh:
                tar.addfile(_tarinfo(path, size, executable), fh)
    return writer.hasher.hexdigest(), writer.size


def _groups(rows: list[ManifestRow]) -> tuple[list[ManifestRow], list[list[ManifestRow]]]:
    stored = [r for r in rows if r[3] is None]
    if len(stored) <= MAX_FILE_LAYERS:
        return stored, []
    singles = [r for r in stored if r[2] >= SMALL]
    groups: list[list[ManifestRow]] = [[]]
    used = 0
    for r in (r for r in stored if r[2] < SMALL):
        if groups[-1] and (used + r[2] > GROUP_BYTES or len(groups[-1]) >= GROUP_FILES):
            groups.append([])
            used = 0
        groups[-1].append(r)
        used += r[2]
    return singles, [g for g in groups if g]


def _layer_desc(media: str, sha: str, size: int, notes: dict[str, str]) -> Descriptor:
    return Descriptor(mediaType=media, digest="sha256:" + sha, size=size, annotations=notes)


def _config(document: bytes, records: dict[str, Any]) -> bytes:
    """The config of a version: its document, and the runs that produced or used it.

    A version no run touched gets ``{"castore_version": ...}`` alone (the bytes castore wrote
    before runs travelled, so its manifest digest is unchanged and a push of it resends
    nothing).
    """
    if not records["edges"]:
        return b'{"castore_version":' + document + b"}"
    return (b'{"castore_version":' + document + b',"run_edges":' + dumps(records["edges"])
            + b',"runs":' + dumps(records["runs"]) + b"}")


def plan(parts: Parts, rows: list[dict[str, Any]]) -> list[Planned]:
    """The manifests of the committed versions ``rows`` (catalogue rows)."""
    catalog = parts.catalog
    planned = []
    for row in rows:
        entries: list[ManifestRow] = [
            (p, d, s, r, bool(x)) for p, d, s, r, x in catalog.iter_entries(row["id"])
        ]
        document = encode_manifest(row, catalog.tags_of(row["id"]), entries)
        config_bytes = _config(document, catalog.export_run_records([row["id"]]))
        config = Layer(
            Descriptor(
                mediaType=CONFIG_TYPE,
                digest="sha256:" + hashlib.sha256(config_bytes).hexdigest(),
                size=len(config_bytes),
            ),
            data=config_bytes,
        )
        singles, groups = _groups(entries)
        shas = _sha256_of(parts, {str(r[1]) for r in singles})
        layers = [
            Layer(
                _layer_desc(FILE_TYPE, shas[str(r[1])][0], r[2], {ANN_TITLE: r[0]}),
                digest=r[1],
            )
            for r in singles
        ]
        for number, group in enumerate(groups):
            key = "group:" + artifact_digest(parts.algorithm, group)
            cached = catalog.known_sha256([key]).get(key)
            if cached is None:
                with open(os.devnull, "wb") as sink:
                    sha, size = write_group(parts, group, sink)
                if not parts.read_only:
                    catalog.remember_sha256([(key, sha, size)])
            else:
                sha, size = cached
            title = f".castore/group-{number:05d}.tar"
            notes = {ANN_TITLE: title, ANN_GROUP: str(len(group))}
            layers.append(Layer(_layer_desc(GROUP_TYPE, sha, size, notes), rows=group,
                                files=len(group)))
        if not layers:
            empty = hashlib.sha256(EMPTY_JSON).hexdigest()
            layers.append(Layer(_layer_desc(EMPTY_TYPE, empty, len(EMPTY_JSON), {}),
                                data=EMPTY_JSON, files=0))
        notes = {
            ANN_ID: row["id"],
            ANN_COLLECTION: row["collection"],
            ANN_NUMBER: str(row["number"]),
            ANN_DIGEST: row["digest"],
            ANN_CREATED: datetime.fromtimestamp(row["created_at"] / 1e6, tz=UTC).isoformat(),
        }
        manifest = dumps({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "artifactType": ARTIFACT_TYPE,
            "config": config.desc.as_json(),
            "layers": [layer.desc.as_json() for layer in layers],
            "annotations": notes,
        })
        if len(manifest) > MAX_JSON:
            raise BundleError(
                f"the manifest of {row['collection']}:v{row['number']} would be "
                f"{len(manifest)} bytes, over the 4 MiB registries accept"
            )
        desc = Descriptor(
            mediaType=MANIFEST_TYPE,
            digest="sha256:" + hashlib.sha256(manifest).hexdigest(),
            size=len(manifest),
            artifactType=ARTIFACT_TYPE,
            annotations={k: notes[k] for k in (ANN_ID, ANN_COLLECTION, ANN_NUMBER, ANN_DIGEST)},
        )
        planned.append(Planned(row, f"{row['collection']}:v{row['number']}", manifest, desc,
                               config, layers))
    return planned


def _open_layer(parts: Parts, layer: Layer, scratch: list[Path]) -> BinaryIO:
    if layer.data is not None:
        return io.BytesIO(layer.data)
    if layer.digest is not None:
        parts.ensure_local([(layer.digest, layer.desc.size)])  # evicted under a budget
        return parts.blobs.open(layer.digest, size=layer.desc.size)
    parts.ensure_local((r[1], r[2]) for r in layer.rows)
    fd, name = tempfile.mkstemp(prefix="castore-group-", suffix=".tar")
    scratch.append(Path(name))
    with os.fdopen(fd, "wb") as out:
        sha, _ = write_group(parts, layer.rows, out)
    if "sha256:" + sha != layer.desc.digest:
        raise BundleError(f"tar layer {layer.desc.digest} came out differently ({sha})")
    return open(name, "rb")


def _send_blob(parts: Parts, sink: Remote, layer: Layer, counts: Counts, bar: Progress,
               lock: threading.Lock) -> None:
    size, content = layer.desc.size, layer.data is None
    if sink.has_blob(layer.desc.digest, size):
        if content:
            with lock:
                counts.blobs_skipped += layer.files
                counts.bytes_skipped += size
                bar.add(size)
        return
    scratch: list[Path] = []
    try:
        with _open_layer(parts, layer, scratch) as fh:
            sink.put_blob(layer.desc.digest, size, fh)
    finally:
        for path in scratch:
            path.unlink(missing_ok=True)
    if content:
        with lock:
            counts.blobs_sent += layer.files
            counts.bytes_sent += size
            bar.add(size)
        _faults.point("push.blob_sent")


def _send_all(parts: Parts, sink: Remote, layers: list[Layer], counts: Counts, bar: Progress,
              lock: threading.Lock) -> None:
    """Send ``layers`` the sink lacks: in order, or on a bounded pool when the sink says it
    takes ``parallel`` uploads at once (object stores and registries; never a tar)."""
    workers = max(1, int(getattr(sink, "parallel", 1)))
    if workers == 1 or len(layers) < 2:
        for layer in layers:
            _send_blob(parts, sink, layer, counts, bar, lock)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="castore-push") as pool:
        futures = [pool.submit(_send_blob, parts, sink, layer, counts, bar, lock)
                   for layer in layers]
        try:
            for future in futures:
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def refs_for(planned: list[Planned], aliases: dict[str, list[str]]) -> dict[str, Planned]:
    """Ref name -> version: ``collection:vN`` for each, ``collection:alias`` as asked."""
    names: dict[str, Planned] = {}
    for p in planned:
        names[p.ref] = p
        for alias in aliases.get(p.row["id"], []):
            names[f"{p.row['collection']}:{alias}"] = p
    return names


def _move_ref(sink: Remote, name: str, p: Planned, *, force: bool) -> None:
    parsed = split_ref_name(name)
    for _ in range(20):
        current, token = sink.get_ref(name)
        if current is not None:
            if current.digest == p.desc.digest:
                return
            other = current.note(ANN_ID)
            if other != p.row["id"] and parsed is not None:
                if parsed[1] is not None:
                    raise VersionConflictError(
                        f"remote {sink.url} holds another version as {name} (id {other}); "
                        "pull it, or renumber locally", ref=name,
                    )
                if parsed[2] == LATEST:
                    theirs = current.note(ANN_NUMBER)
                    if theirs is not None and theirs.isdigit() and int(theirs) > p.row["number"]:
                        return  # latest only moves forward
                elif not force:
                    raise AliasConflictError(
                        f"alias {name} on remote {sink.url} points at another version "
                        f"(v{current.note(ANN_NUMBER)}); pass force=True to move it",
                        alias=parsed[2], ref=name,
                    )
        if sink.set_ref(name, p.desc, token):
            return
    raise AliasConflictError(f"ref {name} on remote {sink.url} kept changing; try again",
                             ref=name)


def send(
    parts: Parts,
    sink: Remote,
    planned: list[Planned],
    refs: dict[str, Planned],
    *,
    force: bool,
    progress: ProgressArg,
) -> Counts:
    """Send the blobs the sink lacks, then every manifest, then move the refs (by CAS)."""
    counts = Counts()
    total = sum(layer.desc.size for p in planned for layer in p.layers if layer.data is None)
    bar = Progress(progress, total)
    sent: set[str] = set()
    lock = threading.Lock()
    pending: list[Planned] = []
    todo: list[Layer] = []
    for p in planned:
        if sink.has_blob(p.desc.digest, p.desc.size):  # unchanged version: skip every layer
            for layer in p.layers:
                if layer.data is None and layer.desc.digest not in sent:
                    counts.blobs_skipped += layer.files
                    counts.bytes_skipped += layer.desc.size
                    bar.add(layer.desc.size)
                    sent.add(layer.desc.digest)
            continue
        for layer in [*p.layers, p.config]:
            if layer.desc.digest in sent:
                continue
            todo.append(layer)
            sent.add(layer.desc.digest)
        pending.append(p)
    _send_all(parts, sink, todo, counts, bar, lock)
    for p in pending:  # a manifest only once all its layers are there
        sink.put_manifest(p.manifest)
    _faults.point("push.manifests_sent")
    for name, p in sorted(refs.items()):
        _move_ref(sink, name, p, force=force)
    bar.finish()
    return counts


def iter_names(planned: list[Planned]) -> Iterator[str]:
    """The references of the planned versions."""
    return (p.ref for p in planned)
