"""``castore.__all__`` is sorted, importable, and covers every name API.md promises."""

from __future__ import annotations

import subprocess
import sys

import castore

# Every public name of ../shared/API.md that is importable from castore.
API_NAMES = {
    "open",
    "init",
    "Store",
    "CastoreError",
    "StoreNotFoundError",
    "NotFoundError",
    "MultipleResourcesFoundError",
    "InvalidReferenceError",
    "InvalidPathError",
    "ArtifactFinalizedError",
    "AliasConflictError",
    "VersionConflictError",
    "VerificationError",
    "IntegrityError",
    "HashCollisionError",
    "UnsafeTargetError",
    "OutOfSpaceError",
    "ReadOnlyStoreError",
    "BundleError",
    "RemoteError",
    "LockTimeoutError",
    "ConfigurationError",
    "UnsupportedFormatError",
    "ManifestEntry",
    "Manifest",
    "VerifyReport",
    "GCReport",
    "PruneReport",
    "FsckReport",
    "Finding",
    "StoreStats",
    "Diff",
    "Page",
    "TypeInfo",
    "register_materializer",
    "Run",
    "RunError",
    "Lineage",
    "Edge",
}


def test_all_is_sorted_and_unique() -> None:
    assert castore.__all__ == sorted(set(castore.__all__))


def test_all_covers_api_md() -> None:
    missing = API_NAMES - set(castore.__all__)
    assert not missing, f"API.md names missing from castore.__all__: {sorted(missing)}"


def test_every_name_in_all_resolves() -> None:
    for name in castore.__all__:
        assert getattr(castore, name) is not None, name


def test_error_tree() -> None:
    for name in castore.__all__:
        obj = getattr(castore, name)
        if isinstance(obj, type) and name.endswith("Error"):
            assert issubclass(obj, castore.CastoreError), name
    assert issubclass(castore.NotFoundError, KeyError)
    assert issubclass(castore.InvalidPathError, ValueError)
    assert issubclass(castore.VerificationError, ValueError)
    assert issubclass(castore.HashCollisionError, castore.IntegrityError)


def test_import_is_lazy() -> None:
    code = (
        "import sys, castore; "
        "heavy = [m for m in ('pydantic', 'sqlite_utils', 'zstandard') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
