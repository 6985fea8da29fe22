"""Which backend serves a remote URL: the directory remote, S3 and OCI registries, each
fitting :class:`castore.transfer.remote.Remote` (the remote backends import lazily)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from castore.errors import ConfigurationError
from castore.transfer.directory import DirectoryRemote
from castore.transfer.remote import Remote

__all__ = ["open_remote"]


def _pick(options: dict[str, Any], url: str, known: tuple[str, ...]) -> dict[str, Any]:
    unknown = sorted(k for k, v in options.items() if k not in known and v is not None)
    if unknown:
        raise ConfigurationError(
            f"remote {url!r}: unknown option(s) {', '.join(unknown)} (this kind of remote "
            f"takes {', '.join(known)})"
        )
    return {k: v for k, v in options.items() if v is not None}


def open_remote(url: str, options: dict[str, Any] | None = None) -> Remote:
    """The remote at ``url``: ``s3://bucket/prefix`` (:mod:`castore.transfer.s3`),
    ``oci://host[:port]/repository`` or ``oci+http://`` (:mod:`castore.transfer.registry`),
    or a directory path or ``file://`` URL.

    Raises:
        ConfigurationError: a scheme castore cannot reach (yet), naming it.
    """
    options = dict(options or {})
    if url.startswith("s3://"):
        from castore.transfer.s3 import S3Remote

        return S3Remote(url, **_pick(options, url, ("endpoint", "region", "retries", "parallel")))
    if url.startswith(("oci://", "oci+http://")):
        from castore.transfer.registry import RegistryRemote

        known = ("username", "password", "retries", "parallel")
        return RegistryRemote(url, **_pick(options, url, known))
    if url.startswith("file://"):
        return DirectoryRemote(Path(url.removeprefix("file://")))
    scheme, sep, _ = url.partition("://")
    if (sep and scheme.isalnum()) or scheme in ("oci+http",):
        raise ConfigurationError(
            f"remote {url!r}: the {scheme}:// backend is not available in this castore; "
            "use a directory path"
        )
    return DirectoryRemote(Path(os.path.expanduser(url)))
