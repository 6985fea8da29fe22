"""``UPath("castore://REF/PATH", store=...)``: universal_pathlib's path over the castore
filesystem (:mod:`castore.integrations.fsspec`). Registered through the
``universal_pathlib.implementations`` entry point, so UPath uses it without a fallback warning.
"""

from __future__ import annotations

try:
    from upath import UPath
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "castore paths need universal_pathlib: pip install 'castore[fsspec]' universal_pathlib"
    ) from exc

__all__ = ["CastorePath"]


class CastorePath(UPath):
    """A read-only path inside a store: the first segment is a reference string."""

    __slots__ = ()
