"""Drafts: adding files, directories, bytes and references; finalize; the stat cache."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

import castore
from castore.errors import (
    ArtifactFinalizedError,
    FileChangedError,
    InvalidPathError,
    InvalidReferenceError,
    NotFoundError,
)
from castore.manifest import artifact_digest
from castore.storage.blobs import BlobStore


def make_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(
        tmp_path / "src",
        {"a.csv": "x,y\n1,2\n", "sub/b.txt": "bee", "sub/deep/c.bin": "sea", "skip.tmp": "no"},
    )


def test_add_dir_keeps_relative_paths_under_name(store: castore.Store, tree: Path) -> None:
    draft = store.draft("ds")
    draft.add_dir(tree, name="data", ignore=["*.tmp"])
    version = draft.finalize()
    assert [e.path for e in version.files()] == [
        "data/a.csv",
        "data/sub/b.txt",
        "data/sub/deep/c.bin",
    ]
    assert version.get_entry("data/sub/b.txt").size == 3
    assert version.file_count == 3 and version.size == 8 + 3 + 3
    assert version.number == 0 and version.aliases == ["latest"]


def test_castoreignore_and_ignored_directories_are_pruned(store: castore.Store, tree: Path):
    (tree / ".castoreignore").write_text("sub/deep/\n*.tmp\n")
    version = store.draft("ds").add_dir(tree).finalize()
    assert sorted(e.path for e in version.files()) == [".castoreignore", "a.csv", "sub/b.txt"]


def test_add_file_bytes_new_file_and_reference(store: castore.Store, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(b"\x00" * 1000)
    draft = store.draft("mixed", type="model", description="d", metadata={"k": 1}, tags=["t"])
    draft.add_file(src)
    draft.add_file(src, name="copy/big.bin")
    draft.add_bytes(b"abc", name="config.bin")
    with draft.new_file("notes/README.md") as f:
        f.write("héllo\n")
    with draft.new_file("raw.bin", mode="wb") as f:
        f.write(b"\x01\x02")
    draft.add_reference(src.as_uri(), name="ref.bin")
    draft.add_reference(src.as_uri(), name="ref-nosum.bin", checksum=False)
    draft.add_reference("s3://bucket/key.bin", size=7, checksum="sha256:" + "a" * 64)
    version = draft.finalize()
    entries = {e.path: e for e in version.files()}
    assert set(entries) == {
        "big.bin",
        "copy/big.bin",
        "config.bin",
        "notes/README.md",
        "raw.bin",
        "ref.bin",
        "ref-nosum.bin",
        "key.bin",
    }
    assert entries["big.bin"].digest == entries["copy/big.bin"].digest
    assert store.blobs.read_bytes(entries["notes/README.md"].digest) == "héllo\n".encode()
    assert store.blobs.read_bytes(entries["raw.bin"].digest) == b"\x01\x02"
    assert entries["ref.bin"].digest == entries["big.bin"].digest
    assert entries["ref.bin"].ref == src.as_uri() and entries["ref.bin"].size == 1000
    assert entries["ref-nosum.bin"].digest is None and entries["ref-nosum.bin"].size == 1000
    assert entries["key.bin"].ref == "s3://bucket/key.bin" and entries["key.bin"].size == 7
    assert version.type == "model" and version.description == "d"
    assert version.metadata == {"k": 1} and version.tags == ["t"]


def test_new_file_is_not_added_on_exception(store: castore.Store) -> None:
    draft = store.draft("ds")
    with pytest.raises(RuntimeError), draft.new_file("a.txt") as f:
        f.write("partial")
        raise RuntimeError
    assert len(draft) == 0
    assert list(store.blobs.iter_tmp()) == []


@pytest.mark.parametrize(
    "name", ["../x", "/abs", "a//b", "a/./b", "a\\b", "CON", "a:b", "x.", "x ", "n\0ul", "d/"]
)
def test_hostile_names_are_refused(store: castore.Store, name: str) -> None:
    draft = store.draft("ds")
    with pytest.raises(InvalidPathError):
        draft.add_bytes(b"x", name=name)
    assert len(draft) == 0


def test_case_collisions_are_refused(store: castore.Store, tmp_path: Path) -> None:
    draft = store.draft("ds").add_bytes(b"x", name="Data/a.txt")
    with pytest.raises(InvalidPathError, match="collide"):
        draft.add_bytes(b"y", name="data/b.txt")
    with pytest.raises(InvalidPathError, match="collide"):
        draft.add_bytes(b"y", name="Data/A.txt")
    src = make_tree(tmp_path / "c", {"README": "1", "readme": "2"})
    if len(list(src.iterdir())) == 2:  # a case-sensitive file system
        with pytest.raises(InvalidPathError, match="collide"):
            store.draft("ds2").add_dir(src)


def test_existing_names_and_file_directory_conflicts(store: castore.Store) -> None:
    draft = store.draft("ds").add_bytes(b"1", name="a/b.txt")
    with pytest.raises(FileExistsError):
        draft.add_bytes(b"2", name="a/b.txt")
    with pytest.raises(FileExistsError):
        draft.add_bytes(b"2", name="a")  # a directory of the draft
    with pytest.raises(FileExistsError):
        draft.add_bytes(b"2", name="a/b.txt/c")  # below a file
    draft.add_bytes(b"2", name="a/b.txt", overwrite=True)
    version = draft.finalize()
    assert store.blobs.read_bytes(version.get_entry("a/b.txt").digest) == b"2"


def test_add_dir_merge_rules(store: castore.Store, tree: Path) -> None:
    draft = store.draft("ds").add_dir(tree)
    draft.add_dir(tree)  # same content: fine
    (tree / "a.csv").write_text("changed")
    with pytest.raises(ValueError, match="merge=True"):
        draft.add_dir(tree)
    draft.add_dir(tree, merge=True)
    version = draft.finalize()
    assert store.blobs.read_bytes(version.get_entry("a.csv").digest) == b"changed"


def test_remove_file_and_prefix(store: castore.Store, tree: Path) -> None:
    draft = store.draft("ds").add_dir(tree)
    draft.remove("a.csv")
    draft.remove("sub/")
    with pytest.raises(NotFoundError):
        draft.remove("nope")
    with pytest.raises(NotFoundError):
        draft.remove("su")  # not a segment prefix
    assert draft.paths == ["skip.tmp"]
    draft.add_bytes(b"sub is free again", name="sub")
    assert [e.path for e in draft.finalize().files()] == ["skip.tmp", "sub"]


def test_symlinks_inside_are_stored_outside_refused(
    store: castore.Store, tree: Path, tmp_path: Path
) -> None:
    (tree / "link.csv").symlink_to(tree / "a.csv")
    (tree / "dirlink").symlink_to(tree / "sub", target_is_directory=True)
    version = store.draft("ds").add_dir(tree).finalize()
    paths = {e.path: e for e in version.files()}
    assert paths["link.csv"].digest == paths["a.csv"].digest
    assert not any(p.startswith("dirlink") for p in paths)  # directory links are not followed
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    (tree / "escape.txt").symlink_to(outside)
    with pytest.raises(InvalidPathError, match="outside"):
        store.draft("ds").add_dir(tree)
    (tree / "escape.txt").unlink()
    (tree / "dangling").symlink_to(tree / "missing")
    with pytest.raises(InvalidPathError, match="dangling"):
        store.draft("ds").add_dir(tree)


def test_special_files_are_refused(store: castore.Store, tree: Path) -> None:
    os.mkfifo(tree / "pipe")
    with pytest.raises(ValueError, match="FIFO"):
        store.draft("ds").add_dir(tree)
    (tree / "pipe").unlink()
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tree / "s.sock"))
        with pytest.raises(ValueError, match="socket"):
            store.draft("ds").add_dir(tree)
        store.draft("ds").add_dir(tree, ignore=["*.sock"]).finalize()  # ignored: fine
    finally:
        sock.close()


def test_file_changing_while_added_stores_nothing(
    store: castore.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "growing.bin"
    src.write_bytes(b"a" * 5000)
    real = BlobStore._encode_whole

    def encode_then_append(self, chunk):  # the file grows after it was read
        encoded = real(self, chunk)
        with open(src, "ab") as f:
            f.write(b"more")
        return encoded

    monkeypatch.setattr(BlobStore, "_encode_whole", encode_then_append)
    draft = store.draft("ds")
    with pytest.raises(FileChangedError) as info:
        draft.add_file(src)
    assert "growing.bin" in str(info.value)
    assert len(draft) == 0
    assert list(store.blobs.iter_digests()) == []
    assert list(store.blobs.iter_tmp()) == []
    assert store.catalog.stat_cache.lookup(str(src), os.stat(src)) is None


def test_stat_cache_skips_unchanged_files(
    store: castore.Store, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = store.draft("ds").add_dir(tree).finalize()
    calls: list[str] = []
    real = BlobStore.stage_file

    def counting(self, path, **kwargs):
        calls.append(str(path))
        return real(self, path, **kwargs)

    monkeypatch.setattr(BlobStore, "stage_file", counting)
    again = store.draft("ds").add_dir(tree).finalize()
    assert calls == [] and again == first  # nothing re-read; same content: a no-op
    (tree / "sub" / "b.txt").write_text("changed bee")
    changed = store.draft("ds").add_dir(tree).finalize()
    assert calls == [str(tree / "sub" / "b.txt")]
    assert changed.number == 1
    # A cached digest whose blob is gone is not trusted: the file is read again.
    calls.clear()
    store.blobs.delete(changed.get_entry("a.csv").digest)
    store.draft("ds").add_dir(tree)
    assert calls == [str(tree / "a.csv")]


def test_blob_removed_by_gc_after_cache_lookup_is_stored_again(store: castore.Store, tree: Path):
    first = store.draft("ds").add_dir(tree).finalize()
    digest = first.get_entry("a.csv").digest
    store.blobs.delete(digest)  # as a gc would between the stat-cache lookup and the record
    # The cache still knows a.csv; the check inside the record transaction finds the blob
    # gone and stores the file again.
    assert store.catalog.stat_cache.lookup(str(tree / "a.csv"), os.stat(tree / "a.csv"))
    store.draft("other").add_dir(tree).finalize()
    assert store.blobs.read_bytes(digest) == (tree / "a.csv").read_bytes()
    assert list(store.blobs.iter_tmp()) == []


def test_finalize_no_op_and_aliases(store: castore.Store, tree: Path) -> None:
    v0 = store.draft("ds").add_dir(tree).finalize()
    same = store.draft("ds").add_dir(tree).finalize(aliases=["prod"], tags=["good"])
    assert same == v0 and same.number == 0
    assert same.aliases == ["latest", "prod"] and same.tags == ["good"]
    assert store.drafts() == []  # the no-op draft is gone
    with pytest.raises(InvalidReferenceError):
        store.draft("ds").finalize(aliases=["latest"])
    with pytest.raises(InvalidReferenceError):
        store.draft("ds").finalize(aliases=["v3"])


def test_finalized_draft_refuses_changes(store: castore.Store) -> None:
    draft = store.draft("ds").add_bytes(b"x", name="x")
    draft.finalize()
    for call in (
        lambda: draft.add_bytes(b"y", name="y"),
        lambda: draft.remove("x"),
        lambda: draft.finalize(),
        lambda: draft.add_reference("s3://b/k"),
        lambda: draft.discard(),
    ):
        with pytest.raises(ArtifactFinalizedError):
            call()


def test_context_manager_finalizes_or_discards(store: castore.Store) -> None:
    with store.draft("ds") as draft:
        draft.add_bytes(b"x", name="x")
    assert draft.version.ref == "ds:v0"
    with pytest.raises(RuntimeError), store.draft("ds") as failed:
        failed.add_bytes(b"y", name="y")
        raise RuntimeError
    assert store.drafts() == []
    assert store.get("ds").number == 0
    with pytest.raises(ArtifactFinalizedError):
        failed.add_bytes(b"z", name="z")


def test_drafts_are_listed_and_reloaded(store: castore.Store) -> None:
    draft = store.draft("ds").add_bytes(b"x", name="x")
    listed = store.drafts()
    assert [d.id for d in listed] == [draft.id]
    assert listed[0].paths == ["x"]
    row = store.catalog.get_version(draft.id)
    assert row["state"] == "PENDING"
    assert store.versions(state="PENDING").total == 1
    listed[0].discard()
    assert store.drafts() == []
    with pytest.raises(NotFoundError, match="no longer exists"):
        draft.add_bytes(b"y", name="y")


def test_manifest_blob_holds_the_canonical_document(store: castore.Store, tree: Path) -> None:
    version = store.draft("ds", metadata={"b": 1, "a": 2}).add_dir(tree).finalize(tags=["t"])
    raw = store.blobs.read_bytes(version.manifest_blob)
    doc = json.loads(raw)
    assert raw == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert doc["id"] == version.id and doc["number"] == 0 and doc["collection"] == "ds"
    assert doc["tags"] == ["t"] and doc["metadata"] == {"a": 2, "b": 1}
    assert [e["path"] for e in doc["entries"]] == [e.path for e in version.files()]
    rows = [(e.path, e.digest, e.size, e.ref) for e in version.files()]
    assert doc["digest"] == version.digest == artifact_digest(store.hash, rows)


def test_artifact_digest_depends_on_paths_digests_and_sizes() -> None:
    base = [("a", "xxh3-128:" + "0" * 32, 1, None)]
    d = artifact_digest("xxh3-128", base)
    assert d.startswith("xxh3-128:")
    assert artifact_digest("xxh3-128", [("b", *base[0][1:])]) != d
    assert artifact_digest("xxh3-128", [("a", "xxh3-128:" + "1" * 32, 1, None)]) != d
    assert artifact_digest("xxh3-128", [("a", "xxh3-128:" + "0" * 32, 2, None)]) != d


def test_durable_store_add_and_finalize(durable_store: castore.Store, tree: Path) -> None:
    version = durable_store.draft("ds").add_dir(tree).finalize()
    assert durable_store.get("ds:v0") == version
    assert list(durable_store.blobs.iter_tmp()) == []


def test_read_only_store_refuses_drafts(tmp_path: Path, tree: Path) -> None:
    castore.init(tmp_path / "s", durable=False).close()
    with (
        castore.open(tmp_path / "s", read_only=True) as ro,
        pytest.raises(castore.ReadOnlyStoreError),
    ):
        ro.draft("ds")


def test_error_in_one_batch_leaves_no_temp_files(
    store: castore.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import castore.artifact.writer as artifact_module

    src = make_tree(tmp_path / "many", {f"f{i:02d}.txt": f"content {i}" for i in range(12)})
    monkeypatch.setattr(artifact_module, "BATCH_SIZE", 2)
    real = BlobStore.stage_file

    def failing(self, path, **kwargs):
        if str(path).endswith("f05.txt"):
            raise FileChangedError(path)
        return real(self, path, **kwargs)

    monkeypatch.setattr(BlobStore, "stage_file", failing)
    draft = store.draft("ds")
    with pytest.raises(FileChangedError, match=r"f05\.txt"):
        draft.add_dir(src)
    assert list(store.blobs.iter_tmp()) == []
    assert "f05.txt" not in draft.paths
    assert set(draft.paths) <= {f"f{i:02d}.txt" for i in range(4)}  # earlier batches only
    monkeypatch.setattr(BlobStore, "stage_file", real)
    version = draft.add_dir(src).finalize()
    assert version.file_count == 12


def test_threads_share_one_store(store: castore.Store) -> None:
    import threading

    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(10):
                with store.draft("shared") as draft:
                    draft.add_bytes(f"{worker}-{i}".encode(), name="f.txt")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    numbers = sorted(v.number for v in store.versions("shared", limit=None))
    assert numbers == list(range(40))


def test_add_dir_reports_progress_in_bytes(store, tmp_path) -> None:
    src = tmp_path / "progress-src"
    (src / "sub").mkdir(parents=True)
    sizes = {"a.bin": 1000, "sub/b.bin": 70_000, "sub/c.txt": 5}
    for rel, size in sizes.items():
        (src / rel).write_bytes(os.urandom(size))
    calls: list[tuple[int, int]] = []
    with store.draft("progress") as draft:
        draft.add_dir(src, progress=lambda done, total: calls.append((done, total)))
    total = sum(sizes.values())
    assert calls[0] == (0, total)
    assert calls[-1] == (total, total)
    assert all(t == total for _, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    # unchanged files come from the stat cache and still count
    calls.clear()
    with store.draft("progress") as draft:
        draft.add_dir(src, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (total, total)


def test_add_dir_prints_nothing_without_progress(store, tmp_path, capsys) -> None:
    src = tmp_path / "quiet-src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    with store.draft("quiet") as draft:
        draft.add_dir(src)
    assert capsys.readouterr() == ("", "")
