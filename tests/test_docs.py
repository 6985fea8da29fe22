"""The docs stay true: every public name is in the API reference, the site builds without a
warning, internal links resolve, and the guides' code runs as written.

Runnable pages: every ```python block of a page in RUNNABLE is run, in order, as one script in
an empty directory with CASTORE_HOME pointing into it (and its ```sh lines that start with
``castore `` after that, when the page is in RUNNABLE_SH). Code that is shown but must not run
(another tool's calls, a remote that needs a server) is written as ```{code-block} python.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import castore

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
RUNNABLE = [
    "quickstart.md",
    "guide-embedding.md",
    "guide-experiments.md",
    "migrating.md",
]
RUNNABLE_SH = ["quickstart.md"]
DIRECTIVE = re.compile(r"^\.\. auto(?:function|class|exception):: castore\.(\w+)\s*$", re.M)


def _public_names() -> set[str]:
    return {n for n in castore.__all__ if n != "__version__"}


def test_every_public_name_is_in_the_reference() -> None:
    documented = DIRECTIVE.findall((DOCS / "api.md").read_text())
    assert len(documented) == len(set(documented)), "a name is documented twice"
    assert sorted(_public_names() - set(documented)) == [], "add them to docs/api.md"
    assert sorted(set(documented) - _public_names()) == [], "not public: remove from docs/api.md"


def test_docs_index_links_exist() -> None:
    index = (DOCS / "index.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)", index):
        assert (DOCS / target).exists(), target


def _blocks(page: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", (DOCS / page).read_text(), re.M | re.S)


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["CASTORE_HOME"] = str(tmp_path / "castore-home")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["CASTORE_DISABLE_PROGRESS_BARS"] = "1"
    return env


@pytest.mark.parametrize("page", RUNNABLE)
def test_page_code_runs_as_written(page: str, tmp_path: Path) -> None:
    blocks = _blocks(page, "python")
    assert blocks, f"{page} has no python block"
    script = tmp_path / "page.py"
    script.write_text("\n".join(blocks))
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=work, env=_env(tmp_path), capture_output=True,
        text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if page not in RUNNABLE_SH:
        return
    for block in _blocks(page, "sh"):
        for line in block.splitlines():
            command = line.split("  #", 1)[0].strip()
            if not command.startswith("castore "):
                continue
            proc = subprocess.run(
                shlex.split(command), cwd=work, env=_env(tmp_path), capture_output=True,
                text=True, timeout=120,
            )
            assert proc.returncode == 0, f"{command}\n{proc.stdout}{proc.stderr}"


def test_site_builds_without_warnings_and_lists_every_public_name(tmp_path: Path) -> None:
    """The Sphinx build with -W (broken internal links are warnings too), where installed."""
    pytest.importorskip("sphinx")
    pytest.importorskip("furo")
    pytest.importorskip("myst_parser")
    pytest.importorskip("sphinx_click")
    from sphinx.util.inventory import InventoryFile

    out = tmp_path / "html"
    env = dict(os.environ, CASTORE_DOCS_OFFLINE="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(out)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with (out / "objects.inv").open("rb") as f:
        inventory = InventoryFile.load(f, "", lambda base, uri: uri)
    data = getattr(inventory, "data", inventory)  # a dict before Sphinx 8.2, an object after
    objects = {name for kind, entries in data.items() if kind.startswith("py:")
               for name in entries}
    assert sorted(n for n in _public_names() if f"castore.{n}" not in objects) == []
    assert "castore.Store.gc" in objects  # methods of the mixins are documented on Store
    assert "castore" in (out / "cli-reference.html").read_text()  # sphinx-click ran
