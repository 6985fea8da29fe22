"""The bridge of the async API: a bounded pool and descriptors that turn sync methods into
awaitable ones while keeping their signatures for type checkers (see :mod:`castore.aio`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

__all__ = ["Attr", "Call", "Chain", "Handle", "Pool", "Wrap", "chain"]

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")
T = TypeVar("T")
H = TypeVar("H", bound="Handle[Any]")


class Pool:
    """The bounded thread pool of one AsyncStore, shared by every handle it gives out."""

    def __init__(self, workers: int) -> None:
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="castore-aio"
        )


class Handle(Generic[T]):
    """An async handle over the sync object ``sync``; calls run in order on the pool."""

    def __init__(self, sync: T, pool: Pool) -> None:
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


class Call(Generic[T, P, R]):
    """``async def name(*args) -> R`` running the sync method ``fn`` on the pool."""

    def __init__(self, fn: Callable[Concatenate[T, P], R]) -> None:
        self._fn = fn

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Call[T, P, R]: ...
    @overload
    def __get__(
        self, obj: Handle[T], owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...
    def __get__(self, obj: Handle[T] | None, owner: type[Any]) -> Any:
        if obj is None:
            return self
        fn = self._fn
        handle = obj

        @functools.wraps(fn)
        async def call(*args: P.args, **kwargs: P.kwargs) -> R:
            return await handle._run(fn, handle._sync_obj, *args, **kwargs)

        return call


class Wrap(Generic[T, P, R, S]):
    """Like :class:`Call`, with the result converted (a sync handle to an async one)."""

    def __init__(
        self, fn: Callable[Concatenate[T, P], R], convert: Callable[[Pool, R], S]
    ) -> None:
        self._fn = fn
        self._convert = convert

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Wrap[T, P, R, S]: ...
    @overload
    def __get__(
        self, obj: Handle[T], owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, S]]: ...
    def __get__(self, obj: Handle[T] | None, owner: type[Any]) -> Any:
        if obj is None:
            return self
        fn, convert = self._fn, self._convert
        handle = obj

        @functools.wraps(fn)
        async def call(*args: P.args, **kwargs: P.kwargs) -> S:
            result = await handle._run(fn, handle._sync_obj, *args, **kwargs)
            return convert(handle._pool, result)

        return call


class Chain(Generic[T, P]):
    """Like :class:`Call` for methods that return their own handle: returns the async one."""

    def __init__(self, fn: Callable[Concatenate[T, P], object]) -> None:
        self._fn = fn

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Chain[T, P]: ...
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


def chain(cls: type[T], fn: Callable[Concatenate[T, P], object]) -> Chain[T, P]:
    """:class:`Chain` with the handle class given: binds methods typed ``-> Self``."""
    return Chain(fn)


class Attr(Generic[T, R]):
    """A snapshot attribute of the sync handle, read without I/O (so not awaited)."""

    def __init__(self, getter: Callable[[T], R]) -> None:
        self._get = getter.fget if isinstance(getter, property) else getter

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Attr[T, R]: ...
    @overload
    def __get__(self, obj: Handle[T], owner: type[Any]) -> R: ...
    def __get__(self, obj: Handle[T] | None, owner: type[Any]) -> Any:
        if obj is None:
            return self
        return self._get(obj._sync_obj)


