"""The ``castore`` command through click's CliRunner: every verb, JSON, exit codes, safety."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import castore
from castore.cli import cli
from castore.cli.progress import ProgressBar, progress_enabled
from tests import harness

VERBS = [
    "init", "add", "ls", "show", "files", "cat", "checkout", "download", "verify", "diff",
    "alias", "tag", "ttl", "rm", "gc", "prune", "fsck", "du", "doctor", "drafts",
]
SUBVERBS = [("alias", "set"), ("alias", "rm"), ("alias", "ls"), ("tag", "add"), ("tag", "rm")]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An initialized scratch store (durable=False)."""
    path = tmp_path / "store"
    castore.init(path, durable=False).close()
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A small directory to log: two files and a nested one."""
    d = tmp_path / "data"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text("alpha\n")
    (d / "b.bin").write_bytes(bytes(range(256)) * 4)
    (d / "sub" / "c.txt").write_text("gamma\n")
    (d / "skip.tmp").write_text("ignored\n")
    return d


class Cli:
    """Runs the command against one store; JSON helpers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None, env: Any = None) -> Result:
        return self.runner.invoke(
            cli, ["--store", str(self.root), *args], input=input, env=env, catch_exceptions=False
        )

    def json(self, *args: str) -> Any:
        result = self("--json", *args)
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)

    def store(self) -> castore.Store:
        return castore.open(self.root, create=False)


@pytest.fixture
def run(root: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The CLI on ``root``, opening stores with durable=False (fsync is not tested here)."""
    from castore.cli.common import State

    def open_scratch(self: State, *, create: bool = False) -> Any:
        if self._store is None:
            self._store = castore.open(self.store_path, create=create, durable=False)
        return self._store

    monkeypatch.setattr(State, "open", open_scratch)
    return Cli(root)


@pytest.fixture
def logged(run: Cli, data: Path) -> Iterator[Cli]:
    """The store with ``ds:v0`` (the data directory) and ``ds:v1`` (a.txt changed)."""
    assert run("add", str(data), "--name", "ds", "--ignore", "*.tmp").exit_code == 0
    (data / "a.txt").write_text("alpha two\n")
    (data / "new.txt").write_text("new\n")
    assert run("add", str(data), "--name", "ds", "--ignore", "*.tmp").exit_code == 0
    yield run


# -- help, global options ------------------------------------------------------------------


def test_root_help_lists_verbs_and_exit_codes() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for verb in VERBS:
        assert f"  {verb} " in result.stdout
    assert "130  interrupted" in result.stdout
    assert "Examples:" in result.stdout


def test_verbs_are_registered_from_one_list() -> None:
    """app.VERBS is the only registration; verb modules never import the group module."""
    import ast

    from castore.cli import app

    assert sorted(cli.commands) == sorted(c.name for c in app.VERBS if c.name)
    assert set(VERBS) <= set(cli.commands)
    for module in Path(app.__file__).parent.glob("verbs_*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = {f"{node.module}.{a.name}" for a in node.names} | {node.module}
            elif isinstance(node, ast.Import):
                names = {a.name for a in node.names}
            else:
                continue
            assert not names & {"castore.cli.app", "castore.cli.cli"}, module.name


@pytest.mark.parametrize("verb", VERBS + [" ".join(s) for s in SUBVERBS])
def test_every_help_has_an_example(verb: str) -> None:
    result = CliRunner().invoke(cli, [*verb.split(), "--help"])
    assert result.exit_code == 0
    assert "Example" in result.stdout
    assert "castore " in result.stdout.split("Example", 1)[1]


def test_version_flag() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"castore {castore.__version__}"


def test_usage_errors_exit_2(run: Cli) -> None:
    assert run("show").exit_code == 2  # missing argument
    assert run("nosuchverb").exit_code == 2
    assert run("ls", "--limit", "-1").exit_code == 2
    assert run("ls", "--sort", "colour").exit_code == 2
    result = run("ttl", "x", "soon")
    assert result.exit_code == 2
    assert "not a duration" in result.stderr


def test_store_from_environment(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASTORE_HOME", str(root))
    result = CliRunner().invoke(cli, ["--json", "doctor"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["store"]["path"] == str(root)


def test_default_store_is_the_librarys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --store or $CASTORE_HOME the CLI uses castore's own default (~/.castore)."""
    monkeypatch.delenv("CASTORE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    missing = CliRunner().invoke(cli, ["ls"])
    assert missing.exit_code == 10
    assert repr(str(tmp_path / ".castore")) in missing.stderr
    created = CliRunner().invoke(cli, ["--json", "init"])
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout)["path"] == str(tmp_path / ".castore")
    assert json.loads(created.stdout)["created"] is True
    again = CliRunner().invoke(cli, ["--json", "init"])
    assert json.loads(again.stdout)["created"] is False
    assert castore.open(tmp_path / ".castore", create=False).path == tmp_path / ".castore"


@pytest.mark.parametrize(
    "args",
    [
        ["ls"], ["show", "x"], ["files", "x"], ["cat", "x", "y"], ["checkout", "x", "d"],
        ["download", "x", "d"], ["verify", "x"], ["diff", "a", "b"], ["alias", "ls"],
        ["alias", "set", "x:v0", "p"], ["tag", "add", "x", "t"], ["ttl", "x", "1d"],
        ["rm", "x", "-y"], ["gc", "-y"], ["prune", "--keep-last", "1", "-y"], ["fsck"], ["du"],
        ["doctor"], ["drafts"],
    ],
)
def test_verbs_on_a_missing_store_exit_10_and_create_nothing(
    tmp_path: Path, args: list[str]
) -> None:
    missing = tmp_path / "nostore"
    result = CliRunner().invoke(cli, ["--store", str(missing), *args])
    assert result.exit_code == 10, result.output
    assert result.stderr.strip().splitlines()[-1].startswith("error: no castore store")
    assert "hint: create it with `castore init`" in result.stderr
    assert not missing.exists()


# -- init, doctor --------------------------------------------------------------------------


def test_init_creates_then_reopens(tmp_path: Path) -> None:
    path = tmp_path / "s"
    run = Cli(path)
    first = run.json("init", "--hash", "sha256", "--compression", "none")
    assert first["created"] is True
    assert first["config"]["hash"] == "sha256"
    assert first["config"]["compression"]["codec"] == "none"
    again = run.json("init", "--hash", "sha256", "--compression", "none")
    assert again["created"] is False
    assert again["config"]["store_id"] == first["config"]["store_id"]
    clash = run("init", "--hash", "blake3")
    assert clash.exit_code == 1
    assert clash.stderr.startswith("error: ") and "sha256" in clash.stderr


def test_init_min_saving(tmp_path: Path) -> None:
    run = Cli(tmp_path / "s")
    made = run("init", "--min-saving", "0")
    assert made.exit_code == 0 and "min saving 0" in made.stdout
    assert run.json("doctor")["store"]["compression"]["min_saving"] == 0.0
    assert "min saving 0" in run("doctor").stdout
    clash = run("init")  # the default 0.1 is another setting
    assert clash.exit_code == 1 and "min_saving=0.0" in clash.stderr
    bad = Cli(tmp_path / "t")("init", "--min-saving", "2")
    assert bad.exit_code == 2 and "--min-saving" in bad.stderr
    assert not (tmp_path / "t").exists()


def test_init_takes_a_path_argument(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "p")])
    assert result.exit_code == 0
    assert "initialized store at" in result.stdout
    assert (tmp_path / "p" / "castore.json").is_file()


def test_doctor_reports_store_space_links_and_locks(run: Cli, root: Path) -> None:
    report = run.json("doctor")
    assert report["versions"]["castore"] == castore.__version__
    assert report["store"]["exists"] is True
    assert report["store"]["format"] == 2
    assert report["store"]["hash"] == "xxh3-128"
    assert report["disk"]["free"] > 0
    assert report["link_modes"]["copy"] is True
    assert report["link_modes"]["hardlink"] is True  # tmp_path is on one local filesystem
    assert isinstance(report["locks"], dict)
    assert not [p for p in (root / "tmp").iterdir() if p.name.startswith(".doctor-")]
    from castore.storage.locking import StoreLock

    with StoreLock(root / "locks", timeout=0):
        assert run.json("doctor")["locks"] == {"maintenance.lock": "held"}
    assert run.json("doctor")["locks"] == {"maintenance.lock": "free"}
    human = run("doctor")
    assert human.exit_code == 0
    assert "link modes" in human.stdout and "free space" in human.stdout


# -- add -----------------------------------------------------------------------------------


def test_add_directory_then_unchanged(run: Cli, data: Path) -> None:
    first = run("add", str(data), "--name", "ds", "--ignore", "*.tmp")
    assert first.exit_code == 0
    assert first.stdout.startswith("added ds:v0 (3 files, ")
    again = run("add", str(data), "--name", "ds", "--ignore", "*.tmp")
    assert again.exit_code == 0
    assert again.stdout.startswith("unchanged, still ds:v0")
    record = run.json("add", str(data), "--name", "ds", "--ignore", "*.tmp")
    assert record["unchanged"] is True and record["ref"] == "ds:v0"
    with run.store() as store:
        assert store.count(collection="ds") == 1
        assert [e.path for e in store.get("ds").files()] == ["a.txt", "b.bin", "sub/c.txt"]


def test_add_file_with_every_option(run: Cli, data: Path) -> None:
    record = run.json(
        "add", str(data / "a.txt"), "--name", "model", "--type", "model",
        "--description", "first", "--metadata", "f1:=0.96", "--metadata", "split=train",
        "--tag", "raw", "--tag", "gold", "--alias", "prod", "--ttl", "30d",
    )
    assert record["ref"] == "model:v0"
    assert record["type"] == "model"
    assert record["file_count"] == 1 and record["size"] == len("alpha\n")
    assert record["aliases"] == ["latest", "prod"]
    assert record["tags"] == ["gold", "raw"]
    assert record["metadata"] == {"f1": 0.96, "split": "train"}
    assert record["description"] == "first"
    assert record["ttl"] == timedelta(days=30).total_seconds()
    assert record["expires_at"] is not None
    assert record["unchanged"] is False
    shown = run("show", "model").stdout.splitlines()
    assert "metadata.f1     0.96" in shown and "metadata.split  train" in shown
    assert any(line.startswith("expires ") and "(in 4 weeks)" in line for line in shown)


def test_add_name_defaults_to_basename(run: Cli, data: Path) -> None:
    assert run("-q", "add", str(data)).stdout.strip() == "data:v0"


def test_add_missing_path_exits_4_and_bad_metadata_2(run: Cli, tmp_path: Path) -> None:
    missing = run("add", str(tmp_path / "nope"), "--name", "x")
    assert missing.exit_code == 4
    assert "does not exist" in missing.stderr
    bad = run("add", str(tmp_path), "--name", "x", "--metadata", "novalue")
    assert bad.exit_code == 2
    with run.store() as store:
        assert store.collections() == []


def test_add_creates_a_missing_store(tmp_path: Path, data: Path) -> None:
    result = Cli(tmp_path / "fresh")("add", str(data / "a.txt"), "--name", "one")
    assert result.exit_code == 0
    assert (tmp_path / "fresh" / "castore.json").is_file()


def test_interrupted_add_exits_130_and_leaves_no_draft(
    run: Cli, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from castore.handles.version import Draft

    def interrupt(self: Draft, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Draft, "finalize", interrupt)
    result = run("add", str(data), "--name", "ds")
    assert result.exit_code == 130
    assert result.stderr.strip() == "error: interrupted"
    monkeypatch.undo()
    with run.store() as store:
        assert store.drafts() == []
        assert store.count() == 0
        assert store.fsck().ok


# -- ls, show, files, cat ------------------------------------------------------------------


def test_ls_collections_and_versions(logged: Cli, data: Path) -> None:
    logged("add", str(data / "a.txt"), "--name", "m", "--type", "model")
    colls = logged.json("ls")
    assert [c["name"] for c in colls] == ["ds", "m"]
    assert colls[0]["versions"] == 2 and colls[0]["latest"]["ref"] == "ds:v1"
    assert colls[0]["aliases"] == {"latest": "v1"}
    human = logged("ls").stdout.splitlines()
    assert human[0].split() == ["NAME", "TYPE", "VERSIONS", "LATEST", "SIZE", "UPDATED"]
    assert logged("-q", "ls").stdout.split() == ["ds", "m"]
    assert logged("ls", "--type", "model", "-q").stdout.split() == ["m"]

    page = logged.json("ls", "ds")
    assert [v["ref"] for v in page["items"]] == ["ds:v1", "ds:v0"]
    assert page["total"] == 2 and page["has_more"] is False
    assert logged("ls", "ds", "--sort", "number", "-q").stdout.split() == ["ds:v0", "ds:v1"]
    limited = logged.json("ls", "ds", "--limit", "1")
    assert len(limited["items"]) == 1 and limited["has_more"] is True
    table = logged("ls", "ds").stdout.splitlines()
    assert table[0].split() == ["REF", "ALIASES", "TAGS", "FILES", "SIZE", "CREATED"]
    assert table[1].startswith("ds:v1")


def test_ls_filters(logged: Cli) -> None:
    logged("tag", "add", "ds:v0", "gold")
    assert logged("-q", "ls", "--tag", "gold").stdout.split() == ["ds:v0"]
    assert logged("-q", "ls", "--alias", "latest").stdout.split() == ["ds:v1"]
    assert logged("-q", "ls", "--since", "1h").stdout.split() == ["ds:v1", "ds:v0"]
    assert logged("-q", "ls", "--before", "1h").stdout.split() == []
    big = logged.json("ls", "--min-size", "1KiB")
    assert big["total"] == 2
    assert logged.json("ls", "--max-size", "10B")["items"] == []
    assert logged("ls", "--tag", "nothing").stderr.strip() == "No versions found."


def test_ls_missing_collection_exits_4(logged: Cli) -> None:
    result = logged("ls", "nope")
    assert result.exit_code == 4
    assert result.stderr.startswith("error: no collection named 'nope'")


def test_show(logged: Cli) -> None:
    record = logged.json("show", "ds:v0")
    assert record["ref"] == "ds:v0" and record["number"] == 0 and record["version"] == "v0"
    assert record["state"] == "COMMITTED" and record["file_count"] == 3
    assert record["digest"].startswith("xxh3-128:")
    by_digest = logged.json("show", "ds@" + record["digest"].split(":")[1][:8])
    assert by_digest["id"] == record["id"]
    assert logged.json("show", record["id"])["ref"] == "ds:v0"
    human = logged("show", "ds").stdout
    assert "ds:v1" in human and "latest" in human
    assert logged("show", "ds:v9").exit_code == 4
    assert logged("show", "ds:bad alias!").exit_code == 2


def test_files_and_cat(logged: Cli, data: Path) -> None:
    entries = logged.json("files", "ds:v1")
    assert [e["path"] for e in entries] == ["a.txt", "b.bin", "new.txt", "sub/c.txt"]
    assert entries[1]["size"] == 1024 and entries[1]["digest"].startswith("xxh3-128:")
    assert logged("-q", "files", "ds", "--prefix", "sub/").stdout.split() == ["sub/c.txt"]
    cat = logged.runner.invoke(cli, ["--store", str(logged.root), "cat", "ds:v0", "b.bin"])
    assert cat.exit_code == 0, cat.stderr
    assert cat.stdout_bytes == bytes(range(256)) * 4
    assert logged("cat", "ds:v0", "a.txt").stdout == "alpha\n"
    text = logged.json("cat", "ds:v0", "a.txt")
    assert (text["path"], text["encoding"], text["content"]) == ("a.txt", "utf-8", "alpha\n")
    binary = logged.json("cat", "ds:v0", "b.bin")
    assert binary["encoding"] == "base64"
    assert base64.b64decode(binary["content"]) == bytes(range(256)) * 4
    missing = logged("cat", "ds:v0", "new.txt")
    assert missing.exit_code == 4
    assert "castore files ds:v0" in missing.stderr


def _flip_a_byte_of(run: Cli, ref: str, path: str) -> None:
    """Flip one byte in the middle of a raw blob, so it still reads to the end."""
    with run.store() as store:
        blob = store.blobs.path_of(store.get(ref).get_entry(path).digest)
    assert blob.suffix != ".zst"  # random bytes are stored raw: the damage decodes silently
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))


def test_cat_of_a_damaged_blob_writes_nothing_and_exits_3(run: Cli, tmp_path: Path) -> None:
    """Issue 9 item 5: cat wrote the damaged megabyte to stdout before exiting 3."""
    import os

    src = tmp_path / "big"
    src.mkdir()
    (src / "one.bin").write_bytes(os.urandom(1024 * 1024))
    assert run("add", str(src), "--name", "big").exit_code == 0
    _flip_a_byte_of(run, "big", "one.bin")
    result = run.runner.invoke(cli, ["--store", str(run.root), "cat", "big", "one.bin"])
    assert result.exit_code == 3, result.stderr
    assert result.stdout_bytes == b""
    assert "`castore fsck --repair`" in result.stderr and "restores it" not in result.stderr


def test_cat_streams_a_large_clean_file_whole(run: Cli, tmp_path: Path) -> None:
    import hashlib
    import os

    src = tmp_path / "large"
    src.mkdir()
    content = os.urandom(20 * 1024 * 1024)
    (src / "large.bin").write_bytes(content)
    assert run("add", str(src), "--name", "large").exit_code == 0
    result = run.runner.invoke(cli, ["--store", str(run.root), "cat", "large", "large.bin"])
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout_bytes) == len(content)
    assert hashlib.sha256(result.stdout_bytes).digest() == hashlib.sha256(content).digest()
    assert not list((run.root / "tmp").rglob("*.*"))  # the spool leaves nothing behind


# -- checkout, download, verify, diff -------------------------------------------------------


def test_readme_flow_checkout_verify_and_mirror(logged: Cli, tmp_path: Path) -> None:
    target = tmp_path / "out"
    assert logged("checkout", "ds:v0", str(target)).exit_code == 0
    assert logged("verify", "ds:v0", str(target)).exit_code == 0
    # an older copy castore checked out is mirrored to the new version
    result = logged("checkout", "ds", str(target))
    assert result.exit_code == 0, result.stderr
    assert (target / "a.txt").read_text() == "alpha two\n"
    assert (target / "new.txt").exists()
    ok = logged.json("verify", "ds", str(target))
    assert ok == {"ref": "ds:v1", "path": str(target), "ok": True, "missing": [],
                  "modified": [], "extra": []}
    logged("checkout", "ds:v0", str(target))
    assert not (target / "new.txt").exists()


def test_verify_failure_exits_3_with_report(logged: Cli, tmp_path: Path) -> None:
    target = tmp_path / "out"
    logged("checkout", "ds:v0", str(target))
    (target / "a.txt").write_text("changed\n")
    (target / "sub" / "c.txt").unlink()
    (target / "stray").write_text("x")
    result = logged("verify", "ds:v0", str(target))
    assert result.exit_code == 3
    assert result.stdout.splitlines() == [
        "missing   sub/c.txt", "modified  a.txt", "extra     stray"
    ]
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    as_json = logged("--json", "verify", "ds:v0", str(target))
    assert as_json.exit_code == 3
    report = json.loads(as_json.stdout)
    assert report["ok"] is False
    assert (report["missing"], report["modified"], report["extra"]) == (
        ["sub/c.txt"], ["a.txt"], ["stray"]
    )
    assert logged("verify", "ds:v0", str(tmp_path / "absent")).exit_code == 4


def _corrupt_first_blob(run: Cli, ref: str) -> str:
    with run.store() as store:
        entry = next(iter(store.get(ref).files()))
        harness.damage_blob(store, entry.digest)  # loose or packed
    return entry.path


def test_verify_stored_blobs_and_fsck_find_corruption(logged: Cli) -> None:
    assert logged("verify", "ds:v0").exit_code == 0
    assert logged("fsck").exit_code == 0
    damaged = _corrupt_first_blob(logged, "ds:v0")
    result = logged("verify", "ds:v0")
    assert result.exit_code == 3
    assert f"corrupt   {damaged}" in result.stdout
    fsck = logged("--json", "fsck")
    assert fsck.exit_code == 3
    report = json.loads(fsck.stdout)
    assert report["ok"] is False
    assert any(f["kind"] == "corrupt_blob" for f in report["findings"])
    assert logged("checkout", "ds:v0", str(logged.root.parent / "x")).exit_code == 3


def test_gc_names_the_leftovers_it_sweeps_now_and_later(logged: Cli) -> None:
    """Issue 9: after kills, drafts and temp files held space and gc said nothing of them."""
    with logged.store() as store:
        draft = store.draft("ds")
        draft.add_bytes(b"z" * 2048, "partial.bin")
        store.catalog.execute("UPDATE drafts SET pid = 999999999")  # killed mid-add
        young = store.layout.tmp / "00" / ".inflight.tmp"
        young.parent.mkdir(exist_ok=True)
        young.write_bytes(b"t" * 100)
    plan = logged("gc", "--dry-run")
    assert plan.exit_code == 0, plan.stderr
    assert f"would remove draft {draft.id} of ds (2.0 KiB" in plan.stdout
    assert f"kept for now: temp file {young} (100 B" in plan.stdout
    assert "gc removes it after the 1h grace period, in " in plan.stdout
    assert "process 999999999 is gone" in plan.stdout
    assert "would remove 1 draft;" in plan.stdout
    assert "1 leftover kept for a later gc" in plan.stdout
    report = logged.json("gc", "--dry-run")
    assert [x["name"] for x in report["leftovers_removed"]] == [draft.id]
    assert report["leftovers_kept"][0]["reason"] == "after the 1h grace period"
    done = logged("gc", "-y")
    assert f"removed draft {draft.id} of ds" in done.stdout
    assert young.exists()


# -- hints match the cause (issue 9: "checkout restores it" when the blob was damaged) -----

BLOB_HINT = "`castore fsck --repair` to quarantine it, then add the"


def test_verify_dir_says_checkout_restores_it_only_when_the_blob_is_whole(
    logged: Cli, tmp_path: Path
) -> None:
    target = tmp_path / "out"
    assert logged("checkout", "ds:v0", str(target)).exit_code == 0
    (target / "a.txt").write_text("edited\n")
    whole = logged("verify", "ds:v0", str(target))
    assert whole.exit_code == 3
    assert f"`castore checkout ds:v0 {target}` restores it" in whole.stderr
    _corrupt_first_blob(logged, "ds:v0")  # a.txt's blob: the stored copy is damaged too
    damaged = logged("verify", "ds:v0", str(target))
    assert damaged.exit_code == 3
    assert "restores it" not in damaged.stderr and "castore checkout" not in damaged.stderr
    assert "damaged too" in damaged.stderr and "`castore fsck --repair`" in damaged.stderr


def test_damaged_blob_hints_name_fsck_repair_not_checkout(logged: Cli, tmp_path: Path) -> None:
    _corrupt_first_blob(logged, "ds:v0")
    for args in (
        ["verify", "ds:v0"],
        ["checkout", "ds:v0", str(tmp_path / "co")],
        ["cat", "ds:v0", "a.txt"],
    ):
        result = logged(*args)
        assert result.exit_code == 3, (args, result.stderr)
        assert BLOB_HINT in result.stderr, (args, result.stderr)
        assert "restores it" not in result.stderr, (args, result.stderr)


def test_library_verify_names_the_files_checkout_cannot_restore(
    logged: Cli, tmp_path: Path
) -> None:
    target = tmp_path / "lib"
    with logged.store() as store:
        v = store.get("ds:v0")
        v.checkout(target)
        (target / "a.txt").write_text("edited\n")
        with pytest.raises(castore.VerificationError) as whole:
            v.verify(target)
        assert whole.value.damaged == [] and "run checkout() to restore it" in str(whole.value)
    _corrupt_first_blob(logged, "ds:v0")
    with logged.store() as store:
        with pytest.raises(castore.VerificationError) as hurt:
            store.get("ds:v0").verify(target)
        assert hurt.value.damaged == ["a.txt"]
        assert "checkout cannot restore them" in str(hurt.value)


def test_fsck_repair_dry_run_and_refusal_change_nothing(logged: Cli) -> None:
    _corrupt_first_blob(logged, "ds:v0")
    quarantine = logged.root / "quarantine"
    before = sorted(quarantine.rglob("*")) if quarantine.exists() else []
    assert logged("fsck", "--repair", "--dry-run").exit_code == 3
    refused = logged("fsck", "--repair")  # stdin is not a terminal and no -y
    assert refused.exit_code == 1
    assert "pass -y" in refused.stderr
    after = sorted(quarantine.rglob("*")) if quarantine.exists() else []
    assert before == after
    repaired = logged("--json", "fsck", "--repair", "-y")
    assert any(f["repaired"] for f in json.loads(repaired.stdout)["findings"])


def test_download_with_prefix_leaves_other_files(logged: Cli, tmp_path: Path) -> None:
    target = tmp_path / "dl"
    target.mkdir()
    (target / "mine.txt").write_text("keep")
    record = logged.json("download", "ds:v1", str(target), "--prefix", "sub/")
    assert record["ref"] == "ds:v1"
    assert (target / "sub" / "c.txt").read_text() == "gamma\n"
    assert not (target / "a.txt").exists()
    assert (target / "mine.txt").read_text() == "keep"


def test_checkout_refuses_unmanaged_directory_without_force(logged: Cli, tmp_path: Path) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    (target / "precious").write_text("x")
    result = logged("checkout", "ds", str(target))
    assert result.exit_code == 1
    assert "--force" in result.stderr
    assert (target / "precious").exists()
    assert logged("checkout", "ds", str(target), "--force").exit_code == 0
    assert not (target / "precious").exists()


def test_checkout_hardlink_mode(logged: Cli, tmp_path: Path) -> None:
    target = tmp_path / "hl"
    assert logged("checkout", "ds:v0", str(target), "--link", "hardlink").exit_code == 0
    assert logged("verify", "ds:v0", str(target)).exit_code == 0
    assert logged("checkout", "ds:v0", str(target), "--link", "sideways").exit_code == 2


def test_checkout_into_the_store_is_refused(logged: Cli) -> None:
    result = logged("checkout", "ds", str(logged.root / "inside"))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")


def test_diff(logged: Cli) -> None:
    d = logged.json("diff", "ds:v0", "ds:v1")
    assert [e["path"] for e in d["added"]] == ["new.txt"]
    assert [e["path"] for e in d["modified"]] == ["a.txt"]
    assert d["removed"] == []
    human = logged("diff", "ds:v0", "ds:v1")
    assert human.stdout.splitlines()[0].startswith("M a.txt")
    assert "1 added, 0 removed, 1 modified" in human.stderr
    assert logged("diff", "ds:v0", "ds:v1", "--exit-code").exit_code == 1
    assert logged("diff", "ds:v1", "ds:v1", "--exit-code").exit_code == 0
    assert logged("diff", "ds:v0", "ds:v7").exit_code == 4


# -- alias, tag, ttl, rm -------------------------------------------------------------------


def test_alias_set_ls_rm(logged: Cli) -> None:
    assert logged("alias", "set", "ds:v0", "prod").stdout.strip() == "ds:prod -> ds:v0"
    moved = logged.json("alias", "set", "ds:v1", "prod")
    assert moved == {"collection": "ds", "alias": "prod", "ref": "ds:v1", "previous": "ds:v0"}
    listing = logged.json("alias", "ls")
    assert {"collection": "ds", "alias": "prod", "ref": "ds:v1"} in listing
    assert logged("alias", "set", "ds:v0", "latest").exit_code == 2
    # destructive: dry run and refusal change nothing
    assert logged("alias", "rm", "ds", "prod", "--dry-run").exit_code == 0
    refused = logged("alias", "rm", "ds:prod")
    assert refused.exit_code == 1 and "pass -y" in refused.stderr
    assert logged.json("show", "ds:prod")["ref"] == "ds:v1"
    assert logged("alias", "rm", "ds:prod", "-y").exit_code == 0
    assert logged("show", "ds:prod").exit_code == 4
    assert logged("alias", "rm", "ds", "prod", "-y").exit_code == 4


def test_alias_rm_asks_at_a_terminal(logged: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    import castore.cli.common as common

    logged("alias", "set", "ds:v0", "prod")
    monkeypatch.setattr(common, "_stdin_is_tty", lambda: True)
    no = logged("alias", "rm", "ds:prod", input="n\n")
    assert no.exit_code == 1 and "nothing was changed" in no.stderr
    eof = logged("alias", "rm", "ds:prod", input="")
    assert eof.exit_code == 1 and "nothing was changed" in eof.stderr
    assert logged("show", "ds:prod").exit_code == 0
    yes = logged("alias", "rm", "ds:prod", input="y\n")
    assert yes.exit_code == 0
    assert logged("show", "ds:prod").exit_code == 4


def test_tag_add_rm(logged: Cli) -> None:
    assert logged.json("tag", "add", "ds:v0", "b", "a") == {"ref": "ds:v0", "tags": ["a", "b"]}
    assert logged.json("tag", "rm", "ds:v0", "a", "zzz") == {"ref": "ds:v0", "tags": ["b"]}
    assert logged("tag", "add", "ds:v0").exit_code == 2


def test_ttl(logged: Cli) -> None:
    planned = logged.json("ttl", "ds:v0", "30d", "--dry-run")
    assert planned["dry_run"] is True and planned["ttl"] == 30 * 86400
    assert logged.json("show", "ds:v0")["ttl"] is None
    assert logged("ttl", "ds:v0", "30d").exit_code == 1  # no -y, no terminal
    assert logged("ttl", "ds:v0", "30d", "-y").exit_code == 0
    assert logged.json("show", "ds:v0")["ttl"] == 30 * 86400
    assert logged("ttl", "ds:v0", "none", "-y").exit_code == 0
    assert logged.json("show", "ds:v0")["ttl"] is None
    assert logged("ttl", "ds", "90d", "--default", "-y").exit_code == 0
    with logged.store() as store:
        assert store.collection("ds").default_ttl == timedelta(days=90)


def test_rm(logged: Cli) -> None:
    assert logged("rm", "ds:v0", "--dry-run").exit_code == 0
    assert logged("rm", "ds:v0").exit_code == 1
    assert logged("-q", "ls", "ds").stdout.split() == ["ds:v1", "ds:v0"]
    assert logged("rm", "ds:v0", "-y").exit_code == 0
    assert logged("-q", "ls", "ds").stdout.split() == ["ds:v1"]
    logged("alias", "set", "ds:v1", "prod")
    conflict = logged("rm", "ds:v1", "-y")
    assert conflict.exit_code == 5
    assert logged("rm", "ds:v1", "-y", "--delete-aliases").exit_code == 0
    assert logged("show", "ds").exit_code == 4
    assert logged("rm", "ds:v1", "-y").exit_code == 4


def test_rm_collection(logged: Cli) -> None:
    assert logged.json("rm", "ds", "--collection", "--dry-run")["versions"] == 2
    assert logged("-q", "ls").stdout.split() == ["ds"]
    assert logged("rm", "ds", "--collection", "-y").exit_code == 0
    assert logged("-q", "ls").stdout.split() == []


# -- gc, prune, du -------------------------------------------------------------------------


def test_gc_with_nothing_to_do_asks_nothing(logged: Cli) -> None:
    report = logged.json("gc")
    assert report["dry_run"] is False
    assert report["versions_deleted"] == [] and report["blobs_deleted"] == 0
    assert logged.json("prune", "--keep-last", "5")["dry_run"] is False


def test_gc_dry_run_then_real(logged: Cli) -> None:
    logged("rm", "ds:v0", "-y")
    blobs = sorted(p for p in (logged.root / "blobs").rglob("*") if p.is_file())
    plan = logged.json("gc", "--dry-run", "--grace", "0s")
    assert plan["dry_run"] is True and plan["blobs_deleted"] >= 1
    assert sorted(p for p in (logged.root / "blobs").rglob("*") if p.is_file()) == blobs
    assert logged("gc", "--grace", "0s").exit_code == 1  # refuses without -y
    done = logged.json("gc", "--grace", "0s", "-y")
    assert done["dry_run"] is False and done["blobs_deleted"] == plan["blobs_deleted"]
    assert logged("verify", "ds:v1").exit_code == 0
    assert logged("fsck").exit_code == 0


def test_prune(logged: Cli, data: Path) -> None:
    (data / "a.txt").write_text("three\n")
    logged("add", str(data), "--name", "ds")
    assert logged("prune").exit_code == 2
    plan = logged.json("prune", "ds", "--keep-last", "1", "--dry-run")
    assert plan["dry_run"] is True
    assert sorted(plan["versions_deleted"]) == ["ds:v0", "ds:v1"]
    assert logged.json("ls", "ds")["total"] == 3
    assert logged("prune", "--keep-last", "1").exit_code == 1
    assert logged("prune", "ds", "--keep-last", "1", "-y").exit_code == 0
    assert logged("-q", "ls", "ds").stdout.split() == ["ds:v2"]
    assert logged("prune", "nope", "--keep-last", "1", "-y").exit_code == 4


def test_du(logged: Cli) -> None:
    report = logged.json("du")
    assert report["collections"][0]["collection"] == "ds"
    assert report["collections"][0]["versions"] == 2
    assert report["store"]["versions"] == 2
    assert report["store"]["logical_bytes"] == report["collections"][0]["logical_bytes"]
    assert "dedup ratio" in logged("du").stdout


# -- errors, JSON, progress ----------------------------------------------------------------


def test_json_flag_before_or_after_the_verb(logged: Cli) -> None:
    before = logged("--json", "show", "ds")
    after = logged("show", "ds", "--json")
    assert json.loads(before.stdout) == json.loads(after.stdout)


def test_json_errors_also_go_to_stdout(logged: Cli) -> None:
    result = logged("--json", "show", "ds:v9")
    assert result.exit_code == 4
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "NotFoundError" and error["exit_code"] == 4
    assert result.stderr.startswith("error: ds has no version v9")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (castore.LockTimeoutError("the store is busy", timeout=1.0), 11),
        (castore.AliasConflictError("alias in the way", alias="prod"), 5),
        (castore.VersionConflictError("v3 is taken"), 5),
        (castore.MultipleResourcesFoundError("two matches"), 5),
        (castore.IntegrityError("bad blob"), 3),
        (castore.StoreNotFoundError("/x"), 10),
        (castore.OutOfSpaceError("disk full"), 1),
        (castore.InvalidPathError("a/../b", "'..' is not allowed"), 2),
        (castore.UnsafeTargetError("into the store"), 1),
        (castore.ConfigurationError("bad setting"), 1),
        (RuntimeError("boom"), 1),
    ],
)
def test_errors_map_to_exit_codes(
    logged: Cli, monkeypatch: pytest.MonkeyPatch, error: Exception, code: int
) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise error

    monkeypatch.setattr(castore.Store, "get", fail)
    result = logged("show", "ds")
    assert result.exit_code == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr


def test_debug_env_shows_traceback(logged: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(castore.Store, "get", fail)
    quiet = logged("show", "ds")
    assert "CASTORE_DEBUG=1" in quiet.stderr
    loud = logged("show", "ds", env={"CASTORE_DEBUG": "1"})
    assert loud.exit_code == 1
    assert "Traceback" in loud.stderr and "RuntimeError: boom" in loud.stderr


def test_no_progress_written_when_stderr_is_not_a_terminal(logged: Cli, tmp_path: Path) -> None:
    result = logged("checkout", "ds", str(tmp_path / "p"))
    assert result.exit_code == 0
    assert result.stderr == ""
    assert logged("verify", "ds", str(tmp_path / "p")).stderr == ""


def test_progress_enabled_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    import castore.cli.progress as progress

    monkeypatch.setattr(progress, "_stderr_is_tty", lambda: True)
    monkeypatch.delenv("CASTORE_DISABLE_PROGRESS_BARS", raising=False)
    assert progress_enabled() is True
    assert progress_enabled(requested=False) is False
    monkeypatch.setenv("CASTORE_DISABLE_PROGRESS_BARS", "1")
    assert progress_enabled() is False
    monkeypatch.setattr(progress, "_stderr_is_tty", lambda: False)
    monkeypatch.delenv("CASTORE_DISABLE_PROGRESS_BARS")
    assert progress_enabled() is False


def test_progress_bar_draws_on_stderr_only(capsys: pytest.CaptureFixture[str]) -> None:
    with ProgressBar("work", enabled=True) as bar:
        assert bar.callback is bar
        bar(10, 100)
        bar(100, 100)
    out, err = capsys.readouterr()
    assert out == ""
    assert "work" in err
    with ProgressBar("off", enabled=False) as off:
        assert off.callback is None
    assert capsys.readouterr() == ("", "")


def test_fsck_repair_rebuilds_a_catalogue_too_damaged_to_open(logged: Cli) -> None:
    catalog = logged.root / "catalog.db"
    for suffix in ("-wal", "-shm"):
        (logged.root / f"catalog.db{suffix}").unlink(missing_ok=True)
    catalog.write_bytes(b"\0" * 4096 + catalog.read_bytes()[4096:])
    plain = logged("fsck")
    assert plain.exit_code == 3
    assert "fsck --repair" in plain.stderr
    repaired = logged("fsck", "--repair", "-y")
    assert repaired.exit_code == 0, repaired.stderr
    refs = [v["ref"] for v in logged.json("ls", "ds")["items"]]
    assert sorted(refs) == ["ds:v0", "ds:v1"]
    assert list(logged.root.glob("catalog.db.damaged-*"))


# -- issue 9: the CLI speaks its own verbs and flags, and reports true results -------------

PYTHON_API = (
    "store.", "castore.init()", "castore.open()", "castore.repair(", "=True", "=False",
    "use None", "()",
)


def _speaks_cli(result: Result) -> str:
    text = result.stderr + result.stdout
    assert not [p for p in PYTHON_API if p in text], text
    return text


def test_errors_name_cli_verbs_not_python_api(logged: Cli, tmp_path: Path) -> None:
    missing = logged("show", "nosuch")
    assert missing.exit_code == 4
    assert "list them with `castore ls`" in _speaks_cli(missing)
    logged("alias", "set", "ds:v0", "prod")
    held = logged("rm", "ds:v0", "-y")
    assert held.exit_code == 5
    assert "--delete-aliases" in _speaks_cli(held)
    target = tmp_path / "mine"
    target.mkdir()
    (target / "precious").write_text("x")
    unsafe = logged("checkout", "ds", str(target))
    assert unsafe.exit_code == 1
    assert "--force" in _speaks_cli(unsafe) and "`castore download`" in unsafe.stderr
    _corrupt_first_blob(logged, "ds:v0")
    damaged = logged("verify", "ds:v0")
    assert damaged.exit_code == 3
    assert "`castore fsck --repair`" in _speaks_cli(damaged)


def test_damaged_catalogue_hint_names_the_cli(logged: Cli) -> None:
    for suffix in ("-wal", "-shm"):
        (logged.root / f"catalog.db{suffix}").unlink(missing_ok=True)
    catalog = logged.root / "catalog.db"
    catalog.write_bytes(b"\0" * 4096 + catalog.read_bytes()[4096:])
    plain = logged("ls")
    assert plain.exit_code == 3
    assert "`castore fsck --repair`" in _speaks_cli(plain)


def test_garbage_config_hint_is_not_upgrade(root: Path) -> None:
    (root / "castore.json").write_text("{ not json")
    result = CliRunner().invoke(cli, ["--store", str(root), "ls"])
    assert result.exit_code == 1
    assert "upgrade" not in result.stderr and "damaged" in result.stderr


def test_ls_limit_applies_to_collections(run: Cli, data: Path) -> None:
    for name in ("c1", "c2", "c3"):
        assert run("add", str(data / "a.txt"), "--name", name).exit_code == 0
    assert len(run.json("ls")) == 3
    assert [c["name"] for c in run.json("ls", "--limit", "2")] == ["c1", "c2"]
    assert [c["name"] for c in run.json("ls", "--limit", "2", "--offset", "2")] == ["c3"]
    table = run("ls", "--limit", "1")
    assert table.stdout.count("\n") == 2  # header and one row
    assert "showing 1 of 3" in table.stderr
    assert run("-q", "ls", "--limit", "2").stdout.split() == ["c1", "c2"]


@pytest.mark.parametrize("args", [["ttl", "ds:v0", "0s", "-y"], ["ttl", "ds", "0", "--default"]])
def test_ttl_zero_is_a_usage_error(logged: Cli, args: list[str]) -> None:
    result = logged(*args)
    assert result.exit_code == 2, result.output
    assert "positive" in result.stderr and "none" in result.stderr
    assert "ValueError" not in result.stderr
    _speaks_cli(result)


def test_add_ttl_zero_is_a_usage_error(run: Cli, data: Path) -> None:
    result = run("add", str(data), "--name", "ds", "--ttl", "0s")
    assert result.exit_code == 2
    assert "positive" in result.stderr


def test_download_with_prefix_reports_what_it_wrote(logged: Cli, tmp_path: Path) -> None:
    record = logged.json("download", "ds:v1", str(tmp_path / "dl"), "--prefix", "sub/")
    assert (record["file_count"], record["size"]) == (1, len("gamma\n"))
    text = logged("download", "ds:v1", str(tmp_path / "dl2"), "--prefix", "sub/")
    assert "(1 file, 6 B)" in text.stdout
    whole = logged.json("download", "ds:v1", str(tmp_path / "dl3"))
    assert whole["file_count"] == 4


def test_fsck_repair_says_it_repaired(logged: Cli) -> None:
    """A lost catalogue rebuilt by --repair printed "ok: 1 error, 1 warning"."""
    for suffix in ("", "-wal", "-shm"):
        (logged.root / f"catalog.db{suffix}").unlink(missing_ok=True)
    repaired = logged("fsck", "--repair", "-y")
    assert repaired.exit_code == 0, repaired.output
    last = repaired.stdout.strip().splitlines()[-1]
    assert last == "repaired: 1 error fixed, 1 warning", last
    assert logged("fsck").stdout.strip().splitlines()[-1].startswith("ok: 0 errors")


def test_fsck_repair_that_cannot_fix_says_damaged(logged: Cli) -> None:
    _corrupt_first_blob(logged, "ds:v0")  # quarantined by --repair: its version stays damaged
    result = logged("fsck", "--repair", "-y")
    assert result.exit_code == 3
    assert result.stdout.strip().splitlines()[-1] == "damaged: 1 error (1 repaired), 0 warnings"
    assert "cannot fix" in result.stderr and "`castore rm`" in result.stderr


# -- drafts ---------------------------------------------------------------------------------


def _leave_drafts(run: Cli, *names: str) -> list[str]:
    """Drafts as a killed `add` leaves them: started, given a file, never finalized."""
    ids = []
    with run.store() as store:
        for name in names:
            draft = store.draft(name)
            draft.add_bytes(b"half", name="part.bin")
            ids.append(draft.id)
    return ids


def test_drafts_lists_unfinished_drafts(logged: Cli) -> None:
    assert logged.json("drafts") == []
    assert "No drafts." in logged("drafts").stderr
    first, second = _leave_drafts(logged, "ds", "other")
    listed = logged.json("drafts")
    assert [(d["id"], d["collection"], d["file_count"]) for d in listed] == [
        (first, "ds", 1), (second, "other", 1),
    ]
    assert all(0 <= d["age"] < 600 for d in listed)
    assert [d["id"] for d in logged.json("drafts", "ds")] == [first]
    table = logged("drafts").stdout
    assert "COLLECTION" in table and first in table
    assert logged("-q", "drafts").stdout.split() == [first, second]
    assert logged("drafts", "nosuch").exit_code == 4


def test_drafts_discard_by_id(logged: Cli) -> None:
    first, second = _leave_drafts(logged, "ds", "ds")
    assert logged("drafts", "--discard", first).exit_code == 1  # no -y, no terminal
    planned = logged.json("drafts", "--discard", first[:23], "--dry-run")
    assert planned["dry_run"] is True and [d["id"] for d in planned["discarded"]] == [first]
    assert len(logged.json("drafts")) == 2
    done = logged("drafts", "--discard", first, "-y")
    assert done.exit_code == 0 and "discarded 1 draft" in done.stdout
    assert [d["id"] for d in logged.json("drafts")] == [second]
    missing = logged("drafts", "--discard", "nosuch", "-y")
    assert missing.exit_code == 4 and "`castore drafts`" in missing.stderr
    assert logged("drafts", "--discard", second, "--all-older-than", "1d").exit_code == 2
    assert [v["ref"] for v in logged.json("ls", "ds")["items"]] == ["ds:v1", "ds:v0"]


def test_drafts_discard_older_than(logged: Cli) -> None:
    _leave_drafts(logged, "ds", "other")
    none = logged.json("drafts", "--all-older-than", "1h", "-y")
    assert none == {"discarded": [], "dry_run": False}
    assert len(logged.json("drafts")) == 2
    every = logged.json("drafts", "--all-older-than", "0s", "-y")
    assert len(every["discarded"]) == 2
    assert logged.json("drafts") == []
    assert logged("fsck").exit_code == 0


def test_add_directory_with_links_speaks_cli(run: Cli, data: Path, tmp_path: Path) -> None:
    """Issue 9 item 10: a link outside the directory is named with the CLI's own flags."""
    outside = tmp_path / "outside.txt"
    outside.write_text("outside")
    (data / "escape.txt").symlink_to(outside)
    refused = run("add", str(data), "--name", "ds")
    assert refused.exit_code != 0
    assert "escape.txt" in refused.stderr and "--follow-symlinks" in refused.stderr
    assert "follow_symlinks=True" not in refused.stderr
    assert run("add", str(data), "--name", "ds", "--ignore", "escape.txt").exit_code == 0
    assert run("add", str(data), "--name", "ds", "--follow-symlinks").exit_code == 0
    with run.store() as store:
        assert store.get("ds:latest").read_text("escape.txt") == "outside"


def test_add_project_holding_its_store_leaves_the_store_out(data: Path) -> None:
    """Issue 9 item 6: ``castore --store .castore add .`` took catalog.db and grew every run."""
    run = Cli(data / ".castore")
    first = run.json("add", str(data), "--name", "proj", "--ignore", "*.tmp")
    again = run.json("add", str(data), "--name", "proj", "--ignore", "*.tmp")
    assert again["unchanged"] is True and again["ref"] == first["ref"] == "proj:v0"
    with run.store() as store:
        assert [e.path for e in store.get("proj").files()] == ["a.txt", "b.bin", "sub/c.txt"]
    inside = run("add", str(data / ".castore"), "--name", "self")
    assert inside.exit_code != 0 and "inside the store" in inside.stderr
