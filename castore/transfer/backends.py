"""Which backend serves a remote URL (the directory remote now; S3 and OCI registries join
here, each fitting :class:`castore.transfer.remote.Remote`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from castore.errors import ConfigurationError
from castore.transfer.directory import DirectoryRemote
from castore.transfer.remote import Remote

__all__ = ["open_remote"]


def open_remote(url: str, options: dict[str, Any] | None = None) -> Remote:
    """The remote at ``url``: a directory path or ``file://`` URL (S3 and OCI come later).

    Raises:
        ConfigurationError: a scheme castore cannot reach (yet), naming it.
    """
    options = dict(options or {})
    if url.startswith("file://"):
        return DirectoryRemote(Path(url.removeprefix("file://")))
    scheme, sep, _ = url.partition("://")
    if (sep and scheme.isalnum()) or scheme in ("oci+http",):
        raise ConfigurationError(
            f"remote {url!r}: the {scheme}:// backend is not available in this castore; "
            "use a directory path"
        )
    return DirectoryRemote(Path(os.path.expanduser(url)))
