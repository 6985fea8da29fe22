"""ArtifactVersion and Collection handles: aliases, tags, metadata, TTL, deletion."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest

import castore
from castore.errors import AliasConflictError, InvalidReferenceError, NotFoundError


def commit(store: castore.Store, name: str, content: bytes, **kwargs) -> castore.ArtifactVersion:
    return store.draft(name, **kwargs).add_bytes(content, name="f").finalize()


def test_attributes_and_identity(store: castore.Store) -> None:
    v = commit(store, "mnist", b"one", type="dataset", description="d", metadata={"a": 1})
    assert (v.collection, v.type, v.number, v.version, v.ref) == (
        "mnist",
        "dataset",
        0,
        "v0",
        "mnist:v0",
    )
    assert v.state == "COMMITTED" and v.file_count == 1 and v.size == 3
    assert v.digest.startswith("xxh3-128:") and len(v.id) == 36
    assert v.created_at.tzinfo is UTC and v.updated_at >= v.created_at
    assert v.ttl is None and v.expires_at is None
    assert v.manifest.digest == v.digest and [e.path for e in v.manifest.entries] == ["f"]
    assert repr(v) == f"<ArtifactVersion mnist:v0 {v.digest[:17]}…>"
    assert v == store.get("mnist") and hash(v) == hash(store.get(v.id))
    assert v.logged_by() is None and v.used_by() == []
    with pytest.raises(KeyError):
        v.get_entry("missing")


def test_numbers_are_dense_and_never_reused(store: castore.Store) -> None:
    versions = [commit(store, "c", bytes([i])) for i in range(4)]
    assert [v.number for v in versions] == [0, 1, 2, 3]
    versions[3].delete()
    assert store.get("c").number == 2  # latest repointed to the previous version
    assert commit(store, "c", b"new").number == 4  # v3 leaves a gap
    with pytest.raises(NotFoundError):
        store.get("c:v3")


def test_latest_moves_and_is_store_managed(store: castore.Store) -> None:
    v0 = commit(store, "c", b"0")
    v1 = commit(store, "c", b"1")
    assert v0.refresh().aliases == [] and v1.aliases == ["latest"]
    with pytest.raises(InvalidReferenceError):
        v0.add_alias("latest")
    with pytest.raises(InvalidReferenceError):
        v1.remove_alias("latest")


def test_alias_points_at_one_version(store: castore.Store) -> None:
    v0 = commit(store, "c", b"0")
    v1 = commit(store, "c", b"1")
    assert v0.add_alias("prod").aliases == ["prod"]
    v1.add_alias("prod")
    assert v0.refresh().aliases == [] and store.get("c:prod") == v1
    assert store.collection("c").aliases == {"latest": "v1", "prod": "v1"}
    history = store.collection("c").alias_history("prod")
    assert [(h.from_version, h.to_version) for h in history] == [(None, v0.ref), (v0.ref, v1.ref)]
    v1.remove_alias("prod")
    with pytest.raises(NotFoundError):
        store.get("c:prod")
    with pytest.raises(NotFoundError):
        v1.remove_alias("prod")
    for bad in ("v2", "", "a b", ".x", "x@y"):
        with pytest.raises(InvalidReferenceError):
            v1.add_alias(bad)


def test_tags_and_update(store: castore.Store) -> None:
    v = commit(store, "c", b"0", metadata={"keep": True}, description="old")
    assert v.add_tags(["b", "a"]).tags == ["a", "b"]
    assert v.add_tags(["a"]).tags == ["a", "b"]
    assert v.remove_tags(["a", "zzz"]).tags == ["b"]
    v.update(description="new")
    assert v.description == "new" and v.metadata == {"keep": True}  # only given fields change
    v.update(metadata={"f1": 0.96})
    assert store.get("c").metadata == {"f1": 0.96} and store.get("c").description == "new"
    with pytest.raises(ValueError):
        v.update(metadata={"x": float("nan")})
    with pytest.raises(InvalidReferenceError):
        v.add_tags(["-bad"])


def test_ttl_hides_expired_versions_but_not_aliased_ones(store: castore.Store) -> None:
    v0 = commit(store, "c", b"0")
    v1 = commit(store, "c", b"1")
    v1.set_ttl(timedelta(days=30))
    assert v1.ttl == timedelta(days=30) and v1.expires_at == v1.created_at + timedelta(days=30)
    v0.set_ttl(timedelta(microseconds=1))  # already expired
    assert store.count("c") == 1
    with pytest.raises(NotFoundError):
        store.get("c:v0")
    assert [v.number for v in store.versions("c")] == [1]
    v1.set_ttl(timedelta(microseconds=1))  # latest expired too: nothing left to show
    with pytest.raises(NotFoundError):
        store.get("c")
    assert store.latest() == []
    v0.add_alias("keep")  # a user alias protects from expiry
    assert store.get("c:v0") == v0 and store.get("c") == v0  # newest live version
    assert store.catalog.get_version(v1.id)["state"] == "COMMITTED"  # reads never write
    v1.set_ttl(None)
    assert store.get("c") == v1
    with pytest.raises(ValueError):
        v1.set_ttl(timedelta(0))


def test_collection_default_ttl_applies_to_new_versions(store: castore.Store) -> None:
    before = commit(store, "c", b"0")
    coll = store.collection("c").update(default_ttl=timedelta(hours=2), description="x")
    assert coll.default_ttl == timedelta(hours=2) and coll.description == "x"
    after = commit(store, "c", b"1")
    assert before.refresh().ttl is None and after.ttl == timedelta(hours=2)
    coll.update(default_ttl=None)
    assert commit(store, "c", b"2").ttl is None


def test_delete_alias_guard(store: castore.Store) -> None:
    v0 = commit(store, "c", b"0")
    v0.add_alias("prod")
    with pytest.raises(AliasConflictError) as info:
        v0.delete()
    assert info.value.alias == "prod"
    v0.delete(delete_aliases=True)
    assert v0.state == "DELETED"
    assert store.count("c") == 0
    assert store.count("c", state="DELETED") == 1
    with pytest.raises(NotFoundError):
        store.get("c")
    assert store.collection("c").aliases == {}
    entry_digest = v0.manifest_blob
    assert entry_digest in list(store.blobs.iter_digests())  # blobs untouched: gc reclaims them


def test_new_draft_is_incremental(store: castore.Store) -> None:
    v0 = store.draft("c", metadata={"m": 1}).add_bytes(b"a", name="a").finalize()
    draft = v0.new_draft()
    assert draft.paths == ["a"]
    v1 = draft.add_bytes(b"b", name="b").finalize()
    assert [e.path for e in v1.files()] == ["a", "b"] and v1.metadata == {"m": 1}
    assert [e.path for e in v0.files()] == ["a"]  # the base is untouched
    assert [e.path for e in v1.files(prefix="b")] == ["b"]


def test_collections(store: castore.Store) -> None:
    commit(store, "b-model", b"0", type="model")
    commit(store, "a-data", b"1", type="dataset")
    commit(store, "a-data", b"2")
    assert [c.name for c in store.collections()] == ["a-data", "b-model"]
    assert [c.name for c in store.collections(type="model")] == ["b-model"]
    coll = store.collection("a-data")
    assert coll.type == "dataset" and coll.created_at.tzinfo is UTC
    assert [v.number for v in coll.versions()] == [1, 0]
    coll.update(type="corpus", tags=["x"])
    assert store.get("a-data").type == "corpus" and coll.tags == ["x"]
    with pytest.raises(ValueError, match="fixed"):
        store.draft("a-data", type="dataset")
    coll.delete()
    with pytest.raises(NotFoundError):
        store.collection("a-data")
    with pytest.raises(NotFoundError):
        store.get("a-data")
    assert commit(store, "a-data", b"9").number == 0


def test_latest_alias_is_shown_on_the_newest_live_version_after_expiry(store, monkeypatch) -> None:
    """Reads never write: when the version holding ``latest`` expires, readers see ``latest``
    on the newest live version at once (found by the store state machine)."""
    from datetime import timedelta

    import castore.index.catalog as catalog_mod

    with store.draft("ttl") as d:
        d.add_bytes(b"one", "a")
    with store.draft("ttl") as d:
        d.add_bytes(b"two", "a")
    store.get("ttl:v1").set_ttl(timedelta(hours=1))
    later = catalog_mod.now_us() + 2 * 3600 * 1_000_000
    monkeypatch.setattr(catalog_mod, "now_us", lambda: later)
    v0 = store.get("ttl:v0")
    assert "latest" in v0.aliases
    assert store.get("ttl").number == 0
    assert store.collection("ttl").aliases == {"latest": "v0"}
