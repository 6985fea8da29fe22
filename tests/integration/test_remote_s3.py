"""S3 remotes against a real S3 API: moto's server on loopback, started here."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness
import pytest
import servers

import castore
from castore.errors import AliasConflictError, BundleError, RemoteError
from castore.transfer.s3 import S3Remote

pytest.importorskip("moto.server")
pytest.importorskip("obstore")


@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[servers.Moto]:
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    server = servers.Moto()
    server.start()
    server.create_bucket()
    try:
        yield server
    finally:
        server.stop()


def _src(path: Path, moto: servers.Moto, **options: Any) -> castore.Store:
    store = castore.init(path, durable=False)
    store.remotes.add("team", f"s3://{moto.bucket}/team/artifacts", endpoint=moto.endpoint,
                      **options)
    harness.finalize(store, "ds", {"a.txt": b"A0", "big.bin": os.urandom(3 * 1024 * 1024)})
    harness.finalize(store, "ds", {"a.txt": b"A1", "big.bin": b"B" * 5000}, aliases=["prod"])
    return store


def _dst(path: Path, moto: servers.Moto) -> castore.Store:
    store = castore.init(path, durable=False)
    store.remotes.add("team", f"s3://{moto.bucket}/team/artifacts", endpoint=moto.endpoint)
    return store


def test_push_pull_byte_for_byte_and_second_push_sends_nothing(tmp_path: Path,
                                                                moto: servers.Moto) -> None:
    src = _src(tmp_path / "src", moto)
    first = src.push("team")
    assert first.blobs_sent == 4 and first.blobs_skipped == 0
    second = src.push("team")
    assert (second.blobs_sent, second.bytes_sent) == (0, 0)
    assert second.blobs_skipped == 4
    listed = src.remote_versions("team")
    assert [(v.ref, v.aliases) for v in listed] == [("ds:v0", []), ("ds:v1", ["latest", "prod"])]
    dst = _dst(tmp_path / "dst", moto)
    assert dst.pull("team", refs=["ds:prod"]).versions == ["ds:v1"]
    dst.pull("team")
    assert harness.snapshot(dst) == harness.snapshot(src)
    for ref in ("ds:v0", "ds:v1"):
        for path in ("a.txt", "big.bin"):
            assert dst.get(ref).read_bytes(path) == src.get(ref).read_bytes(path)
    # the layout: blobs by sha256 and one object per ref
    remote = S3Remote(f"s3://{moto.bucket}/team/artifacts", endpoint=moto.endpoint)
    assert sorted(remote.list_refs()) == ["ds:latest", "ds:prod", "ds:v0", "ds:v1"]


def test_large_blob_goes_up_in_parts(tmp_path: Path, moto: servers.Moto,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from castore.transfer import s3

    monkeypatch.setattr(s3, "CHUNK", 5 * 1024 * 1024)  # S3's smallest part
    store = castore.init(tmp_path / "src", durable=False)
    data = os.urandom(12 * 1024 * 1024 + 7)
    harness.finalize(store, "big", {"x.bin": data})
    url = f"s3://{moto.bucket}/big"
    store.remotes.add("team", url, endpoint=moto.endpoint)
    store.push("team")
    dst = _dst(tmp_path / "dst", moto)
    dst.remotes.remove("team")
    dst.remotes.add("team", url, endpoint=moto.endpoint)
    dst.pull("team")
    assert dst.get("big:v0").read_bytes("x.bin") == data


def test_two_stores_moving_the_same_alias_one_wins(tmp_path: Path, moto: servers.Moto,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    a = _src(tmp_path / "a", moto)
    a.push("team", refs=["ds:v0", "ds:v1"])
    b = _dst(tmp_path / "b", moto)
    b.pull("team")
    a.get("ds:v1").add_alias("best")
    b.get("ds:v0").add_alias("best")
    # both read "no best yet" before either writes: a real compare-and-swap race
    barrier = threading.Barrier(2, timeout=30)
    real = S3Remote.set_ref

    def racing(self: S3Remote, name: str, target: Any, token: Any) -> bool:
        if name == "ds:best":
            barrier.wait()
        return real(self, name, target, token)

    monkeypatch.setattr(S3Remote, "set_ref", racing)
    outcomes: dict[str, BaseException | None] = {}

    def push(name: str, store: castore.Store) -> None:
        try:
            store.push("team", refs=["ds:best"])
            outcomes[name] = None
        except BaseException as exc:  # recorded for the assertion
            outcomes[name] = exc

    threads = [threading.Thread(target=push, args=(n, s)) for n, s in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winners = [n for n, exc in outcomes.items() if exc is None]
    losers = [exc for exc in outcomes.values() if exc is not None]
    assert len(winners) == 1 and len(losers) == 1
    assert isinstance(losers[0], AliasConflictError)
    expected = {"a": "ds:v1", "b": "ds:v0"}[winners[0]]
    best = {v.ref for v in a.remote_versions("team") if "best" in v.aliases}
    assert best == {expected}


def test_server_stopped_mid_push_then_resumes(tmp_path: Path, moto: servers.Moto,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    src = _src(tmp_path / "src", moto, retries=1, parallel=1)
    real = S3Remote.put_blob
    calls = []

    def dying(self: S3Remote, digest: str, size: int, stream: Any) -> None:
        calls.append(digest)
        if len(calls) == 2:
            moto.stop()
        real(self, digest, size, stream)

    monkeypatch.setattr(S3Remote, "put_blob", dying)
    with pytest.raises(RemoteError, match="team/artifacts") as caught:
        src.push("team")
    assert caught.value.remote == f"s3://{moto.bucket}/team/artifacts"
    monkeypatch.setattr(S3Remote, "put_blob", real)
    moto.start()  # moto keeps its state in this process: the first blob is still there
    again = src.push("team")
    assert again.blobs_skipped >= 1
    assert again.blobs_sent + again.blobs_skipped == 4
    dst = _dst(tmp_path / "dst", moto)
    dst.pull("team")
    assert harness.snapshot(dst) == harness.snapshot(src)


def test_server_down_is_a_remote_error_naming_it(tmp_path: Path, moto: servers.Moto) -> None:
    src = _src(tmp_path / "src", moto, retries=1)
    moto.stop()
    with pytest.raises(RemoteError, match=f"s3://{moto.bucket}/team/artifacts"):
        src.push("team")
    with pytest.raises(RemoteError):
        src.remote_versions("team")


def test_hostile_blob_on_the_remote_lands_nothing(tmp_path: Path, moto: servers.Moto) -> None:
    import boto3

    src = _src(tmp_path / "src", moto)
    src.push("team")
    s3 = boto3.client("s3", endpoint_url=moto.endpoint, region_name="us-east-1")
    listed = s3.list_objects_v2(Bucket=moto.bucket, Prefix="team/artifacts/blobs/")
    victim = next(o for o in listed["Contents"] if o["Size"] == 5000)
    s3.put_object(Bucket=moto.bucket, Key=victim["Key"], Body=b"C" * 5000)
    dst = _dst(tmp_path / "dst", moto)
    with pytest.raises(BundleError, match="does not match"):
        dst.pull("team")
    assert dst.versions().items == []
    assert list(dst.blobs.iter_tmp()) == []


def test_budget_evicts_remote_held_blobs_and_reads_fetch_them_back(
    tmp_path: Path, moto: servers.Moto
) -> None:
    src = _src(tmp_path / "src", moto, retries=1)
    src.push("team", refs=["ds:v0"])  # v1's own blobs exist only here
    big = src.get("ds:v0").read_bytes("big.bin")
    only_here = src.get("ds:v1").get_entry("big.bin").digest
    src.set_budget(0)
    with castore.open(tmp_path / "src") as again:  # kept in the catalogue
        assert again.stats().budget == 0
    report = src.gc()
    assert report.blobs_evicted == 2
    assert report.bytes_evicted >= len(big)
    assert src.blobs.exists(only_here)  # the only copy is never evicted
    stats = src.stats()
    assert stats.remote_only_blobs == 2
    assert stats.remote_only_bytes == len(big) + 2
    assert sorted(v.ref for v in src.versions().items) == ["ds:v0", "ds:v1"]  # still listed
    fsck = src.fsck()
    assert fsck.ok
    assert {f.kind for f in fsck.findings} == {"evicted_blob"}
    assert all(f.severity == "info" for f in fsck.findings)
    assert src.get("ds:v0").read_bytes("big.bin") == big  # fetched back, verified
    assert src.stats().remote_only_blobs == 1
    src.gc()  # evicted again
    moto.stop()
    with pytest.raises(RemoteError, match="team") as caught:
        src.get("ds:v0").read_bytes("big.bin")
    assert caught.value.remote == "team"
    moto.start()
    out = src.get("ds:v0").download(tmp_path / "out")
    assert (out / "big.bin").read_bytes() == big
