"""Hypothesis round trips: any valid tree checks out, verifies and reads back, in every mode."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

import castore
from castore.errors import InvalidPathError
from castore.models import ManifestEntry
from castore.paths import validate_path
from castore.worktree import operations as m

_segment = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\:"),
    min_size=1,
    max_size=12,
)


def _valid(path: str) -> bool:
    try:
        return validate_path(path) == path
    except InvalidPathError:
        return False


_path = st.lists(_segment, min_size=1, max_size=4).map("/".join).filter(_valid)
_content = st.one_of(st.binary(max_size=300), st.builds(os.urandom, st.integers(0, 2000)))


def _no_prefix_conflicts(tree: dict[str, bytes]) -> bool:
    paths = set(tree)
    return not any(
        "/".join(p.split("/")[:i]) in paths for p in paths for i in range(1, p.count("/") + 1)
    )


_tree = st.dictionaries(_path, _content, max_size=12).filter(_no_prefix_conflicts)


def _entries(store: castore.Store, tree: dict[str, bytes]) -> list[ManifestEntry]:
    return [
        ManifestEntry(path=p, digest=store.blobs.put_bytes(d).digest, size=len(d))
        for p, d in tree.items()
    ]


def _read_tree(root: Path) -> dict[str, bytes]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if rel != ".castore-checkout":
                out[rel] = p.read_bytes()
    return out


def _dirs(root: Path) -> set[str]:
    return {
        (Path(d) / n).relative_to(root).as_posix() for d, dirs, _ in os.walk(root) for n in dirs
    }


@settings(max_examples=25)
@given(first=_tree, second=_tree, link=st.sampled_from(["auto", "copy", "hardlink", "symlink"]))
def test_checkout_round_trip_and_overwrite(first, second, link):
    with tempfile.TemporaryDirectory() as tmp:
        store = castore.init(Path(tmp) / "store", durable=False)
        try:
            e1, e2 = _entries(store, first), _entries(store, second)
            root = Path(tmp) / "out"
            m.checkout(store.blobs, e1, root, link=link, store_root=store.path)
            assert _read_tree(root) == first
            assert m.verify_dir(store.blobs, e1, root).ok
            m.checkout(store.blobs, e2, root, link=link, store_root=store.path)
            assert _read_tree(root) == second
            # no empty directories are left behind
            needed = {
                "/".join(p.split("/")[:i]) for p in second for i in range(1, p.count("/") + 1)
            }
            assert _dirs(root) == needed
            report = m.verify_dir(store.blobs, e2, root)
            assert report.ok, report
            for entry in e2:
                assert m.read_bytes(store.blobs, entry) == second[entry.path]
        finally:
            store.close()


@settings(max_examples=15)
@given(tree=_tree, prefix=st.sampled_from(["", "a", "x/"]))
def test_download_writes_exactly_the_selection(tree, prefix):
    with tempfile.TemporaryDirectory() as tmp:
        store = castore.init(Path(tmp) / "store", durable=False)
        try:
            entries = _entries(store, tree)
            root = Path(tmp) / "dl"
            m.download(store.blobs, entries, root, path_prefix=prefix, store_root=store.path)
            assert _read_tree(root) == {p: d for p, d in tree.items() if p.startswith(prefix)}
        finally:
            store.close()


@settings(max_examples=25)
@given(
    first=_tree, second=_tree, link=st.sampled_from(["auto", "copy", "hardlink", "symlink"]),
    batch=st.integers(1, 5),
)
def test_checkout_in_any_batch_size_equals_one_batch(first, second, link, batch):
    """Streamed entries (re-read per pass) in batches of 1-5 give the one-batch result."""
    from castore.worktree import staging
    from castore.worktree.entries import EntryStream

    with tempfile.TemporaryDirectory() as tmp:
        store = castore.init(Path(tmp) / "store", durable=False)
        saved = staging.BATCH
        try:
            e1, e2 = _entries(store, first), _entries(store, second)
            s1, s2 = (EntryStream(lambda e=e: sorted(e, key=lambda x: x.path)) for e in (e1, e2))
            staging.BATCH = batch
            root, whole = Path(tmp) / "out", Path(tmp) / "whole"
            m.checkout(store.blobs, s1, root, link=link, store_root=store.path)  # fresh path
            m.checkout(store.blobs, s2, root, link=link, store_root=store.path)  # careful path
            staging.BATCH = saved
            m.checkout(store.blobs, e1, whole, link=link, store_root=store.path)
            m.checkout(store.blobs, e2, whole, link=link, store_root=store.path)
            assert _read_tree(root) == _read_tree(whole) == second
            assert _dirs(root) == _dirs(whole)
            assert m.verify_dir(store.blobs, e2, root).ok
        finally:
            staging.BATCH = saved
            store.close()
