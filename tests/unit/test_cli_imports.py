"""What `castore ls`, `show` and `cat` import: guards the command line's start-up cost (issue 15).

No timing: each command runs in a fresh interpreter and reports ``sys.modules`` at exit; the
modules below are each a few ms to import and none of these commands needs them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import castore

ROOT = Path(__file__).resolve().parents[2]

# Modules that a read-only listing, show or cat of a small file must not import.
NOT_NEEDED = [
    "importlib.metadata",  # pydantic's plugin loader (castore.cli stands in for it)
    "concurrent.futures",  # the writer's thread pool
    "sqlite_utils",  # migrations only
    "shutil",
    "tempfile",
    "traceback",  # CASTORE_DEBUG only
    "castore.worktree.operations",  # checkout, verify, diff
    "castore.transfer",  # remotes
    "castore.objects",  # save/load materializers
]

PROBE = """
import atexit, json, sys
names = json.loads(sys.argv[1])
atexit.register(lambda: print(json.dumps([n for n in names if n in sys.modules]), file=sys.stderr))
sys.argv = ["castore", *sys.argv[2:]]
from castore.cli import main
main(sys.argv[1:])
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("imports")
    src = root / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("hello\n")
    (src / "sub" / "b.txt").write_text("x\n")
    with castore.open(root / "store", create=True) as s, s.draft("ds") as d:
        d.add_dir(src)
    return root / "store"


@pytest.mark.parametrize("verb", [["ls"], ["ls", "ds"], ["show", "ds"], ["cat", "ds", "a.txt"]])
def test_read_verbs_import_only_what_they_use(store: Path, verb: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(NOT_NEEDED), "-C", str(store), *verb],
        capture_output=True, text=True, env=env, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout
    imported = json.loads(proc.stderr.strip().splitlines()[-1])
    assert imported == []


def test_plugin_stand_in_gives_the_real_loader_for_other_names() -> None:
    """Anything but ``get_plugins`` asked of the stand-in loads pydantic's own module."""
    code = (
        "import os, sys; os.environ['PYDANTIC_DISABLE_PLUGINS'] = '__all__'\n"
        "from castore.cli.app import _no_pydantic_plugins; _no_pydantic_plugins()\n"
        "loader = sys.modules['pydantic.plugin._loader']\n"
        "assert tuple(loader.get_plugins()) == ()\n"
        "assert 'importlib.metadata' not in sys.modules\n"
        "print(loader.PYDANTIC_ENTRY_POINT_GROUP)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "pydantic"


def test_write_verbs_do_not_import_sqlite_utils(store: Path, tmp_path: Path) -> None:
    """``add`` and ``alias`` write rows with plain SQL: importing sqlite-utils also imports
    numpy and pandas when they are installed (~0.3 s of every write command)."""
    src = tmp_path / "more"
    src.mkdir()
    (src / "c.txt").write_text("new\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for verb in (["add", str(src), "--name", "other"], ["alias", "set", "other:v0", "best"]):
        proc = subprocess.run(
            [sys.executable, "-c", PROBE, json.dumps(["sqlite_utils", "pandas", "numpy"]),
             "-C", str(store), *verb],
            capture_output=True, text=True, env=env, check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stderr.strip().splitlines()[-1]) == []
