"""Sphinx configuration for the castore documentation site.

Build (warnings are errors, as in CI)::

    pip install -e '.[docs]'
    python -m sphinx -W --keep-going -b html docs docs/_build/html

The Markdown pages are read by MyST; the API reference (``api.md``) is written by autodoc and
napoleon from the Google-style docstrings; the command-line reference (``cli-reference.md``)
by sphinx-click from ``castore.cli:cli``. The build needs no network: intersphinx inventories
are used when they can be fetched and skipped quietly when they cannot (see below).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # document this checkout, installed or not

import castore  # noqa: E402

project = "castore"
author = "the castore authors"
copyright = "the castore authors"  # noqa: A001
release = castore.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx_click",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "_inventories", "Thumbs.db", ".DS_Store"]

# -- MyST: the existing Markdown pages -------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3  # [text](page.md#a-heading) links resolve (and are checked)

# -- autodoc + napoleon: the API reference -------------------------------------------------------
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
autodoc_typehints = "signature"
autodoc_member_order = "alphabetical"
autodoc_class_signature = "separated"
autodoc_preserve_defaults = True
# Annotations are strings (PEP 563); names only imported under TYPE_CHECKING stay as written.
autodoc_type_aliases: dict[str, str] = {}
# Attribute types come from the "Attributes:" sections; annotations such as
# ``ClassVar[tuple[type, ...]]`` would cross-reference ``type`` ambiguously (Collection.type,
# ArtifactVersion.type) when the Python inventory is not at hand.
napoleon_attr_annotations = False

# -- intersphinx: links to Python, pydantic and fsspec -------------------------------------------
# CI and air-gapped machines have no network. The inventories are fetched when reachable; when
# not, Sphinx logs a warning per inventory, which -W would turn into an error, so an offline
# build (CASTORE_DOCS_OFFLINE=1, or no network detected) leaves the mapping empty: references
# to the standard library then render as plain text instead of links. A cached inventory in
# docs/_inventories/NAME.inv is used when present, network or not.
INVENTORIES = {
    "python": "https://docs.python.org/3",
    "pydantic": "https://docs.pydantic.dev/latest",
    "fsspec": "https://filesystem-spec.readthedocs.io/en/latest",
}
_CACHE = Path(__file__).resolve().parent / "_inventories"


def _online(timeout: float = 2.0) -> bool:
    if os.environ.get("CASTORE_DOCS_OFFLINE") == "1":
        return False
    import socket

    try:
        socket.create_connection(("docs.python.org", 443), timeout=timeout).close()
    except OSError:
        return False
    return True


_ONLINE = _online()
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
for _name, _url in INVENTORIES.items():
    _cached = _CACHE / f"{_name}.inv"
    if _cached.is_file():
        intersphinx_mapping[_name] = (_url, str(_cached))
    elif _ONLINE:
        intersphinx_mapping[_name] = (_url, None)
intersphinx_timeout = 10
intersphinx_disabled_reftypes = ["std:doc"]

# -- HTML: furo --------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"castore {release}"
html_static_path: list[str] = []
html_copy_source = False


# -- build-time adjustments --------------------------------------------------------------------
DOCS = Path(__file__).resolve().parent
# Pages written in parallel with the rest (a teams guide, say) are in the table of contents when
# they exist; a toctree entry naming a missing page would be a warning, so it is dropped.
OPTIONAL_PAGES = ("guide-teams",)


def _drop_missing_optional_pages(app: object, docname: str, source: list[str]) -> None:
    if docname != "index":
        return
    for page in OPTIONAL_PAGES:
        if not (DOCS / f"{page}.md").exists():
            source[0] = "\n".join(
                line for line in source[0].splitlines() if line.strip() != page
            ) + "\n"


def _literal_help_blocks(app: object, ctx: object, lines: list[str]) -> None:
    """Show click's ``\\b`` blocks (the "Examples:" of each verb) as literal text.

    sphinx-click renders them as reStructuredText line blocks, where a shell glob such as
    ``'*.tmp'`` would start emphasis; the help texts are plain terminal text, so literal it is.
    """
    out: list[str] = []
    block: list[str] = []

    def flush() -> None:
        if block:
            out.extend([".. code-block:: text", ""])
            out.extend("    " + line for line in block)
            out.append("")
            block.clear()

    for line in lines:
        if line.startswith("| "):
            block.append(line[2:])
        else:
            flush()
            out.append(line)
    flush()
    lines[:] = out


def setup(app: object) -> None:
    from pygments.lexers.special import TextLexer

    # Mermaid sources (the lineage picture) are shown as text: no JavaScript from a CDN offline.
    app.add_lexer("mermaid", TextLexer)  # type: ignore[attr-defined]
    app.connect("source-read", _drop_missing_optional_pages)  # type: ignore[attr-defined]
    app.connect(  # type: ignore[attr-defined]
        "sphinx-click-process-description", _literal_help_blocks
    )
