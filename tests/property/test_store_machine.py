"""The store against a plain dict model: drafts, finalize, aliases, tags, TTL and deletes.

The model keeps, per collection, the next number and each version's files, aliases, tags and
whether it is deleted or expired; after every step the store's listings must equal it.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import castore

COLLECTIONS = ["a", "b"]
ALIASES = ["prod", "best"]
TAGS = ["t1", "t2", "t3"]
PATHS = ["x.txt", "d/y.bin", "d/e/z"]

files_st = st.dictionaries(st.sampled_from(PATHS), st.binary(max_size=6), max_size=3)


@dataclass
class ModelVersion:
    files: dict[str, bytes]
    aliases: set[str] = field(default_factory=set)
    tags: set[str] = field(default_factory=set)
    expired: bool = False
    deleted: bool = False


@dataclass
class ModelCollection:
    next_number: int = 0
    versions: dict[int, ModelVersion] = field(default_factory=dict)

    def visible(self) -> dict[int, ModelVersion]:
        return {
            n: v
            for n, v in self.versions.items()
            if not v.deleted and not (v.expired and not v.aliases)
        }


class StoreMachine(RuleBasedStateMachine):
    @initialize()
    def open_store(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="castore-machine-"))
        self.store = castore.init(self.dir / "store", durable=False)
        self.model: dict[str, ModelCollection] = {}

    def teardown(self) -> None:
        if hasattr(self, "store"):
            self.store.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers -----------------------------------------------------------------------------

    def _pick(self, data: st.DataObject) -> tuple[str, int] | None:
        choices = [(c, n) for c, m in sorted(self.model.items()) for n in sorted(m.visible())]
        if not choices:
            return None
        return data.draw(st.sampled_from(choices))

    def _handle(self, name: str, number: int) -> castore.ArtifactVersion:
        return self.store.get(f"{name}:v{number}")

    # -- rules -------------------------------------------------------------------------------

    @rule(
        name=st.sampled_from(COLLECTIONS),
        files=files_st,
        aliases=st.sets(st.sampled_from(ALIASES), max_size=2),
        tags=st.sets(st.sampled_from(TAGS), max_size=2),
        use_context=st.booleans(),
    )
    def finalize(
        self,
        name: str,
        files: dict[str, bytes],
        aliases: set[str],
        tags: set[str],
        use_context: bool,
    ) -> None:
        draft = self.store.draft(name)
        for path, content in sorted(files.items()):
            draft.add_bytes(content, name=path)
        if use_context and not aliases and not tags:
            with draft:
                pass
            version = draft.version
        else:
            version = draft.finalize(aliases=sorted(aliases), tags=sorted(tags))
        coll = self.model.setdefault(name, ModelCollection())
        visible = coll.visible()
        newest = visible[max(visible)] if visible else None
        if newest is not None and newest.files == files:
            number = max(visible)
            target = newest
        else:
            number = coll.next_number
            coll.next_number += 1
            target = coll.versions[number] = ModelVersion(files=dict(files))
        for alias in aliases:
            for other in coll.versions.values():
                other.aliases.discard(alias)
            target.aliases.add(alias)
        target.tags |= tags
        assert version.number == number

    @rule(name=st.sampled_from(COLLECTIONS), files=files_st)
    def discard_draft(self, name: str, files: dict[str, bytes]) -> None:
        draft = self.store.draft(name)
        self.model.setdefault(name, ModelCollection())
        for path, content in files.items():
            draft.add_bytes(content, name=path)
        draft.discard()

    @rule(data=st.data(), alias=st.sampled_from(ALIASES))
    def add_alias(self, data: st.DataObject, alias: str) -> None:
        picked = self._pick(data)
        if picked is None:
            return
        name, number = picked
        self._handle(name, number).add_alias(alias)
        coll = self.model[name]
        for other in coll.versions.values():
            other.aliases.discard(alias)
        coll.versions[number].aliases.add(alias)

    @rule(data=st.data(), alias=st.sampled_from(ALIASES))
    def remove_alias(self, data: st.DataObject, alias: str) -> None:
        picked = self._pick(data)
        if picked is None:
            return
        name, number = picked
        model = self.model[name].versions[number]
        handle = self._handle(name, number)
        if alias in model.aliases:
            handle.remove_alias(alias)
            model.aliases.discard(alias)
        else:
            try:
                handle.remove_alias(alias)
            except castore.NotFoundError:
                pass
            else:
                raise AssertionError("removing an absent alias must raise NotFoundError")

    @rule(data=st.data(), tags=st.sets(st.sampled_from(TAGS), max_size=2), add=st.booleans())
    def change_tags(self, data: st.DataObject, tags: set[str], add: bool) -> None:
        picked = self._pick(data)
        if picked is None:
            return
        name, number = picked
        handle = self._handle(name, number)
        model = self.model[name].versions[number]
        if add:
            handle.add_tags(sorted(tags))
            model.tags |= tags
        else:
            handle.remove_tags(sorted(tags))
            model.tags -= tags
        assert handle.tags == sorted(model.tags)

    @rule(data=st.data(), expire=st.booleans())
    def set_ttl(self, data: st.DataObject, expire: bool) -> None:
        picked = self._pick(data)
        if picked is None:
            return
        name, number = picked
        handle = self._handle(name, number)
        handle.set_ttl(timedelta(microseconds=1) if expire else None)
        self.model[name].versions[number].expired = expire

    @rule(data=st.data(), delete_aliases=st.booleans())
    def delete(self, data: st.DataObject, delete_aliases: bool) -> None:
        picked = self._pick(data)
        if picked is None:
            return
        name, number = picked
        handle = self._handle(name, number)
        model = self.model[name].versions[number]
        if model.aliases and not delete_aliases:
            try:
                handle.delete()
            except castore.AliasConflictError:
                return
            raise AssertionError("deleting an aliased version must raise AliasConflictError")
        handle.delete(delete_aliases=delete_aliases)
        model.deleted = True
        model.aliases.clear()
        assert handle.state == "DELETED"

    @precondition(lambda self: bool(self.model))
    @rule(name=st.sampled_from(COLLECTIONS))
    def delete_collection(self, name: str) -> None:
        if name not in self.model:
            return
        self.store.collection(name).delete()
        del self.model[name]

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def listings_match_the_model(self) -> None:
        if not hasattr(self, "store"):
            return
        total = 0
        for name, coll in self.model.items():
            visible = coll.visible()
            total += len(visible)
            listed = self.store.versions(name, sort="number", limit=None)
            assert [v.number for v in listed] == sorted(visible)
            assert self.store.count(name) == len(visible)
            # latest is on the highest-numbered live version (DESIGN.md invariant 5), also
            # while a newer one has expired and gc has not run yet
            latest_number = max(visible) if visible else None
            for version in listed:
                model = visible[version.number]
                expected = set(model.aliases)
                if version.number == latest_number:
                    expected.add("latest")
                assert set(version.aliases) == expected, (name, version.number)
                assert set(version.tags) == model.tags
                sizes = {e.path: e.size for e in version.files()}
                assert sizes == {p: len(c) for p, c in model.files.items()}
            if visible:
                assert self.store.get(name).number == max(visible)
            else:
                try:
                    self.store.get(name)
                except castore.NotFoundError:
                    pass
                else:
                    raise AssertionError(f"{name} has no visible version")
            for alias in ALIASES:
                holders = [n for n, v in visible.items() if alias in v.aliases]
                if holders:
                    assert self.store.get(f"{name}:{alias}").number == holders[0]
        assert self.store.count() == total
        assert self.store.drafts() == []


StoreMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=20, deadline=None)
test_store_machine = StoreMachine.TestCase
