"""Runs and lineage against a model graph (a Hypothesis RuleBasedStateMachine).

Rules: start a run, use a version, finalize a draft of a run (with content that may repeat the
latest, which reuses a version), end a run, delete a version, prune(only_unused=True), gc.
The model holds runs (state, inputs, outputs) and versions (alive or deleted, producer);
after every step the store's runs, edges, filters and lineage match it, and fsck is ok.
"""

from __future__ import annotations

import shutil
import tempfile

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import castore

COLLECTIONS = ("a", "b")
CONTENTS = (b"1", b"2", b"3")


class RunsMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="castore-runs-")
        self.store = castore.init(f"{self.dir}/store", durable=False)
        self.handles: dict[str, castore.Run] = {}
        self.runs: dict[str, dict] = {}  # name -> {"state", "used": set, "produced": set}
        self.versions: dict[str, dict] = {}  # id -> {"alive", "producer", "coll", "content"}
        self.count = 0

    def teardown(self) -> None:
        if hasattr(self, "store"):
            self.store.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def _alive(self) -> list[str]:
        return sorted(v for v, m in self.versions.items() if m["alive"])

    def _running(self) -> list[str]:
        return sorted(n for n, m in self.runs.items() if m["state"] == "RUNNING")

    def _downstream(self, name: str) -> set[str]:
        """Versions downstream of run ``name`` in the model."""
        seen: set[str] = set()
        todo = [name]
        while todo:
            run = todo.pop()
            for v in self.runs[run]["produced"]:
                if v not in seen:
                    seen.add(v)
                    todo += [r for r, m in self.runs.items() if v in m["used"]]
        return seen

    def _latest(self, coll: str) -> str | None:
        alive = [v for v in self._alive() if self.versions[v]["coll"] == coll]
        return max(alive) if alive else None  # ids are time-ordered UUIDv7

    # -- rules -----------------------------------------------------------------------------

    @rule()
    def start(self) -> None:
        name = f"r{self.count}"
        self.count += 1
        self.handles[name] = self.store.run(name)
        self.runs[name] = {"state": "RUNNING", "used": set(), "produced": set()}

    @precondition(lambda self: self.runs)
    @rule(data=st.data())
    def use(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.runs)))
        alive = self._alive()
        if not alive:
            return
        version = data.draw(st.sampled_from(alive))
        run, model = self.handles[name], self.runs[name]
        if model["state"] != "RUNNING":
            try:
                run.use(version)
            except castore.RunError:
                return
            raise AssertionError("an ended run recorded an input")
        if version in model["produced"]:
            run.use(version)  # its own output: no edge
            return
        if version in self._downstream(name):
            try:
                run.use(version)
            except castore.RunError:
                return
            raise AssertionError("a cycle was recorded")
        run.use(version)
        model["used"].add(version)

    @precondition(lambda self: self.runs)
    @rule(data=st.data(), coll=st.sampled_from(COLLECTIONS), content=st.sampled_from(CONTENTS))
    def finalize(self, data: st.DataObject, coll: str, content: bytes) -> None:
        name = data.draw(st.sampled_from(sorted(self.runs)))
        run, model = self.handles[name], self.runs[name]
        if model["state"] != "RUNNING":
            try:
                run.draft(coll)
            except castore.RunError:
                return
            raise AssertionError("an ended run started a draft")
        latest = self._latest(coll)
        with run.draft(coll) as d:
            d.add_bytes(content, "f")
        assert d.version is not None
        vid = d.version.id
        if latest is not None and self.versions[latest]["content"] == content:
            assert vid == latest  # reused: keeps the producer it had, or takes this run
            if self.versions[vid]["producer"] is None:
                self.versions[vid]["producer"] = name
                model["produced"].add(vid)
            return
        self.versions[vid] = {"alive": True, "producer": name, "coll": coll, "content": content}
        model["produced"].add(vid)

    @rule(coll=st.sampled_from(COLLECTIONS), content=st.sampled_from(CONTENTS))
    def finalize_without_run(self, coll: str, content: bytes) -> None:
        latest = self._latest(coll)
        with self.store.draft(coll) as d:
            d.add_bytes(content, "f")
        assert d.version is not None
        if latest is None or self.versions[latest]["content"] != content:
            self.versions[d.version.id] = {
                "alive": True, "producer": None, "coll": coll, "content": content
            }

    @precondition(lambda self: self.runs)
    @rule(data=st.data(), fail=st.booleans())
    def end(self, data: st.DataObject, fail: bool) -> None:
        name = data.draw(st.sampled_from(sorted(self.runs)))
        if fail:
            self.handles[name].fail(RuntimeError("no"))
        else:
            self.handles[name].finish()
        if self.runs[name]["state"] == "RUNNING":
            self.runs[name]["state"] = "FAILED" if fail else "FINISHED"

    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        alive = self._alive()
        if alive:
            version = data.draw(st.sampled_from(alive))
            self.store.get(version).delete()
            self.versions[version]["alive"] = False

    @rule()
    def prune(self) -> None:
        report = self.store.prune(only_unused=True)
        latest = {self._latest(c) for c in COLLECTIONS}
        used = {v for m in self.runs.values() for v in m["used"]}
        expected = {
            v for v in self._alive()
            if v not in latest and v not in used and self.versions[v]["producer"] is None
        }
        deleted = {self.store.catalog.one(
            "SELECT v.id FROM versions v JOIN collections c ON c.id = v.collection_id "
            "WHERE c.name = ? AND v.number = ?", (ref.split(":v")[0], int(ref.split(":v")[1]))
        )["id"] for ref in report.versions_deleted}  # type: ignore[index]
        assert deleted == expected
        for v in deleted:
            self.versions[v]["alive"] = False

    @rule()
    def gc(self) -> None:
        self.store.gc(grace=0)

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def matches_model(self) -> None:
        if not hasattr(self, "store"):
            return
        page = self.store.runs(limit=None)
        assert {r.name: r.state for r in page} == {n: m["state"] for n, m in self.runs.items()}
        for name, model in self.runs.items():
            run = self.store.get_run(name)
            assert {v.id for v in run.inputs()} == model["used"]
            assert {v.id for v in run.outputs()} == model["produced"]
            alive_made = {v for v in model["produced"] if self.versions[v]["alive"]}
            assert {v.id for v in self.store.versions(produced_by=name, limit=None)} == alive_made
            alive_used = {v for v in model["used"] if self.versions[v]["alive"]}
            assert {v.id for v in self.store.versions(used_by=name, limit=None)} == alive_used
            g = self.store.lineage(run, direction="both")
            up_versions = model["used"]
            assert {n.id for n in g.nodes if isinstance(n, castore.ArtifactVersion)} >= (
                up_versions | model["produced"]
            )
        for vid, meta in self.versions.items():
            if meta["alive"]:
                logged = self.store.get(vid).logged_by()
                assert (logged.name if logged else None) == meta["producer"]
        assert self.store.fsck().ok


RunsMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=20, deadline=None)
TestRunsMachine = RunsMachine.TestCase
