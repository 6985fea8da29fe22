"""OCI registry remotes against a real registry: Debian's docker-registry on loopback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import harness
import pytest
import servers

import castore
from castore.errors import AliasConflictError, BundleError, RemoteError
from castore.transfer.registry import RegistryRemote, name_of_tag, tag_of

pytest.importorskip("httpx")
pytestmark = pytest.mark.skipif(servers.registry_binary() is None,
                                reason="docker-registry not installed")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[servers.Registry]:
    server = servers.Registry(tmp_path / "registry")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _src(path: Path) -> castore.Store:
    store = castore.init(path, durable=False)
    harness.finalize(store, "ds", {"a.txt": b"A0", "big.bin": os.urandom(200_000)})
    harness.finalize(store, "ds", {"a.txt": b"A1", "big.bin": b"B" * 5000}, aliases=["prod"])
    return store


def test_push_pull_tags_and_second_push(tmp_path: Path, registry: servers.Registry) -> None:
    url = registry.url("team/artifacts")
    src = _src(tmp_path / "src")
    first = src.push(url)
    assert first.blobs_sent == 4
    second = src.push(url)
    assert (second.blobs_sent, second.bytes_sent, second.blobs_skipped) == (0, 0, 4)
    tags = registry.get_json("/v2/team/artifacts/tags/list")["tags"]
    assert sorted(tags) == ["ds-latest", "ds-prod", "ds-v0", "ds-v1"]
    listed = src.remote_versions(url)
    assert [(v.ref, v.aliases) for v in listed] == [("ds:v0", []), ("ds:v1", ["latest", "prod"])]
    dst = castore.init(tmp_path / "dst", durable=False)
    assert dst.pull(url, refs=["ds:prod"]).versions == ["ds:v1"]
    dst.pull(url)
    assert harness.snapshot(dst) == harness.snapshot(src)
    assert dst.get("ds:v0").read_bytes("big.bin") == src.get("ds:v0").read_bytes("big.bin")


def test_chunked_upload_of_a_big_blob(tmp_path: Path, registry: servers.Registry,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from castore.transfer import registry as reg

    monkeypatch.setattr(reg, "CHUNK", 64 * 1024)
    data = os.urandom(300_000)
    src = castore.init(tmp_path / "src", durable=False)
    harness.finalize(src, "big", {"x.bin": data})
    src.push(registry.url("team/big"))
    dst = castore.init(tmp_path / "dst", durable=False)
    dst.pull(registry.url("team/big"))
    assert dst.get("big:v0").read_bytes("x.bin") == data


def test_alias_move_checks_the_tag_first(tmp_path: Path, registry: servers.Registry) -> None:
    url = registry.url("team/artifacts")
    a = _src(tmp_path / "a")
    a.push(url)
    b = castore.init(tmp_path / "b", durable=False)
    b.pull(url)
    b.get("ds:v0").add_alias("best")
    a.get("ds:v1").add_alias("best")
    a.push(url, refs=["ds:best"])
    with pytest.raises(AliasConflictError):
        b.push(url, refs=["ds:best"])
    remote = RegistryRemote(url)
    try:
        current, token = remote.get_ref("ds:best")
        assert current is not None and current.note("vnd.castore.version.number") == "1"
        v0, _ = remote.get_ref("ds:v0")
        assert v0 is not None
        assert remote.set_ref("ds:best", v0, "sha256:" + "0" * 64) is False  # stale token
        assert remote.set_ref("ds:best", v0, token) is True
    finally:
        remote.close()


def test_skopeo_inspects_a_pushed_version(tmp_path: Path, registry: servers.Registry) -> None:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo not installed")
    src = _src(tmp_path / "src")
    src.push(registry.url("team/artifacts"))
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false",
         f"docker://{registry.host}/team/artifacts:ds-v1"],
        check=True, capture_output=True, text=True).stdout
    manifest = json.loads(raw)
    assert manifest["artifactType"] == "application/vnd.castore.version.v1+json"
    assert manifest["annotations"]["vnd.castore.version.id"] == src.get("ds:v1").id
    titles = sorted(la["annotations"]["org.opencontainers.image.title"]
                    for la in manifest["layers"])
    assert titles == ["a.txt", "big.bin"]


def test_bundle_copied_in_with_skopeo_is_pullable(tmp_path: Path,
                                                  registry: servers.Registry) -> None:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo not installed")
    src = _src(tmp_path / "src")
    src.export(tmp_path / "b.tar")
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false",
                    f"oci-archive:{tmp_path}/b.tar:ds:v1",
                    f"docker://{registry.host}/site/mirror:ds-v1"],
                   check=True, capture_output=True)
    dst = castore.init(tmp_path / "dst", durable=False)
    report = dst.pull(registry.url("site/mirror"))
    assert report.versions == ["ds:v1"]
    assert dst.get("ds:v1").id == src.get("ds:v1").id
    assert dst.get("ds:v1").read_bytes("big.bin") == b"B" * 5000


def test_hostile_blob_in_the_registry_lands_nothing(tmp_path: Path,
                                                    registry: servers.Registry) -> None:
    src = _src(tmp_path / "src")
    src.push(registry.url("team/artifacts"))
    data = registry.root / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256"
    victim = next(p for p in data.rglob("data") if p.stat().st_size == 5000)
    victim.write_bytes(b"C" * 5000)  # the registry serves it as stored
    dst = castore.init(tmp_path / "dst", durable=False)
    with pytest.raises(BundleError, match="does not match"):
        dst.pull(registry.url("team/artifacts"))
    assert dst.versions().items == []
    assert list(dst.blobs.iter_tmp()) == []


def test_registry_down_is_a_remote_error(tmp_path: Path, registry: servers.Registry) -> None:
    src = _src(tmp_path / "src")
    src.remotes.add("hub", registry.url("team/artifacts"), retries=1)
    registry.stop()
    with pytest.raises(RemoteError, match=registry.host):
        src.push("hub")


def test_budget_with_a_registry(tmp_path: Path, registry: servers.Registry) -> None:
    src = _src(tmp_path / "src")
    src.remotes.add("hub", registry.url("team/artifacts"))
    src.push("hub")
    before = src.get("ds:v0").read_bytes("big.bin")
    src.set_budget(0)
    assert src.gc().blobs_evicted == 4
    assert src.fsck().ok
    assert src.get("ds:v0").read_bytes("big.bin") == before


def test_tag_mapping() -> None:
    assert tag_of("ds:v3") == "ds-v3"
    assert tag_of("my.data_set:prod") == "my.data_set-prod"
    assert tag_of("-x:v1") == "_-x-v1"
    assert name_of_tag("_-x-v1", "-x") == "-x:v1"
    assert name_of_tag("a-b-v1", "a-b") == "a-b:v1"
    assert name_of_tag("a-b-v1", "a") == "a:b-v1"
    assert name_of_tag("other", "ds") is None
    with pytest.raises(RemoteError, match="128"):
        tag_of("c" * 100 + ":" + "a" * 40)
