"""Links (API.md "Linking versions into other collections"): a version of another collection
whose manifest is the source's; no bytes copied; delete rules; gc, fsck, rebuild, checkout."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

import castore
from castore.errors import AliasConflictError, NotFoundError
from castore.index import catalog as catalog_mod


def source(store: castore.Store) -> castore.ArtifactVersion:
    return (
        store.draft("mnist", type="dataset", metadata={"f1": 0.9})
        .add_bytes(b"train" * 100, name="data/train.csv")
        .add_bytes(b"test", name="data/test.csv")
        .finalize()
    )


def blob_files(store: castore.Store) -> int:
    return sum(len(files) for _, _, files in os.walk(store.path / "blobs"))


def test_link_shares_content_and_has_its_own_record(store: castore.Store, tmp_path: Path) -> None:
    v = source(store)
    before = blob_files(store)
    reg = v.link("mnist-registry", aliases=["staging"])
    assert reg.is_link and not v.is_link
    assert reg.source == v and v.source is None
    assert (reg.collection, reg.number, reg.type) == ("mnist-registry", 0, "dataset")
    assert reg.aliases == ["latest", "staging"]
    assert reg.digest == v.digest and reg.manifest.entries == v.manifest.entries
    assert blob_files(store) == before + 1  # only the link's version document
    assert store.get("mnist-registry:staging") == reg
    assert v.linked_versions() == [reg]
    assert reg.read_bytes("data/test.csv") == b"test"
    reg.checkout(tmp_path / "co")
    assert (tmp_path / "co" / "data" / "train.csv").read_bytes() == b"train" * 100
    reg.add_tags(["approved"])
    assert reg.tags == ["approved"] and v.tags == []
    again = v.link("mnist-registry", aliases=["prod"])  # the same link, one more alias
    assert again == reg and again.aliases == ["latest", "prod", "staging"]
    assert reg.link("other").source == v  # linking a link links its source
    with pytest.raises(ValueError, match="already in"):
        v.link("mnist")


def test_delete_rules(store: castore.Store) -> None:
    v = source(store)
    reg = v.link("registry", aliases=["prod"])
    with pytest.raises(AliasConflictError, match="registry:v0"):
        v.delete()
    with pytest.raises(AliasConflictError, match="registry:v0"):
        store.collection("mnist").delete()
    reg.unlink()
    assert store.get("mnist:v0") == v and v.linked_versions() == []
    with pytest.raises(ValueError, match="not a link"):
        v.unlink()
    reg2 = v.link("registry")
    v.delete(delete_links=True)
    assert reg2.refresh().state == "DELETED" and store.get("registry", default=None) is None
    assert store.fsck().ok


def test_gc_fsck_and_prune_keep_what_links_need(
    store: castore.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    v = source(store)
    other = store.draft("mnist").add_bytes(b"other", name="o").finalize()
    store.draft("mnist").add_bytes(b"newer", name="n").finalize()
    reg = v.link("registry")
    report = store.prune("mnist", keep_last=0)
    assert report.versions_deleted == [other.ref]  # the linked source is kept
    v.set_ttl(timedelta(seconds=1))
    control = store.draft("c").add_bytes(b"c", name="c").finalize()
    store.draft("c").add_bytes(b"d", name="d").finalize()
    control.set_ttl(timedelta(seconds=1))
    later = catalog_mod.now_us() + 3600 * 1_000_000
    monkeypatch.setattr(catalog_mod, "now_us", lambda: later)
    report = store.gc(grace=timedelta(0))
    assert report.versions_deleted == [control.ref]  # expired, but the linked source is kept
    assert reg.read_bytes("data/train.csv") == b"train" * 100
    assert store.fsck().ok
    reg.unlink()
    assert store.gc(grace=timedelta(0)).versions_deleted == [v.ref]
    assert store.fsck().ok


def test_rebuild_restores_links(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with castore.init(path, durable=False) as store:
        v = source(store)
        reg = v.link("registry")
        ids = (v.id, reg.id)
    (path / "catalog.db").write_bytes(b"garbage" * 100)
    for extra in ("catalog.db-wal", "catalog.db-shm"):
        (path / extra).unlink(missing_ok=True)
    castore.repair(path, durable=False)
    with castore.open(path) as store:
        reg = store.get(ids[1])
        assert reg.is_link and reg.source is not None and reg.source.id == ids[0]
        assert store.fsck().ok


def test_source_of_a_gone_link_and_errors(store: castore.Store) -> None:
    v = source(store)
    v2 = store.draft("mnist").add_bytes(b"2", name="x").finalize()
    v.delete()
    with pytest.raises(NotFoundError):
        v.link("registry")
    assert v2.link("registry").source == v2
