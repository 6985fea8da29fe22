"""Dependencies point one way (DESIGN.md "Architecture"), checked on the source with ``ast``.

Every import counts: at module level, under ``if TYPE_CHECKING:`` and inside functions. Each
module belongs to a group (a sub-package, or a module of the root); each group has a layer. A
module may import its own group and groups of lower layers, never a peer group of the same
layer, never a higher layer; ``storage`` and ``index`` never meet; nothing imports another
package's ``_private`` module; the module graph has no circle; no module passes 600 lines.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "castore"
MAX_LINES = 600

# group -> layer. A group is a sub-package of castore/ or a module at its root.
LAYERS: dict[str, int] = {
    # L0/L1: leaf values, errors and helpers that know nothing of the store
    "errors": 0,
    "_faults": 0,
    "_progress": 0,
    "_process": 0,
    "digest": 1,
    "models": 1,
    "paths": 1,
    "ignore": 1,
    "refs": 1,
    # L2: files and digests; the SQLite catalogue (they never import each other)
    "storage": 2,
    "index": 2,
    # L3: the one manifest codec; the parts bundle that handles and operations receive
    "manifest": 3,
    "_parts": 3,
    # L4: operations over the parts; peers never import each other
    "artifact": 4,
    "worktree": 4,
    "maintenance": 4,
    "transfer": 4,
    "runs": 4,
    "objects": 4,
    # L5: handles; L6: the pieces of the Store facade; L7: Store; L8: the async facade;
    # L9: the public surface; L10: clients of the public API
    "handles": 5,
    "facade": 6,
    "store": 7,
    "aio": 8,
    "__init__": 9,
    "cli": 10,
    "integrations": 10,
    "__main__": 11,
}
# L0/L1 modules are one family of leaf values: they may import each other (no circle).
# (L6-L11 are DESIGN.md's L6-L8 drawn finer: the facade's pieces below Store, below
# AsyncStore, below the public names.)
LEAF_LAYERS = (0, 1)


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = rel.parts[:-1] if rel.parts[-1] == "__init__" and len(rel.parts) > 1 else rel.parts
    return ".".join(("castore", *parts))


def _is_module(dotted: str) -> bool:
    rel = Path(*dotted.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


@cache
def _imports(path: Path) -> frozenset[str]:
    """Every castore module ``path`` imports, wherever the import statement is."""
    return _parse_imports(path.read_text(), _name(path), is_package=path.name == "__init__.py")


def _parse_imports(source: str, name: str, *, is_package: bool) -> frozenset[str]:
    tree = ast.parse(source)
    here = name.split(".")
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here if is_package else here[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if not (module == "castore" or module.startswith("castore.")):
                continue
            submodules = [f"{module}.{a.name}" for a in node.names]
            submodules = [m for m in submodules if _is_module(m)]
            # ``from castore.x import y`` needs castore.x unless every name is a module of it
            found.update(submodules if len(submodules) == len(node.names) else [module])
            found.update(submodules)
    return frozenset(m for m in found if m == "castore" or m.startswith("castore."))


def _group(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in _modules():
        name = _name(path)
        targets = set(_imports(path))
        # importing castore.a.b runs castore.a/__init__ first, but that is not a dependency of
        # the importer on the package's other modules: keep only the named module
        graph[name] = {t for t in targets if t != name}
    return graph


@pytest.mark.parametrize("path", _modules(), ids=_name)
def test_imports_point_down(path: Path) -> None:
    name = _name(path)
    group = _group(name)
    assert group in LAYERS, f"{name} is not in the layer table of tests/test_layering.py"
    level = LAYERS[group]
    for imported in _imports(path):
        target = _group(imported)
        if group == "cli" or group == "integrations":
            # clients of the public API: castore itself, its errors and models, and their own
            allowed = {"__init__", "errors", "models", group}
            assert target in allowed, f"{name} must use the public API only, imports {imported}"
            continue
        if target == group:
            continue
        assert target in LAYERS, f"{name} imports unknown module {imported}"
        t_level = LAYERS[target]
        same_leaf = level in LEAF_LAYERS and t_level in LEAF_LAYERS
        assert t_level < level or same_leaf, (
            f"{name} (layer {level}, {group}) must not import {imported} (layer {t_level}, "
            f"{target}): imports point down, and peers of one layer never import each other"
        )


@pytest.mark.parametrize("path", _modules(), ids=_name)
def test_no_foreign_private_modules(path: Path) -> None:
    """A sub-package's ``_private`` modules are its own (root-level ones are shared helpers)."""
    name = _name(path)
    for imported in _imports(path):
        parts = imported.split(".")
        for depth in range(2, len(parts)):
            if parts[depth].startswith("_") and parts[depth] != "__init__":
                owner = ".".join(parts[:depth])
                assert name == owner or name.startswith(owner + "."), (
                    f"{name} imports {imported}, a private module of {owner}"
                )


def test_storage_and_index_never_meet() -> None:
    for name, targets in _graph().items():
        group = _group(name)
        other = {"storage": "index", "index": "storage"}.get(group)
        if other:
            assert not any(_group(t) == other for t in targets), f"{name} imports {other}"


def test_no_import_circles() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                circle = [*stack[stack.index(target) :], target]
                pytest.fail("import circle: " + " -> ".join(circle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_layering_sees_every_kind_of_import() -> None:
    """The walker counts imports under TYPE_CHECKING, inside functions and relative ones."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from castore.store import Store\n"
        "def f():\n    from castore import errors\n    import castore.refs\n"
        "from . import digest\n"
    )
    found = _parse_imports(source, "castore._probe", is_package=False)
    assert {"castore.store", "castore.errors", "castore.refs", "castore.digest"} <= found


def test_modules_stay_small() -> None:
    sizes = {_name(p): len(p.read_text().splitlines()) for p in _modules()}
    big = {name: n for name, n in sizes.items() if n >= MAX_LINES}
    assert not big, f"modules of {MAX_LINES} lines or more (split them by concept): {big}"
