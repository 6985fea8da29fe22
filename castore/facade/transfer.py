"""export, import_bundle, push, pull, remote_versions and remotes of the Store facade."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from castore._parts import Parts
from castore._progress import Progress, ProgressArg
from castore.errors import ConfigurationError, NotFoundError
from castore.facade.base import StoreBase
from castore.handles.query import resolve_ref
from castore.models import RemoteInfo, RemoteVersion, TransferReport
from castore.refs import LATEST, parse_ref, validate_name

if TYPE_CHECKING:
    from castore.transfer.oci import Descriptor
    from castore.transfer.remote import Remote

# castore.transfer is imported inside the methods: bundles, OCI and remote backends (tarfile,
# http) would cost every command that only reads (`castore ls`, `show`, `cat`) ~15 ms.

__all__ = ["Remotes", "TransferMixin"]


class Remotes:
    """The store's named remotes (kept in its catalogue): ``add``, ``list``, ``remove``."""

    def __init__(self, parts: Parts) -> None:
        self._parts = parts

    def add(self, name: str, url: str, **options: Any) -> RemoteInfo:
        """Name the remote at ``url`` (a directory path, ``s3://``, ``oci://``).

        ``options`` (``endpoint=``, ``region=``, ``username=``, ``password=``) are kept with it.

        Raises:
            InvalidReferenceError: a malformed name.
            ConfigurationError: ``name`` is already taken.
        """
        self._parts.require_writable("add a remote")
        validate_name(name, "remote")
        if not self._parts.catalog.add_remote(name, url, options):
            raise ConfigurationError(f"a remote named {name!r} already exists; remove it first")
        return RemoteInfo(name=name, url=url, options=options)

    def list(self) -> list[RemoteInfo]:
        """Every named remote, by name."""
        return [RemoteInfo(**row) for row in self._parts.catalog.list_remotes()]

    def remove(self, name: str) -> None:
        """Forget the remote ``name``. Raises NotFoundError when there is none."""
        self._parts.require_writable("remove a remote")
        if not self._parts.catalog.remove_remote(name):
            raise NotFoundError(f"no remote named {name!r}", ref=name)


def _selection(parts: Parts, refs: list[str] | None) -> tuple[list[dict[str, Any]],
                                                              dict[str, list[str]]]:
    """Version rows and the aliases to carry for each, from reference strings."""
    catalog = parts.catalog
    rows: dict[str, dict[str, Any]] = {}
    aliases: dict[str, list[str]] = {}
    if refs is None:
        for (version_id,) in catalog.execute(
            "SELECT id FROM versions WHERE state = 'COMMITTED' ORDER BY created_at"
        ).fetchall():
            row = catalog.live_version(version_id)
            if row is not None:
                rows[row["id"]] = row
                aliases[row["id"]] = list(catalog.aliases_of(row["id"]))
    else:
        for ref in refs:
            row = resolve_ref(catalog, ref)
            rows[row["id"]] = row
            parsed = parse_ref(ref)
            alias = parsed.alias if parsed.collection else None
            if parsed.collection and parsed.number is None and alias is None and \
                    parsed.digest_prefix is None:
                alias = LATEST
            if alias:
                aliases.setdefault(row["id"], []).append(alias)
    ordered = sorted(rows.values(), key=lambda r: (r["collection"], r["number"]))
    return ordered, aliases


def _report(versions: list[str], counts: Any, started: float) -> TransferReport:
    return TransferReport(
        versions=versions, blobs_sent=counts.blobs_sent, bytes_sent=counts.bytes_sent,
        blobs_skipped=counts.blobs_skipped, bytes_skipped=counts.bytes_skipped,
        seconds=round(time.monotonic() - started, 6),
    )


def _remote_names(refs: list[str] | None, available: dict[str, Descriptor]) -> dict[str,
                                                                                  Descriptor]:
    if refs is None:
        return dict(available)
    chosen = {}
    for ref in refs:
        name = ref if ":" in ref else f"{ref}:{LATEST}"
        tag = name.replace(":", "-", 1)  # the registry form (skopeo's oci: directories)
        if name in available:
            chosen[name] = available[name]
        elif tag in available:
            chosen[tag] = available[tag]
        else:
            raise NotFoundError(f"the remote has no {name!r} (nor {tag!r})", ref=ref)
    return chosen


class TransferMixin(StoreBase):
    """Moving versions off and onto this machine: bundles and remotes."""

    @property
    def remotes(self) -> Remotes:
        """The named remotes of this store (``store.remotes.add("team", url)``)."""
        return Remotes(self.parts)

    def _remote(self, remote: str) -> Remote:
        return self._remote_and_key(remote)[0]

    def _remote_and_key(self, remote: str) -> tuple[Remote, str]:
        """The remote, and what ``blob_remotes`` calls it (its name, else its URL)."""
        from castore.transfer.backends import open_remote
        from castore.transfer.fetchback import remote_key

        named = self.parts.catalog.get_remote(remote) if ":" not in remote and "/" not in \
            remote else None
        if named is not None:
            return open_remote(named["url"], named["options"]), remote
        opened = open_remote(remote)
        return opened, remote_key(None, opened.url)

    def _record_held(self, key: str, digests: list[str]) -> None:
        """Remember that remote ``key`` holds ``digests`` (set_budget evicts only those)."""
        if digests and not self.parts.read_only:
            self.parts.catalog.record_blob_remote(key, digests)

    def export(
        self, path: str | Path, refs: list[str] | None = None, progress: ProgressArg = None
    ) -> TransferReport:
        """Write versions to a bundle: an OCI image layout in a tar file.

        Args:
            path: the bundle to write (replaced only once whole).
            refs: references of the versions (``"mnist:prod"`` also carries the alias
                ``prod``); None exports every version with its aliases.
            progress: a callable receiving ``(done_bytes, total_bytes)``, or True for a bar.

        Raises:
            NotFoundError: a reference names nothing.

        Example:
            >>> store.export("bundle.tar", refs=["mnist:prod"])  # doctest: +SKIP
        """
        from castore.transfer import outbound
        from castore.transfer.bundle import TarSink

        started = time.monotonic()
        rows, aliases = _selection(self.parts, refs)
        planned = outbound.plan(self.parts, rows)
        sink = TarSink(Path(path), durable=self.durable)
        try:
            counts = outbound.send(self.parts, sink, planned,
                                   outbound.refs_for(planned, aliases), force=True,
                                   progress=progress)
            sink.finish()
        except BaseException:
            sink.abort()
            raise
        return _report([p.ref for p in planned], counts, started)

    def import_bundle(
        self, path: str | Path, renumber: bool = False, force: bool = False,
        progress: ProgressArg = None,
    ) -> TransferReport:
        """Import every version of a bundle, keeping ids and numbers; all or nothing.

        Args:
            path: the bundle (hostile input: every member is checked).
            renumber: give a version whose number is held here by another version the next
                free number instead of raising.
            force: move aliases that point elsewhere here instead of raising.
            progress: a callable receiving ``(done_bytes, total_bytes)``, or True for a bar.

        Raises:
            BundleError: the bundle is malformed, truncated or hostile (the member is named).
            VersionConflictError: a number is held here by a different version.
            AliasConflictError: an alias would move.
        """
        from castore.transfer.bundle import bundle_source, stage_bundle
        from castore.transfer.landing import land

        self.parts.require_writable("import a bundle")
        started = time.monotonic()
        path = Path(path)
        manifests, staged = stage_bundle(self.parts, path)
        try:
            named = {d.note("org.opencontainers.image.ref.name"): d for d in manifests}
            names = {k: v for k, v in named.items() if k}
            bar = Progress(progress, sum(s.size for s in staged.values()))
            result = land(self.parts, bundle_source(self.parts, path, staged), names,
                          renumber=renumber, force=force, bar=bar)
            bar.finish()
        finally:
            for blob in staged.values():
                self.blobs.discard(blob)
        return _report(result.versions, result, started)

    def push(
        self, remote: str, refs: list[str] | None = None, force: bool = False,
        progress: ProgressArg = None,
    ) -> TransferReport:
        """Send versions to a remote (a name from :attr:`remotes`, a URL or a directory).

        Only blobs the remote lacks are sent; refs move by compare-and-swap.

        Raises:
            AliasConflictError: an alias on the remote points at another version (or moved
                meanwhile) and ``force`` is False.
            VersionConflictError: the remote holds another version under a number.
            RemoteError: the remote cannot be reached.
        """
        from castore.transfer import outbound

        started = time.monotonic()
        rows, aliases = _selection(self.parts, refs)
        planned = outbound.plan(self.parts, rows)
        target, key = self._remote_and_key(remote)
        try:
            counts = outbound.send(self.parts, target, planned,
                                   outbound.refs_for(planned, aliases), force=force,
                                   progress=progress)
        finally:
            target.close()
        self._record_held(key, sorted({
            layer.digest for p in planned for layer in p.layers if layer.digest is not None}))
        return _report([p.ref for p in planned], counts, started)

    def pull(
        self, remote: str, refs: list[str] | None = None, renumber: bool = False,
        force: bool = False, progress: ProgressArg = None,
    ) -> TransferReport:
        """Fetch versions from a remote; all or nothing, like :meth:`import_bundle`.

        ``refs`` are names on the remote (``"mnist:prod"``, ``"mnist:v3"``, ``"mnist"`` for its
        latest); None pulls everything it holds.
        """
        from castore.transfer.inbound import remote_source
        from castore.transfer.landing import land

        self.parts.require_writable("pull")
        started = time.monotonic()
        source, key = self._remote_and_key(remote)
        try:
            names = _remote_names(refs, source.list_refs())
            bar = Progress(progress, 0)
            result = land(self.parts, remote_source(self.parts, source), names,
                          renumber=renumber, force=force, bar=bar)
            bar.finish()
        finally:
            source.close()
        self._record_held(key, result.held)
        return _report(result.versions, result, started)

    def remote_versions(self, remote: str, collection: str | None = None) -> list[RemoteVersion]:
        """The versions a remote holds, with their aliases (from its refs only)."""
        from castore.transfer.oci import ANN_COLLECTION, ANN_DIGEST, ANN_ID, ANN_NUMBER

        source = self._remote(remote)
        try:
            refs = source.list_refs()
        finally:
            source.close()
        found: dict[str, dict[str, Any]] = {}
        for name, desc in sorted(refs.items()):
            coll, number = desc.note(ANN_COLLECTION), desc.note(ANN_NUMBER)
            vid, digest = desc.note(ANN_ID), desc.note(ANN_DIGEST)
            if not (coll and number and vid and digest) or (collection and coll != collection):
                continue
            item = found.setdefault(vid, {"ref": f"{coll}:v{number}", "id": vid,
                                          "digest": digest, "aliases": []})
            selector = name.partition(":")[2]
            if not selector.startswith("v") or not selector[1:].isdigit():
                item["aliases"].append(selector)
        return [RemoteVersion(**item) for item in sorted(
            found.values(), key=lambda i: (i["ref"].split(":")[0], int(i["ref"].split(":v")[1])))]


