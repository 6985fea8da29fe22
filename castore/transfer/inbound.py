"""Pulling from a remote: a :class:`~castore.transfer.landing.Source` over its blobs."""

from __future__ import annotations

from castore._parts import Parts
from castore.errors import BundleError
from castore.storage.blobs import StagedBlob
from castore.transfer.landing import Source
from castore.transfer.oci import MANIFEST_TYPE, Descriptor, Sha256Reader
from castore.transfer.remote import Remote

__all__ = ["remote_source"]


def remote_source(parts: Parts, remote: Remote) -> Source:
    """Read JSON documents and stage layers from ``remote``, each checked against its sha256."""

    def read_json(desc: Descriptor, cap: int) -> bytes:
        if desc.size > cap:
            raise BundleError(f"{desc.digest} on remote {remote.url} is {desc.size} bytes, "
                              f"over the {cap} byte limit")
        if desc.mediaType == MANIFEST_TYPE:
            return remote.get_manifest(desc.digest)
        with remote.open_blob(desc.digest, desc.size) as fh:
            reader = Sha256Reader(fh, desc.size, desc.digest,
                                  f"blob {desc.digest} on remote {remote.url}")
            data = reader.read(desc.size)
            reader.check()
        return data

    def stage(desc: Descriptor) -> StagedBlob:
        with remote.open_blob(desc.digest, desc.size) as fh:
            reader = Sha256Reader(fh, desc.size, desc.digest,
                                  f"blob {desc.digest} on remote {remote.url}")
            staged = parts.blobs.stage_stream(reader, size=desc.size,  # type: ignore[arg-type]
                                              sync=False)
            try:
                reader.check()
            except BaseException:
                parts.blobs.discard(staged)
                raise
        return staged

    return Source(f"remote {remote.url}", read_json, stage)
