"""Lost or damaged store files: no command loses a committed version, every message names the
damage and the repair (issue "nothing lost, nothing forged", items 1-3)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

import castore
from castore.cli import cli
from castore.errors import CastoreError, CatalogCorruptError, StoreDamagedError
from tests.harness import errors_of, finalize, snapshot

Damage = Callable[[Path], None]


def _build(root: Path, hash: str = "xxh3-128") -> dict[str, object]:
    with castore.init(root, hash=hash, durable=False) as store:
        finalize(store, "ds", {"a.txt": b"alpha " * 50, "b/c.bin": bytes(range(256)) * 9})
        finalize(store, "ds", {"a.txt": b"alpha two " * 40})
        finalize(store, "model", {"w.bin": b"\x00\x01" * 3000}, aliases=["prod"], type="model")
        return _content(store)


def _content(store: castore.Store) -> dict[str, object]:
    """Every committed version's files and bytes, by reference."""
    seen: dict[str, object] = {}
    for coll in store.collections():
        for v in coll.versions():
            seen[v.ref] = {e.path: v.read_bytes(e.path) for e in v.files()}
    return seen


def _catalog_files(root: Path) -> list[Path]:
    return [root / name for name in ("catalog.db", "catalog.db-wal", "catalog.db-shm")]


def _lose_catalog(root: Path) -> None:
    for path in _catalog_files(root):
        path.unlink(missing_ok=True)


def _empty_catalog(root: Path) -> None:
    _lose_catalog(root)
    (root / "catalog.db").write_bytes(b"")


def _garbage_catalog(root: Path) -> None:
    _lose_catalog(root)
    (root / "catalog.db").write_bytes(b"this is not a database" * 100)


def _truncated_catalog(root: Path) -> None:
    with castore.open(root) as store:  # fold the WAL in, so the file holds everything
        store.catalog.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = (root / "catalog.db").read_bytes()
    _lose_catalog(root)
    (root / "catalog.db").write_bytes(data[: len(data) // 3])


def _lose_config(root: Path) -> None:
    (root / "castore.json").unlink()


def _empty_config(root: Path) -> None:
    (root / "castore.json").write_bytes(b"")


def _garbage_config(root: Path) -> None:
    (root / "castore.json").write_bytes(b"\x00\xffnot json")


def _config_without_format(root: Path) -> None:
    (root / "castore.json").write_text(json.dumps({"hash": "sha256"}))


def _lose_one_marker(root: Path) -> None:
    next((root / "manifests").iterdir()).unlink()


def _lose_markers(root: Path) -> None:
    shutil.rmtree(root / "manifests")


DAMAGE: dict[str, Damage] = {
    "catalog.db missing": _lose_catalog,
    "catalog.db empty": _empty_catalog,
    "catalog.db garbage": _garbage_catalog,
    "catalog.db truncated": _truncated_catalog,
    "castore.json missing": _lose_config,
    "castore.json empty": _empty_config,
    "castore.json garbage": _garbage_config,
    "castore.json without format": _config_without_format,
    "a manifest marker missing": _lose_one_marker,
    "manifests/ missing": _lose_markers,
}


@pytest.mark.parametrize("hash", ["xxh3-128", "sha256"])
@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_damage_loses_no_version_and_names_the_repair(
    tmp_path: Path, damage: str, hash: str
) -> None:
    root = tmp_path / "s"
    before = _build(root, hash)
    DAMAGE[damage](root)
    # Whatever opening does, it neither loses data nor creates a fresh empty store.
    try:
        with castore.open(root) as store:
            gc = store.gc(grace=timedelta(0))
            assert gc.blobs_deleted == 0, f"gc deleted blobs of a damaged store ({damage})"
    except CastoreError as exc:
        assert "castore fsck --repair" in str(exc), str(exc)
    # The CLI's gc never deletes anything either.
    result = CliRunner().invoke(cli, ["--store", str(root), "gc", "-y", "--grace", "0s"])
    assert "blob" not in result.output or "0 blobs" in result.output or result.exit_code != 0
    report = castore.repair(root)
    assert report.ok, [f.message for f in report.findings]
    with castore.open(root) as store:
        assert store.config.hash == hash
        assert _content(store) == before
        assert store.fsck().ok


@pytest.mark.parametrize("damage", ["catalog.db missing", "catalog.db empty"])
def test_lost_catalogue_refuses_to_open_and_gc(tmp_path: Path, damage: str) -> None:
    root = tmp_path / "s"
    _build(root)
    DAMAGE[damage](root)
    with pytest.raises(CatalogCorruptError, match="fsck --repair"):
        castore.open(root)
    runner = CliRunner()
    gc = runner.invoke(cli, ["--store", str(root), "gc", "-y", "--grace", "0s"])
    assert gc.exit_code != 0 and "fsck --repair" in gc.output + (gc.stderr or "")
    fsck = runner.invoke(cli, ["--store", str(root), "fsck"])
    assert fsck.exit_code != 0
    assert any(p.is_file() for p in (root / "blobs").rglob("*"))


def test_lost_config_is_not_recreated_with_other_settings(tmp_path: Path) -> None:
    root = tmp_path / "s"
    before = _build(root, "sha256")
    _lose_config(root)
    with pytest.raises(StoreDamagedError, match="castore fsck --repair"):
        castore.open(root)
    with pytest.raises(StoreDamagedError):
        castore.init(root)
    add = CliRunner().invoke(cli, ["--store", str(root), "add", str(root / "blobs"), "--name", "x"])
    assert add.exit_code != 0
    assert not (root / "castore.json").exists()
    report = castore.repair(root)
    assert any(f.kind == "config_missing" and f.repaired for f in report.findings)
    with castore.open(root) as store:
        assert store.hash == "sha256"
        assert _content(store) == before
    # written as castore.init writes a store with default settings (no min_saving key)
    assert json.loads((root / "castore.json").read_text())["compression"] == {
        "codec": "zstd", "level": 3
    }


def _restore_old_catalogue(root: Path) -> dict[str, object]:
    """Copy the catalogue after the first versions, commit more, put the copy back."""
    with castore.open(root, durable=False) as store:
        store.catalog.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    backup = root.parent / "backup.db"
    shutil.copy(root / "catalog.db", backup)
    with castore.open(root, durable=False) as store:
        finalize(store, "ds", {"new.txt": b"written after the backup " * 30})
        finalize(store, "fresh", {"only.txt": b"a collection the backup never saw"})
        after = _content(store)
    _lose_catalog(root)
    shutil.copy(backup, root / "catalog.db")
    return after


def test_older_catalogue_keeps_newer_versions_as_gc_roots(tmp_path: Path) -> None:
    root = tmp_path / "s"
    _build(root)
    after = _restore_old_catalogue(root)
    with castore.open(root, durable=False) as store:
        report = store.fsck()
        unknown = [f for f in report.findings if f.kind == "unknown_version"]
        assert len(unknown) == 2 and not report.ok
        assert all("fsck --repair" in f.message for f in unknown)
        assert store.gc(grace=timedelta(0)).blobs_deleted == 0
        store.fsck(repair=True)
        assert _content(store) == after
        assert store.get("fresh").read_bytes("only.txt") == b"a collection the backup never saw"
        assert store.fsck().ok


def test_discarding_unknown_versions_is_explicit(tmp_path: Path) -> None:
    root = tmp_path / "s"
    before = _build(root)
    _restore_old_catalogue(root)
    with castore.open(root, durable=False) as store:
        plan = store.gc(dry_run=True, grace=timedelta(0), discard_unknown=True)
        assert plan.blobs_deleted >= 3  # two manifests and their unique blobs
        report = store.gc(grace=timedelta(0), discard_unknown=True)
        assert report.blobs_deleted == plan.blobs_deleted
        assert _content(store) == before
        assert store.fsck().ok


def test_deleted_versions_release_their_markers(tmp_path: Path) -> None:
    root = tmp_path / "s"
    _build(root)
    with castore.open(root, durable=False) as store:
        store.get("ds:v0").delete()
        store.collection("model").delete()
        store.gc(grace=timedelta(0))
        markers = {p.name for p in (root / "manifests").iterdir()}
        assert markers == {store.get("ds:v1").id}
        assert store.fsck().ok


def _versions_only(state: dict[str, object]) -> dict[str, object]:
    """A snapshot without user aliases: the documents do not hold them (docs/operating.md)."""
    return {name: {**coll, "aliases": {k: v for k, v in coll["aliases"].items() if k == "latest"}}
            for name, coll in state.items()}  # type: ignore[attr-defined]


def _forged_document(target_id: str) -> bytes:
    document = {
        "castore_manifest": 1,
        "id": target_id,
        "collection": "model",
        "type": "model",
        "number": 1,
        "digest": "xxh3-128:" + "0" * 32,
        "size": 5,
        "file_count": 1,
        "description": "forged",
        "metadata": {"trusted": True},
        "tags": [],
        "created_at": "2026-01-01T00:00:00+00:00",
        "ttl": None,
        "producer": None,
        "entries": [{"path": "../../escape.txt", "digest": "xxh3-128:" + "1" * 32, "size": 5}],
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


@pytest.mark.parametrize("damage", ["catalog.db missing", "catalog.db garbage"])
def test_a_user_file_that_looks_like_a_manifest_is_never_trusted(
    tmp_path: Path, damage: str
) -> None:
    root = tmp_path / "s"
    _build(root)
    with castore.open(root, durable=False) as store:
        forged_id = "0199c455-21ee-74c6-b747-19a82f1a1e67"
        finalize(store, "uploads", {"evil.json": _forged_document(forged_id)})
        legit = _versions_only(snapshot(store))
    DAMAGE[damage](root)
    report = castore.repair(root)
    assert report.ok
    assert any("not restored" in f.message for f in report.findings)
    with castore.open(root) as store:
        assert _versions_only(snapshot(store)) == legit
        assert store.get("model").metadata == {}
        with pytest.raises(castore.NotFoundError):
            store.get(forged_id)
        assert store.fsck().ok
    assert not (tmp_path / "escape.txt").exists()


def test_repair_reports_errors_it_fixed(tmp_path: Path) -> None:
    root = tmp_path / "s"
    _build(root)
    _lose_catalog(root)
    report = castore.repair(root)
    assert errors_of(report) and all(f.repaired for f in errors_of(report))


# -- content damage: blobs, shards, manifest blobs, the WAL's companions ----------------------


def _blob_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "blobs").rglob("*") if p.is_file())


def _manifest_blob(root: Path) -> Path:
    with castore.open(root) as store:
        digest = store.get("model").manifest_blob
        assert digest is not None
        return Path(store.blobs.path_of(digest))


CONTENT_DAMAGE: dict[str, Damage] = {
    "catalog.db-wal garbage": lambda r: (r / "catalog.db-wal").write_bytes(b"\x07" * 4096),
    "catalog.db-shm garbage": lambda r: (r / "catalog.db-shm").write_bytes(b"\x07" * 32768),
    "catalog.db-wal missing": lambda r: (r / "catalog.db-wal").unlink(missing_ok=True),
    "blobs/ missing": lambda r: shutil.rmtree(r / "blobs"),
    "a shard missing": lambda r: shutil.rmtree(_blob_files(r)[0].parent),
    "a blob empty": lambda r: _blob_files(r)[-1].write_bytes(b""),
    "a blob truncated": lambda r: _truncate(_blob_files(r)[-1]),
    "a manifest blob missing": lambda r: _manifest_blob(r).unlink(),
    "a manifest blob garbage": lambda r: _overwrite(_manifest_blob(r), b"{not json"),
}


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.chmod(0o644)
    path.write_bytes(data[: len(data) // 2])


def _overwrite(path: Path, data: bytes) -> None:
    path.chmod(0o644)
    path.write_bytes(data)


@pytest.mark.parametrize("damage", list(CONTENT_DAMAGE), ids=list(CONTENT_DAMAGE))
def test_content_damage_is_named_and_keeps_every_version(tmp_path: Path, damage: str) -> None:
    root = tmp_path / "s"
    before = _build(root)
    CONTENT_DAMAGE[damage](root)
    try:
        store = castore.open(root, durable=False)
    except CastoreError as exc:  # a damaged catalogue must name the repair
        assert "fsck --repair" in str(exc), str(exc)
        castore.repair(root)
        store = castore.open(root, durable=False)
    with store:
        refs = sorted(v.ref for c in store.collections() for v in c.versions())
        report = store.fsck()
        # every error names what is damaged (a digest or a path) and how to go on
        for finding in errors_of(report):
            assert finding.digest or finding.path, finding
        store.gc(grace=timedelta(0))
        store.fsck(repair=True)
        # no command dropped a committed version, and every intact version reads back
        assert sorted(v.ref for c in store.collections() for v in c.versions()) == refs
        for ref, files in before.items():
            version = store.get(ref)
            try:
                assert {p: version.read_bytes(p) for p in files} == files
            except castore.IntegrityError as exc:
                assert exc.paths, exc  # damage is reported by name, never as other bytes
    assert set(refs) == set(before)


def test_a_stale_handle_in_another_process_raises(tmp_path: Path) -> None:
    """A version deleted by another process: the old handle refuses every read."""
    import subprocess
    import sys

    root = tmp_path / "s"
    _build(root)
    target = tmp_path / "out"
    with castore.open(root, durable=False) as store:
        v0 = store.get("ds:v0")
        subprocess.run(
            [sys.executable, "-c",
             f"import castore; castore.open({str(root)!r}).get('ds:v0').delete()"],
            check=True, timeout=60,
        )
        with pytest.raises(castore.NotFoundError, match="deleted"):
            v0.checkout(target)
        assert not target.exists() or not any(target.iterdir())
        with pytest.raises(castore.NotFoundError):
            v0.verify()
        with pytest.raises(castore.NotFoundError):
            v0.download(tmp_path / "dl")
        with pytest.raises(castore.NotFoundError):
            v0.read_bytes("a.txt")
        with pytest.raises(castore.NotFoundError):
            list(v0.files())
        assert v0.refresh().state == "DELETED"
