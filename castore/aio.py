"""The async API: :func:`open_async` -> :class:`AsyncStore`, whose every method is awaitable.

One implementation: each async method runs the sync method of the wrapped handle on the store's
bounded thread pool (zarr's ``core/sync.py`` shape, turned around: here the core is sync). The
wrappers are generated from the sync methods by three descriptors that keep their signatures
for type checkers: :class:`_Call` (same result), :class:`_Wrap` (the result becomes an async
handle) and :class:`_Chain` (methods that return their own handle, such as ``add_file``).

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
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Concatenate, Generic, ParamSpec, TypeVar, overload

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

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")
T = TypeVar("T")
H = TypeVar("H", bound="_Handle[Any]")


class _Pool:
    """The bounded thread pool of one AsyncStore, shared by every handle it gives out."""

    def __init__(self, workers: int) -> None:
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="castore-aio"
        )


class _Handle(Generic[T]):
    """An async handle over the sync object ``sync``; calls run in order on the pool."""

    def __init__(self, sync: T, pool: _Pool) -> None:
        self._sync_obj = sync
        self._pool = pool
        self._last: concurrent.futures.Future[Any] | None = None

    @property
    def sync(self) -> T:
        """The sync handle this one wraps (for calls from a thread of your own)."""
        return self._sync_obj

    async def _run(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        previous = self._last

        def job() -> R:
            # In call order: wait for the previous call on this handle, even a cancelled one
            # that is still running on its thread. The pool's queue is FIFO, so the previous
            # job has a thread before this one does: no deadlock.
            if previous is not None:
                concurrent.futures.wait([previous])
            return fn(*args, **kwargs)

        future = self._pool.executor.submit(job)
        self._last = future
        # Cancelling the await cancels the job if it has not started; a started job finishes.
        return await asyncio.wrap_future(future)

    async def _settle(self) -> None:
        """Wait (through a cancellation too) until every call made on this handle has ended."""
        last = self._last
        if last is not None:
            await asyncio.shield(asyncio.wrap_future(last))


class _Call(Generic[T, P, R]):
    """``async def name(*args) -> R`` running the sync method ``fn`` on the pool."""

    def __init__(self, fn: Callable[Concatenate[T, P], R]) -> None:
        self._fn = fn

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> _Call[T, P, R]: ...
    @overload
    def __get__(
        self, obj: _Handle[T], owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...
    def __get__(self, obj: _Handle[T] | None, owner: type[Any]) -> Any:
        if obj is None:
            return self
        fn = self._fn
        handle = obj

        @functools.wraps(fn)
        async def call(*args: P.args, **kwargs: P.kwargs) -> R:
            return await handle._run(fn, handle._sync_obj, *args, **kwargs)

        return call


class _Wrap(Generic[T, P, R, S]):
    """Like :class:`_Call`, with the result converted (a sync handle to an async one)."""

    def __init__(
        self, fn: Callable[Concatenate[T, P], R], convert: Callable[[_Pool, R], S]
    ) -> None:
        self._fn = fn
        self._convert = convert

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> _Wrap[T, P, R, S]: ...
    @overload
    def __get__(
        self, obj: _Handle[T], owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, S]]: ...
    def __get__(self, obj: _Handle[T] | None, owner: type[Any]) -> Any:
        if obj is None:
            return self
        fn, convert = self._fn, self._convert
        handle = obj

        @functools.wraps(fn)
        async def call(*args: P.args, **kwargs: P.kwargs) -> S:
            result = await handle._run(fn, handle._sync_obj, *args, **kwargs)
            return convert(handle._pool, result)

        return call


class _Chain(Generic[T, P]):
    """Like :class:`_Call` for methods that return their own handle: returns the async one."""

    def __init__(self, fn: Callable[Concatenate[T, P], object]) -> None:
        self._fn = fn

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> _Chain[T, P]: ...
    @overload
    def __get__(self, obj: H, owner: type[Any]) -> Callable[P, Coroutine[Any, Any, H]]: ...
    def __get__(self, obj: Any, owner: type[Any]) -> Any:
        if obj is None:
            return self
        fn = self._fn
        handle = obj

        @functools.wraps(fn)
        async def call(*args: P.args, **kwargs: P.kwargs) -> Any:
            await handle._run(fn, handle._sync_obj, *args, **kwargs)
            return handle

        return call


def _chain(cls: type[T], fn: Callable[Concatenate[T, P], object]) -> _Chain[T, P]:
    """:class:`_Chain` with the handle class given: binds methods typed ``-> Self``."""
    return _Chain(fn)


class _Attr(Generic[T, R]):
    """A snapshot attribute of the sync handle, read without I/O (so not awaited)."""

    def __init__(self, getter: Callable[[T], R]) -> None:
        self._get = getter.fget if isinstance(getter, property) else getter

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> _Attr[T, R]: ...
    @overload
    def __get__(self, obj: _Handle[T], owner: type[Any]) -> R: ...
    def __get__(self, obj: _Handle[T] | None, owner: type[Any]) -> Any:
        if obj is None:
            return self
        return self._get(obj._sync_obj)


# -- conversions ---------------------------------------------------------------------------


def _version(pool: _Pool, v: ArtifactVersion) -> AsyncArtifactVersion:
    return AsyncArtifactVersion(v, pool)


def _versions(pool: _Pool, vs: list[ArtifactVersion]) -> list[AsyncArtifactVersion]:
    return [AsyncArtifactVersion(v, pool) for v in vs]


def _page(pool: _Pool, page: Page[ArtifactVersion]) -> Page[AsyncArtifactVersion]:
    return Page[AsyncArtifactVersion](
        items=_versions(pool, page.items),
        total=page.total,
        limit=page.limit,
        offset=page.offset,
        has_more=page.has_more,
    )


def _collection(pool: _Pool, c: Collection) -> AsyncCollection:
    return AsyncCollection(c, pool)


def _collections(pool: _Pool, cs: list[Collection]) -> list[AsyncCollection]:
    return [AsyncCollection(c, pool) for c in cs]


def _draft(pool: _Pool, d: Draft) -> AsyncDraft:
    return AsyncDraft.of(d, pool)


def _drafts(pool: _Pool, ds: list[Draft]) -> list[AsyncDraft]:
    return [AsyncDraft.of(d, pool) for d in ds]


def _reader(pool: _Pool, f: BinaryIO) -> AsyncReader:
    return AsyncReader(f, pool)


# -- handles -------------------------------------------------------------------------------


class AsyncReader(_Handle[BinaryIO]):
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


class AsyncArtifactVersion(_Handle[ArtifactVersion]):
    """An :class:`~castore.ArtifactVersion` whose methods are awaitable; its snapshot
    attributes (``id``, ``ref``, ``digest``, ``aliases``, ...) are read without awaiting."""

    id = _Attr(ArtifactVersion.id)
    collection = _Attr(ArtifactVersion.collection)
    type = _Attr(ArtifactVersion.type)
    number = _Attr(ArtifactVersion.number)
    version = _Attr(ArtifactVersion.version)
    ref = _Attr(ArtifactVersion.ref)
    digest = _Attr(ArtifactVersion.digest)
    size = _Attr(ArtifactVersion.size)
    file_count = _Attr(ArtifactVersion.file_count)
    state = _Attr(ArtifactVersion.state)
    aliases = _Attr(ArtifactVersion.aliases)
    tags = _Attr(ArtifactVersion.tags)
    metadata = _Attr(ArtifactVersion.metadata)
    description = _Attr(ArtifactVersion.description)
    created_at: _Attr[ArtifactVersion, datetime] = _Attr(ArtifactVersion.created_at)
    updated_at: _Attr[ArtifactVersion, datetime] = _Attr(ArtifactVersion.updated_at)
    ttl: _Attr[ArtifactVersion, timedelta | None] = _Attr(ArtifactVersion.ttl)
    expires_at: _Attr[ArtifactVersion, datetime | None] = _Attr(ArtifactVersion.expires_at)
    producer = _Attr(ArtifactVersion.producer)
    manifest_blob = _Attr(ArtifactVersion.manifest_blob)

    refresh = _Chain(ArtifactVersion.refresh)
    get_entry = _Call(ArtifactVersion.get_entry)
    checkout = _Call(ArtifactVersion.checkout)
    download = _Call(ArtifactVersion.download)
    file = _Call(ArtifactVersion.file)
    verify = _Call(ArtifactVersion.verify)
    open = _Wrap(ArtifactVersion.open, _reader)
    copy_to = _Call(ArtifactVersion.copy_to)
    read_bytes = _Call(ArtifactVersion.read_bytes)
    read_text = _Call(ArtifactVersion.read_text)
    new_draft = _Wrap(ArtifactVersion.new_draft, _draft)
    add_alias = _Chain(ArtifactVersion.add_alias)
    remove_alias = _Chain(ArtifactVersion.remove_alias)
    add_tags = _Chain(ArtifactVersion.add_tags)
    remove_tags = _Chain(ArtifactVersion.remove_tags)
    update = _Chain(ArtifactVersion.update)
    set_ttl = _Chain(ArtifactVersion.set_ttl)
    delete = _Call(ArtifactVersion.delete)
    logged_by = _Call(ArtifactVersion.logged_by)
    used_by = _Call(ArtifactVersion.used_by)

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


class AsyncCollection(_Handle[Collection]):
    """A :class:`~castore.Collection` whose methods are awaitable."""

    name = _Attr(Collection.name)
    type = _Attr(Collection.type)
    description = _Attr(Collection.description)
    tags = _Attr(Collection.tags)
    metadata = _Attr(Collection.metadata)
    default_ttl: _Attr[Collection, timedelta | None] = _Attr(Collection.default_ttl)
    created_at: _Attr[Collection, datetime] = _Attr(Collection.created_at)

    refresh = _Chain(Collection.refresh)
    alias_history = _Call(Collection.alias_history)
    versions = _Wrap(Collection.versions, _versions)
    update = _Chain(Collection.update)
    delete = _Call(Collection.delete)

    async def aliases(self) -> dict[str, str]:
        """``{alias: "vN"}`` (read from the catalogue, so awaited)."""
        return await self._run(lambda: self._sync_obj.aliases)

    def __repr__(self) -> str:
        return f"<Async{self._sync_obj!r}"[:-1] + ">"


class AsyncDraft(_Handle[Draft]):
    """A :class:`~castore.Draft` whose methods are awaitable.

    ``astore.draft(...)`` is not awaited: the draft is started on ``async with`` (or by
    ``await astore.draft(...)``). On leaving ``async with`` normally it is finalized; on an
    exception (a cancellation too) it is discarded, after any call still running on it.
    """

    def __init__(self, start: Callable[[], Draft], pool: _Pool) -> None:
        self._start: Callable[[], Draft] | None = start
        super().__init__(None, pool)  # type: ignore[arg-type]  # set by _ensure()
        self.version: AsyncArtifactVersion | None = None

    @classmethod
    def of(cls, draft: Draft, pool: _Pool) -> AsyncDraft:
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

    add_file = _chain(Draft, Draft.add_file)
    add_bytes = _chain(Draft, Draft.add_bytes)
    add_dir = _chain(Draft, Draft.add_dir)
    add_reference = _chain(Draft, Draft.add_reference)
    remove = _chain(Draft, Draft.remove)
    discard = _Call(Draft.discard)

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


class AsyncStore(_Handle[Store]):
    """A :class:`~castore.Store` whose every method is awaitable; get one from
    :func:`open_async`. Handles it returns are async too (:class:`AsyncArtifactVersion`,
    :class:`AsyncCollection`, :class:`AsyncDraft`)."""

    def __init__(self, store: Store, pool: _Pool) -> None:
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

    drafts = _Wrap(Store.drafts, _drafts)
    get = _Wrap(Store.get, _version)
    collection = _Wrap(Store.collection, _collection)
    collections = _Wrap(Store.collections, _collections)
    versions = _Wrap(Store.versions, _page)
    count = _Call(Store.count)
    latest = _Wrap(Store.latest, _versions)
    types = _Call(Store.types)
    gc = _Call(Store.gc)
    prune = _Call(Store.prune)
    fsck = _Call(Store.fsck)
    stats = _Call(Store.stats)

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
) -> AsyncStore:
    """Open a store for asyncio code: :func:`castore.open` on a thread, then an AsyncStore
    whose blocking work runs on a pool of ``workers`` threads.

    Example:
        >>> astore = await castore.open_async("store")  # doctest: +SKIP
        >>> v = await astore.get("mnist:prod")  # doctest: +SKIP
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    pool = _Pool(workers)
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
            )
        )
    except BaseException:
        pool.executor.shutdown(wait=False)
        raise
    return AsyncStore(store, pool)
