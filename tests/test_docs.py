"""The docs stay true: the API reference is generated and current, and names every public name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import castore

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_api_reference_is_current() -> None:
    proc = subprocess.run(
        [sys.executable, str(DOCS / "gen_api.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_every_public_name_is_in_the_reference() -> None:
    text = (DOCS / "api.md").read_text()
    missing = [
        n
        for n in castore.__all__
        if n != "__version__" and f"`{n}" not in text and f"castore.{n}" not in text
    ]
    assert missing == []


def test_docs_index_links_exist() -> None:
    index = (DOCS / "index.md").read_text()
    for line in index.splitlines():
        if "](" in line:
            target = line.split("](", 1)[1].split(")", 1)[0]
            assert (DOCS / target).exists(), target
