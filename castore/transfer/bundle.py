"""The bundle: an OCI image layout in a tar file, written streaming, read as hostile input.

Writing (:class:`TarSink`, a :class:`~castore.transfer.remote.Remote` for :func:`send`): the
tar goes to ``<path>.partial`` member by member (``oci-layout`` first, blobs as they come,
``index.json`` last) and is renamed into place only when whole.

Reading (:func:`stage_bundle`): the tar is iterated in streaming mode (``r|``), never
extracted. Only regular files named ``oci-layout``, ``index.json`` and
``blobs/sha256/<64 hex>`` are read (plus the directory entries ``blobs/`` and
``blobs/sha256/`` some writers add); links, devices, ``..``, absolute, duplicate and unknown
names raise :class:`BundleError` naming the member. Each blob is staged into the store's
``tmp/`` while its size and sha256 are checked.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from pathlib import Path
from typing import IO, BinaryIO

from castore._parts import Parts
from castore.errors import BundleError
from castore.storage.blobs import StagedBlob
from castore.storage.fsutil import fsync_dir
from castore.transfer.landing import Source
from castore.transfer.oci import (
    ANN_REF_NAME,
    INDEX_TYPE,
    LAYOUT_DOC,
    MANIFEST_TYPE,
    MAX_JSON,
    Descriptor,
    ImageIndex,
    LayoutFile,
    Sha256Reader,
    dumps,
    parse_json,
)
from castore.transfer.remote import RefToken

__all__ = ["TarSink", "stage_bundle"]

_BLOB = re.compile(r"^blobs/sha256/([0-9a-f]{64})$")
_DIRS = frozenset({".", "blobs", "blobs/sha256"})


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    return info


class TarSink:
    """Writes an OCI layout into a tar file; refs are gathered and written at :meth:`finish`."""

    def __init__(self, path: Path, *, durable: bool = True) -> None:
        self.path = Path(path)
        self.url = str(self.path)
        self.durable = durable
        self._partial = self.path.with_name(self.path.name + ".partial")
        self._fh = open(self._partial, "wb")  # noqa: SIM115 - closed in finish or abort
        self._tar = tarfile.open(  # noqa: SIM115 - closed in finish
            fileobj=self._fh, mode="w|", format=tarfile.USTAR_FORMAT
        )
        self._written: set[str] = set()
        self._refs: dict[str, Descriptor] = {}
        self._tar.addfile(_info("oci-layout", len(LAYOUT_DOC)), io.BytesIO(LAYOUT_DOC))

    def has_blob(self, digest: str, size: int) -> bool:
        return digest in self._written

    def put_blob(self, digest: str, size: int, stream: BinaryIO) -> None:
        name = "blobs/sha256/" + digest.removeprefix("sha256:")
        reader = Sha256Reader(stream, size, digest, f"blob {digest}")
        self._tar.addfile(_info(name, size), reader)
        reader.check()
        self._written.add(digest)

    def open_blob(self, digest: str, size: int, *, offset: int = 0) -> BinaryIO:
        raise BundleError("a bundle being written cannot be read")

    def put_manifest(self, data: bytes) -> Descriptor:
        import hashlib

        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if digest not in self._written:
            self.put_blob(digest, len(data), io.BytesIO(data))
        return Descriptor(mediaType=MANIFEST_TYPE, digest=digest, size=len(data))

    def get_manifest(self, digest: str) -> bytes:
        raise BundleError("a bundle being written cannot be read")

    def list_refs(self) -> dict[str, Descriptor]:
        return dict(self._refs)

    def get_ref(self, name: str) -> tuple[Descriptor | None, RefToken]:
        current = self._refs.get(name)
        return current, (current.digest if current else None)

    def set_ref(self, name: str, target: Descriptor, token: RefToken) -> bool:
        annotations = {**(target.annotations or {}), ANN_REF_NAME: name}
        self._refs[name] = target.model_copy(update={"annotations": annotations})
        return True

    def finish(self) -> None:
        """Write ``index.json``, close the tar and move it into place."""
        index = dumps({
            "schemaVersion": 2,
            "mediaType": INDEX_TYPE,
            "manifests": [d.as_json() for _, d in sorted(self._refs.items())],
        })
        self._tar.addfile(_info("index.json", len(index)), io.BytesIO(index))
        self._tar.close()
        if self.durable:
            self._fh.flush()
            os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self._partial, self.path)
        if self.durable:
            fsync_dir(self.path.parent)

    def abort(self) -> None:
        """Drop the partial tar."""
        try:
            self._fh.close()
        finally:
            self._partial.unlink(missing_ok=True)

    def close(self) -> None:
        pass


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"a symbolic link to {member.linkname!r}"
    if member.islnk():
        return f"a hard link to {member.linkname!r}"
    if member.isdir():
        return "a directory"
    if member.ischr() or member.isblk():
        return "a device"
    if member.isfifo():
        return "a FIFO"
    return f"of tar type {member.type!r}"


def _read_capped(fh: IO[bytes] | None, size: int, name: str) -> bytes:
    if size > MAX_JSON or fh is None:
        raise BundleError(f"bundle member {name!r} is {size} bytes, over the {MAX_JSON} limit")
    return fh.read(size)


def stage_bundle(parts: Parts, path: Path) -> tuple[list[Descriptor], dict[str, StagedBlob]]:
    """Stream the bundle's members: check names and kinds, stage every blob (sha256 checked).

    Returns:
        The descriptors of ``index.json`` and the staged blobs by sha256 digest; the caller
        publishes or discards them.
    """
    staged: dict[str, StagedBlob] = {}
    seen: set[str] = set()
    index: bytes | None = None
    layout = False
    try:
        with open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
            for member in tar:
                name = member.name
                if name.startswith("/") or ".." in name.split("/"):
                    raise BundleError(f"bundle member {name!r} has an unsafe name")
                bare = name.rstrip("/")
                if member.isdir() and bare in _DIRS:
                    continue
                if bare in seen:
                    raise BundleError(f"bundle member {name!r} appears twice")
                seen.add(bare)
                known = name in ("oci-layout", "index.json") or _BLOB.match(name)
                if not known:
                    raise BundleError(
                        f"bundle member {name!r} is not part of an OCI image layout (only "
                        "oci-layout, index.json and blobs/sha256/<sha256> are accepted)"
                    )
                if not member.isreg():
                    raise BundleError(f"bundle member {name!r} is {_kind(member)}: only "
                                      "regular files are accepted")
                body = tar.extractfile(member)
                if name == "oci-layout":
                    parse_json(_read_capped(body, member.size, name), LayoutFile,
                               "bundle member 'oci-layout'", cap=1 << 16)
                    layout = True
                elif name == "index.json":
                    index = _read_capped(body, member.size, name)
                else:
                    assert body is not None
                    digest = "sha256:" + name.rsplit("/", 1)[1]
                    reader = Sha256Reader(body, member.size,  # type: ignore[arg-type]
                                           digest, f"bundle member {name!r}")
                    blob = parts.blobs.stage_stream(reader, size=member.size,  # type: ignore[arg-type]
                                                    sync=False)
                    try:
                        reader.check()
                    except BaseException:
                        parts.blobs.discard(blob)
                        raise
                    staged[digest] = blob
    except tarfile.TarError as exc:
        for blob in staged.values():
            parts.blobs.discard(blob)
        raise BundleError(f"{path} is not a readable tar file: {exc}") from None
    except BaseException:
        for blob in staged.values():
            parts.blobs.discard(blob)
        raise
    try:
        if not layout:
            raise BundleError(f"{path} is not an OCI image layout: no 'oci-layout' member")
        if index is None:
            raise BundleError(f"{path} is not an OCI image layout: no 'index.json' member")
        manifests = parse_json(index, ImageIndex, "bundle member 'index.json'").manifests
    except BaseException:
        for blob in staged.values():
            parts.blobs.discard(blob)
        raise
    return list(manifests), staged


def bundle_source(parts: Parts, path: Path, staged: dict[str, StagedBlob]) -> Source:
    """A :class:`Source` over the staged blobs of a bundle."""
    taken: set[str] = set()

    def blob(desc: Descriptor) -> StagedBlob:
        found = staged.get(desc.digest)
        if found is None:
            raise BundleError(f"bundle {path} lacks blob {desc.digest}")
        if found.size != desc.size:
            raise BundleError(f"bundle member 'blobs/sha256/{desc.digest[7:]}' has "
                              f"{found.size} bytes, its descriptor says {desc.size}")
        return found

    def read_json(desc: Descriptor, cap: int) -> bytes:
        found = blob(desc)
        if found.size > cap:
            raise BundleError(f"bundle member 'blobs/sha256/{desc.digest[7:]}' is "
                              f"{found.size} bytes, over the {cap} byte limit")
        with parts.blobs.open_staged(found) as fh:
            return fh.read()

    def stage(desc: Descriptor) -> StagedBlob:
        found = blob(desc)
        if desc.digest in taken:  # one blob under two paths: publish it once, keep a copy
            with parts.blobs.open_staged(found) as fh:
                return parts.blobs.stage_stream(fh, size=found.size, sync=False)
        taken.add(desc.digest)
        return found

    return Source(f"bundle {path}", read_json, stage)
