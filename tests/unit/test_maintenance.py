"""gc, TTL, prune, fsck (with repair and catalogue rebuild) and stats."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import harness
import pytest

import castore
from castore.index import catalog as catalog_mod
from castore.maintenance import gc as maintenance

ZERO = timedelta(0)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch):
    """A virtual catalogue clock: ``clock.advance(seconds)`` moves "now"."""

    class Clock:
        now = catalog_mod.now_us()

        def __call__(self) -> int:
            return self.now

        def advance(self, seconds: float) -> None:
            self.now += int(seconds * 1_000_000)

    c = Clock()
    monkeypatch.setattr(catalog_mod, "now_us", c)
    return c


def _age(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def kinds(report: castore.FsckReport) -> list[str]:
    return sorted(f.kind for f in report.findings)


# -- gc ------------------------------------------------------------------------------------


def test_gc_on_empty_store(store: castore.Store) -> None:
    report = store.gc()
    assert report == castore.GCReport()
    assert store.gc(dry_run=True).dry_run


def test_gc_keeps_referenced_and_young_blobs(store: castore.Store) -> None:
    v0 = harness.finalize(store, "ds", {"a": b"a0", "shared": b"s" * 100})
    harness.finalize(store, "ds", {"a": b"a1", "shared": b"s" * 100})
    v0.delete()
    # Default grace: the blob of v0 is younger than an hour, so it stays.
    assert store.gc().blobs_deleted == 0
    report = store.gc(grace=ZERO)
    assert report.blobs_deleted == 2  # a0 and v0's manifest; "shared" is still used by v1
    assert report.bytes_freed > 0
    assert store.fsck().ok and store.fsck().findings == []
    harness.assert_readable(store)


def test_gc_grace_is_measured_by_mtime(store: castore.Store) -> None:
    v0 = harness.finalize(store, "ds", {"a": b"old"})
    harness.finalize(store, "ds", {"a": b"new"})
    path = store.blobs.path_of(v0.get_entry("a").digest)
    v0.delete()
    assert store.gc(grace=timedelta(minutes=30)).blobs_deleted == 0
    _age(path, 3600)
    assert store.gc(grace=timedelta(minutes=30)).blobs_deleted == 1
    assert not path.exists()


def test_gc_dry_run_plans_the_same_and_changes_nothing(store: castore.Store, clock) -> None:
    harness.finalize(store, "ds", {"a": b"keep"})
    v1 = harness.finalize(store, "ds", {"a": b"expiring", "b": b"also"})
    v1.set_ttl(timedelta(hours=1))
    harness.finalize(store, "other", {"x": b"x"}).delete()
    clock.advance(7200)
    before = harness.snapshot(store)
    plan = store.gc(dry_run=True, grace=ZERO)
    assert plan.dry_run and plan.versions_deleted == ["ds:v1"]
    assert harness.snapshot(store) == before
    assert store.stats().blobs == 7  # 4 contents + 3 manifests, nothing deleted
    done = store.gc(grace=ZERO)
    assert done.versions_deleted == plan.versions_deleted
    assert done.blobs_deleted == plan.blobs_deleted
    assert done.bytes_freed == plan.bytes_freed
    assert not done.dry_run


def test_gc_sweeps_stale_tmp_but_not_young_tmp(store: castore.Store) -> None:
    young = store.layout.tmp / ".young.tmp"
    old = store.layout.tmp / ".old.tmp"
    young.write_bytes(b"in flight")
    old.write_bytes(b"crashed")
    _age(old, 2 * 3600)
    report = store.gc(grace=ZERO)  # grace 0 never touches in-flight temp files
    assert report.tmp_files_deleted == 1
    assert young.exists() and not old.exists()


def test_gc_empties_trash_left_by_a_crash(store: castore.Store) -> None:
    (store.layout.trash / "leftover.zst").write_bytes(b"garbage")
    store.gc()
    assert list(store.layout.trash.iterdir()) == []


def test_gc_keeps_blobs_of_pending_drafts(store: castore.Store) -> None:
    draft = store.draft("ds")
    draft.add_bytes(b"pending content", "p.bin")
    store.gc(grace=ZERO)
    v = draft.finalize()
    v.verify()
    assert store.fsck().ok


def test_gc_keeps_blobs_of_aliased_tagged_and_unexpired_versions(store: castore.Store) -> None:
    """reliability.md test 21: nothing reachable from a root is deleted."""
    harness.finalize(store, "a", {"f": b"aliased"}, aliases=["prod"])
    harness.finalize(store, "a", {"f": b"latest"})
    v = harness.finalize(store, "b", {"f": b"tagged"})
    v.add_tags(["keep"])
    harness.finalize(store, "b", {"f": b"newer"})
    ttl = harness.finalize(store, "c", {"f": b"ttl"})
    ttl.set_ttl(timedelta(days=1))
    store.gc(grace=ZERO)
    assert harness.assert_readable(store) == 5


# -- TTL -----------------------------------------------------------------------------------


def test_ttl_expiry_hides_then_gc_deletes_and_repoints_latest(store: castore.Store, clock) -> None:
    v0 = harness.finalize(store, "ds", {"a": b"0", "shared": b"s"})
    v1 = harness.finalize(store, "ds", {"a": b"1", "shared": b"s"})
    v1.set_ttl(timedelta(hours=1))
    clock.advance(3601)
    assert store.get("ds").number == 0  # hidden at once, reads never write
    assert store.gc(grace=ZERO).versions_deleted == ["ds:v1"]
    assert store.collection("ds").aliases == {"latest": "v0"} or store.get("ds:latest") == v0
    assert store.get("ds:latest").number == 0
    assert store.fsck().ok
    harness.assert_readable(store)


def test_collection_default_ttl_applies_to_new_versions(store: castore.Store, clock) -> None:
    harness.finalize(store, "ds", {"a": b"before"})
    store.collection("ds").update(default_ttl=timedelta(hours=2))
    harness.finalize(store, "ds", {"a": b"after"})
    harness.finalize(store, "ds", {"a": b"after2"})
    clock.advance(3 * 3600)
    assert store.gc(grace=ZERO).versions_deleted == ["ds:v1", "ds:v2"]
    assert [v.number for v in store.collection("ds").versions()] == [0]
    assert store.get("ds").number == 0


def test_version_holding_user_alias_never_expires(store: castore.Store, clock) -> None:
    v = harness.finalize(store, "ds", {"a": b"prod"}, aliases=["prod"])
    v.set_ttl(timedelta(seconds=1))
    clock.advance(10)
    assert store.gc(grace=ZERO).versions_deleted == []
    assert store.get("ds:prod").number == 0
    v.remove_alias("prod")
    assert store.gc(grace=ZERO).versions_deleted == ["ds:v0"]


# -- prune ---------------------------------------------------------------------------------


def test_prune_needs_a_policy(store: castore.Store) -> None:
    with pytest.raises(ValueError, match="policy"):
        store.prune()
    with pytest.raises(ValueError):
        store.prune(keep_last=-1)
    with pytest.raises(castore.NotFoundError):
        store.prune("nope", keep_last=1)


def test_prune_keep_last_never_touches_aliases(store: castore.Store) -> None:
    for i in range(6):
        harness.finalize(store, "ds", {"a": str(i).encode()}, aliases=["best"] if i == 1 else [])
    harness.finalize(store, "other", {"a": b"o0"})
    harness.finalize(store, "other", {"a": b"o1"})
    plan = store.prune("ds", keep_last=2, dry_run=True)
    assert plan.dry_run and plan.versions_deleted == ["ds:v0", "ds:v2", "ds:v3"]
    assert len(store.collection("ds").versions()) == 6
    done = store.prune("ds", keep_last=2)
    assert done.versions_deleted == plan.versions_deleted
    assert [v.number for v in store.collection("ds").versions()] == [5, 4, 1]
    assert [v.number for v in store.collection("other").versions()] == [1, 0]
    assert store.prune(keep_last=1).versions_deleted == ["ds:v4", "other:v0"]
    assert store.prune(keep_last=0).versions_deleted == []  # the rest hold aliases
    store.gc(grace=ZERO)
    assert store.fsck().ok
    harness.assert_readable(store)


def test_prune_only_unused_without_runs_treats_all_as_unused(store: castore.Store) -> None:
    harness.finalize(store, "ds", {"a": b"0"})
    harness.finalize(store, "ds", {"a": b"1"})
    assert store.prune(only_unused=True).versions_deleted == ["ds:v0"]


def test_prune_and_gc_refuse_on_read_only_store(store: castore.Store) -> None:
    harness.finalize(store, "ds", {"a": b"0"})
    ro = castore.open(store.path, read_only=True)
    try:
        with pytest.raises(castore.ReadOnlyStoreError):
            ro.prune(keep_last=0)
        with pytest.raises(castore.ReadOnlyStoreError):
            ro.gc()
        with pytest.raises(castore.ReadOnlyStoreError):
            ro.fsck(repair=True)
        assert ro.gc(dry_run=True).dry_run
        assert ro.prune(keep_last=0, dry_run=True).versions_deleted == []
        assert ro.fsck().ok
        assert ro.stats().versions == 1
    finally:
        ro.close()


# -- stats ---------------------------------------------------------------------------------


def test_stats_counts_and_dedup_ratio(store: castore.Store) -> None:
    assert store.stats().dedup_ratio == 1.0
    harness.finalize(store, "ds", {"a": b"x" * 1000, "b": b"y" * 1000})
    harness.finalize(store, "ds", {"a": b"x" * 1000, "b": b"z" * 1000})
    harness.finalize(store, "m", {"w": b"x" * 1000})
    s = store.stats()
    assert (s.collections, s.versions) == (2, 3)
    assert s.logical_bytes == 5000
    assert s.blobs == 3 + 3  # x, y, z and three manifests
    assert s.dedup_ratio == pytest.approx(5000 / 3000)
    assert s.stored_bytes > 0


# -- fsck ----------------------------------------------------------------------------------


def _damage(store: castore.Store, how: str) -> tuple[str, castore.ArtifactVersion]:
    harness.finalize(store, "ok", {"other": b"unaffected" * 50})
    # big.bin is a loose file (small blobs are packed: tests/unit/test_packs.py damages those)
    v = harness.finalize(store, "ds", {"big.bin": os.urandom(70_000), "txt": b"t" * 5000})
    digest = v.get_entry("big.bin").digest
    path = store.blobs.path_of(digest)
    data = bytearray(path.read_bytes())
    os.chmod(path, 0o644)
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "bitflip":
        data[len(data) // 3] ^= 0x10
        path.write_bytes(bytes(data))
    elif how == "swap":
        other = store.blobs.path_of(v.get_entry("txt").digest)
        path.write_bytes(other.read_bytes())
    elif how == "missing":
        path.unlink()
    return digest, v


@pytest.mark.parametrize("how", ["truncate", "bitflip", "swap", "missing"])
def test_fsck_finds_damage_and_repair_quarantines(store: castore.Store, how: str) -> None:
    digest, v = _damage(store, how)
    report = store.fsck()
    assert not report.ok
    [finding] = harness.errors_of(report)
    assert finding.kind == ("missing_blob" if how == "missing" else "corrupt_blob")
    assert finding.digest == digest
    assert finding.ref == "ds:v0" and finding.path == "big.bin"
    assert "ds:v0" in finding.message
    with pytest.raises((castore.IntegrityError, castore.NotFoundError)):
        v.verify()
    store.get("ok").verify()  # unaffected versions read fine

    repaired = store.fsck(repair=True)
    assert repaired.repaired
    assert store.catalog.get_version(v.id)["damaged"] == 1
    assert store.catalog.get_version(store.get("ok").id)["damaged"] == 0
    if how != "missing":
        assert [f.repaired for f in harness.errors_of(repaired)] == [True]
        assert not store.blobs.exists(digest)
        assert len(list(store.layout.quarantine.iterdir())) == 1  # kept, never deleted
    # Still damaged until healed: now a missing blob.
    assert kinds(store.fsck()) == ["missing_blob"]


def test_fsck_repair_heals_when_the_blob_comes_back(store: castore.Store) -> None:
    harness.finalize(store, "ds", {"f": b"precious" * 100})
    v = store.get("ds")
    digest = v.get_entry("f").digest
    path = store.blobs.path_of(digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"rot")
    store.fsck(repair=True)
    # The good content arrives again (import, pull, or simply re-adding it).
    store.blobs.put_bytes(b"precious" * 100)
    healed = store.fsck(repair=True)
    assert healed.ok
    assert store.catalog.get_version(v.id)["damaged"] == 0
    v.verify()


def test_fsck_warnings_do_not_fail(store: castore.Store, clock) -> None:
    harness.finalize(store, "ds", {"a": b"a"})
    store.blobs.put_bytes(b"orphan")
    stale = store.layout.tmp / ".x.tmp"
    stale.write_bytes(b"x")
    _age(stale, 7200)
    draft = store.draft("ds")
    draft.add_bytes(b"draft", "d")
    store.catalog.execute("UPDATE drafts SET pid = 999999999")
    clock.advance(2 * 86400)
    report = store.fsck()
    assert report.ok
    assert kinds(report) == ["orphan_blob", "stale_draft", "stale_tmp"]
    assert {f.severity for f in report.findings} == {"warning"}
    fixed = store.fsck(repair=True)
    assert [f.repaired for f in fixed.findings if f.kind == "stale_tmp"] == [True]
    assert not stale.exists()
    # gc discards the stale draft (its process is gone) and then the orphans.
    store.gc(grace=ZERO)
    assert store.drafts() == []
    assert store.fsck().findings == []


def test_fsck_alias_to_missing_and_dangling_ref(store: castore.Store) -> None:
    v = harness.finalize(store, "ds", {"a": b"a"}, aliases=["prod"])
    with store.catalog.write_txn():
        store.catalog.execute("UPDATE versions SET state = 'PENDING' WHERE id = ?", (v.id,))
    assert "alias_to_missing" in kinds(store.fsck())
    with store.catalog.write_txn():
        store.catalog.execute("UPDATE versions SET state = 'COMMITTED' WHERE id = ?", (v.id,))
        store.catalog.execute(
            "INSERT INTO entries (version_id, path, digest, size, ref) "
            "VALUES (?, 'x', NULL, 1, NULL)",
            (v.id,),
        )
    report = store.fsck()
    assert kinds(report) == ["dangling_ref"] and not report.ok


def test_fsck_reports_eio_and_keeps_checking(store: castore.Store) -> None:
    harness.finalize(store, "ds", {"a": b"a" * 100, "b": b"b" * 100})
    digest = store.get("ds").get_entry("a").digest
    with harness.eio_on_read(store, digest):
        report = store.fsck()
    [finding] = harness.errors_of(report)
    assert finding.kind == "corrupt_blob" and finding.digest == digest
    assert "cannot be read" in finding.message
    assert store.fsck().ok


# -- a damaged catalogue -------------------------------------------------------------------


def _two_collections(store: castore.Store) -> dict:
    harness.finalize(store, "ds", {"a": b"0", "s": b"shared"})
    harness.finalize(store, "ds", {"a": b"1", "s": b"shared", "d/e.txt": b"deep"})
    harness.finalize(store, "model", {"w.bin": os.urandom(3000)}, type="model")
    return harness.snapshot(store)


@pytest.mark.parametrize("damage", ["header", "truncate", "delete"])
def test_damaged_catalogue_is_refused_then_rebuilt(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "store"
    with castore.init(path, durable=False) as store:
        model = _two_collections(store)
    db = path / "catalog.db"
    if damage == "header":
        with open(db, "r+b") as fh:
            fh.write(b"\0" * 100)
    elif damage == "truncate":
        with open(db, "r+b") as fh:
            fh.truncate(os.path.getsize(db) // 2 or 100)
    if damage in ("header", "truncate"):
        with pytest.raises(castore.CatalogCorruptError, match="fsck --repair"):
            s = castore.open(path)
            s.versions()  # a truncated file may open and fail on first read
            s.close()
    else:
        db.unlink()
    report = castore.repair(path)
    assert report.ok, report
    assert any(f.kind == "catalogue_integrity" and f.repaired for f in report.findings)
    with castore.open(path) as store:
        assert harness.snapshot(store) == model
        assert store.fsck().ok
        harness.assert_readable(store)
        harness.finalize(store, "ds", {"a": b"2"})
        assert store.get("ds").number == 2  # numbering continues after the rebuild
    if damage != "delete":
        assert list(path.glob("catalog.db.damaged-*"))  # kept for inspection


def test_fsck_reports_corruption_in_the_middle_of_the_catalogue(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with castore.init(path, durable=False) as store:
        for i in range(40):
            harness.finalize(store, f"c{i % 4}", {f"f{j}": f"{i}-{j}".encode() for j in range(20)})
        model = harness.snapshot(store)
        store.catalog.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db = path / "catalog.db"
    size = os.path.getsize(db)
    with open(db, "r+b") as fh:
        fh.seek(size // 2 // 4096 * 4096)
        fh.write(os.urandom(4096))
    try:
        store = castore.open(path)
    except castore.CatalogCorruptError:
        report = castore.repair(path)
    else:
        with store:
            found = store.fsck()
            assert not found.ok
            assert "catalogue_integrity" in kinds(found)
            report = store.fsck(repair=True)
    assert report.ok, report
    with castore.open(path) as store:
        assert harness.snapshot(store) == model
        assert store.fsck().ok


def test_lock_timeout_on_maintenance(store: castore.Store) -> None:
    from castore.storage.locking import maintenance_lock

    with maintenance_lock(store.layout.locks), pytest.raises(castore.LockTimeoutError):
        maintenance.gc(store, lock_timeout=0.05)


# -- leftovers: fsck and gc name them, with size, age and when they go (issue 9) ----------


def _orphaned_draft(store: castore.Store, name: str = "ds") -> str:
    """A draft whose process is gone, as a kill -9 during `add` leaves it."""
    draft = store.draft(name)
    draft.add_bytes(b"x" * 3000, "big")
    store.catalog.execute(
        "UPDATE drafts SET pid = 999999999 WHERE version_id = ?", (draft.id,)
    )
    return str(draft.id)


def test_fsck_reports_a_young_draft_of_a_dead_process_as_gc_discards_it(
    store: castore.Store,
) -> None:
    """After kills, fsck said nothing while drafts held space: a dead process's draft is
    stale at once, for fsck as for gc, and the finding says its size and age."""
    draft_id = _orphaned_draft(store)
    report = store.fsck()
    [finding] = [f for f in report.findings if f.kind == "stale_draft"]
    assert finding.size == 3000 and finding.age is not None and finding.age < 60
    assert draft_id in finding.message and "process 999999999 is gone" in finding.message
    plan = store.gc(dry_run=True)
    assert [(x.kind, x.name, x.size) for x in plan.leftovers_removed] == [
        ("draft", draft_id, 3000)
    ]
    assert plan.drafts_discarded == 1
    done = store.gc()
    assert done.drafts_discarded == 1 and [x.name for x in done.leftovers_removed] == [draft_id]
    assert store.drafts() == []


def test_a_draft_whose_process_runs_is_kept_and_not_reported(store: castore.Store, clock) -> None:
    draft = store.draft("ds")
    draft.add_bytes(b"in progress", "f")
    clock.advance(3 * 86400)  # however old: its process (this one) still runs
    assert not [f for f in store.fsck().findings if f.kind == "stale_draft"]
    plan = store.gc(dry_run=True)
    [kept] = plan.leftovers_kept
    assert kept.kind == "draft" and kept.due is None
    assert kept.reason == f"when its process {os.getpid()} exits"
    store.gc()
    assert [d.id for d in store.drafts()] == [draft.id]


def test_a_draft_from_another_host_is_stale_at_a_day(store: castore.Store, clock) -> None:
    draft = store.draft("ds")
    draft.add_bytes(b"remote", "f")
    store.catalog.execute("UPDATE drafts SET host = 'elsewhere'")
    [kept] = store.gc(dry_run=True).leftovers_kept
    assert kept.due is not None and "1d old" in kept.reason
    assert not [f for f in store.fsck().findings if f.kind == "stale_draft"]
    clock.advance(maintenance.STALE_DRAFT_AGE.total_seconds() + 1)
    assert [f.kind for f in store.fsck().findings] == ["stale_draft"]
    assert store.gc().drafts_discarded == 1


def test_fsck_and_gc_name_young_temp_files_and_when_they_go(store: castore.Store) -> None:
    """926 temp files after the kills, younger than the grace: fsck must show them."""
    young = store.layout.tmp / "00" / ".young.tmp"
    young.parent.mkdir(exist_ok=True)
    young.write_bytes(b"y" * 5000)
    report = store.fsck()
    assert report.ok
    [finding] = report.findings
    assert (finding.kind, finding.path, finding.size) == ("recent_tmp", str(young), 5000)
    assert "after the 1h grace period" in finding.message and "4.9 KiB" in finding.message
    plan = store.gc(dry_run=True, grace=ZERO)
    assert plan.leftovers_removed == [] and plan.tmp_files_deleted == 0
    [kept] = plan.leftovers_kept
    assert kept.name == str(young) and kept.due is not None
    assert abs(kept.due.timestamp() - (young.stat().st_mtime + 3600)) < 1
    _age(young, 2 * 3600)
    [stale] = store.fsck().findings
    assert stale.kind == "stale_tmp" and stale.age is not None and stale.age >= 7200
    done = store.gc(grace=ZERO)
    assert done.tmp_files_deleted == 1 and [x.name for x in done.leftovers_removed] == [str(young)]
    assert not young.exists()


def test_gc_discarding_a_killed_commit_leaves_no_unknown_version(store: castore.Store) -> None:
    """A commit killed after writing its marker: discarding the draft drops the marker too."""
    draft_id = _orphaned_draft(store)
    document = store.blobs.put_bytes(b"{}").digest
    store.parts.markers.write(draft_id, str(document))
    assert store.gc(grace=ZERO).drafts_discarded == 1
    report = store.fsck()
    assert report.ok and "unknown_version" not in kinds(report), report


def test_users_of_digests_names_every_live_holder_in_order(store: castore.Store) -> None:
    from castore.index.maintenance import users_of_digests

    with store.draft("b") as d:
        d.add_bytes(b"shared", "x/s.txt").add_bytes(b"only b", "o.txt")
    b1 = d.version
    with store.draft("a") as d:
        d.add_bytes(b"shared", "s.txt")
    a1 = d.version
    with store.draft("a") as d:
        d.add_bytes(b"shared", "again.txt").add_bytes(b"new", "n.txt")
    a2 = d.version
    pending = store.draft("a").add_bytes(b"shared", "p.txt")
    gone = store.draft("c")
    gone.add_bytes(b"shared", "gone.txt")
    gone.discard()
    shared = a1.get_entry("s.txt").digest
    manifest = store.catalog.get_version(b1.id)["manifest_blob"]
    found = users_of_digests(store.catalog, [shared, manifest, "xxh3-128:" + "0" * 32])
    assert found[shared] == [
        (pending.id, f"a@draft:{pending.id}", "p.txt"),
        (a1.id, "a:v0", "s.txt"),
        (a2.id, "a:v1", "again.txt"),
        (b1.id, "b:v0", "x/s.txt"),
    ]
    assert found[manifest] == [(b1.id, "b:v0", None)]
    assert set(found) == {shared, manifest}
    assert users_of_digests(store.catalog, []) == {}
