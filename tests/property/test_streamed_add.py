"""``add_dir`` into an empty draft streams the walk (issue 15): its name checks, batches and
version document must match the in-memory path exactly."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import castore
from castore.artifact import writer
from castore.errors import InvalidPathError
from castore.manifest import artifact_digest, encode_manifest, iter_manifest
from castore.paths import find_collisions

# Few letters in both cases, and "ß" (which casefolds to "ss"): collisions are common.
_SEGMENT = st.sampled_from(["a", "A", "b", "B", "\u00df", "ss", "SS", "ab", "aB"])
_TREE = st.lists(
    st.lists(_SEGMENT, min_size=1, max_size=3).map("/".join), min_size=1, max_size=12
)


def _write_tree(root: Path, paths: list[str]) -> list[str]:
    """Write the files of ``paths`` that fit (a file and a directory of one name cannot
    both exist); return the files written."""
    written: list[str] = []
    for path in paths:
        target = root / path
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                continue
            target.write_text(path)
        except (FileExistsError, NotADirectoryError):
            continue
        written.append(path)
    return written


@pytest.fixture()
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer, "BATCH_SIZE", 2)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(paths=_TREE, prefix=st.sampled_from(["", "p", "p/Q"]))
def test_streamed_add_refuses_exactly_the_colliding_trees(
    small_batches: None, paths: list[str], prefix: str
) -> None:
    work = Path(tempfile.mkdtemp())
    try:
        written = _write_tree(work / "tree", paths)
        expected = [f"{prefix}/{p}" if prefix else p for p in written]
        with castore.open(work / "store") as store:
            draft = store.draft("d")
            if find_collisions(expected):
                with pytest.raises(InvalidPathError, match="differ only in case"):
                    draft.add_dir(work / "tree", prefix or None)
                # Batches recorded before the collision was reached are removed again.
                assert len(draft) == 0
                assert draft.paths == []
                draft.discard()
            else:
                draft.add_dir(work / "tree", prefix or None)
                assert draft.paths == sorted(expected)
                version = draft.finalize()
                assert sorted(f.path for f in version.files()) == sorted(expected)
    finally:
        shutil.rmtree(work)


def test_streamed_add_equals_one_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = tmp_path / "tree"
    for d in range(7):
        for f in range(13):
            path = tree / f"d{d}" / f"f{f}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{d}-{f}" * (f + 1))
    (tree / "d3" / "f5.txt").chmod(0o755)
    digests = []
    for batch in (5, 10_000):
        monkeypatch.setattr(writer, "BATCH_SIZE", batch)
        with castore.open(tmp_path / f"store{batch}") as store:
            with store.draft("d") as draft:
                draft.add_dir(tree, "data")
            version = draft.version
            assert version.file_count == 91
            digests.append(version.digest)
            rows = [(f.path, f.digest, f.size, None, f.executable) for f in version.files()]
            assert version.digest == artifact_digest(store.hash, rows)
    assert digests[0] == digests[1]


def test_streamed_add_that_fails_leaves_the_draft_empty_and_usable(
    tmp_path: Path, small_batches: None
) -> None:
    tree = tmp_path / "tree"
    for name in ["a/1", "a/2", "a/3", "b/1", "b/2", "B/x"]:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(name)
    with castore.open(tmp_path / "store") as store:
        draft = store.draft("d")
        with pytest.raises(InvalidPathError, match="'B' and 'b'"):
            draft.add_dir(tree)
        assert len(draft) == 0
        shutil.rmtree(tree / "B")
        draft.add_dir(tree)
        assert draft.paths == ["a/1", "a/2", "a/3", "b/1", "b/2"]
        assert draft.finalize().file_count == 5


def test_streamed_add_reports_a_file_and_a_directory_of_one_spelling(
    tmp_path: Path, small_batches: None
) -> None:
    tree = tmp_path / "tree"
    (tree / "x").mkdir(parents=True)
    (tree / "x" / "Data").write_text("a file")
    (tree / "x" / "data").mkdir()
    (tree / "x" / "data" / "inner").write_text("below a directory")
    with castore.open(tmp_path / "store") as store:
        draft = store.draft("d")
        with pytest.raises(InvalidPathError, match="'x/data' and 'x/Data'"):
            draft.add_dir(tree)
        assert len(draft) == 0


def test_an_ignored_or_empty_directory_does_not_collide(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "Logs").mkdir(parents=True)  # empty: not in the artifact
    (tree / "logs").mkdir()
    (tree / "logs" / "a").write_text("a")
    (tree / "Cache").mkdir()
    (tree / "Cache" / "x").write_text("ignored")
    (tree / "cache").mkdir()
    (tree / "cache" / "y").write_text("kept")
    with castore.open(tmp_path / "store") as store, store.draft("d") as draft:
        draft.add_dir(tree, ignore=["Cache/"])
        assert draft.paths == ["cache/y", "logs/a"]


_ROWS = st.dictionaries(
    st.lists(_SEGMENT | st.text(min_size=1, max_size=4).filter(lambda s: "/" not in s and
                                                                 s not in (".", "..")),
             min_size=1, max_size=3).map("/".join),
    st.tuples(st.sampled_from(["xxh3-128:00", "xxh3-128:ff"]), st.integers(0, 10**12),
              st.sampled_from([None, "s3://b/k"]), st.booleans()),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(rows=_ROWS, description=st.none() | st.text(max_size=20),
       metadata=st.dictionaries(st.sampled_from(["entries", "x", "zz"]),
                                st.lists(st.integers(), max_size=2), max_size=3))
def test_iter_manifest_pieces_are_encode_manifest(
    rows: dict[str, tuple[str, int, str | None, bool]], description: str | None,
    metadata: dict[str, list[int]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    import castore.manifest as manifest

    monkeypatch.setattr(manifest, "_PIECE_ENTRIES", 3)
    table = sorted((path, d, size, ref, ex) for path, (d, size, ref, ex) in rows.items())
    row = {
        "id": "00000000-0000-4000-8000-000000000000", "collection": "c", "type": "t",
        "number": 1, "digest": artifact_digest("xxh3-128", table), "size": 1, "file_count": 1,
        "description": description, "metadata": json.dumps(metadata), "created_at": 10**15,
        "ttl": None, "producer": None,
    }
    whole = encode_manifest(row, ["b", "a"], list(reversed(table)))
    assert b"".join(iter_manifest(row, ["b", "a"], iter(table))) == whole
    assert json.loads(whole)["entries"] == [
        {"path": p, "digest": d, "size": s, **({"ref": r} if r else {}),
         **({"exec": True} if x else {})}
        for p, d, s, r, x in table
    ]
    assert artifact_digest("xxh3-128", iter(table), presorted=True) == row["digest"]
    if len(table) > 1:
        with pytest.raises(ValueError, match="not in path order"):
            b"".join(iter_manifest(row, [], reversed(table)))
