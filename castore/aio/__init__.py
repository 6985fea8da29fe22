"""The async API: :func:`open_async` -> :class:`AsyncStore`, whose every method is awaitable.

One implementation: each async method runs the sync method of the wrapped handle on the store's
bounded thread pool (zarr's ``core/sync.py`` shape, turned around: here the core is sync). The
wrappers are generated from the sync methods by three descriptors that keep their signatures
for type checkers: :class:`Call` (same result), :class:`Wrap` (the result becomes an async
handle) and :class:`Chain` (methods that return their own handle, such as ``add_file``).

Cancellation: a cancelled call that has not started never runs; one already running on a thread
runs to its end (a thread cannot be interrupted), so a cancelled ``finalize`` either committed
or did not, and the store stays consistent. Calls on one handle run in the order they were made,
also when an earlier one was cancelled while running, so ``async with astore.draft(...)``
discards its draft only after the last call on it has finished.

Example:
    >>> async def main() -> None:  # doctest: +SKIP
    ...     async with await castore.open_async("store") as astore:
    ...         async with astore.draft("m", type="model") as d:
    ...             await d.add_file("model.pt")
    ...         v = await astore.get("m:latest")
    ...         await v.checkout("work")
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from castore.aio.bridge import Attr, Call, Chain, Handle, Pool, Wrap, chain
from castore.errors import ArtifactFinalizedError
from castore.handles.collection import Collection
from castore.handles.version import ArtifactVersion, Draft
from castore.models import Diff, Page
from castore.store import Store
from castore.store import open as open_store

__all__ = [
    "DEFAULT_WORKERS",
    "AsyncArtifactVersion",
    "AsyncCollection",
    "AsyncDraft",
    "AsyncReader",
    "AsyncStore",
    "open_async",
]

#: Threads of an AsyncStore's pool unless ``open_async(workers=)`` says otherwise.
DEFAULT_WORKERS = min(8, (os.cpu_count() or 1) + 2)

# -- conversions ---------------------------------------------------------------------------


def _version(pool: Pool, v: ArtifactVersion) -> AsyncArtifactVersion:
    return AsyncArtifactVersion(v, pool)


def _versions(pool: Pool, vs: list[ArtifactVersion]) -> list[AsyncArtifactVersion]:
    return [AsyncArtifactVersion(v, pool) for v in vs]


def _page(pool: Pool, page: Page[ArtifactVersion]) -> Page[AsyncArtifactVersion]:
    return Page[AsyncArtifactVersion](
        items=_versions(pool, page.items),
        total=page.total,
        limit=page.limit,
        offset=page.offset,
        has_more=page.has_more,
    )


def _collection(pool: Pool, c: Collection) -> AsyncCollection:
    return AsyncCollection(c, pool)


def _collections(pool: Pool, cs: list[Collection]) -> list[AsyncCollection]:
    return [AsyncCollection(c, pool) for c in cs]


def _draft(pool: Pool, d: Draft) -> AsyncDraft:
    return AsyncDraft.of(d, pool)


def _drafts(pool: Pool, ds: list[Draft]) -> list[AsyncDraft]:
    return [AsyncDraft.of(d, pool) for d in ds]


def _reader(pool: Pool, f: BinaryIO) -> AsyncReader:
    return AsyncReader(f, pool)


# -- handles -------------------------------------------------------------------------------


class AsyncReader(Handle[BinaryIO]):
    """``await v.open(path)``: a seekable reader whose reads run on the pool."""

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all the rest when ``n`` < 0), checked (see ArtifactVersion.open)."""
        return await self._run(self._sync_obj.read, n)

    async def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move to ``offset``; returns the new position."""
        return await self._run(self._sync_obj.seek, offset, whence)

    async def tell(self) -> int:
        """The current position."""
        return await self._run(self._sync_obj.tell)

    async def close(self) -> None:
        """Close the reader."""
        await self._run(self._sync_obj.close)

    async def __aenter__(self) -> AsyncReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._settle()
        await self.close()


class AsyncArtifactVersion(Handle[ArtifactVersion]):
    """An :class:`~castore.ArtifactVersion` whose methods are awaitable; its snapshot
    attributes (``id``, ``ref``, ``digest``, ``aliases``, ...) are read without awaiting."""

    id = Attr(ArtifactVersion.id)
    collection = Attr(ArtifactVersion.collection)
    type = Attr(ArtifactVersion.type)
    number = Attr(ArtifactVersion.number)
    version = Attr(ArtifactVersion.version)
    ref = Attr(ArtifactVersion.ref)
    digest = Attr(ArtifactVersion.digest)
    size = Attr(ArtifactVersion.size)
    file_count = Attr(ArtifactVersion.file_count)
    state = Attr(ArtifactVersion.state)
    aliases = Attr(ArtifactVersion.aliases)
    tags = Attr(ArtifactVersion.tags)
    metadata = Attr(ArtifactVersion.metadata)
    description = Attr(ArtifactVersion.description)
    created_at: Attr[ArtifactVersion, datetime] = Attr(ArtifactVersion.created_at)
    updated_at: Attr[ArtifactVersion, datetime] = Attr(ArtifactVersion.updated_at)
    ttl: Attr[ArtifactVersion, timedelta | None] = Attr(ArtifactVersion.ttl)
    expires_at: Attr[ArtifactVersion, datetime | None] = Attr(ArtifactVersion.expires_at)
    producer = Attr(ArtifactVersion.producer)
    manifest_blob = Attr(ArtifactVersion.manifest_blob)
    materializer = Attr(ArtifactVersion.materializer)
    is_link = Attr(ArtifactVersion.is_link)

    refresh = Chain(ArtifactVersion.refresh)
    get_entry = Call(ArtifactVersion.get_entry)
    checkout = Call(ArtifactVersion.checkout)
    download = Call(ArtifactVersion.download)
    file = Call(ArtifactVersion.file)
    verify = Call(ArtifactVersion.verify)
    open = Wrap(ArtifactVersion.open, _reader)
    copy_to = Call(ArtifactVersion.copy_to)
    read_bytes = Call(ArtifactVersion.read_bytes)
    read_text = Call(ArtifactVersion.read_text)
    new_draft = Wrap(ArtifactVersion.new_draft, _draft)
    add_alias = Chain(ArtifactVersion.add_alias)
    remove_alias = Chain(ArtifactVersion.remove_alias)
    add_tags = Chain(ArtifactVersion.add_tags)
    remove_tags = Chain(ArtifactVersion.remove_tags)
    update = Chain(ArtifactVersion.update)
    set_ttl = Chain(ArtifactVersion.set_ttl)
    delete = Call(ArtifactVersion.delete)
    logged_by = Call(ArtifactVersion.logged_by)
    used_by = Call(ArtifactVersion.used_by)
    load = Call(ArtifactVersion.load)
    link = Wrap(ArtifactVersion.link, _version)
    linked_versions = Wrap(ArtifactVersion.linked_versions, _versions)
    unlink = Call(ArtifactVersion.unlink)

    async def source(self) -> AsyncArtifactVersion | None:
        """The version this link points at (a property of the sync handle; read on the pool)."""
        found = await self._run(lambda v: v.source, self._sync_obj)
        return None if found is None else AsyncArtifactVersion(found, self._pool)

    async def manifest(self) -> Any:
        """The :class:`~castore.Manifest` (a property of the sync handle; read on the pool)."""
        return await self._run(lambda: self._sync_obj.manifest)

    async def files(self, prefix: str | None = None) -> list[Any]:
        """The entries (sorted by path) under ``prefix``, as a list."""
        return await self._run(lambda: list(self._sync_obj.files(prefix)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncArtifactVersion) and other._sync_obj == self._sync_obj

    def __hash__(self) -> int:
        return hash(self._sync_obj)

    def __repr__(self) -> str:
        return f"<Async{self._sync_obj!r}"[:-1] + ">"


class AsyncCollection(Handle[Collection]):
    """A :class:`~castore.Collection` whose methods are awaitable."""

    name = Attr(Collection.name)
    type = Attr(Collection.type)
    description = Attr(Collection.description)
    tags = Attr(Collection.tags)
    metadata = Attr(Collection.metadata)
    default_ttl: Attr[Collection, timedelta | None] = Attr(Collection.default_ttl)
    created_at: Attr[Collection, datetime] = Attr(Collection.created_at)

    refresh = Chain(Collection.refresh)
    alias_history = Call(Collection.alias_history)
    rollback = Wrap(Collection.rollback, _version)
    versions = Wrap(Collection.versions, _versions)
    update = Chain(Collection.update)
    delete = Call(Collection.delete)

    async def aliases(self) -> dict[str, str]:
        """``{alias: "vN"}`` (read from the catalogue, so awaited)."""
        return await self._run(lambda: self._sync_obj.aliases)

    def __repr__(self) -> str:
        return f"<Async{self._sync_obj!r}"[:-1] + ">"


class AsyncDraft(Handle[Draft]):
    """A :class:`~castore.Draft` whose methods are awaitable.

    ``astore.draft(...)`` is not awaited: the draft is started on ``async with`` (or by
    ``await astore.draft(...)``). On leaving ``async with`` normally it is finalized; on an
    exception (a cancellation too) it is discarded, after any call still running on it.
    """

    def __init__(self, start: Callable[[], Draft], pool: Pool) -> None:
        self._start: Callable[[], Draft] | None = start
        super().__init__(None, pool)  # type: ignore[arg-type]  # set by _ensure()
        self.version: AsyncArtifactVersion | None = None

    @classmethod
    def of(cls, draft: Draft, pool: Pool) -> AsyncDraft:
        """An AsyncDraft of an already started draft."""
        handle = cls(lambda: draft, pool)
        handle._sync_obj = draft
        handle._start = None
        return handle

    async def _ensure(self) -> AsyncDraft:
        if self._start is not None:
            start, self._start = self._start, None
            try:
                self._sync_obj = await self._run(start)
            except BaseException:
                # Cancelled while the draft was being started: its thread may still create
                # it, and no ``async with`` exit will follow, so discard it here once it exists.
                await asyncio.shield(self._run(_discard_started, self._last))
                raise
        return self

    def __await__(self) -> Any:
        return self._ensure().__await__()

    @property
    def id(self) -> str:
        """The pending version's id."""
        return self._sync_obj.id

    @property
    def collection(self) -> str:
        """The collection the draft belongs to."""
        return self._sync_obj.collection

    add_file = chain(Draft, Draft.add_file)
    add_bytes = chain(Draft, Draft.add_bytes)
    add_dir = chain(Draft, Draft.add_dir)
    add_reference = chain(Draft, Draft.add_reference)
    remove = chain(Draft, Draft.remove)
    discard = Call(Draft.discard)

    async def finalize(
        self, *, aliases: list[str] | tuple[str, ...] = (), tags: list[str] | tuple[str, ...] = ()
    ) -> AsyncArtifactVersion:
        """Commit the draft (see :meth:`castore.Draft.finalize`)."""
        version = await self._run(self._sync_obj.finalize, aliases=aliases, tags=tags)
        self.version = AsyncArtifactVersion(version, self._pool)
        return self.version

    async def paths(self) -> list[str]:
        """The paths in the draft, sorted."""
        return await self._run(lambda: self._sync_obj.paths)

    async def __aenter__(self) -> AsyncDraft:
        return await self._ensure()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._start is not None:
            return  # never started
        if exc_type is None:
            if self.version is None:
                await self.finalize()
            return
        # Discard after whatever still runs on this draft (a cancelled add or finalize goes on
        # to its end on its thread); shielded, so a second cancellation cannot skip it.
        await asyncio.shield(self._discard_after_pending())

    async def _discard_after_pending(self) -> None:
        try:
            await self._run(self._sync_obj.discard)
        except ArtifactFinalizedError:
            pass  # finalize (or an earlier discard) completed first: nothing left to discard


def _discard_started(started: concurrent.futures.Future[Any] | None) -> None:
    """Discard the draft ``started`` created, if it did (runs after it, in call order)."""
    if started is None or started.cancelled() or started.exception() is not None:
        return
    draft = started.result()
    if isinstance(draft, Draft):
        try:
            draft.discard()
        except ArtifactFinalizedError:
            pass


class AsyncStore(Handle[Store]):
    """A :class:`~castore.Store` whose every method is awaitable; get one from
    :func:`open_async`. Handles it returns are async too (:class:`AsyncArtifactVersion`,
    :class:`AsyncCollection`, :class:`AsyncDraft`)."""

    def __init__(self, store: Store, pool: Pool) -> None:
        super().__init__(store, pool)

    @property
    def path(self) -> Path:
        """The store's directory."""
        return self._sync_obj.path

    def draft(
        self,
        collection: str,
        *,
        type: str | None = None,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        tags: list[str] | None = None,
    ) -> AsyncDraft:
        """A draft (not awaited): ``async with astore.draft("m") as d: await d.add_file(...)``."""
        store = self._sync_obj
        return AsyncDraft(
            functools.partial(
                store.draft,
                collection,
                type=type,
                description=description,
                metadata=metadata,
                tags=tags,
            ),
            self._pool,
        )

    drafts = Wrap(Store.drafts, _drafts)
    get = Wrap(Store.get, _version)
    collection = Wrap(Store.collection, _collection)
    collections = Wrap(Store.collections, _collections)
    versions = Wrap(Store.versions, _page)
    count = Call(Store.count)
    latest = Wrap(Store.latest, _versions)
    types = Call(Store.types)
    gc = Call(Store.gc)
    prune = Call(Store.prune)
    fsck = Call(Store.fsck)
    stats = Call(Store.stats)
    set_budget = Call(Store.set_budget)
    save = Wrap(Store.save, _version)
    load = Call(Store.load)
    # Runs and lineage: the Run and Lineage handles they return are the sync ones (their
    # calls are single short catalogue transactions).
    run = Call(Store.run)
    get_run = Call(Store.get_run)
    runs = Call(Store.runs)
    lineage = Call(Store.lineage)
    export = Call(Store.export)
    import_bundle = Call(Store.import_bundle)
    push = Call(Store.push)
    pull = Call(Store.pull)
    remote_versions = Call(Store.remote_versions)
    remotes = Attr(Store.remotes)

    async def diff(
        self,
        a: str | ArtifactVersion | AsyncArtifactVersion,
        b: str | ArtifactVersion | AsyncArtifactVersion,
    ) -> Diff:
        """What changed from version ``a`` to version ``b`` (see :meth:`castore.Store.diff`)."""
        sync_a = a.sync if isinstance(a, AsyncArtifactVersion) else a
        sync_b = b.sync if isinstance(b, AsyncArtifactVersion) else b
        return await self._run(self._sync_obj.diff, sync_a, sync_b)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._sync_obj.closed

    async def close(self) -> None:
        """Wait for every call still running on the pool, then close the store."""
        await asyncio.to_thread(self._pool.executor.shutdown, wait=True)
        self._sync_obj.close()

    async def __aenter__(self) -> AsyncStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.shield(self.close())

    def __repr__(self) -> str:
        return f"<AsyncStore {self._sync_obj.path}>"


async def open_async(
    path: str | Path | None = None,
    *,
    workers: int = DEFAULT_WORKERS,
    create: bool = True,
    read_only: bool = False,
    durable: bool = True,
    hash: str | None = None,
    compression: str | None = None,
    level: int | None = None,
    min_saving: float | None = None,
) -> AsyncStore:
    """Open a store for asyncio code: :func:`castore.open` on a thread, then an AsyncStore
    whose blocking work runs on a pool of ``workers`` threads.

    Example:
        >>> astore = await castore.open_async("store")  # doctest: +SKIP
        >>> v = await astore.get("mnist:prod")  # doctest: +SKIP
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    pool = Pool(workers)
    try:
        store = await asyncio.wrap_future(
            pool.executor.submit(
                open_store,
                path,
                create=create,
                read_only=read_only,
                durable=durable,
                hash=hash,
                compression=compression,
                level=level,
                min_saving=min_saving,
            )
        )
    except BaseException:
        pool.executor.shutdown(wait=False)
        raise
    return AsyncStore(store, pool)
