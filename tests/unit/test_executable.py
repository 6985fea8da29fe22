"""The executable bit (issue 9 item 14): recorded per entry, restored, verified and diffed."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

import castore
from castore.manifest import artifact_digest, decode_manifest, encode_manifest
from castore.models import ManifestEntry

_D = "xxh3-128:" + "0" * 32


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def _perm(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    (root / "bin" / "run.sh").chmod(0o755)
    (root / "bin" / "owner-only").write_bytes(b"#!/bin/sh\n")
    (root / "bin" / "owner-only").chmod(0o744)  # any x bit counts
    (root / "lib.py").write_bytes(b"#!/bin/sh\necho hi\n")  # same bytes, not executable
    (root / "lib.py").chmod(0o644)
    return root


def test_add_dir_records_the_executable_bit(store: castore.Store, scripts: Path) -> None:
    v = store.draft("tools").add_dir(scripts).finalize()
    modes = {e.path: e.executable for e in v.files()}
    assert modes == {"bin/run.sh": True, "bin/owner-only": True, "lib.py": False}
    assert v.get_entry("bin/run.sh").executable is True
    assert v.get_entry("lib.py").executable is False


def test_add_file_records_the_executable_bit(store: castore.Store, scripts: Path) -> None:
    v = store.draft("t").add_file(scripts / "bin" / "run.sh").add_file(scripts / "lib.py")
    version = v.finalize()
    assert {e.path: e.executable for e in version.files()} == {"run.sh": True, "lib.py": False}


@pytest.mark.parametrize("link", ["auto", "copy", "hardlink", "symlink"])
def test_checkout_restores_the_executable_bit(
    store: castore.Store, scripts: Path, tmp_path: Path, link: str
) -> None:
    v = store.draft("tools").add_dir(scripts).finalize()
    out = v.checkout(tmp_path / f"out-{link}", link=link)
    want = 0o777 & ~_umask()
    for name in ("bin/run.sh", "bin/owner-only"):
        assert not (out / name).is_symlink()  # executables are copied, never linked
        assert _perm(out / name) == want
    assert os.stat(out / "lib.py").st_mode & 0o111 == 0  # a link in link modes: follow it
    # the shared blob was never made executable
    raw = store.blobs.raw_path(v.get_entry("lib.py").digest)
    if raw is not None:
        assert _perm(raw) & 0o111 == 0
    assert v.verify(out).ok


def test_download_restores_the_executable_bit(
    store: castore.Store, scripts: Path, tmp_path: Path
) -> None:
    v = store.draft("tools").add_dir(scripts).finalize()
    out = v.download(tmp_path / "dl")
    assert _perm(out / "bin/run.sh") & 0o100
    assert _perm(out / "lib.py") & 0o111 == 0


def test_checkout_repairs_a_wrong_mode_and_verify_reports_it(
    store: castore.Store, scripts: Path, tmp_path: Path
) -> None:
    v = store.draft("tools").add_dir(scripts).finalize()
    out = v.checkout(tmp_path / "out")
    (out / "bin/run.sh").chmod(0o644)
    (out / "lib.py").chmod(0o755)
    with pytest.raises(castore.VerificationError) as info:
        v.verify(out)
    assert info.value.report.modified == ["bin/run.sh", "lib.py"]
    v.checkout(out)
    assert _perm(out / "bin/run.sh") & 0o100 and not _perm(out / "lib.py") & 0o111
    assert v.verify(out).ok


def test_mode_change_is_a_new_version_and_a_modification(
    store: castore.Store, scripts: Path
) -> None:
    v0 = store.draft("tools").add_dir(scripts).finalize()
    (scripts / "lib.py").chmod(0o755)
    v1 = store.draft("tools").add_dir(scripts).finalize()
    assert v1.number == 1 and v1.digest != v0.digest
    d = store.diff(v0.ref, v1.ref)
    assert [e.path for e in d.modified] == ["lib.py"] and not d.added and not d.removed


def test_new_draft_keeps_the_executable_bit(store: castore.Store, scripts: Path) -> None:
    v0 = store.draft("tools").add_dir(scripts).finalize()
    v1 = v0.new_draft().add_bytes(b"x", name="new.txt").finalize()
    assert {e.path: e.executable for e in v1.files()} == {
        "bin/owner-only": True,
        "bin/run.sh": True,
        "lib.py": False,
        "new.txt": False,
    }


def test_manifest_document_carries_exec_only_when_set(
    store: castore.Store, scripts: Path
) -> None:
    v = store.draft("tools").add_dir(scripts).finalize()
    doc = json.loads(store.blobs.read_bytes(v.manifest_blob))
    by_path = {e["path"]: e for e in doc["entries"]}
    assert by_path["bin/run.sh"]["exec"] is True
    assert "exec" not in by_path["lib.py"]
    decoded = decode_manifest(store.blobs.read_bytes(v.manifest_blob), algorithm=store.hash)
    assert {r[0]: r[4] for r in decoded["entries"]} == {
        "bin/owner-only": True,
        "bin/run.sh": True,
        "lib.py": False,
    }


def test_digest_of_non_executable_entries_is_unchanged() -> None:
    # the digest before the executable bit existed, written out by hand: existing versions
    # keep their digests
    from castore.storage.hashing import new_hasher

    hasher = new_hasher("xxh3-128")
    hasher.update(f"a\0{_D}\0{1}\n".encode())
    old = f"xxh3-128:{hasher.hexdigest()}"
    assert artifact_digest("xxh3-128", [("a", _D, 1, None)]) == old
    assert artifact_digest("xxh3-128", [("a", _D, 1, None, False)]) == old
    assert artifact_digest("xxh3-128", [("a", _D, 1, None, True)]) != old


def _document(entries: list[dict[str, object]]) -> bytes:
    row = {
        "id": "01890000-0000-7000-8000-000000000000",
        "collection": "c",
        "type": "dataset",
        "number": 0,
        "digest": "",
        "size": 1,
        "file_count": 1,
        "description": None,
        "metadata": "{}",
        "ttl": None,
        "producer": None,
        "created_at": 1_700_000_000_000_000,
    }
    rows = [(e["path"], e["digest"], e["size"], None, e.get("exec", False)) for e in entries]
    row["digest"] = artifact_digest("xxh3-128", rows)  # type: ignore[arg-type]
    data = json.loads(encode_manifest(row, [], rows))  # type: ignore[arg-type]
    data["entries"] = entries
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def test_decode_accepts_exec_true_and_refuses_other_values() -> None:
    good = _document([{"path": "a", "digest": _D, "size": 1, "exec": True}])
    assert decode_manifest(good, algorithm="xxh3-128")["entries"] == [("a", _D, 1, None, True)]
    for bad in (False, 1, "yes", None):
        doc = _document([{"path": "a", "digest": _D, "size": 1, "exec": bad}])
        with pytest.raises(ValueError, match="exec"):
            decode_manifest(doc, algorithm="xxh3-128")


def test_a_document_without_exec_decodes_as_before() -> None:
    doc = _document([{"path": "a", "digest": _D, "size": 1}])
    assert decode_manifest(doc, algorithm="xxh3-128")["entries"] == [("a", _D, 1, None, False)]


def test_rebuild_keeps_the_executable_bit(tmp_path: Path, scripts: Path) -> None:
    path = tmp_path / "store"
    with castore.init(path, durable=False) as store:
        before = list(store.draft("tools").add_dir(scripts).finalize().files())
    (path / "catalog.db").unlink()
    assert castore.repair(path).ok
    with castore.open(path) as store:
        assert list(store.get("tools").files()) == before
        assert any(e.executable for e in before)


def test_manifest_entry_default_is_not_executable() -> None:
    assert ManifestEntry(path="a", digest=_D, size=1).executable is False
