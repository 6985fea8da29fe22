"""Bundles: round trips, the OCI layout read back by an independent reader, hostile members."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import harness
import pytest

import castore
from castore.errors import AliasConflictError, BundleError, VersionConflictError


def _source(tmp_path: Path) -> castore.Store:
    store = castore.init(tmp_path / "src")
    harness.finalize(store, "ds", {"a.txt": b"A0", "b/c.txt": b"x" * 1000})
    script = tmp_path / "run.sh"
    script.write_bytes(b"#!/bin/sh\n")
    script.chmod(0o755)
    draft = store.draft("ds", description="second", metadata={"acc": 0.9}, tags=["good"])
    draft.add_bytes(b"A1", "a.txt").add_bytes(b"x" * 1000, "b/c.txt").add_file(script)
    draft.finalize(aliases=["prod"])
    return store


def _read_layout(bundle: Path) -> dict[str, bytes]:
    """An independent OCI-layout reader: every member, every blob's sha256 checked."""
    members: dict[str, bytes] = {}
    with tarfile.open(bundle) as tar:
        for m in tar.getmembers():
            assert m.isreg(), m.name
            fh = tar.extractfile(m)
            assert fh is not None
            members[m.name] = fh.read()
    assert json.loads(members["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    for name, data in members.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    return members


def test_round_trip_and_layout(tmp_path: Path) -> None:
    src = _source(tmp_path)
    v1 = src.get("ds:prod")
    (tmp_path / "f").mkdir()
    report = src.export(tmp_path / "b.tar", refs=["ds:v0", "ds:prod"])
    assert report.versions == ["ds:v0", "ds:v1"]
    members = _read_layout(tmp_path / "b.tar")
    index = json.loads(members["index.json"])
    names = {d["annotations"]["org.opencontainers.image.ref.name"]: d for d in index["manifests"]}
    assert set(names) == {"ds:v0", "ds:v1", "ds:prod"}
    manifest = json.loads(members["blobs/sha256/" + names["ds:v1"]["digest"][7:]])
    assert manifest["artifactType"] == "application/vnd.castore.version.v1+json"
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    titles = {la["annotations"]["org.opencontainers.image.title"]: la for la in manifest["layers"]}
    assert set(titles) == {"a.txt", "b/c.txt", "run.sh"}
    assert members["blobs/sha256/" + titles["a.txt"]["digest"][7:]] == b"A1"
    config = json.loads(members["blobs/sha256/" + manifest["config"]["digest"][7:]])
    assert config["castore_version"]["id"] == v1.id

    dst = castore.init(tmp_path / "dst")
    got = dst.import_bundle(tmp_path / "b.tar")
    assert sorted(got.versions) == ["ds:v0", "ds:v1"]
    w = dst.get("ds:prod")
    assert (w.id, w.number, w.digest) == (v1.id, v1.number, v1.digest)
    assert dst.get("ds:v0").id == src.get("ds:v0").id
    assert (w.metadata, w.tags, w.description) == ({"acc": 0.9}, ["good"], "second")
    out = tmp_path / "co"
    w.checkout(out)
    assert (out / "run.sh").stat().st_mode & 0o111
    assert harness.snapshot(dst) == harness.snapshot(src)
    # a second import changes nothing
    before = harness.snapshot(dst)
    again = dst.import_bundle(tmp_path / "b.tar")
    assert again.blobs_sent == 0 and harness.snapshot(dst) == before


def test_sha256_remembered(tmp_path: Path) -> None:
    src = _source(tmp_path)
    src.export(tmp_path / "b.tar")
    rows = src.catalog.execute("SELECT COUNT(*) FROM blob_sha256").fetchone()[0]
    assert rows == 4  # A0, A1, the shared 1000 bytes, run.sh


def test_rekey_into_other_algorithm(tmp_path: Path) -> None:
    src = _source(tmp_path)
    src.export(tmp_path / "b.tar")
    dst = castore.init(tmp_path / "dst", hash="sha256")
    dst.import_bundle(tmp_path / "b.tar")
    v = dst.get("ds:prod")
    assert v.digest.startswith("sha256:")
    assert dst.fsck().ok
    out = tmp_path / "co"
    v.checkout(out)
    assert (out / "a.txt").read_bytes() == b"A1"


def test_many_files_group_into_tar_layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from castore.transfer import outbound

    monkeypatch.setattr(outbound, "MAX_FILE_LAYERS", 5)
    src = castore.init(tmp_path / "src")
    files = {f"d/f{i}.txt": f"file {i}".encode() for i in range(30)}
    harness.finalize(src, "many", files)
    src.export(tmp_path / "b.tar")
    members = _read_layout(tmp_path / "b.tar")
    index = json.loads(members["index.json"])
    manifest = json.loads(members["blobs/sha256/" + index["manifests"][0]["digest"][7:]])
    kinds = [la["mediaType"] for la in manifest["layers"]]
    assert kinds == ["application/vnd.oci.image.layer.v1.tar"]
    dst = castore.init(tmp_path / "dst")
    dst.import_bundle(tmp_path / "b.tar")
    assert harness.snapshot(dst) == harness.snapshot(src)


def test_conflicts(tmp_path: Path) -> None:
    src = _source(tmp_path)
    src.export(tmp_path / "b.tar")
    dst = castore.init(tmp_path / "dst")
    harness.finalize(dst, "ds", {"other": b"o"})  # a different ds:v0
    with pytest.raises(VersionConflictError):
        dst.import_bundle(tmp_path / "b.tar")
    assert [v.ref for v in dst.versions().items] == ["ds:v0"]
    dst.import_bundle(tmp_path / "b.tar", renumber=True)
    assert dst.get(src.get("ds:v0").id).number != 0

    dst2 = castore.init(tmp_path / "dst2")
    dst2.import_bundle(tmp_path / "b.tar")
    dst2.get("ds:v0").add_alias("prod")
    with pytest.raises(AliasConflictError):
        dst2.import_bundle(tmp_path / "b.tar")
    dst2.import_bundle(tmp_path / "b.tar", force=True)
    assert dst2.get("ds:prod").number == 1


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _reg(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def _special(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
HOSTILE = {
    "symlink": [(_special("index.json", tarfile.SYMTYPE, "/etc/passwd"), None)],
    "hardlink": [(_special("oci-layout", tarfile.LNKTYPE, "x"), None)],
    "device": [(_special("blobs/sha256/" + "0" * 64, tarfile.CHRTYPE), None)],
    "fifo": [(_special("index.json", tarfile.FIFOTYPE), None)],
    "dotdot": [(_reg("../evil"), b"x")],
    "absolute": [(_reg("/etc/evil"), b"x")],
    "unknown": [(_reg("notes.txt"), b"x")],
    "duplicate": [(_reg("oci-layout"), LAYOUT), (_reg("oci-layout"), LAYOUT)],
    "bad-digest": [(_reg("oci-layout"), LAYOUT), (_reg("blobs/sha256/" + "0" * 64), b"x")],
    "big-json": [(_reg("oci-layout"), LAYOUT), (_reg("index.json"), b" " * (5 << 20))],
    "bad-index": [(_reg("oci-layout"), LAYOUT), (_reg("index.json"), b'{"manifests": 3}')],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_members(tmp_path: Path, store: castore.Store, case: str) -> None:
    bundle = _tar(tmp_path / "h.tar", HOSTILE[case])
    before = harness.snapshot(store)
    with pytest.raises(BundleError) as info:
        store.import_bundle(bundle)
    first = HOSTILE[case][-1][0].name
    assert first in str(info.value) or case in ("bad-index", "big-json")
    assert harness.snapshot(store) == before
    assert list(store.blobs.iter_tmp()) == []


def test_tampered_file_is_refused(tmp_path: Path) -> None:
    src = _source(tmp_path)
    src.export(tmp_path / "b.tar")
    members = _read_layout(tmp_path / "b.tar")
    # Replace a file layer's bytes consistently (new name = new sha256): the manifest no
    # longer names it, so the bundle lacks a blob.
    victim = next(n for n, d in members.items() if d == b"A1")
    evil = b"B1"
    members.pop(victim)
    members["blobs/sha256/" + hashlib.sha256(evil).hexdigest()] = evil
    out = tmp_path / "t.tar"
    _tar(out, [(_reg(n), d) for n, d in members.items()])
    dst = castore.init(tmp_path / "dst")
    with pytest.raises(BundleError, match="lacks"):
        dst.import_bundle(out)
    assert dst.versions().items == []


def test_truncated_bundle(tmp_path: Path) -> None:
    src = _source(tmp_path)
    src.export(tmp_path / "b.tar")
    data = (tmp_path / "b.tar").read_bytes()
    (tmp_path / "t.tar").write_bytes(data[: len(data) // 2])
    dst = castore.init(tmp_path / "dst")
    with pytest.raises(BundleError):
        dst.import_bundle(tmp_path / "t.tar")
    assert dst.versions().items == []


def test_progress_called(tmp_path: Path) -> None:
    src = _source(tmp_path)
    seen: list[tuple[int, int]] = []
    src.export(tmp_path / "b.tar", progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1][0] == seen[-1][1]
