"""Manifest markers: ``manifests/<version id>`` names the blob holding a version's document.

A blob's bytes are whatever a user added, so a blob that *looks* like a version document
proves nothing (a user can upload one). A marker is a file only castore writes, at finalize,
before the catalogue commit; rebuild and repair trust a version document only through its
marker, and gc keeps every version a marker names that the catalogue does not account for
(like a dangling commit that git keeps), so a lost or rolled-back catalogue never lets gc
delete what a rebuild needs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from castore.storage.fsutil import durable_write

__all__ = ["ManifestMarkers"]

_VERSION_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_DIGEST = re.compile(r"^[a-z0-9-]+:[0-9a-f]{16,128}$")


class ManifestMarkers:
    """The ``manifests/`` directory of a store."""

    def __init__(self, directory: Path, *, durable: bool = True) -> None:
        self.directory = directory
        self.durable = durable

    def write(self, version_id: str, manifest_digest: str) -> None:
        """Record that ``manifest_digest`` holds the document of ``version_id``."""
        if not _VERSION_ID.match(version_id) or not _DIGEST.match(manifest_digest):
            raise ValueError(f"bad marker {version_id!r} -> {manifest_digest!r}")
        self.directory.mkdir(exist_ok=True)
        durable_write(
            self.directory / version_id, f"{manifest_digest}\n".encode(), durable=self.durable
        )

    def remove(self, version_id: str) -> bool:
        """Drop the marker of ``version_id``; False if there was none."""
        if not _VERSION_ID.match(version_id):
            return False
        try:
            os.unlink(self.directory / version_id)
        except FileNotFoundError:
            return False
        return True

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """``(version id, manifest digest)`` of every well-formed marker."""
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return
        for entry in entries:
            if not _VERSION_ID.match(entry.name) or not entry.is_file(follow_symlinks=False):
                continue
            try:
                with open(entry.path, "rb") as fh:
                    text = fh.read(256).decode("ascii", "replace").strip()
            except OSError:
                continue
            if _DIGEST.match(text):
                yield entry.name, text

    def exists(self) -> bool:
        """True when the directory exists (stores made before markers have none)."""
        return self.directory.is_dir()

    def any(self) -> bool:
        """True when at least one marker is present."""
        return next(iter(self), None) is not None
