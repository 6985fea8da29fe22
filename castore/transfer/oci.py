"""The OCI image-layout vocabulary castore writes and reads, and the checks of what it reads.

A version is one OCI image manifest (``artifactType`` :data:`ARTIFACT_TYPE`) whose config is
``{"castore_version": <the version document of castore.manifest>}``, plus ``"runs"`` (run
records) and ``"run_edges"`` (their edges to this version) when runs produced or used it
(:class:`RunRecords`, from ``index.runs.export_run_records``), and whose layers are the
version's files (one file per layer, titled by its path with ``org.opencontainers.image.title``)
or tar layers grouping small files. ``index.json`` names
each manifest with ``org.opencontainers.image.ref.name`` ``collection:vN`` or
``collection:alias``. Every JSON document read from outside is size-capped and validated here.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, BinaryIO, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from castore.errors import BundleError, InvalidReferenceError
from castore.refs import validate_alias, validate_name

__all__ = [
    "ANN_COLLECTION",
    "ANN_CREATED",
    "ANN_DIGEST",
    "ANN_GROUP",
    "ANN_ID",
    "ANN_NUMBER",
    "ANN_REF_NAME",
    "ANN_TITLE",
    "ARTIFACT_TYPE",
    "CONFIG_TYPE",
    "EMPTY_JSON",
    "EMPTY_TYPE",
    "FILE_TYPE",
    "GROUP_TYPE",
    "INDEX_TYPE",
    "LAYOUT_DOC",
    "MANIFEST_TYPE",
    "MAX_JSON",
    "MAX_RUN_RECORDS",
    "Descriptor",
    "EdgeRecord",
    "ImageIndex",
    "ImageManifest",
    "LayoutFile",
    "RunRecord",
    "RunRecords",
    "Sha256Reader",
    "dumps",
    "is_sha256",
    "parse_json",
    "ref_name",
    "split_ref_name",
]

ARTIFACT_TYPE = "application/vnd.castore.version.v1+json"
CONFIG_TYPE = ARTIFACT_TYPE
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
#: A layer holding one file's bytes as they are (``oras pull`` writes it under its title).
FILE_TYPE = "application/octet-stream"
#: A layer grouping small files: a plain POSIX tar of regular files named by path.
GROUP_TYPE = "application/vnd.oci.image.layer.v1.tar"
ANN_TITLE = "org.opencontainers.image.title"
ANN_REF_NAME = "org.opencontainers.image.ref.name"
ANN_CREATED = "org.opencontainers.image.created"
ANN_ID = "vnd.castore.version.id"
ANN_NUMBER = "vnd.castore.version.number"
ANN_COLLECTION = "vnd.castore.collection"
ANN_DIGEST = "vnd.castore.version.digest"
ANN_GROUP = "vnd.castore.group"
#: The image-spec's empty descriptor content, the one layer of a version without files.
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"
LAYOUT_DOC = b'{"imageLayoutVersion":"1.0.0"}'
#: Largest JSON document read from a bundle or remote (the common registry manifest limit).
MAX_JSON = 4 * 1024 * 1024
#: Largest config (the version document lists every file: 20,000 files fit many times over).
MAX_CONFIG = 256 * 1024 * 1024

#: Most runs (and most edges) one version's config may carry.
MAX_RUN_RECORDS = 10_000
#: Largest metadata or summary of one carried run, as JSON.
MAX_RUN_JSON = 1024 * 1024

_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")


def is_sha256(digest: str) -> bool:
    """True for ``sha256:<64 lowercase hex>``."""
    return bool(_SHA256.match(digest))


class _Doc(BaseModel):
    # OCI documents may carry fields castore does not use (extensions): keep them out of the
    # way, but type-check every field castore reads.
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class Descriptor(_Doc):
    """An OCI content descriptor."""

    mediaType: str = Field(min_length=1, max_length=255)
    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    size: int = Field(ge=0)
    annotations: dict[str, str] | None = None
    artifactType: str | None = None

    def note(self, key: str) -> str | None:
        """An annotation's value, or None."""
        return (self.annotations or {}).get(key)

    def as_json(self) -> dict[str, Any]:
        """The descriptor as it is written (None fields left out)."""
        return self.model_dump(exclude_none=True)


class ImageManifest(_Doc):
    """An OCI image manifest (the fields castore reads)."""

    schemaVersion: Literal[2]
    mediaType: Literal["application/vnd.oci.image.manifest.v1+json"] | None = None
    artifactType: str | None = None
    config: Descriptor
    layers: list[Descriptor]
    annotations: dict[str, str] | None = None


class ImageIndex(_Doc):
    """An OCI image index (``index.json``)."""

    schemaVersion: Literal[2]
    mediaType: Literal["application/vnd.oci.image.index.v1+json"] | None = None
    manifests: list[Descriptor]


class LayoutFile(_Doc):
    """The ``oci-layout`` file."""

    imageLayoutVersion: Literal["1.0.0"]


_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


class _Strict(BaseModel):
    # castore's own records: every field known, every type exact (no coercion).
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class RunRecord(_Strict):
    """One run a bundle carries (a row of ``runs``; states as stored at export)."""

    id: str = Field(pattern=_UUID)
    name: str = Field(min_length=1, max_length=255)
    state: Literal["RUNNING", "FINISHED", "FAILED", "CRASHED"]
    metadata: dict[str, Any]
    summary: dict[str, Any]
    host: str | None = Field(default=None, max_length=255)
    pid: int | None = Field(default=None, ge=0, le=2**31)
    process_start: str | None = Field(default=None, max_length=255)
    started_at: int = Field(ge=0, le=2**62)
    ended_at: int | None = Field(default=None, ge=0, le=2**62)
    error: str | None = Field(default=None, max_length=64 * 1024)

    @field_validator("metadata", "summary")
    @classmethod
    def _capped(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            size = len(json.dumps(value, allow_nan=False))
        except (TypeError, ValueError):
            raise ValueError("is not plain JSON") from None
        if size > MAX_RUN_JSON:
            raise ValueError(f"is {size} bytes of JSON, over the {MAX_RUN_JSON} byte limit")
        return value


class EdgeRecord(_Strict):
    """One lineage edge a bundle carries: ``used`` (version -> run) or ``produced``."""

    run_id: str = Field(pattern=_UUID)
    version_id: str = Field(pattern=_UUID)
    kind: Literal["used", "produced"]
    at: int = Field(ge=0, le=2**62)
    collection: str | None = Field(default=None, max_length=255)
    number: int | None = Field(default=None, ge=0, le=2**62)


class RunRecords(_Strict):
    """The runs and edges in a version's config; :meth:`check` ties them to the version."""

    runs: list[RunRecord] = Field(default_factory=list, max_length=MAX_RUN_RECORDS)
    edges: list[EdgeRecord] = Field(default_factory=list, max_length=MAX_RUN_RECORDS)

    def check(self, version_id: str, what: str) -> None:
        """Raise :class:`BundleError` unless every edge touches ``version_id``, names a run
        carried here, and no run both used and produced the version."""
        runs = {r.id for r in self.runs}
        if len(runs) != len(self.runs):
            raise BundleError(f"{what} lists a run twice")
        kinds: dict[str, set[str]] = {}
        for edge in self.edges:
            if edge.version_id != version_id:
                raise BundleError(f"{what} has an edge to version {edge.version_id}, not to "
                                  f"its own version {version_id}")
            if edge.run_id not in runs:
                raise BundleError(f"{what} has an edge from run {edge.run_id}, which it does "
                                  "not carry")
            kinds.setdefault(edge.run_id, set()).add(edge.kind)
        if any(len(k) > 1 for k in kinds.values()):
            raise BundleError(f"{what} says a run both used and produced its version (a "
                              "cycle)")
        if sum(e.kind == "produced" for e in self.edges) > 1:
            raise BundleError(f"{what} gives its version two producers")

    def as_records(self) -> dict[str, Any]:
        """The form ``index.runs.import_run_records`` takes."""
        return {"runs": [r.model_dump() for r in self.runs],
                "edges": [e.model_dump() for e in self.edges]}


def parse_json(data: bytes, model: type[Any], what: str, *, cap: int = MAX_JSON) -> Any:
    """Validate a JSON document read from outside against ``model``.

    Raises:
        BundleError: over ``cap`` bytes, not JSON, or not the expected document (naming
            ``what``).
    """
    if len(data) > cap:
        raise BundleError(f"{what} is {len(data)} bytes, over the {cap} byte limit")
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise BundleError(f"{what} is not a valid document: {where}: {first['msg']}") from None


def ref_name(collection: str, selector: str) -> str:
    """The ``org.opencontainers.image.ref.name`` of a version: ``collection:vN`` or ``:alias``."""
    return f"{collection}:{selector}"


def split_ref_name(name: str) -> tuple[str, int | None, str | None] | None:
    """``(collection, number, alias)`` of a ref name castore wrote, or None for another one."""
    collection, sep, selector = name.partition(":")
    if not sep:
        return None
    try:
        validate_name(collection)
        if re.fullmatch(r"v(0|[1-9][0-9]{0,17})", selector):
            return collection, int(selector[1:]), None
        return collection, None, validate_alias(selector)
    except InvalidReferenceError:
        return None


class Sha256Reader:
    """Reads ``source`` up to ``size`` bytes, hashing with sha256; :meth:`check` at the end.

    Reading past ``size`` raises at once (a bigger member cannot fill the disk).
    """

    def __init__(self, source: BinaryIO, size: int, digest: str, what: str) -> None:
        self._source = source
        self._left = size
        self._size = size
        self._digest = digest
        self._what = what
        self._hasher = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        n = self._left if n < 0 else min(n, self._left)
        data = self._source.read(n)
        self._left -= len(data)
        self._hasher.update(data)
        return data

    def readinto(self, buffer: memoryview | bytearray) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def check(self) -> None:
        """Raise :class:`BundleError` unless exactly ``size`` bytes with the digest were read."""
        if self._left > 0:
            raise BundleError(
                f"{self._what} is truncated: {self._size - self._left} of {self._size} bytes"
            )
        got = "sha256:" + self._hasher.hexdigest()
        if got != self._digest:
            raise BundleError(
                f"{self._what} does not match its digest: its content hashes to {got}"
            )


def dumps(document: dict[str, Any]) -> bytes:
    """Canonical JSON of a document castore writes (sorted keys, no whitespace)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
