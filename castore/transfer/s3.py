"""The S3 remote: ``s3://bucket/prefix`` on AWS S3 or any S3-compatible store, through obstore.

Layout under the prefix (``docs/format.md``): the directory remote's OCI layout, except that
refs are one small object each instead of one ``index.json``::

    oci-layout                         {"imageLayoutVersion":"1.0.0"}
    blobs/sha256/<hex>                 blobs, configs and manifests, named by sha256
    refs/<collection>/<selector>       the manifest descriptor a ref names (JSON)

Object storage has no lock, but it has conditional writes, and they work per object: with one
object per ref, each ref moves by its own compare-and-swap (``If-None-Match: *`` to create,
``If-Match: <etag>`` to move: obstore's ``put(mode="create")`` and ``UpdateVersion``), so two
machines pushing different collections never contend, and two moving the same alias cannot
both win. A blob object appears only when its upload completes (S3 writes are atomic, and a
multipart upload whose stream fails its sha256 check is aborted), so an interrupted push
resumes by skipping what is there.

Large blobs go up in multipart uploads of :data:`CHUNK` bytes (at most :data:`PART_THREADS`
parts in flight), blobs in parallel on the pusher's bounded pool (:attr:`S3Remote.parallel`):
memory stays bounded. obstore retries network faults and 5xx answers with exponential backoff
(``retries`` times, default :data:`RETRIES`); what still fails raises :class:`RemoteError`
naming the remote and the object.
"""

from __future__ import annotations

import hashlib
import io
import os
from datetime import timedelta
from typing import Any, BinaryIO, cast

from castore.errors import BundleError, ConfigurationError, RemoteError
from castore.transfer.chunks import ChunkReader
from castore.transfer.oci import (
    ANN_REF_NAME,
    LAYOUT_DOC,
    MANIFEST_TYPE,
    MAX_JSON,
    Descriptor,
    Sha256Reader,
    dumps,
    is_sha256,
    parse_json,
    split_ref_name,
)
from castore.transfer.remote import RefToken

__all__ = ["CHUNK", "PART_THREADS", "RETRIES", "S3Remote", "parse_s3_url"]

CHUNK = 8 * 1024 * 1024
PART_THREADS = 2
RETRIES = 5
_REF_CAP = 64 * 1024


def parse_s3_url(url: str) -> tuple[str, str]:
    """``(bucket, prefix)`` of ``s3://bucket/prefix``."""
    rest = url.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ConfigurationError(f"remote {url!r}: an S3 URL is s3://bucket[/prefix]")
    return bucket, prefix.strip("/")


def _obstore() -> Any:
    try:
        import obstore
    except ImportError:
        raise ImportError(
            "s3:// remotes need obstore: pip install 'castore[s3]'"
        ) from None
    return obstore


class S3Remote:
    """An S3 bucket prefix used as a remote (see the module docstring).

    Args:
        url: ``s3://bucket/prefix``.
        endpoint: an S3-compatible endpoint (``http://127.0.0.1:9000`` for MinIO); default
            ``AWS_ENDPOINT_URL`` or AWS itself.
        region: the region; default ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` or ``us-east-1``.
        retries: how many times a failed request is retried (with backoff).
        parallel: blobs uploaded at once by a push.
    """

    def __init__(self, url: str, *, endpoint: str | None = None, region: str | None = None,
                 retries: int = RETRIES, parallel: int = 8, timeout: float = 300.0) -> None:
        obstore = _obstore()
        from obstore.store import S3Store

        self.url = url.rstrip("/")
        self.parallel = parallel
        bucket, prefix = parse_s3_url(self.url)
        config: dict[str, Any] = {}
        endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or \
            os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            config["endpoint"] = endpoint
        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            config["region"] = region
        client: dict[str, Any] = {
            "connect_timeout": timedelta(seconds=10), "timeout": timedelta(seconds=timeout),
        }
        if endpoint and endpoint.startswith("http://"):
            client["allow_http"] = True
        retry = {
            "max_retries": int(retries),
            "retry_timeout": timedelta(seconds=60),
            "backoff": {"init_backoff": timedelta(milliseconds=100),
                        "max_backoff": timedelta(seconds=5), "base": 2},
        }
        try:
            self._store = S3Store(bucket, prefix=prefix or None, config=cast(Any, config),
                                  client_options=cast(Any, client),
                                  retry_config=cast(Any, retry))
        except obstore.exceptions.BaseError as exc:
            raise ConfigurationError(f"remote {self.url}: {exc}") from exc
        self._obstore = obstore
        self._errors = obstore.exceptions
        # obstore raises the builtin FileNotFoundError for a missing object
        self._missing = (obstore.exceptions.NotFoundError, FileNotFoundError)

    # -- helpers -------------------------------------------------------------------------

    def _fail(self, what: str, exc: BaseException) -> RemoteError:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return RemoteError(f"remote {self.url}: {what} failed: {first}", remote=self.url)

    def _blob_key(self, digest: str) -> str:
        if not is_sha256(digest):
            raise RemoteError(f"remote {self.url}: bad blob digest {digest!r}", remote=self.url)
        return "blobs/sha256/" + digest.removeprefix("sha256:")

    def _ref_key(self, name: str) -> str:
        parsed = split_ref_name(name)
        if parsed is None:
            raise RemoteError(f"remote {self.url}: {name!r} is not a castore ref name",
                              remote=self.url)
        collection, _, selector = name.partition(":")
        return f"refs/{collection}/{selector}"

    def _get_small(self, key: str, cap: int) -> tuple[bytes, str | None] | None:
        try:
            result = self._obstore.get(self._store, key)
        except self._missing:
            return None
        except self._errors.BaseError as exc:
            raise self._fail(f"reading {key}", exc) from exc
        meta = result.meta
        if meta["size"] > cap:
            raise BundleError(f"{key} on remote {self.url} is {meta['size']} bytes, over the "
                              f"{cap} byte limit")
        try:
            data = bytes(result.bytes())
        except self._errors.BaseError as exc:
            raise self._fail(f"reading {key}", exc) from exc
        return data, meta.get("e_tag")

    def _layout_written(self) -> None:
        try:
            self._obstore.put(self._store, "oci-layout", LAYOUT_DOC, mode="create")
        except self._errors.AlreadyExistsError:
            pass
        except self._errors.PreconditionError:
            pass
        except self._errors.BaseError as exc:
            raise self._fail("writing oci-layout", exc) from exc

    # -- blobs ---------------------------------------------------------------------------

    def has_blob(self, digest: str, size: int) -> bool:
        key = self._blob_key(digest)
        try:
            meta = self._obstore.head(self._store, key)
        except self._missing:
            return False
        except self._errors.BaseError as exc:
            raise self._fail(f"checking blob {digest}", exc) from exc
        return int(meta["size"]) == size

    def put_blob(self, digest: str, size: int, stream: BinaryIO) -> None:
        key = self._blob_key(digest)
        reader = Sha256Reader(stream, size, digest, f"blob {digest} sent to {self.url}")
        failed: list[BaseException] = []

        def chunks() -> Any:
            while chunk := reader.read(CHUNK):
                yield chunk
            try:
                reader.check()
            except BundleError as exc:
                failed.append(exc)
                raise

        try:
            self._obstore.put(self._store, key, chunks(), use_multipart=size > CHUNK,
                              chunk_size=CHUNK, max_concurrency=PART_THREADS)
        except BaseException as exc:
            if failed:
                raise failed[0] from None
            if isinstance(exc, self._errors.BaseError):
                raise self._fail(f"uploading blob {digest}", exc) from exc
            raise

    def open_blob(self, digest: str, size: int, *, offset: int = 0) -> BinaryIO:
        key = self._blob_key(digest)
        options: dict[str, Any] = {"range": {"offset": offset}} if offset else {}
        try:
            result = self._obstore.get(self._store, key, options=options or None)
        except self._missing:
            raise RemoteError(f"remote {self.url} lacks blob {digest}", remote=self.url) from None
        except self._errors.BaseError as exc:
            raise self._fail(f"reading blob {digest}", exc) from exc
        raw = ChunkReader(result.stream(min_chunk_size=1 << 20), f"blob {digest}", self.url)
        return io.BufferedReader(raw, buffer_size=1 << 20)

    # -- manifests -----------------------------------------------------------------------

    def put_manifest(self, data: bytes) -> Descriptor:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.has_blob(digest, len(data)):
            self.put_blob(digest, len(data), io.BytesIO(data))
        return Descriptor(mediaType=MANIFEST_TYPE, digest=digest, size=len(data))

    def get_manifest(self, digest: str) -> bytes:
        got = self._get_small(self._blob_key(digest), MAX_JSON)
        if got is None:
            raise RemoteError(f"remote {self.url} lacks manifest {digest}", remote=self.url)
        if "sha256:" + hashlib.sha256(got[0]).hexdigest() != digest:
            raise BundleError(f"manifest {digest} on remote {self.url} is damaged")
        return got[0]

    # -- refs ----------------------------------------------------------------------------

    def _descriptor(self, key: str, data: bytes) -> Descriptor:
        desc: Descriptor = parse_json(data, Descriptor, f"{key} on remote {self.url}",
                                      cap=_REF_CAP)
        return desc

    def list_refs(self) -> dict[str, Descriptor]:
        refs: dict[str, Descriptor] = {}
        try:
            keys = [meta["path"] for batch in self._obstore.list(self._store, prefix="refs/")
                    for meta in batch]
        except self._errors.BaseError as exc:
            raise self._fail("listing refs", exc) from exc
        for key in sorted(keys):
            parts = key.split("/")
            if len(parts) != 3 or split_ref_name(f"{parts[1]}:{parts[2]}") is None:
                continue
            got = self._get_small(key, _REF_CAP)
            if got is not None:
                refs[f"{parts[1]}:{parts[2]}"] = self._descriptor(key, got[0])
        return refs

    def get_ref(self, name: str) -> tuple[Descriptor | None, RefToken]:
        key = self._ref_key(name)
        got = self._get_small(key, _REF_CAP)
        if got is None:
            return None, None
        return self._descriptor(key, got[0]), got[1]

    def set_ref(self, name: str, target: Descriptor, token: RefToken) -> bool:
        key = self._ref_key(name)
        self._layout_written()
        annotations = {**(target.annotations or {}), ANN_REF_NAME: name}
        data = dumps(target.model_copy(update={"annotations": annotations}).as_json())
        mode: Any = "create" if token is None else {"e_tag": token}
        try:
            self._obstore.put(self._store, key, data, mode=mode, use_multipart=False)
        except (self._errors.AlreadyExistsError, self._errors.PreconditionError):
            return False
        except self._errors.BaseError as exc:
            raise self._fail(f"moving ref {name}", exc) from exc
        return True

    def close(self) -> None:
        pass
