"""Richer queries (API.md "Richer queries") and the defects of the new-user tour, each a
regression test through the public API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import castore
from castore.errors import InvalidReferenceError, NotFoundError
from castore.index import catalog as catalog_mod


def commit(store: castore.Store, name: str, content: bytes, **kwargs) -> castore.ArtifactVersion:
    aliases = kwargs.pop("aliases", ())
    return store.draft(name, **kwargs).add_bytes(content, name="f").finalize(aliases=aliases)


def refs(page) -> list[str]:
    return [v.ref for v in page]


# -- defects ------------------------------------------------------------------------------------


def test_finalize_takes_none_for_aliases_and_tags(store: castore.Store) -> None:
    v = store.draft("a").add_bytes(b"x", name="f").finalize(aliases=None, tags=None)
    assert v.aliases == ["latest"] and v.tags == []
    assert v.add_tags(None).tags == []


def test_alias_latest_filter_finds_the_live_newest(
    store: castore.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit(store, "a", b"0")
    newest = commit(store, "a", b"1")
    newest.set_ttl(timedelta(hours=1))
    later = catalog_mod.now_us() + 2 * 3600 * 1_000_000
    monkeypatch.setattr(catalog_mod, "now_us", lambda: later)
    assert store.get("a:latest").ref == "a:v0"
    assert refs(store.versions(alias="latest")) == ["a:v0"]
    assert store.count(alias="latest") == 1
    assert refs(store.versions("a", alias="latest")) == ["a:v0"]


def test_deleted_version_refuses_every_change(store: castore.Store) -> None:
    commit(store, "a", b"0")
    v = commit(store, "a", b"1")
    stale = store.get("a:v1")
    v.delete()
    for change in (
        lambda: stale.new_draft(),
        lambda: stale.add_tags(["t"]),
        lambda: stale.remove_tags(["t"]),
        lambda: stale.update(description="d"),
        lambda: stale.update(tags=["t"]),
        lambda: stale.set_ttl(timedelta(days=1)),
        lambda: stale.add_alias("prod"),
    ):
        with pytest.raises(NotFoundError, match="DELETED"):
            change()
    row = store.catalog.get_version(v.id)
    assert row["description"] is None and store.catalog.tags_of(v.id) == []
    assert row["ttl"] is None
    assert store.drafts() == []


def test_manifest_entries_can_be_referenced_and_removed(store: castore.Store) -> None:
    src = store.draft("a").add_bytes(b"hello", name="x/h.txt").add_bytes(b"b", name="b").finalize()
    d = store.draft("b")
    d.add_reference(src.get_entry("x/h.txt"))
    d.add_reference(src.get_entry("b"), name="renamed")
    assert sorted(d.paths) == ["renamed", "x/h.txt"]
    d.remove(next(e for e in src.files() if e.path == "x/h.txt"))
    v = d.finalize()
    assert v.read_bytes("renamed") == b"b"


def test_file_reference_to_a_directory(store: castore.Store, tmp_path: Path) -> None:
    root = tmp_path / "share"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"a")
    (root / "sub" / "b.txt").write_bytes(b"bb")
    v = store.draft("r").add_reference(root.as_uri(), name="data").finalize()
    entries = {e.path: e for e in v.files()}
    assert sorted(entries) == ["data/a.txt", "data/sub/b.txt"]
    assert entries["data/sub/b.txt"].size == 2
    assert entries["data/a.txt"].ref == (root / "a.txt").as_uri()
    with pytest.raises(ValueError, match="max_objects=1"):
        store.draft("r2").add_reference(root.as_uri(), max_objects=1)
    with pytest.raises(NotFoundError, match="does not exist"):
        store.draft("r3").add_reference((tmp_path / "nope").as_uri())


def test_string_and_naive_dates(store: castore.Store) -> None:
    commit(store, "a", b"0")
    assert store.count(created_after="2000-01-01") == 1
    assert store.count(created_before="2000-01-01T00:00:00Z") == 0
    assert store.count(updated_after="2000-01-01T00:00:00+02:00") == 1
    with pytest.raises(TypeError, match="naive"):
        store.versions(created_after=datetime(2000, 1, 1))  # noqa: DTZ001
    with pytest.raises(TypeError):
        store.versions(updated_before=12345)
    with pytest.raises(ValueError, match="ISO-8601"):
        store.versions(created_after="last tuesday")


def test_refinalize_same_content_applies_description_and_metadata(store: castore.Store) -> None:
    v0 = commit(store, "a", b"0", description="first", metadata={"f1": 0.5})
    same = commit(store, "a", b"0", description="second", metadata={"f1": 0.9})
    assert same.id == v0.id
    assert (same.description, same.metadata) == ("second", {"f1": 0.9})
    kept = commit(store, "a", b"0")  # nothing given: nothing changes
    assert (kept.description, kept.metadata) == ("second", {"f1": 0.9})
    assert store.count(metadata={"f1": 0.9}) == 1


def test_operator_dicts_never_match_nothing_silently(store: castore.Store) -> None:
    commit(store, "a", b"0", metadata={"f1": 0.95})
    assert store.count(metadata={"f1": {"$gte": 0.9}}) == 1
    with pytest.raises(ValueError, match=r"\$gtee"):
        store.versions(metadata={"f1": {"$gtee": 0.9}})
    with pytest.raises(ValueError, match="mixes"):
        store.count(metadata={"f1": {"$gt": 0.9, "x": 1}})
    with pytest.raises(TypeError, match=r"\$in"):
        store.count(metadata={"f1": {"$in": 0.9}})


# -- queries ------------------------------------------------------------------------------------


def test_operators_and_metadata_sort(store: castore.Store) -> None:
    commit(store, "m", b"0", metadata={"f1": 0.7, "arch": "a", "labels": ["x", "y"]})
    commit(store, "m", b"1", metadata={"f1": 0.95, "arch": "b", "note": "best run"})
    commit(store, "m", b"2", metadata={"f1": 0.9, "arch": "c"})
    commit(store, "m", b"3", metadata={"arch": "a", "f1": "n/a"})
    commit(store, "m", b"4", metadata={})
    q = store.versions
    assert refs(q(metadata={"f1": {"$gte": 0.9}}, sort="-metadata.f1")) == ["m:v1", "m:v2"]
    assert refs(q(metadata={"f1": {"$gt": 0.7, "$lt": 0.95}})) == ["m:v2"]
    in_ab = q(metadata={"arch": {"$in": ["a", "b"]}}, sort="number")
    assert refs(in_ab) == ["m:v0", "m:v1", "m:v3"]
    assert refs(q(metadata={"arch": {"$nin": ["a"]}}, sort="number")) == ["m:v1", "m:v2", "m:v4"]
    assert refs(q(metadata={"arch": {"$ne": "a"}, "f1": {"$exists": True}}, sort="number")) == [
        "m:v1", "m:v2"
    ]
    assert refs(q(metadata={"labels": {"$contains": "y"}})) == ["m:v0"]
    assert refs(q(metadata={"note": {"$contains": "best"}})) == ["m:v1"]
    assert refs(q(metadata={"f1": {"$exists": False}})) == ["m:v4"]
    assert refs(q(metadata={"f1": {"$gt": "a"}})) == ["m:v3"]  # strings compare with strings
    # numbers as numbers, then strings; versions without the key last
    assert refs(q(sort="metadata.f1")) == ["m:v0", "m:v2", "m:v1", "m:v3", "m:v4"]
    assert refs(q(sort="-metadata.f1")) == ["m:v3", "m:v1", "m:v2", "m:v0", "m:v4"]
    page = q(sort="metadata.f1", limit=2, offset=3)
    assert (refs(page), page.total, page.has_more) == (["m:v3", "m:v4"], 5, False)
    assert refs(q("m", sort="metadata.f1,-number", limit=None))[:2] == ["m:v0", "m:v2"]
    with pytest.raises(ValueError, match=r"metadata\.KEY"):
        q(sort="colour")


def test_updated_bounds_are_inclusive_then_exclusive(store: castore.Store) -> None:
    v = commit(store, "a", b"0")
    t = v.updated_at
    assert store.count(updated_after=t) == 1
    assert store.count(updated_before=t) == 0
    assert store.count(updated_before=t + timedelta(microseconds=1)) == 1


def test_collections_pages_get_default_rename(store: castore.Store) -> None:
    for name in ("c0", "c1", "c2"):
        commit(store, name, b"x")
    page = store.collections(limit=2, offset=1)
    assert [c.name for c in page.items] == ["c1", "c2"]
    assert (page.total, page.has_more) == (3, False)
    assert store.collections(limit=1).has_more
    assert [c.name for c in store.collections()] == ["c0", "c1", "c2"]
    assert store.get("nope:prod", default=None) is None
    assert store.get("c0:v9", default="x") == "x"
    with pytest.raises(InvalidReferenceError):
        store.get("bad name!", default=None)
    c = store.collection("c0").update(name="c0-v2")
    assert c.name == "c0-v2" and store.get("c0-v2:v0").collection == "c0-v2"
    assert store.get("c0", default=None) is None
    with pytest.raises(ValueError, match="exists"):
        c.update(name="c1")


def test_version_update_replaces_tags(store: castore.Store) -> None:
    v = commit(store, "a", b"0", tags=["x", "y"])
    assert v.update(tags=["y", "z"]).tags == ["y", "z"]
    assert v.update(description="d").tags == ["y", "z"]
    assert v.update(tags=[]).tags == []


def test_rollback_moves_an_alias_back(store: castore.Store) -> None:
    v0 = commit(store, "m", b"0", aliases=["prod"])
    v1 = commit(store, "m", b"1")
    v2 = commit(store, "m", b"2")
    v1.add_alias("prod")
    v2.add_alias("prod")
    c = store.collection("m")
    assert c.rollback("prod") == v1
    assert store.get("m:prod") == v1
    assert c.rollback("prod") == v2  # a rollback is itself a move
    assert c.rollback("prod", steps=4) == v0
    events = c.alias_history("prod")
    assert events[-1].to_version == "m:v0" and events[-1].from_version == "m:v2"
    assert isinstance(events[0].at, datetime) and events[0].at.tzinfo == UTC
    with pytest.raises(NotFoundError, match="nothing"):
        c.rollback("prod", steps=len(events))
    with pytest.raises(NotFoundError, match="fewer"):
        c.rollback("prod", steps=99)
    with pytest.raises(InvalidReferenceError):
        c.rollback("latest")
    with pytest.raises(ValueError):
        c.rollback("prod", steps=0)
