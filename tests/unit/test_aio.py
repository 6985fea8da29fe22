"""The async API: every method awaitable, handles async, cancellation leaves the store
consistent (a cancelled finalize either committed or not)."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import castore
from castore.aio import AsyncArtifactVersion, AsyncCollection, AsyncDraft, AsyncStore


def _public(cls: type) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_")}


@pytest.mark.parametrize(
    ("sync", "async_"),
    [
        (castore.Store, AsyncStore),
        (castore.ArtifactVersion, AsyncArtifactVersion),
        (castore.Collection, AsyncCollection),
        (castore.Draft, AsyncDraft),
    ],
)
def test_every_public_method_has_an_async_twin(sync: type, async_: type) -> None:
    # Not offered: new_file (a sync writable file; use add_bytes), the store's internals.
    skipped = {"new_file", "parts", "layout", "config", "read_only", "durable", "blobs",
               "catalog", "hash", "paths", "version"}
    missing = _public(sync) - _public(async_) - skipped
    assert not missing, f"{async_.__name__} lacks {sorted(missing)}"


def test_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "model.pt"
    src.write_bytes(b"weights" * 1000)

    async def main() -> None:
        async with await castore.open_async(tmp_path / "store", durable=False) as astore:
            async with astore.draft("m", type="model", tags=["t"]) as d:
                assert isinstance(d, AsyncDraft)
                await d.add_file(src)
                await (await d.add_bytes(b"cfg", name="c.json")).remove("c.json")
            assert d.version is not None and d.version.ref == "m:v0"
            v = await astore.get("m:latest")
            assert isinstance(v, AsyncArtifactVersion) and v.tags == ["t"]
            assert await v.read_bytes("model.pt") == src.read_bytes()
            await v.add_alias("prod")
            assert "prod" in v.aliases
            root = await v.checkout(tmp_path / "work")
            assert (Path(root) / "model.pt").read_bytes() == src.read_bytes()
            async with await v.open("model.pt") as f:
                await f.seek(7)
                assert await f.read(7) == b"weights"
            assert [e.path for e in await v.files()] == ["model.pt"]
            page = await astore.versions(collection="m")
            assert page.total == 1 and isinstance(page.items[0], AsyncArtifactVersion)
            assert await astore.count(collection="m") == 1
            (c,) = await astore.collections()
            assert c.name == "m" and (await c.aliases())["prod"] == "v0"
            d2 = await astore.draft("m")
            await d2.add_bytes(b"x", name="x")
            v1 = await d2.finalize(aliases=["next"])
            assert (await astore.diff(v, v1)).added
            assert (await astore.fsck()).ok
        assert astore.closed

    asyncio.run(main())


def test_concurrent_drafts(tmp_path: Path) -> None:
    async def main() -> None:
        async with await castore.open_async(tmp_path / "s", durable=False, workers=3) as astore:

            async def one(i: int) -> str:
                async with astore.draft(f"c{i % 3}") as d:
                    await d.add_bytes(f"{i}".encode(), name=f"f{i}")
                assert d.version is not None
                return d.version.ref

            refs = await asyncio.gather(*(one(i) for i in range(12)))
            assert len(set(refs)) == 12
            assert (await astore.fsck()).ok

    asyncio.run(main())


#: The awaits a draft passes through, in order: start, add_bytes x2, add_file, finalize.
AWAIT_POINTS = 5


@settings(max_examples=25, deadline=None)
@given(cancel_at=st.integers(0, AWAIT_POINTS), delay=st.sampled_from([0.0, 0.0005, 0.002]))
def test_cancellation_leaves_store_consistent(
    tmp_path_factory: pytest.TempPathFactory, cancel_at: int, delay: float
) -> None:
    root = tmp_path_factory.mktemp("cancel")
    src = root / "big.bin"
    src.write_bytes(b"0123456789abcdef" * 40_000)

    async def main() -> None:
        async with await castore.open_async(root / "store", durable=False) as astore:
            reached = asyncio.Event()
            count = 0

            async def point() -> None:
                nonlocal count
                if count == cancel_at:
                    reached.set()
                count += 1

            async def work() -> None:
                await point()
                async with astore.draft("ds") as d:
                    await point()
                    await d.add_bytes(b"a" * 1000, name="a")
                    await point()
                    await d.add_bytes(b"b" * 1000, name="b")
                    await point()
                    await d.add_file(src, name="big.bin")
                    await point()
                    await d.finalize()

            task = asyncio.create_task(work())
            waiter = asyncio.create_task(reached.wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if delay:
                await asyncio.sleep(delay)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            waiter.cancel()
            # The draft was committed in full or not at all; nothing is left pending.
            assert await astore.drafts() == []
            page = await astore.versions(collection="ds")
            if page.total:
                v = page.items[0]
                assert sorted(e.path for e in await v.files()) == ["a", "b", "big.bin"]
                await v.verify()
            report = await astore.fsck()
            assert report.ok, report

    asyncio.run(main())


def test_open_async_rejects_bad_workers(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="workers"):
        asyncio.run(castore.open_async(tmp_path / "s", workers=0))


def test_wrappers_keep_signatures() -> None:
    sig = inspect.signature(AsyncStore(castore.Store.__new__(castore.Store), None).gc)  # type: ignore[arg-type]
    assert "dry_run" in sig.parameters
