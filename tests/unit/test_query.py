"""Reference resolution and the version queries of ``Store``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import castore
from castore.errors import InvalidReferenceError, MultipleResourcesFoundError, NotFoundError


def commit(store: castore.Store, name: str, content: bytes, **kwargs) -> castore.ArtifactVersion:
    aliases = kwargs.pop("aliases", ())
    return store.draft(name, **kwargs).add_bytes(content, name="f").finalize(aliases=aliases)


def set_digest(store: castore.Store, version: castore.ArtifactVersion, digest: str) -> None:
    store.catalog.update_version(version.id, digest=digest)


def test_every_reference_form(store: castore.Store) -> None:
    v0 = commit(store, "mnist", b"0", aliases=["prod"])
    v1 = commit(store, "mnist", b"1")
    hex0 = v0.digest.split(":")[1]
    assert store.get("mnist") == v1
    assert store.get("mnist:latest") == v1
    assert store.get("mnist:prod") == v0
    assert store.get("mnist:v0") == v0
    assert store.get(f"mnist@{hex0[:6]}") == v0
    assert store.get(f"mnist@xxh3-128:{hex0[:10]}") == v0
    assert store.get(f"mnist:prod@{hex0[:8]}") == v0
    assert store.get(f"mnist:v0@{hex0}") == v0
    assert store.get(v0.id) == v0 and store.get(v0.id.upper()) == v0


def test_reference_errors(store: castore.Store) -> None:
    v0 = commit(store, "mnist", b"0", aliases=["prod"])
    commit(store, "mnist", b"1")
    other = "0" * 6 if not v0.digest.split(":")[1].startswith("000000") else "ffffff"
    with pytest.raises(NotFoundError, match="now points at"):
        store.get(f"mnist:prod@{other}")
    with pytest.raises(NotFoundError):
        store.get(f"mnist@{other}")
    with pytest.raises(NotFoundError):
        store.get(f"mnist@sha256:{v0.digest.split(':')[1][:8]}")
    for missing in ("nope", "mnist:v7", "mnist:staging", "0199c455-21ee-74c6-b747-19a82f1a1e67"):
        with pytest.raises(NotFoundError):
            store.get(missing)
    for bad in ("", "mnist:", "a:b:c", "mnist@12", "mnist:V1", "mn ist", "mnist@XYZXYZ"):
        with pytest.raises(InvalidReferenceError):
            store.get(bad)


def test_digest_prefix_ambiguity(store: castore.Store) -> None:
    a = commit(store, "c", b"a")
    b = commit(store, "c", b"b")
    set_digest(store, a, "xxh3-128:abcdef01" + "0" * 24)
    set_digest(store, b, "xxh3-128:abcdef02" + "0" * 24)
    with pytest.raises(MultipleResourcesFoundError) as info:
        store.get("c@abcdef")
    assert sorted(info.value.matches) == ["c:v0", "c:v1"]
    assert store.get("c@abcdef02") == b
    set_digest(store, b, "xxh3-128:abcdef01" + "0" * 24)  # same content: the newest wins
    assert store.get("c@abcdef") == b


def test_pending_and_deleted_are_not_resolved_by_id(store: castore.Store) -> None:
    draft = store.draft("c")
    with pytest.raises(NotFoundError):
        store.get(draft.id)
    v = commit(store, "c", b"x")
    v.delete()
    with pytest.raises(NotFoundError):
        store.get(v.id)


@pytest.fixture
def populated(store: castore.Store) -> castore.Store:
    commit(store, "ds-a", b"1", type="dataset", metadata={"split": "train", "n": 1}, tags=["raw"])
    commit(
        store,
        "ds-a",
        b"22",
        metadata={"split": "test", "n": 2, "ok": True},
        tags=["raw", "clean"],
        aliases=["prod"],
    )
    commit(
        store,
        "ds-b",
        b"333",
        type="dataset",
        metadata={"split": "train", "cfg": {"k": 1}},
        tags=["clean"],
    )
    commit(store, "model", b"4444", type="model", metadata={"split": None})
    return store


def refs(page) -> list[str]:
    return [v.ref for v in page]


def test_filters(populated: castore.Store) -> None:
    s = populated
    assert s.count() == 4
    assert refs(s.versions("ds-a", sort="number")) == ["ds-a:v0", "ds-a:v1"]
    assert refs(s.versions(type="model")) == ["model:v0"]
    assert refs(s.versions(tags=["raw", "clean"])) == ["ds-a:v1"]
    assert sorted(refs(s.versions(tags=["raw", "clean"], match="any"))) == [
        "ds-a:v0",
        "ds-a:v1",
        "ds-b:v0",
    ]
    assert refs(s.versions(alias="prod")) == ["ds-a:v1"]
    assert refs(s.versions(alias="latest", sort="name")) == ["ds-a:v1", "ds-b:v0", "model:v0"]
    assert refs(s.versions(metadata={"split": "train"}, sort="name")) == ["ds-a:v0", "ds-b:v0"]
    assert refs(s.versions(metadata={"n": 2, "ok": True})) == ["ds-a:v1"]
    assert refs(s.versions(metadata={"cfg": {"k": 1}})) == ["ds-b:v0"]
    assert refs(
        s.versions(metadata={"split": "train"}, type="model", match="any", sort="name")
    ) == ["ds-a:v0", "ds-b:v0", "model:v0"]
    assert s.count(metadata={"split": "nope"}) == 0
    assert s.count(collection="ds-a", tags=["clean"]) == 1
    assert s.count(collection="ds-a", tags=["clean"], match="any") == 3


def test_created_range_and_sorts(populated: castore.Store) -> None:
    s = populated
    base = datetime(2024, 1, 1, tzinfo=UTC)
    for i, v in enumerate(s.versions(sort="name,number", limit=None)):
        s.catalog.update_version(v.id, created_at=int((base + timedelta(days=i)).timestamp() * 1e6))
    assert refs(
        s.versions(
            created_after=base + timedelta(days=1),
            created_before=base + timedelta(days=3),
            sort="created_at",
        )
    ) == ["ds-a:v1", "ds-b:v0"]
    assert refs(s.versions(sort="-created_at"))[0] == "model:v0"
    assert refs(s.versions(sort="-size"))[0] == "model:v0"
    assert refs(s.versions(sort="name,-number")) == ["ds-a:v1", "ds-a:v0", "ds-b:v0", "model:v0"]
    assert refs(s.versions(sort=["-name", "number"]))[0] == "model:v0"
    naive = datetime(2024, 1, 3)  # noqa: DTZ001 - naive datetimes are refused (API.md)
    with pytest.raises(TypeError, match="naive"):
        s.count(created_after=naive)
    assert s.count(created_after="2024-01-03T00:00:00+00:00") == 2
    with pytest.raises(ValueError, match="sort"):
        s.versions(sort="colour")
    with pytest.raises(ValueError, match="match"):
        s.versions(match="some")
    with pytest.raises(ValueError, match="state"):
        s.versions(state="GONE")


def test_pages(populated: castore.Store) -> None:
    s = populated
    first = s.versions(sort="name,number", limit=3)
    assert (len(first), first.total, first.has_more, first.offset) == (3, 4, True, 0)
    second = s.versions(sort="name,number", limit=3, offset=3)
    assert (refs(second), second.total, second.has_more) == (["model:v0"], 4, False)
    assert refs(first) + refs(second) == refs(s.versions(sort="name,number", limit=None))
    past = s.versions(limit=3, offset=10)
    assert (len(past), past.total, past.has_more) == (0, 4, False)
    assert s.versions(limit=0).total == 4
    with pytest.raises(ValueError):
        s.versions(offset=-1)


def test_latest_types_and_state(populated: castore.Store) -> None:
    s = populated
    assert refs(s.latest()) == ["ds-a:v1", "ds-b:v0", "model:v0"]
    assert refs(s.latest(type="dataset")) == ["ds-a:v1", "ds-b:v0"]
    types = {t.name: (t.collections, t.versions) for t in s.types()}
    assert types == {"dataset": (2, 3), "model": (1, 1)}
    s.draft("ds-a")
    assert s.count(state="PENDING") == 1 and s.count() == 4
    assert s.count(state=None) == 5
    s.get("ds-a:v0").delete()
    assert s.count(state="DELETED") == 1 and s.count(state=None) == 4
    assert {t.name: t.versions for t in s.types()}["dataset"] == 2


def test_metadata_filters_follow_updates_and_odd_keys(store: castore.Store) -> None:
    v = commit(store, "c", b"0", metadata={"a.b": 1, 'q"k': "x", "f": 0.5, "flag": False})
    assert store.count(metadata={"a.b": 1}) == 1
    assert store.count(metadata={'q"k': "x"}) == 1
    assert store.count(metadata={"f": 0.5, "flag": False}) == 1
    assert store.count(metadata={"flag": True}) == 0
    assert store.count(metadata={"missing": None}) == 1
    assert store.count("c", metadata={"a.b": 1}) == 1  # the per-row form, driven by collection
    v.update(metadata={"a.b": 2})
    assert store.count(metadata={"a.b": 1}) == 0
    assert store.count(metadata={"a.b": 2}) == 1
    assert store.count(metadata={"f": 0.5}) == 0
