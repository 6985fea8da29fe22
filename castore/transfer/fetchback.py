"""Blobs evicted under a budget, fetched back from the remotes known to hold them.

``blob_remotes`` (catalogue step 9) records which remote holds which blob: every push and pull
writes what it proved. :class:`RemoteFetcher` is the store's :class:`castore._parts.BlobFetcher`:
a read of an evicted blob asks it (``Parts.ensure_local``); it streams the blob from the most
recently proved remote, checks its sha256 while staging it (which also re-hashes it with the
store's algorithm), checks the castore digest, and publishes it. Nothing unverified is ever
stored. A remote that cannot be reached raises :class:`RemoteError` naming it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from castore._parts import Parts
from castore.errors import BundleError, CastoreError, RemoteError
from castore.transfer.backends import open_remote
from castore.transfer.oci import Sha256Reader
from castore.transfer.remote import Remote

__all__ = ["RemoteFetcher", "remote_key"]


def remote_key(name: str | None, url: str) -> str:
    """What ``blob_remotes`` records for a remote: its name when it has one, else its URL."""
    if name is not None:
        return name
    return url if "://" in url else os.path.abspath(os.path.expanduser(url))


def open_recorded(parts: Parts, key: str) -> Remote:
    """The remote a ``blob_remotes`` row names (a named remote, else a URL or path)."""
    named = parts.catalog.get_remote(key)
    if named is not None:
        return open_remote(named["url"], named["options"])
    return open_remote(key)


class RemoteFetcher:
    """Fetches evicted blobs back (see the module docstring)."""

    def fetch(self, parts: Parts, wanted: Mapping[str, int]) -> None:
        homes = parts.catalog.blob_homes(wanted)
        by_remote: dict[str, list[tuple[str, str, int]]] = {}
        for digest in wanted:
            places = homes.get(digest)
            if places:
                key, sha, size = places[0]
                by_remote.setdefault(key, []).append((digest, sha, size))
        for key, items in sorted(by_remote.items()):
            try:
                remote = open_recorded(parts, key)
            except CastoreError as exc:
                raise RemoteError(f"remote {key} cannot be opened to fetch evicted blob "
                                  f"{items[0][0]}: {exc}", remote=key) from exc
            try:
                for digest, sha, size in items:
                    _fetch_one(parts, remote, key, digest, "sha256:" + sha, size)
            finally:
                remote.close()

    def held(self, parts: Parts, digests: Iterable[str]) -> set[str]:
        wanted = list(digests)
        homes = parts.catalog.blob_homes(wanted)
        confirmed: set[str] = set()
        opened: dict[str, Remote | None] = {}
        try:
            for digest in wanted:
                for key, sha, size in homes.get(digest, []):
                    if key not in opened:
                        try:
                            opened[key] = open_recorded(parts, key)
                        except CastoreError:
                            opened[key] = None
                    remote = opened[key]
                    if remote is None:
                        continue
                    try:
                        if remote.has_blob("sha256:" + sha, size):
                            confirmed.add(digest)
                            break
                    except CastoreError:
                        opened[key] = None  # unreachable now: evict nothing it holds
        finally:
            for remote in opened.values():
                if remote is not None:
                    remote.close()
        return confirmed


def _fetch_one(parts: Parts, remote: Remote, key: str, digest: str, sha: str, size: int) -> None:
    what = f"evicted blob {digest} ({sha}) from remote {key}"
    try:
        with remote.open_blob(sha, size) as fh:
            reader = Sha256Reader(fh, size, sha, what)
            staged = parts.blobs.stage_stream(reader, size=size,  # type: ignore[arg-type]
                                              sync=parts.durable)
            try:
                reader.check()
                if str(staged.digest) != digest:
                    raise BundleError(f"{what} hashes to {staged.digest} here")
            except BaseException:
                parts.blobs.discard(staged)
                raise
    except RemoteError as exc:
        raise RemoteError(f"cannot fetch {what}: {exc}", remote=key) from exc
    except BundleError as exc:
        raise RemoteError(f"{what} was not the expected content: {exc}", remote=key) from exc
    except OSError as exc:
        raise RemoteError(f"{what} could not be read: {exc}", remote=key) from exc
    parts.blobs.publish(staged, check_collision=True)
