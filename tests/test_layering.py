"""Dependencies point one way (DESIGN.md "Architecture"), checked on the source with ``ast``.

Each module belongs to a layer; it may import castore modules of lower layers and of its own
group, never of a peer group in the same layer, never of a higher layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "castore"

# layer number, group name: modules. A group's modules may import each other.
LAYERS: dict[str, tuple[int, str]] = {}


def _layer(level: int, group: str, *modules: str) -> None:
    for module in modules:
        LAYERS[module] = (level, group)


_layer(0, "errors", "errors", "_faults", "_progress")
_layer(1, "values", "digest", "models", "paths", "refs")
_layer(2, "blobs", "hashing", "_codec", "_fsutil", "_layout", "blobs")
_layer(2, "catalog", "catalog", "_migrations", "_catalog_query", "_catalog_maint", "_statcache")
_layer(2, "locking", "locking")
_layer(3, "artifact", "artifact")
_layer(3, "materialize", "materialize", "_linking", "_containment", "_checkout")
_layer(3, "maintenance", "maintenance", "_gc", "_fsck", "_rebuild")
_layer(3, "runs", "runs")
_layer(3, "transfer", "transfer", "_bundle", "_remote")
_layer(4, "handles", "handles")
_layer(5, "store", "store")
_layer(6, "public", "__init__", "__main__")

# Layer-2 groups other than "blobs" may use the blob group's leaf helpers only where listed.
SHARED_LOW = {"_fsutil", "_faults", "hashing", "_layout"}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    # imports only seen by type checkers (``if TYPE_CHECKING:``) create no runtime dependency
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "castore":
                found.update(f"castore.{a.name}" for a in node.names)
            else:
                found.add(node.module)
    return {m for m in found if m == "castore" or m.startswith("castore.")}


def _name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    return ".".join(rel.parts)


@pytest.mark.parametrize("path", _modules(), ids=_name)
def test_imports_point_down(path: Path) -> None:
    name = _name(path)
    imports = _imports(path)
    if name.startswith("cli"):
        # the command line is a client of the public API only
        bad = {
            m
            for m in imports
            if not (m in ("castore", "castore.cli") or m.startswith("castore.cli."))
            and m.split(".")[1] not in {"errors", "models"}
        }
        assert not bad, f"castore/{name} must use the public API only, imports {bad}"
        return
    assert name in LAYERS, f"castore/{name}.py is not in the layer table of tests/test_layering.py"
    level, group = LAYERS[name]
    for imported in imports:
        if imported == "castore":
            assert name in ("__init__", "__main__"), f"{name} imports the castore facade"
            continue
        target = imported.split(".")[1]
        if target == "cli":
            assert name == "__main__", f"{name} imports the command line"
            continue
        assert target in LAYERS, f"{name} imports unknown module castore.{target}"
        t_level, t_group = LAYERS[target]
        if t_group == group:
            continue
        assert t_level < level or (target in SHARED_LOW and t_level <= level), (
            f"castore/{name} (layer {level}, {group}) must not import castore.{target} "
            f"(layer {t_level}, {t_group})"
        )
        if level == 2 and group != "blobs":
            assert target not in {"blobs", "_codec"}, f"{name} must know nothing of blob files"
        if group == "catalog":
            assert t_group != "blobs" or target in SHARED_LOW - {"_layout"}, (
                f"the catalogue must not import castore.{target}"
            )


def test_blobs_and_catalog_never_meet() -> None:
    assert "castore.catalog" not in _imports(PACKAGE / "blobs.py")
    assert "castore.blobs" not in _imports(PACKAGE / "catalog.py")
