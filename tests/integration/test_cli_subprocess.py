"""The ``castore`` command as real processes: the README flow, exit codes, pipes, Ctrl-C,
and a ``--help`` that imports nothing heavy."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import castore

BIN = Path(sys.executable).parent
CASTORE = str(BIN / "castore") if (BIN / "castore").exists() else None


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASTORE_")}
    env["CASTORE_HOME"] = str(home)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def _castore(*args: str, home: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "castore", *args],
        env=_env(home), cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """A ``docs`` directory to log, like the repository's."""
    d = tmp_path / "work" / "docs"
    (d / "guides").mkdir(parents=True)
    (d / "index.md").write_text("# castore\n")
    (d / "guides" / "offline.md").write_text("sneakernet\n" * 100)
    return d


@pytest.mark.skipif(CASTORE is None, reason="the castore console script is not installed")
def test_readme_first_command_verbatim_twice(tmp_path: Path, docs: Path) -> None:
    target = tmp_path / "castore-docs"
    line = (
        f"castore add docs --name castore-docs && castore checkout castore-docs {target} && "
        f"castore verify castore-docs {target}"
    )
    home = tmp_path / "home"
    first = subprocess.run(["bash", "-c", line], cwd=docs.parent, env=_env(home),
                           capture_output=True, text=True, timeout=60, check=False)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[0].startswith("added castore-docs:v0 (2 files, ")
    assert f"ok: {target} matches castore-docs:v0" in first.stdout
    assert first.stderr == ""  # no progress bar, no \r, into a pipe
    # the second run mirrors the new version over the older copy
    (docs / "index.md").write_text("# castore, edited\n")
    (docs / "guides" / "offline.md").unlink()
    second = subprocess.run(["bash", "-c", line], cwd=docs.parent, env=_env(home),
                            capture_output=True, text=True, timeout=60, check=False)
    assert second.returncode == 0, second.stderr
    assert "castore-docs:v1" in second.stdout
    assert (target / "index.md").read_text() == "# castore, edited\n"
    assert not (target / "guides").exists()


def test_exit_codes_and_json_across_processes(tmp_path: Path, docs: Path) -> None:
    home = tmp_path / "home"
    assert _castore("ls", home=home).returncode == 10
    assert _castore("add", str(docs), "--name", "d", "-q", home=home).stdout == "d:v0\n"
    listing = _castore("--json", "ls", "d", home=home)
    assert listing.returncode == 0
    assert [v["ref"] for v in json.loads(listing.stdout)["items"]] == ["d:v0"]
    assert _castore("show", "d:v5", home=home).returncode == 4
    assert _castore("show", "d:v0", "--bogus", home=home).returncode == 2
    out = tmp_path / "out"
    shutil.copytree(docs, out)
    (out / "index.md").write_text("tampered\n")
    failed = _castore("verify", "d", str(out), home=home)
    assert failed.returncode == 3
    assert failed.stdout.strip() == "modified  index.md"
    assert failed.stderr.startswith("error: ") and failed.stderr.count("\n") == 1


def test_help_imports_nothing_heavy(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "from castore.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n"
        "heavy = ['sqlite_utils', 'pydantic', 'zstandard', 'sqlite3', 'castore.store']\n"
        "sys.stderr.write(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=_env(tmp_path), timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "Usage: castore" in result.stdout
    assert json.loads(result.stderr) == []


def test_ctrl_c_exits_130(tmp_path: Path) -> None:
    home = tmp_path / "home"
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(4 * 1024 * 1024))  # far more than a pipe buffer
    with castore.open(home, durable=False) as store:
        store.draft("big").add_file(big).finalize()
    proc = subprocess.Popen(
        [sys.executable, "-m", "castore", "cat", "big", "big.bin"],
        env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        # as at a terminal: a test run started in the background (`cmd &`, nohup) ignores
        # SIGINT, the child would inherit that, and Python keeps an ignored SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "castore cat wrote nothing"
        proc.send_signal(signal.SIGINT)  # it is blocked writing into the full pipe
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert err.decode().strip().splitlines()[-1] == "error: interrupted"
    with castore.open(home, create=False) as store:
        assert store.fsck().ok


def test_cat_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    home = tmp_path / "home"
    big = tmp_path / "big.txt"
    big.write_text("line\n" * 200_000)
    with castore.open(home, durable=False) as store:
        store.draft("t").add_file(big).finalize()
    if shutil.which("head") is None:
        pytest.skip("no head(1)")
    result = subprocess.run(
        f"{sys.executable} -m castore cat t big.txt | head -n 2",
        shell=True, env=_env(home), capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.stdout == "line\nline\n"
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_every_verb_as_a_process(tmp_path: Path, docs: Path) -> None:
    """One real process per verb, each with --json, checking exit codes and documents."""
    home = tmp_path / "home"

    def ok(*args: str) -> Any:
        result = _castore("--json", *args, home=home)
        assert result.returncode == 0, (args, result.stderr)
        return json.loads(result.stdout)

    assert ok("init")["created"] is True
    ok("add", str(docs), "--name", "d")
    (docs / "index.md").write_text("v1\n")
    ok("add", str(docs), "--name", "d", "--tag", "t")
    assert len(ok("files", "d")) == 2
    assert ok("cat", "d", "index.md")["content"] == "v1\n"
    ok("download", "d:v0", str(tmp_path / "dl"), "--prefix", "guides/")
    assert (tmp_path / "dl" / "guides" / "offline.md").is_file()
    assert [e["path"] for e in ok("diff", "d:v0", "d:v1")["modified"]] == ["index.md"]
    ok("alias", "set", "d:v0", "prod")
    assert {"collection": "d", "alias": "prod", "ref": "d:v0"} in ok("alias", "ls")
    ok("alias", "rm", "d:prod", "-y")
    assert ok("tag", "rm", "d:v1", "t")["tags"] == []
    ok("ttl", "d:v0", "30d", "-y")
    ok("rm", "d:v0", "-y")
    assert ok("gc", "-y", "--grace", "0s")["dry_run"] is False
    assert ok("prune", "--keep-last", "1", "-y")["versions_deleted"] == []
    assert ok("fsck")["ok"] is True
    assert ok("du")["store"]["versions"] == 1
    assert ok("doctor")["store"]["exists"] is True
    assert ok("show", "d")["ref"] == "d:v1"
