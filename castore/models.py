"""Records: frozen pydantic models returned by the public API.

Handles with behaviour (``Store``, ``Draft``, ``ArtifactVersion``, ``Collection``, ``Run``) are
plain classes elsewhere; everything here is a value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AliasEvent",
    "BlobStat",
    "CompressionConfig",
    "Diff",
    "DiffEntry",
    "Edge",
    "Finding",
    "FsckReport",
    "GCReport",
    "Leftover",
    "Manifest",
    "ManifestEntry",
    "Page",
    "PruneReport",
    "RemoteInfo",
    "RemoteVersion",
    "StoreConfig",
    "StoreStats",
    "TransferReport",
    "TypeInfo",
    "VerifyReport",
]

T = TypeVar("T")

Codec = Literal["raw", "zstd"]
LinkMode = Literal["auto", "copy", "hardlink", "symlink", "reflink"]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class AliasEvent(_Record):
    """One move of an alias: at ``at`` (UTC), ``alias`` went from one version to another.

    ``from_version``/``to_version`` are references (``"mnist:v3"``); None when the alias was
    created or removed.
    """

    at: datetime
    alias: str
    from_version: str | None
    to_version: str | None


#: A blob is stored compressed when zstd saves at least this fraction of it (the default).
DEFAULT_MIN_SAVING = 0.10


class CompressionConfig(_Record):
    """How a store compresses blobs: ``codec`` ``"zstd"`` or ``"none"``, at ``level``; a blob
    is kept compressed only when zstd saves at least ``min_saving`` of it (else it is stored
    raw, so checkout can link it or copy it in the kernel)."""

    codec: Literal["zstd", "none"] = "zstd"
    level: int = Field(default=3, ge=1, le=22)
    min_saving: float = Field(default=DEFAULT_MIN_SAVING, ge=0.0, le=1.0, allow_inf_nan=False)


class StoreConfig(_Record):
    """The contents of ``castore.json``: format version, store id, hash and compression."""

    format: int
    store_id: str
    hash: str
    compression: CompressionConfig
    created_at: datetime | None = None


class BlobStat(_Record):
    """What the blob store knows of one blob."""

    digest: str
    size: int
    stored_size: int
    codec: Codec


class ManifestEntry(_Record):
    """One file of a version: its path, content digest and size, and an optional external ref.

    ``executable`` is the file's executable bit (any ``x`` bit set when it was added), restored
    by checkout and download as git does.
    """

    path: str
    digest: str | None
    size: int
    ref: str | None = None
    executable: bool = False


class Manifest(_Record):
    """The sorted entries of a version and the digest over them."""

    entries: list[ManifestEntry]
    digest: str


class VerifyReport(_Record):
    """The difference between a directory and the version it should mirror."""

    ok: bool
    missing: list[str] = []
    modified: list[str] = []
    extra: list[str] = []


class DiffEntry(_Record):
    """A path that differs between two versions, with its size on each side."""

    path: str
    size_a: int | None = None
    size_b: int | None = None
    digest_a: str | None = None
    digest_b: str | None = None


class Diff(_Record):
    """What changed from version ``a`` to version ``b``."""

    a: str
    b: str
    added: list[DiffEntry] = []
    removed: list[DiffEntry] = []
    modified: list[DiffEntry] = []

    @property
    def empty(self) -> bool:
        """True when the two versions hold the same files."""
        return not (self.added or self.removed or self.modified)


class Leftover(_Record):
    """A temp file or an unfinished draft that holds space, and when gc removes it.

    ``due`` is when gc may remove it (in the past for what it removes now), or None while
    the draft's process still runs on this host; ``reason`` says why, in words.
    """

    kind: Literal["tmp_file", "draft"]
    name: str  # the temp file's path, or the draft's version id
    collection: str | None = None  # a draft's collection
    size: int = 0  # bytes: the temp file's, or the sum of the draft's files
    age: float = 0.0  # seconds since the temp file was written or the draft started
    due: datetime | None = None
    reason: str


class GCReport(_Record):
    """What a garbage collection removed (or, with ``dry_run``, would remove).

    ``leftovers_removed`` are the temp files and drafts swept now; ``leftovers_kept`` those
    still too young (or whose process still runs), with when a later gc removes them.
    """

    versions_deleted: list[str] = []
    blobs_deleted: int = 0
    bytes_freed: int = 0
    tmp_files_deleted: int = 0
    drafts_discarded: int = 0
    leftovers_removed: list[Leftover] = []
    leftovers_kept: list[Leftover] = []
    dry_run: bool = False
    #: blobs evicted under the budget (``set_budget``): a remote holds them, reads fetch them
    blobs_evicted: int = 0
    bytes_evicted: int = 0


class PruneReport(_Record):
    """The versions a prune deleted (or, with ``dry_run``, would delete)."""

    versions_deleted: list[str] = []
    dry_run: bool = False


FindingKind = Literal[
    "missing_blob",
    "corrupt_blob",
    "dangling_ref",
    "alias_to_missing",
    "catalogue_integrity",
    "orphan_blob",
    "stale_tmp",
    "stale_draft",
    "recent_tmp",
    "modified_link",
    "unknown_version",
    "missing_marker",
    "config_missing",
    "crashed_run",
    "evicted_blob",
]


class Edge(BaseModel):
    """One edge of a lineage graph: ``"produced"`` (run -> version) or ``"used"``
    (version -> run). ``source`` and ``target`` are the node handles (``Run`` or
    ``ArtifactVersion``) of the same :class:`~castore.Lineage`."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", arbitrary_types_allowed=True, defer_build=True
    )

    source: Any
    target: Any
    kind: Literal["produced", "used"]


class Finding(_Record):
    """One problem found by ``fsck``."""

    kind: FindingKind
    severity: Literal["error", "warning", "info"]
    digest: str | None = None
    path: str | None = None
    ref: str | None = None
    message: str
    repaired: bool = False
    size: int | None = None  # bytes held (temp files, drafts)
    age: float | None = None  # seconds (temp files, drafts)


class FsckReport(_Record):
    """The findings of ``fsck``; ``ok`` is False only when there is an error."""

    ok: bool
    findings: list[Finding] = []
    repaired: bool = False


class StoreStats(_Record):
    """Counts and sizes of a store."""

    collections: int
    versions: int
    blobs: int
    logical_bytes: int
    stored_bytes: int
    dedup_ratio: float
    #: blobs the versions need that are stored only on a remote (evicted under the budget)
    remote_only_blobs: int = 0
    remote_only_bytes: int = 0
    #: the budget on ``stored_bytes`` (``set_budget``), or None
    budget: int | None = None


class TypeInfo(_Record):
    """A collection type with how many collections and versions use it."""

    name: str
    collections: int
    versions: int


class TransferReport(_Record):
    """What an export, import, push or pull moved.

    ``versions`` are the references of the versions carried (``"mnist:v3"``). "Blobs" are file
    contents (not manifests or configs); "sent" means written to the other side (for import
    and pull: into this store), "skipped" means the other side already held them.
    """

    versions: list[str] = []
    blobs_sent: int = 0
    bytes_sent: int = 0
    blobs_skipped: int = 0
    bytes_skipped: int = 0
    seconds: float = 0.0


class RemoteVersion(_Record):
    """A version a remote holds: its reference, id, castore artifact digest and aliases."""

    ref: str
    id: str
    digest: str
    aliases: list[str] = []


class RemoteInfo(_Record):
    """A named remote of the store (``store.remotes``): its URL and connection options."""

    name: str
    url: str
    options: dict[str, Any] = {}


class Page(BaseModel, Generic[T]):
    """One page of a listing: ``items`` and where they sit in the ``total``."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, defer_build=True)

    items: list[T]
    total: int
    limit: int | None
    offset: int
    has_more: bool

    def __iter__(self) -> Any:  # iterate the items, not the fields
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)
