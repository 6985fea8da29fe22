"""External references against real servers on loopback: a local ``http.server`` and moto's S3
server, both started here. Fetched on checkout/download and verified against the recorded size
and ETag or digest; ``allow_missing_references``; ``download(allow_patterns=,
ignore_patterns=)``."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

import castore
from castore.errors import IntegrityError, RemoteError


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory; files under etag/ get an ETag of their content's md5."""

    def log_message(self, *args: object) -> None:  # the library (and its tests) print nothing
        pass

    def end_headers(self) -> None:
        path = Path(self.translate_path(self.path))
        if "/etag/" in self.path and path.is_file():
            self.send_header("ETag", '"' + hashlib.md5(path.read_bytes()).hexdigest() + '"')
        super().end_headers()


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    (root / "etag").mkdir(parents=True)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(_Handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    pytest.importorskip("obstore")
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {
        "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="data")
    try:
        yield client
    finally:
        server.stop()


def test_http_references_with_and_without_etag(
    store: castore.Store, web: tuple[str, Path], tmp_path: Path
) -> None:
    base, root = web
    (root / "plain.bin").write_bytes(b"plain" * 1000)
    (root / "etag" / "e.json").write_bytes(b'{"a": 1}')
    d = store.draft("web")
    d.add_reference(f"{base}/plain.bin")
    d.add_reference(f"{base}/etag/e.json", name="e.json")
    v = d.finalize()
    entries = {e.path: e for e in v.files()}
    assert entries["plain.bin"].size == 5000
    assert entries["plain.bin"].digest.startswith("xxh3-128:")  # no ETag: the content hashed
    assert entries["e.json"].digest.startswith("etag:")
    assert entries["e.json"].ref == f"{base}/etag/e.json"
    out = v.checkout(tmp_path / "co")
    assert (out / "plain.bin").read_bytes() == b"plain" * 1000
    assert (out / "e.json").read_bytes() == b'{"a": 1}'
    assert v.verify(out).ok
    assert v.read_bytes("e.json") == b'{"a": 1}'
    # only what the patterns allow
    got = v.download(tmp_path / "dl", allow_patterns=["*.json"])
    assert sorted(p.name for p in got.iterdir()) == ["e.json"]
    got = v.download(tmp_path / "dl2", ignore_patterns="*.json")
    assert sorted(p.name for p in got.iterdir()) == ["plain.bin"]
    # changed on the server: refused before anything is written
    (root / "etag" / "e.json").write_bytes(b'{"a": 2}')
    with pytest.raises(IntegrityError, match="changed"):
        v.checkout(tmp_path / "co2")
    assert not (tmp_path / "co2").exists() or not any((tmp_path / "co2").iterdir())
    (root / "plain.bin").write_bytes(b"PLAIN" * 1000)  # same size, other bytes
    with pytest.raises(IntegrityError):
        v.download(tmp_path / "dl3", allow_patterns=["plain.bin"])
    assert not (tmp_path / "dl3" / "plain.bin").exists()


def test_unreachable_references(
    store: castore.Store, web: tuple[str, Path], tmp_path: Path
) -> None:
    base, root = web
    (root / "a.txt").write_bytes(b"a")
    (root / "b.txt").write_bytes(b"b")
    v = (
        store.draft("web").add_reference(f"{base}/a.txt").add_reference(f"{base}/b.txt")
        .add_bytes(b"local", name="local.txt").finalize()
    )
    (root / "b.txt").unlink()
    with pytest.raises(RemoteError, match=r"b\.txt"):
        v.checkout(tmp_path / "co")
    assert not (tmp_path / "co").exists()
    out = v.checkout(tmp_path / "co", allow_missing_references=True)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "a.txt", "local.txt"
    ]
    with pytest.raises(RemoteError, match="404"):
        store.draft("x").add_reference(f"{base}/nope.bin")
    port = _free_port()
    with pytest.raises(RemoteError, match="cannot reach"):
        store.draft("x").add_reference(f"http://127.0.0.1:{port}/x")


def test_s3_references(store: castore.Store, s3, tmp_path: Path) -> None:
    client = s3
    client.put_object(Bucket="data", Key="sets/train.csv", Body=b"x,y\n1,2\n")
    client.put_object(Bucket="data", Key="sets/sub/test.csv", Body=b"x,y\n3,4\n")
    client.put_object(Bucket="data", Key="model.bin", Body=b"\0" * 4096)
    d = store.draft("s3")
    d.add_reference("s3://data/model.bin")
    d.add_reference("s3://data/sets/", name="sets")
    v = d.finalize()
    entries = {e.path: e for e in v.files()}
    assert sorted(entries) == ["model.bin", "sets/sub/test.csv", "sets/train.csv"]
    assert entries["model.bin"].size == 4096 and entries["model.bin"].digest.startswith("etag:")
    out = v.checkout(tmp_path / "co")
    assert (out / "sets" / "sub" / "test.csv").read_bytes() == b"x,y\n3,4\n"
    assert v.verify(out).ok
    with pytest.raises(ValueError, match="max_objects=1"):
        store.draft("s3b").add_reference("s3://data/sets/", max_objects=1)
    client.put_object(Bucket="data", Key="model.bin", Body=b"\1" * 4096)  # new ETag
    with pytest.raises(IntegrityError, match="changed"):
        v.download(tmp_path / "dl")
    client.delete_object(Bucket="data", Key="model.bin")
    got = v.download(tmp_path / "dl2", allow_missing_references=True)
    assert sorted(p.relative_to(got).as_posix() for p in got.rglob("*.csv")) == [
        "sets/sub/test.csv", "sets/train.csv"
    ]
    assert not (got / "model.bin").exists()
