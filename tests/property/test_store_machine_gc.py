"""The store against a dict model, with gc, TTL and a virtual clock (reliability.md test 45).

Rules: finalize (blob by blob, or a batch whose small blobs share a pack), replace most of a
version (leaving its pack mostly dead, for gc to rewrite), discard a draft, move an alias,
remove an alias, tag, set a TTL, let time pass, delete a version, prune, gc (grace 0, then no
pack is left due for deletion or rewrite), and damage-free checks. After every step fsck has
no error and the store shows exactly what the model says.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from datetime import timedelta

import harness
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import castore
from castore.index import catalog as catalog_mod

COLLECTIONS = ("a", "b")
#: Small blobs: all of them go into packs. The random ones do not compress, so deleting a
#: version whose pack they are in leaves it mostly dead (gc rewrites it).
CONTENTS = [b"", b"one", b"two", b"three" * 50, b"shared" * 200,
            *(random.Random(n).randbytes(n) for n in (700, 1500, 3000))]
ZERO = timedelta(0)


class StoreMachine(RuleBasedStateMachine):
    """Model: {collection: {number: version}}, where a version is a dict of files, aliases,
    tags, and expiry time (µs, None = never)."""

    @initialize()
    def setup(self) -> None:
        self.now = catalog_mod.now_us()
        self._real_now = catalog_mod.now_us
        catalog_mod.now_us = lambda: self.now
        self.dir = tempfile.mkdtemp(prefix="castore-machine-")
        self.store = castore.init(f"{self.dir}/store", durable=False)
        self.model: dict[str, dict[int, dict]] = {c: {} for c in COLLECTIONS}
        self.next_number = dict.fromkeys(COLLECTIONS, 0)
        self.drafts: list[castore.Store] = []

    def teardown(self) -> None:
        if hasattr(self, "store"):
            self.store.close()
            catalog_mod.now_us = self._real_now
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- model helpers ---------------------------------------------------------------------

    def _live(self, coll: str) -> dict[int, dict]:
        def alive(v: dict) -> bool:
            expired = v["expires"] is not None and v["expires"] <= self.now
            return not expired or bool(v["aliases"])

        return {n: v for n, v in self.model[coll].items() if alive(v)}

    def _latest(self, coll: str) -> int | None:
        live = self._live(coll)
        return max(live) if live else None

    def _expire_model(self) -> list[str]:
        """Drop the model's expired versions, as gc does; return their refs, sorted."""
        expired = []
        for coll in COLLECTIONS:
            live = self._live(coll)
            for number in [n for n in self.model[coll] if n not in live]:
                expired.append(f"{coll}:v{number}")
                del self.model[coll][number]
        return sorted(expired)

    def _pick(self, data: st.DataObject, coll: str) -> int | None:
        live = sorted(self._live(coll))
        return data.draw(st.sampled_from(live)) if live else None

    # -- rules -----------------------------------------------------------------------------

    @rule(
        coll=st.sampled_from(COLLECTIONS),
        files=st.dictionaries(
            st.sampled_from(["x", "y", "d/z", "w", "d/v"]), st.sampled_from(CONTENTS),
            min_size=1, max_size=5,
        ),
        alias=st.sampled_from([None, "prod", "best"]),
        batch=st.booleans(),
    )
    def finalize(
        self, coll: str, files: dict[str, bytes], alias: str | None, batch: bool
    ) -> None:
        """``batch``: through add_dir, so the version's new small blobs share one pack."""
        latest = self._latest(coll)
        add = harness.finalize_dir if batch else harness.finalize
        v = add(self.store, coll, files, aliases=[alias] if alias else [])
        if latest is not None and self.model[coll][latest]["files"] == files:
            assert v.number == latest  # same content as latest: no new version
            number = latest
        else:
            number = self.next_number[coll]
            self.next_number[coll] += 1
            assert v.number == number
            self.model[coll][number] = {
                "files": dict(files), "aliases": set(), "tags": set(), "expires": None
            }
        if alias:
            for version in self.model[coll].values():
                version["aliases"].discard(alias)
            self.model[coll][number]["aliases"].add(alias)

    @rule(coll=st.sampled_from(COLLECTIONS), big=st.sampled_from(CONTENTS[-3:]),
          small=st.binary(min_size=1, max_size=40))
    def replace_most(self, coll: str, big: bytes, small: bytes) -> None:
        """A version replaced by one keeping only its small file, then deleted: its pack is
        left mostly dead (the next gc rewrites it around the small file)."""
        self.finalize(coll, {"x": small, "big": big}, None, True)
        first = self._latest(coll)
        self.finalize(coll, {"x": small, "y": b"replaced"}, None, True)
        assert first is not None
        if self._latest(coll) != first and not self.model[coll][first]["aliases"]:
            self.store.get(f"{coll}:v{first}").delete()
            del self.model[coll][first]

    @rule(coll=st.sampled_from(COLLECTIONS), data=st.binary(max_size=20))
    def draft_then_discard(self, coll: str, data: bytes) -> None:
        draft = self.store.draft(coll)
        draft.add_bytes(data, "pending.bin")
        report = self.store.gc(grace=ZERO)  # the draft's blob survives
        assert sorted(report.versions_deleted) == self._expire_model()
        draft.add_bytes(data + b"!", "pending2.bin")
        draft.discard()

    @rule(coll=st.sampled_from(COLLECTIONS), alias=st.sampled_from(["prod", "best"]),
          data=st.data())
    def move_alias(self, coll: str, alias: str, data: st.DataObject) -> None:
        number = self._pick(data, coll)
        if number is None:
            return
        self.store.get(f"{coll}:v{number}").add_alias(alias)
        for version in self.model[coll].values():
            version["aliases"].discard(alias)
        self.model[coll][number]["aliases"].add(alias)

    @rule(coll=st.sampled_from(COLLECTIONS), alias=st.sampled_from(["prod", "best"]))
    def remove_alias(self, coll: str, alias: str) -> None:
        for number, version in self.model[coll].items():
            if alias in version["aliases"]:
                self.store.get(f"{coll}:v{number}").remove_alias(alias)
                version["aliases"].discard(alias)

    @rule(coll=st.sampled_from(COLLECTIONS), tag=st.sampled_from(["t1", "t2"]), data=st.data())
    def tag(self, coll: str, tag: str, data: st.DataObject) -> None:
        number = self._pick(data, coll)
        if number is not None:
            self.store.get(f"{coll}:v{number}").add_tags([tag])
            self.model[coll][number]["tags"].add(tag)

    @rule(coll=st.sampled_from(COLLECTIONS), hours=st.sampled_from([None, 1, 5]),
          data=st.data())
    def set_ttl(self, coll: str, hours: int | None, data: st.DataObject) -> None:
        number = self._pick(data, coll)
        if number is None:
            return
        v = self.store.get(f"{coll}:v{number}")
        v.set_ttl(None if hours is None else timedelta(hours=hours))
        created = int(v.created_at.timestamp() * 1_000_000)
        expires = None if hours is None else created + hours * 3600 * 1_000_000
        self.model[coll][number]["expires"] = expires

    @rule(hours=st.sampled_from([1, 3]))
    def time_passes(self, hours: int) -> None:
        self.now += hours * 3600 * 1_000_000

    @rule(coll=st.sampled_from(COLLECTIONS), data=st.data())
    def delete(self, coll: str, data: st.DataObject) -> None:
        number = self._pick(data, coll)
        if number is None:
            return
        v = self.store.get(f"{coll}:v{number}")
        if self.model[coll][number]["aliases"]:
            try:
                v.delete()
            except castore.AliasConflictError:
                return
            raise AssertionError("deleting an aliased version must raise")
        v.delete()
        del self.model[coll][number]

    @rule(keep=st.integers(min_value=0, max_value=2))
    def prune(self, keep: int) -> None:
        report = self.store.prune(keep_last=keep)
        expected = []
        for coll in COLLECTIONS:
            live = sorted(self._live(coll), reverse=True)
            latest = live[0] if live else None
            for number in live[keep:]:
                version = self.model[coll][number]
                if not version["aliases"] and number != latest:
                    expected.append(f"{coll}:v{number}")
                    del self.model[coll][number]
        assert sorted(report.versions_deleted) == sorted(expected)

    @rule()
    def gc(self) -> None:
        report = self.store.gc(grace=ZERO)
        assert sorted(report.versions_deleted) == self._expire_model()
        # Dead blobs stay only in packs below the rewrite threshold (and no pack is due).
        harness.settle_packs(self.store)

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def matches_model(self) -> None:
        if not hasattr(self, "store"):
            return
        snap = harness.snapshot(self.store)
        expected = {}
        for coll in COLLECTIONS:
            live = self._live(coll)
            if not live:
                continue
            versions = {}
            aliases = {}
            for number, version in live.items():
                versions[number] = sorted(version["files"])
                for alias in version["aliases"]:
                    aliases[alias] = number
            aliases["latest"] = max(live)
            expected[coll] = (versions, aliases, {n: sorted(v["tags"]) for n, v in live.items()})
        got = {
            coll: (
                {n: sorted(v["files"]) for n, v in s["versions"].items()},
                s["aliases"],
                {n: v["tags"] for n, v in s["versions"].items()},
            )
            for coll, s in snap.items()
        }
        assert got == expected

    @precondition(lambda self: hasattr(self, "store"))
    @invariant()
    def fsck_clean(self) -> None:
        report = self.store.fsck()
        assert harness.errors_of(report) == [], report
        assert {f.kind for f in report.findings} <= {"orphan_blob"}


StoreMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=20, deadline=None
)
TestStoreMachine = StoreMachine.TestCase
