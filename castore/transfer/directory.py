"""The directory remote: an OCI image layout, untarred, on any path (a USB disk, a share).

Blobs arrive under a temporary name in ``blobs/sha256/``, are checked (size and sha256) while
they stream in, fsynced and renamed: a blob file under its final name is always whole, so an
interrupted push resumes by skipping the blobs already there. ``index.json`` changes only
under the lock ``index.json.lock`` (filelock), re-read inside it: a ref moves only if it still
points where the pusher last saw it (compare-and-swap).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from castore import _faults
from castore.errors import BundleError, RemoteError
from castore.storage.fsutil import fsync_dir, unique_tmp
from castore.storage.locking import StoreLock
from castore.transfer.oci import (
    ANN_REF_NAME,
    INDEX_TYPE,
    LAYOUT_DOC,
    MANIFEST_TYPE,
    Descriptor,
    ImageIndex,
    LayoutFile,
    Sha256Reader,
    dumps,
    is_sha256,
    parse_json,
)
from castore.transfer.remote import RefToken

__all__ = ["DirectoryRemote"]

_CHUNK = 1 << 20
_LOCK_TIMEOUT = 60.0


class DirectoryRemote:
    """An OCI image layout on a path, used as a remote (see the module docstring)."""

    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = Path(root)
        self.url = str(self.root)
        self.durable = durable
        self._blobs = self.root / "blobs" / "sha256"

    # -- layout --------------------------------------------------------------------------

    def _check_layout(self) -> None:
        layout = self.root / "oci-layout"
        if not layout.is_file():
            if not self.root.exists():
                raise RemoteError(f"remote {self.url}: no such directory", remote=self.url)
            raise RemoteError(
                f"remote {self.url}: not an OCI image layout (no oci-layout file)",
                remote=self.url,
            )
        parse_json(layout.read_bytes()[: 1 << 16], LayoutFile, f"{self.url}/oci-layout")

    def _create_layout(self) -> None:
        self._blobs.mkdir(parents=True, exist_ok=True)
        layout = self.root / "oci-layout"
        if not layout.exists():
            self._write_atomic(layout, LAYOUT_DOC)
        if not (self.root / "index.json").exists():
            with self._lock():
                if not (self.root / "index.json").exists():
                    self._write_index([])

    def _write_atomic(self, path: Path, data: bytes) -> None:
        tmp = unique_tmp(path.parent, suffix=".partial")
        with open(tmp, "wb") as fh:
            fh.write(data)
            if self.durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
        if self.durable:
            fsync_dir(path.parent)

    def _lock(self) -> StoreLock:
        self.root.mkdir(parents=True, exist_ok=True)
        return StoreLock(self.root, "index.json", timeout=_LOCK_TIMEOUT)

    def _path(self, digest: str) -> Path:
        if not is_sha256(digest):
            raise RemoteError(f"remote {self.url}: bad blob digest {digest!r}", remote=self.url)
        return self._blobs / digest.removeprefix("sha256:")

    # -- blobs ---------------------------------------------------------------------------

    def has_blob(self, digest: str, size: int) -> bool:
        try:
            return self._path(digest).stat().st_size == size
        except FileNotFoundError:
            return False

    def put_blob(self, digest: str, size: int, stream: BinaryIO) -> None:
        self._create_layout()
        final = self._path(digest)
        tmp = unique_tmp(self._blobs, suffix=".partial")
        reader = Sha256Reader(stream, size, digest, f"blob {digest} sent to {self.url}")
        try:
            with open(tmp, "wb") as fh:
                while chunk := reader.read(_CHUNK):
                    fh.write(chunk)
                reader.check()
                if self.durable:
                    fh.flush()
                    os.fsync(fh.fileno())
            _faults.point("remote.blob_written")
            os.replace(tmp, final)
            _faults.point("remote.blob_renamed")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def open_blob(self, digest: str, size: int, *, offset: int = 0) -> BinaryIO:
        try:
            fh = open(self._path(digest), "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            raise RemoteError(
                f"remote {self.url} lacks blob {digest}", remote=self.url
            ) from None
        if offset:
            fh.seek(offset)
        return fh

    # -- manifests -----------------------------------------------------------------------

    def put_manifest(self, data: bytes) -> Descriptor:
        import hashlib
        import io

        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.has_blob(digest, len(data)):
            self.put_blob(digest, len(data), io.BytesIO(data))
        return Descriptor(mediaType=MANIFEST_TYPE, digest=digest, size=len(data))

    def get_manifest(self, digest: str) -> bytes:
        import hashlib

        path = self._path(digest)
        try:
            with open(path, "rb") as fh:
                data = fh.read(4 * 1024 * 1024 + 1)
        except FileNotFoundError:
            raise RemoteError(
                f"remote {self.url} lacks manifest {digest}", remote=self.url
            ) from None
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise BundleError(f"manifest {digest} on remote {self.url} is damaged")
        return data

    # -- refs ----------------------------------------------------------------------------

    def _read_index(self) -> list[Descriptor]:
        path = self.root / "index.json"
        try:
            with open(path, "rb") as fh:
                data = fh.read(4 * 1024 * 1024 + 1)
        except FileNotFoundError:
            self._check_layout()
            return []
        return list(parse_json(data, ImageIndex, f"{self.url}/index.json").manifests)

    def _write_index(self, manifests: list[Descriptor]) -> None:
        doc = {
            "schemaVersion": 2,
            "mediaType": INDEX_TYPE,
            "manifests": [d.as_json() for d in manifests],
        }
        self._write_atomic(self.root / "index.json", dumps(doc))

    def list_refs(self) -> dict[str, Descriptor]:
        if not self.root.exists():
            raise RemoteError(f"remote {self.url}: no such directory", remote=self.url)
        refs: dict[str, Descriptor] = {}
        for desc in self._read_index():
            name = desc.note(ANN_REF_NAME)
            if name is not None:
                refs[name] = desc
        return refs

    def get_ref(self, name: str) -> tuple[Descriptor | None, RefToken]:
        current = self.list_refs().get(name) if self.root.exists() else None
        return current, (current.digest if current else None)

    def set_ref(self, name: str, target: Descriptor, token: RefToken) -> bool:
        self._create_layout()
        with self._lock():
            manifests = self._read_index()
            now = [d for d in manifests if d.note(ANN_REF_NAME) == name]
            if (now[0].digest if now else None) != token:
                return False
            annotations = {**(target.annotations or {}), ANN_REF_NAME: name}
            kept = [d for d in manifests if d.note(ANN_REF_NAME) != name]
            kept.append(target.model_copy(update={"annotations": annotations}))
            _faults.point("remote.ref_locked")
            self._write_index(kept)
        return True

    def close(self) -> None:
        pass
