"""castore: a local-first, content-addressed artifact store.

Example:
    >>> import castore, tempfile
    >>> store = castore.open(tempfile.mkdtemp())
    >>> store.close()

Public names are imported on first use, so ``import castore`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it; resolved lazily by __getattr__ (PEP 562).
_LAZY: dict[str, str] = {
    "AliasConflictError": "castore.errors",
    "AliasEvent": "castore.models",
    "ArtifactFinalizedError": "castore.errors",
    "ArtifactVersion": "castore.handles.version",
    "AsyncArtifactVersion": "castore.aio",
    "AsyncCollection": "castore.aio",
    "AsyncDraft": "castore.aio",
    "AsyncReader": "castore.aio",
    "AsyncStore": "castore.aio",
    "BlobStat": "castore.models",
    "BundleError": "castore.errors",
    "CastoreError": "castore.errors",
    "CatalogCorruptError": "castore.errors",
    "Collection": "castore.handles.collection",
    "CompressionConfig": "castore.models",
    "ConfigurationError": "castore.errors",
    "Diff": "castore.models",
    "DiffEntry": "castore.models",
    "Draft": "castore.handles.version",
    "Edge": "castore.models",
    "Digest": "castore.digest",
    "FileChangedError": "castore.errors",
    "Finding": "castore.models",
    "FsckReport": "castore.models",
    "GCReport": "castore.models",
    "HashCollisionError": "castore.errors",
    "IntegrityError": "castore.errors",
    "InvalidPathError": "castore.errors",
    "InvalidReferenceError": "castore.errors",
    "Leftover": "castore.models",
    "Lineage": "castore.handles.lineage",
    "LockTimeoutError": "castore.errors",
    "Manifest": "castore.models",
    "Materializer": "castore.objects",
    "MaterializerError": "castore.errors",
    "ManifestEntry": "castore.models",
    "MultipleResourcesFoundError": "castore.errors",
    "NotFoundError": "castore.errors",
    "OutOfSpaceError": "castore.errors",
    "Page": "castore.models",
    "PruneReport": "castore.models",
    "RemoteInfo": "castore.models",
    "RemoteVersion": "castore.models",
    "TransferReport": "castore.models",
    "ReadOnlyStoreError": "castore.errors",
    "RemoteError": "castore.errors",
    "Run": "castore.handles.run",
    "RunError": "castore.errors",
    "Store": "castore.store",
    "StoreConfig": "castore.models",
    "StoreDamagedError": "castore.errors",
    "StoreNotFoundError": "castore.errors",
    "StoreStats": "castore.models",
    "TypeInfo": "castore.models",
    "UnsafeTargetError": "castore.errors",
    "UnsupportedFormatError": "castore.errors",
    "VerificationError": "castore.errors",
    "VerifyReport": "castore.models",
    "VersionConflictError": "castore.errors",
    "init": "castore.store",
    "open": "castore.store",
    "register_materializer": "castore.objects",
    "open_async": "castore.aio",
    "repair": "castore.store",
}

__all__ = sorted([*_LAZY, "__version__"])

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from castore.aio import AsyncArtifactVersion as AsyncArtifactVersion
    from castore.aio import AsyncCollection as AsyncCollection
    from castore.aio import AsyncDraft as AsyncDraft
    from castore.aio import AsyncReader as AsyncReader
    from castore.aio import AsyncStore as AsyncStore
    from castore.aio import open_async as open_async
    from castore.digest import Digest
    from castore.errors import *  # noqa: F403
    from castore.handles.collection import Collection as Collection
    from castore.handles.lineage import Lineage as Lineage
    from castore.handles.run import Run as Run
    from castore.handles.version import ArtifactVersion as ArtifactVersion
    from castore.handles.version import Draft as Draft
    from castore.models import *  # noqa: F403
    from castore.objects import Materializer, register_materializer
    from castore.store import Store as Store
    from castore.store import init as init
    from castore.store import open as open  # noqa: A004
    from castore.store import repair as repair


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'castore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
