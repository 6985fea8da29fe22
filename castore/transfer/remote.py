"""The one protocol every remote backend fits: blobs by sha256, manifests, refs by CAS.

A remote holds what a bundle holds (``oci.py``): blobs named by sha256, image manifests and
named refs (``collection:vN``, ``collection:alias``) pointing at manifests. The directory
remote implements it now; the S3 and OCI-registry backends implement the same methods:

- blobs: :meth:`Remote.has_blob`, :meth:`Remote.put_blob` (streams; the backend checks size
  and sha256 before the blob counts as stored), :meth:`Remote.open_blob` (streams; ``offset``
  for a ranged read, which a backend may serve by skipping);
- manifests: :meth:`Remote.put_manifest` / :meth:`Remote.get_manifest` by sha256 (a registry
  keeps them apart from blobs, a layout does not);
- refs: :meth:`Remote.list_refs`, :meth:`Remote.get_ref` returns the current target and a
  token, :meth:`Remote.set_ref` writes only if the token still matches (S3 conditional writes,
  a lock on a directory, a registry's digest check before the tag PUT) and returns False
  otherwise. The token is opaque to callers.
"""

from __future__ import annotations

from typing import Any, BinaryIO, Protocol, runtime_checkable

from castore.transfer.oci import Descriptor

__all__ = ["RefToken", "Remote"]

#: What :meth:`Remote.get_ref` hands out and :meth:`Remote.set_ref` checks (opaque).
RefToken = Any


@runtime_checkable
class Remote(Protocol):
    """A place versions are pushed to and pulled from."""

    url: str

    def has_blob(self, digest: str, size: int) -> bool:
        """True when the blob ``sha256:…`` of ``size`` bytes is stored."""
        ...

    def put_blob(self, digest: str, size: int, stream: BinaryIO) -> None:
        """Store ``size`` bytes read from ``stream`` as ``digest``, checking both on arrival.

        Raises:
            BundleError: the bytes do not match ``digest`` or ``size`` (nothing is stored).
        """
        ...

    def open_blob(self, digest: str, size: int, *, offset: int = 0) -> BinaryIO:
        """A reader of the blob's bytes from ``offset`` (the caller checks the digest).

        Raises:
            RemoteError: the remote does not hold the blob.
        """
        ...

    def put_manifest(self, data: bytes) -> Descriptor:
        """Store an image manifest; return its descriptor."""
        ...

    def get_manifest(self, digest: str) -> bytes:
        """The bytes of the manifest ``digest`` (checked against it)."""
        ...

    def list_refs(self) -> dict[str, Descriptor]:
        """Every ref name and the manifest it names."""
        ...

    def get_ref(self, name: str) -> tuple[Descriptor | None, RefToken]:
        """The manifest ``name`` names (None when absent) and a token for :meth:`set_ref`."""
        ...

    def set_ref(self, name: str, target: Descriptor, token: RefToken) -> bool:
        """Point ``name`` at ``target`` if it is unchanged since ``token``; False otherwise."""
        ...

    def close(self) -> None:
        """Release connections and locks."""
        ...
