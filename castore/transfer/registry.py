"""The OCI registry remote: ``oci://host[:port]/repository`` (``oci+http://`` without TLS).

It speaks the OCI distribution API through httpx (``castore[oci]``): a kept HTTP client with
connection reuse, streaming and timeouts; the rest of the protocol is small enough to write
here (``oras-py`` wraps the same calls behind a heavier, looser interface):

- blobs by sha256: ``HEAD /v2/<repo>/blobs/<digest>`` skips what the registry has; a blob of
  up to :data:`CHUNK` bytes goes up monolithically (``POST`` an upload, ``PUT ?digest=``), a
  bigger one in chunks (``PATCH`` with ``Content-Range``, then the ``PUT``). Each chunk is held
  in memory (bounded: :data:`CHUNK` per upload, :attr:`RegistryRemote.parallel` uploads), so
  every request can be retried; the sha256 is checked before the final ``PUT`` and the upload
  is cancelled when it does not match;
- a manifest per version, ``PUT /v2/<repo>/manifests/<digest>``;
- refs as tags (:func:`tag_of`): ``collection:vN`` is the tag ``collection-vN``,
  ``collection:alias`` the tag ``collection-alias``. A tag moves after a check of the
  manifest digest it names now (``HEAD``, then ``PUT /v2/<repo>/manifests/<tag>``); the
  distribution API has no conditional tag write, so two pushers that both pass the check
  within the same moment can still both write (the later one wins): the race is narrowed to
  the time between the two requests, not closed (``docs/format.md``).

Credentials: ``username=``/``password=`` (``remotes.add``), else ``~/.docker/config.json``
(``auths.<host>.auth``; credential helpers are not run). A ``401`` with a ``Bearer``
challenge is answered as registries expect: a token from the challenge's realm (with the
credentials as basic auth when there are any), sent as ``Authorization: Bearer``; a ``Basic``
challenge gets basic auth. Network faults, ``429`` and ``5xx`` are retried with exponential
backoff (``retries`` times), then :class:`RemoteError` names the remote and the object.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import time
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urljoin

from castore.errors import BundleError, ConfigurationError, RemoteError
from castore.transfer.chunks import ChunkReader
from castore.transfer.oci import (
    ANN_COLLECTION,
    ANN_DIGEST,
    ANN_ID,
    ANN_NUMBER,
    ARTIFACT_TYPE,
    MANIFEST_TYPE,
    MAX_JSON,
    Descriptor,
    ImageManifest,
    Sha256Reader,
    is_sha256,
    split_ref_name,
)
from castore.transfer.remote import RefToken

__all__ = ["CHUNK", "RETRIES", "RegistryRemote", "name_of_tag", "tag_of"]

CHUNK = 16 * 1024 * 1024
RETRIES = 5
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
_ACCEPT = f"{MANIFEST_TYPE}, application/vnd.oci.image.index.v1+json"
_NOTES = (ANN_ID, ANN_COLLECTION, ANN_NUMBER, ANN_DIGEST)


def tag_of(name: str) -> str:
    """The registry tag of the ref ``collection:selector``: ``collection-selector``, with ``_``
    in front when it would start with ``-`` (a tag starts with ``[a-zA-Z0-9_]``).

    Raises:
        RemoteError: the tag would be longer than the 128 characters a tag may have.
    """
    collection, _, selector = name.partition(":")
    tag = f"{collection}-{selector}"
    if tag.startswith("-"):
        tag = "_" + tag
    if _TAG.fullmatch(tag) is None:
        raise RemoteError(f"ref {name!r} has no registry tag: {tag!r} is {len(tag)} characters, "
                          "over the 128 a tag may have; use a shorter collection or alias name")
    return tag


def name_of_tag(tag: str, collection: str) -> str | None:
    """The ref name of ``tag`` for a manifest of ``collection`` (inverse of :func:`tag_of`)."""
    if tag.startswith("_-"):
        tag = tag[1:]
    if not tag.startswith(collection + "-"):
        return None
    name = f"{collection}:{tag[len(collection) + 1:]}"
    return name if split_ref_name(name) is not None else None


def _httpx() -> Any:
    try:
        import httpx
    except ImportError:
        raise ImportError("oci:// remotes need httpx: pip install 'castore[oci]'") from None
    return httpx


def docker_credentials(host: str) -> tuple[str, str] | None:
    """``(username, password)`` for ``host`` from the Docker config, or None."""
    base = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
    path = Path(base) / "config.json"
    try:
        doc = json.loads(path.read_text()[: 1 << 20])
    except (OSError, ValueError):
        return None
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        return None
    for key, entry in auths.items():
        netloc = re.sub(r"^https?://", "", str(key)).split("/")[0]
        if netloc != host or not isinstance(entry, dict):
            continue
        if entry.get("username") and entry.get("password"):
            return str(entry["username"]), str(entry["password"])
        try:
            user, _, password = base64.b64decode(str(entry.get("auth", ""))).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            continue
        if user:
            return user, password
    return None


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


class RegistryRemote:
    """A repository of an OCI registry used as a remote (see the module docstring)."""

    def __init__(self, url: str, *, username: str | None = None, password: str | None = None,
                 retries: int = RETRIES, parallel: int = 4, timeout: float = 300.0) -> None:
        httpx = _httpx()
        self.url = url.rstrip("/")
        self.parallel = parallel
        scheme, _, rest = self.url.partition("://")
        host, _, repo = rest.partition("/")
        if not host or not repo or not re.fullmatch(r"[a-z0-9]+([._/-][a-z0-9]+)*", repo):
            raise ConfigurationError(
                f"remote {url!r}: a registry URL is oci://host[:port]/repository (lowercase "
                "repository path components)"
            )
        self._base = ("http" if scheme == "oci+http" else "https") + "://" + host
        self._repo = repo
        self._retries = int(retries)
        creds = (username, password or "") if username else docker_credentials(host)
        self._creds: tuple[str, str] | None = creds
        self._auth: str | None = None
        self._httpx = httpx
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=10.0), follow_redirects=True,
            limits=httpx.Limits(max_connections=max(parallel * 2, 4)),
            headers={"User-Agent": "castore"},
        )
        self._manifests: dict[str, bytes] = {}

    # -- HTTP ----------------------------------------------------------------------------

    def _v2(self, tail: str) -> str:
        return f"{self._base}/v2/{self._repo}/{tail}"

    def _authenticate(self, header: str) -> bool:
        scheme, params = _challenge(header)
        if scheme == "basic":
            if self._creds is None:
                return False
            raw = base64.b64encode(f"{self._creds[0]}:{self._creds[1]}".encode()).decode()
            self._auth = "Basic " + raw
            return True
        if scheme != "bearer" or "realm" not in params:
            return False
        query = {"service": params.get("service", "")}
        query["scope"] = params.get("scope") or f"repository:{self._repo}:pull,push"
        auth = self._httpx.BasicAuth(*self._creds) if self._creds else None
        try:
            response = self._client.get(params["realm"], params=query, auth=auth)
        except self._httpx.HTTPError as exc:
            raise RemoteError(f"remote {self.url}: the token service {params['realm']} "
                              f"cannot be reached: {exc}", remote=self.url) from exc
        if response.status_code != 200:
            raise RemoteError(f"remote {self.url}: the token service refused "
                              f"({response.status_code}); check the credentials",
                              remote=self.url)
        try:
            doc = response.json()
            token = doc.get("token") or doc.get("access_token")
        except ValueError:
            token = None
        if not token:
            raise RemoteError(f"remote {self.url}: the token service gave no token",
                              remote=self.url)
        self._auth = "Bearer " + str(token)
        return True

    def _call(self, method: str, url: str, what: str, *, headers: dict[str, str] | None = None,
              content: bytes | None = None, stream: bool = False,
              ok: tuple[int, ...] = (200,), missing_ok: bool = False) -> Any:
        """One request, with auth, retries and backoff; the response (None for a 404 when
        ``missing_ok``)."""
        authed = False
        attempt = 0
        while True:
            sent = dict(headers or {})
            if self._auth:
                sent["Authorization"] = self._auth
            try:
                request = self._client.build_request(method, url, headers=sent, content=content)
                response = self._client.send(request, stream=stream)
            except self._httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                if status == 401 and not authed:
                    response.close()
                    authed = True
                    if self._authenticate(response.headers.get("www-authenticate", "")):
                        continue
                    raise RemoteError(f"remote {self.url}: {what} needs credentials "
                                      "(remotes.add(..., username=, password=) or docker "
                                      "login)", remote=self.url)
                if status in ok:
                    return response
                if status == 404 and missing_ok:
                    response.close()
                    return None
                if status != 429 and status < 500:
                    body = response.read()[:300].decode(errors="replace") if not stream else ""
                    response.close()
                    raise RemoteError(f"remote {self.url}: {what} failed: HTTP {status} "
                                      f"{body}".rstrip(), remote=self.url, status=status)
                response.close()
                problem = f"HTTP {status}"
            attempt += 1
            if attempt > self._retries:
                raise RemoteError(f"remote {self.url}: {what} failed after {attempt} attempts: "
                                  f"{problem}", remote=self.url)
            time.sleep(min(5.0, 0.2 * 2 ** (attempt - 1)))

    # -- blobs ---------------------------------------------------------------------------

    def _check(self, digest: str) -> str:
        if not is_sha256(digest):
            raise RemoteError(f"remote {self.url}: bad blob digest {digest!r}", remote=self.url)
        return digest

    def has_blob(self, digest: str, size: int) -> bool:
        response = self._call("HEAD", self._v2(f"blobs/{self._check(digest)}"),
                              f"checking blob {digest}", missing_ok=True)
        if response is None:
            return False
        length = response.headers.get("content-length")
        return length is None or int(length) == size

    def _location(self, response: Any, what: str) -> str:
        location = str(response.headers.get("location") or "")
        if not location:
            raise RemoteError(f"remote {self.url}: {what}: the registry gave no upload location",
                              remote=self.url)
        return urljoin(self._base + "/", location)

    @staticmethod
    def _with_digest(location: str, digest: str) -> str:
        return location + ("&" if "?" in location else "?") + "digest=" + digest

    def put_blob(self, digest: str, size: int, stream: BinaryIO) -> None:
        self._check(digest)
        what = f"uploading blob {digest}"
        reader = Sha256Reader(stream, size, digest, f"blob {digest} sent to {self.url}")
        started = self._call("POST", self._v2("blobs/uploads/"), what, ok=(202,))
        location = self._location(started, what)
        try:
            if size <= CHUNK:
                data = reader.read(size)
                reader.check()
                self._call("PUT", self._with_digest(location, digest), what, content=data,
                           headers={"Content-Type": "application/octet-stream"}, ok=(201,))
                return
            offset = 0
            while chunk := reader.read(CHUNK):
                end = offset + len(chunk) - 1
                response = self._call(
                    "PATCH", location, what, content=chunk, ok=(202,),
                    headers={"Content-Type": "application/octet-stream",
                             "Content-Range": f"{offset}-{end}"})
                location = self._location(response, what)
                offset += len(chunk)
            reader.check()
            self._call("PUT", self._with_digest(location, digest), what, content=b"",
                       headers={"Content-Type": "application/octet-stream"}, ok=(201,))
        except BaseException:
            try:
                self._client.delete(location, headers={"Authorization": self._auth or ""})
            except self._httpx.HTTPError:
                pass
            raise

    def open_blob(self, digest: str, size: int, *, offset: int = 0) -> BinaryIO:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        response = self._call("GET", self._v2(f"blobs/{self._check(digest)}"),
                              f"reading blob {digest}", headers=headers, stream=True,
                              ok=(200, 206), missing_ok=True)
        if response is None:
            raise RemoteError(f"remote {self.url} lacks blob {digest}", remote=self.url)
        if offset and response.status_code == 200:  # no range support: skip
            chunks = response.iter_bytes(1 << 20)
            skip = offset
            body = ChunkReader(chunks, f"blob {digest}", self.url, on_close=response.close)
            while skip:
                got = body.read(min(skip, 1 << 20))
                if not got:
                    break
                skip -= len(got)
            return io.BufferedReader(body, buffer_size=1 << 20)
        return io.BufferedReader(
            ChunkReader(
                response.iter_bytes(1 << 20), f"blob {digest}", self.url,
                on_close=response.close,
            ),
            buffer_size=1 << 20)

    # -- manifests -----------------------------------------------------------------------

    def put_manifest(self, data: bytes) -> Descriptor:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self._call("PUT", self._v2(f"manifests/{digest}"), f"writing manifest {digest}",
                   content=data, headers={"Content-Type": MANIFEST_TYPE}, ok=(201,))
        self._manifests[digest] = data
        return Descriptor(mediaType=MANIFEST_TYPE, digest=digest, size=len(data))

    def _fetch_manifest(self, reference: str, what: str) -> bytes | None:
        response = self._call("GET", self._v2(f"manifests/{reference}"), what,
                              headers={"Accept": _ACCEPT}, stream=True, missing_ok=True)
        if response is None:
            return None
        try:
            data = b""
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > MAX_JSON:
                    raise BundleError(f"{what} on remote {self.url} is over the "
                                      f"{MAX_JSON} byte limit")
        except self._httpx.HTTPError as exc:
            raise RemoteError(f"remote {self.url}: {what} failed: {exc}",
                              remote=self.url) from exc
        finally:
            response.close()
        return data

    def get_manifest(self, digest: str) -> bytes:
        data = self._manifests.get(digest)
        if data is None:
            data = self._fetch_manifest(self._check(digest), f"manifest {digest}")
        if data is None:
            raise RemoteError(f"remote {self.url} lacks manifest {digest}", remote=self.url)
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise BundleError(f"manifest {digest} on remote {self.url} is damaged")
        return data

    # -- refs ----------------------------------------------------------------------------

    def _tagged(self, tag: str) -> tuple[Descriptor, str] | None:
        """The castore manifest ``tag`` names, as a descriptor, and its collection."""
        data = self._fetch_manifest(tag, f"tag {tag}")
        if data is None:
            return None
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self._manifests[digest] = data
        try:
            manifest = ImageManifest.model_validate_json(data)
        except ValueError:
            return None  # not an image manifest: not castore's
        notes = manifest.annotations or {}
        if manifest.artifactType != ARTIFACT_TYPE or not all(k in notes for k in _NOTES):
            return None
        desc = Descriptor(mediaType=MANIFEST_TYPE, digest=digest, size=len(data),
                          artifactType=ARTIFACT_TYPE,
                          annotations={k: notes[k] for k in _NOTES})
        return desc, notes[ANN_COLLECTION]

    def tags(self) -> list[str]:
        """Every tag of the repository (following ``Link`` pagination)."""
        found: list[str] = []
        url: str | None = self._v2("tags/list?n=1000")
        while url:
            response = self._call("GET", url, "listing tags", missing_ok=True)
            if response is None:
                return found
            try:
                found.extend(str(t) for t in (response.json().get("tags") or []))
            except ValueError as exc:
                raise RemoteError(f"remote {self.url}: the tag list is not JSON",
                                  remote=self.url) from exc
            link = response.headers.get("link", "")
            match = re.match(r'\s*<([^>]+)>\s*;\s*rel="?next"?', link)
            url = urljoin(self._base + "/", match.group(1)) if match else None
        return found

    def list_refs(self) -> dict[str, Descriptor]:
        refs: dict[str, Descriptor] = {}
        for tag in sorted(self.tags()):
            if _TAG.fullmatch(tag) is None:
                continue
            got = self._tagged(tag)
            if got is None:
                continue
            name = name_of_tag(tag, got[1])
            if name is not None:
                refs[name] = got[0]
        return refs

    def get_ref(self, name: str) -> tuple[Descriptor | None, RefToken]:
        got = self._tagged(tag_of(name))
        if got is None:
            return None, None
        return got[0], got[0].digest

    def _current_digest(self, tag: str) -> str | None:
        response = self._call("HEAD", self._v2(f"manifests/{tag}"), f"checking tag {tag}",
                              headers={"Accept": _ACCEPT}, missing_ok=True)
        if response is None:
            return None
        digest = response.headers.get("docker-content-digest")
        if digest:
            return str(digest)
        data = self._fetch_manifest(tag, f"tag {tag}")
        return None if data is None else "sha256:" + hashlib.sha256(data).hexdigest()

    def set_ref(self, name: str, target: Descriptor, token: RefToken) -> bool:
        tag = tag_of(name)
        data = self.get_manifest(target.digest)
        if self._current_digest(tag) != token:
            return False
        self._call("PUT", self._v2(f"manifests/{tag}"), f"tagging {name} as {tag}",
                   content=data, headers={"Content-Type": MANIFEST_TYPE}, ok=(201,))
        return True

    def close(self) -> None:
        self._client.close()
