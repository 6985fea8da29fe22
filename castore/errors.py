"""Errors raised by castore.

Every error derives from :class:`CastoreError`. Leaves also inherit the built-in they mean, so
``except KeyError`` still catches a missing version. Each error carries the offending values as
attributes and builds its own message::

    CastoreError
    ├── StoreNotFoundError
    ├── NotFoundError (KeyError)
    ├── MultipleResourcesFoundError
    ├── InvalidReferenceError (ValueError)
    ├── InvalidPathError (ValueError)
    ├── ArtifactFinalizedError
    ├── AliasConflictError
    ├── VersionConflictError
    ├── VerificationError (ValueError)
    ├── IntegrityError
    │   ├── HashCollisionError
    │   ├── CatalogCorruptError
    │   └── StoreDamagedError
    ├── UnsafeTargetError
    ├── OutOfSpaceError (OSError)
    ├── ReadOnlyStoreError
    ├── BundleError
    ├── RemoteError
    ├── LockTimeoutError (TimeoutError)
    ├── ConfigurationError
    ├── UnsupportedFormatError
    ├── FileChangedError
    ├── MaterializerError (TypeError)
    └── RunError
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from castore.models import VerifyReport

__all__ = [
    "AliasConflictError",
    "ArtifactFinalizedError",
    "BundleError",
    "CastoreError",
    "CatalogCorruptError",
    "ConfigurationError",
    "FileChangedError",
    "HashCollisionError",
    "IntegrityError",
    "InvalidPathError",
    "InvalidReferenceError",
    "LockTimeoutError",
    "MaterializerError",
    "MultipleResourcesFoundError",
    "NotFoundError",
    "OutOfSpaceError",
    "ReadOnlyStoreError",
    "RemoteError",
    "RunError",
    "StoreNotFoundError",
    "UnsafeTargetError",
    "UnsupportedFormatError",
    "VerificationError",
    "VersionConflictError",
]


class CastoreError(Exception):
    """Base class of every error castore raises."""

    def __init__(self, message: str, **values: Any) -> None:
        super().__init__(message)
        self.message = message
        for key, value in values.items():
            setattr(self, key, value)

    def __str__(self) -> str:
        return self.message


class StoreNotFoundError(CastoreError):
    """There is no castore store at ``path``."""

    def __init__(self, path: object, message: str | None = None) -> None:
        super().__init__(
            message
            or f"no castore store at {str(path)!r} (create one with castore.init() "
            "or open it with create=True)",
            path=path,
        )


class NotFoundError(CastoreError, KeyError):
    """Nothing matches the reference, name or path asked for."""

    def __init__(self, message: str, *, ref: object = None) -> None:
        super().__init__(message, ref=ref)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class MultipleResourcesFoundError(CastoreError):
    """A reference (such as a digest prefix) matches more than one thing."""

    def __init__(self, message: str, *, ref: object = None, matches: list[str] | None = None):
        super().__init__(message, ref=ref, matches=list(matches or []))


class InvalidReferenceError(CastoreError, ValueError):
    """A reference string or name is malformed."""

    def __init__(self, message: str, *, ref: object = None) -> None:
        super().__init__(message, ref=ref)


class InvalidPathError(CastoreError, ValueError):
    """A path inside an artifact is not a canonical POSIX relative path."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"invalid artifact path {path!r}: {reason}", path=path, reason=reason)


class ArtifactFinalizedError(CastoreError):
    """A finalized draft was asked to change."""

    def __init__(self, collection: str, message: str | None = None) -> None:
        super().__init__(
            message
            or f"the draft of {collection!r} is already finalized; start a new one with "
            "store.draft() or version.new_draft()",
            collection=collection,
        )


class AliasConflictError(CastoreError):
    """An alias is in the way of the operation (it would move, or it guards a version)."""

    def __init__(self, message: str, *, alias: str | None = None, ref: str | None = None):
        super().__init__(message, alias=alias, ref=ref)


class VersionConflictError(CastoreError):
    """A version number is already held by a different version."""

    def __init__(self, message: str, *, ref: str | None = None) -> None:
        super().__init__(message, ref=ref)


class VerificationError(CastoreError, ValueError):
    """A directory does not match the version it should mirror; ``damaged`` names the files
    among them whose stored content is damaged too (checkout cannot restore those)."""

    def __init__(
        self,
        message: str,
        *,
        report: VerifyReport | None = None,
        damaged: list[str] | None = None,
    ) -> None:
        super().__init__(message, report=report, damaged=list(damaged or []))


class IntegrityError(CastoreError):
    """Stored data does not match its digest or size."""

    def __init__(
        self,
        message: str,
        *,
        digest: str | None = None,
        paths: list[str] | None = None,
    ) -> None:
        super().__init__(message, digest=digest, paths=list(paths or []))


class HashCollisionError(IntegrityError):
    """Two different contents arrived under one digest."""


class StoreDamagedError(IntegrityError):
    """A file the store needs (``castore.json``, the catalogue) is lost or damaged;
    ``castore fsck --repair`` (``castore.repair()``) restores it from what the store holds."""

    def __init__(self, path: object, detail: str) -> None:
        CastoreError.__init__(
            self,
            f"the store at {str(path)!r} is damaged: {detail}. Nothing was changed; run "
            "`castore fsck --repair` (castore.repair(path) in Python) to restore it",
            digest=None,
            paths=[str(path)],
            path=path,
            detail=detail,
        )
        self.path = path
        self.detail = detail


class CatalogCorruptError(IntegrityError):
    """The catalogue database is damaged; ``fsck(repair=True)`` rebuilds it from the blobs."""

    def __init__(self, path: object, detail: str) -> None:
        CastoreError.__init__(
            self,
            f"the catalogue {str(path)!r} is damaged ({detail}); blobs are untouched. Run "
            "`castore fsck --repair` (castore.repair(path) in Python) to set it aside and "
            "rebuild it from the manifest blobs",
            digest=None,
            paths=[str(path)],
            path=path,
            detail=detail,
        )
        self.path = path
        self.detail = detail


class UnsafeTargetError(CastoreError):
    """A checkout target (or a directory to add) overlaps the store, or a write would leave
    its target or go through a link."""

    def __init__(self, message: str, *, path: object = None) -> None:
        super().__init__(message, path=path)


class OutOfSpaceError(CastoreError, OSError):
    """The disk (or the catalogue) is full; nothing was committed."""

    def __init__(self, message: str, *, path: object = None) -> None:
        CastoreError.__init__(self, message, path=path)


class ReadOnlyStoreError(CastoreError):
    """A write was asked of a store opened read-only or not writable."""

    def __init__(self, path: object, operation: str = "write") -> None:
        super().__init__(
            f"the store at {str(path)!r} is read-only: cannot {operation}",
            path=path,
            operation=operation,
        )


class BundleError(CastoreError):
    """A bundle is malformed, truncated or hostile."""


class RemoteError(CastoreError):
    """A remote could not be reached or answered wrongly."""


class LockTimeoutError(CastoreError, TimeoutError):
    """A lock (the catalogue's or the maintenance lock) was not granted in time."""

    def __init__(self, message: str, *, timeout: float | None = None) -> None:
        super().__init__(message, timeout=timeout)


class ConfigurationError(CastoreError):
    """Settings conflict with the store's (hash algorithm, compression) or are invalid."""


class UnsupportedFormatError(CastoreError):
    """A store, bundle or remote has a format this version of castore cannot read."""

    def __init__(self, message: str, *, found: object = None) -> None:
        super().__init__(message, found=found)


class FileChangedError(CastoreError):
    """A file changed while castore was reading it; nothing was stored for it."""

    def __init__(self, path: object, change: str = "changed") -> None:
        super().__init__(
            f"{str(path)!r} {change} while it was being added; nothing was stored for it "
            "(add it again once it is no longer being written)",
            path=path,
            change=change,
        )


class MaterializerError(CastoreError, TypeError):
    """No materializer can save (or load) this object, or one refused to (pickle).

    ``name`` is the materializer involved, if any; ``option`` the keyword that would allow
    what was refused (``"allow_pickle"``), if any.
    """

    def __init__(
        self, message: str, *, name: str | None = None, option: str | None = None
    ) -> None:
        super().__init__(message, name=name, option=option)


class RunError(CastoreError):
    """A run was asked to do what its state forbids: record an edge after it ended, take a
    name another run holds, or use a version that descends from its own outputs."""

    def __init__(self, message: str, *, run: str | None = None, state: str | None = None):
        super().__init__(message, run=run, state=state)
