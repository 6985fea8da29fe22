"""Walking a directory for ``add_dir``: ignore rules first, symlinks, the store inside it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import castore
from castore.errors import InvalidPathError, UnsafeTargetError


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory and a file outside the added tree."""
    return _write(tmp_path / "outside", {"secret.txt": "secret", "conf/a.conf": "a"})


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return _write(tmp_path / "src", {"a.txt": "a", "sub/b.txt": "b"})


def _paths(version: castore.ArtifactVersion) -> list[str]:
    return [e.path for e in version.files()]


# -- issue 9 item 10: ignore rules before the link check ----------------------------------


def test_stdlib_like_tree_with_link_to_etc_adds_with_one_ignore_pattern(
    store: castore.Store, tmp_path: Path
) -> None:
    """A CPython-stdlib-like tree with a link to /etc: one pattern makes it addable."""
    lib = tmp_path / "lib" / "python3.11"
    files = {
        f"{pkg}/{mod}.py": f"# {pkg}.{mod}\n"
        for pkg in ("json", "email", "http")
        for mod in ("__init__", "parser", "util")
    }
    files |= {"os.py": "import sys\n", "test/data/x.txt": "x", "site-packages/README.txt": "r"}
    _write(lib, files)
    (lib / "config").symlink_to("/etc", target_is_directory=True)  # like a distro's config link
    (lib / "json" / "alias.py").symlink_to(lib / "json" / "util.py")  # inside: its content
    (lib / "encodings").symlink_to(lib / "email", target_is_directory=True)  # inside: skipped
    with pytest.raises(InvalidPathError) as info:
        store.draft("stdlib").add_dir(lib)
    assert info.value.path == "config" and "/etc" in str(info.value)
    version = store.draft("stdlib").add_dir(lib, ignore=["config"]).finalize()
    paths = _paths(version)
    assert "config" not in paths and not any(p.startswith(("config/", "encodings")) for p in paths)
    assert "json/alias.py" in paths and "os.py" in paths
    assert version.read_text("json/alias.py") == "# json.util\n"
    assert store.fsck().ok


@pytest.mark.parametrize("pattern", ["escape.txt", "*.txt", "/escape.txt", "escape*"])
def test_ignore_applies_to_a_link_to_an_outside_file(
    store: castore.Store, tree: Path, outside: Path, pattern: str
) -> None:
    (tree / "escape.txt").symlink_to(outside / "secret.txt")
    version = store.draft("ds").add_dir(tree, ignore=[pattern]).finalize()
    assert "escape.txt" not in _paths(version)


@pytest.mark.parametrize("pattern", ["conf", "conf/", "/conf/"])
def test_ignore_applies_to_a_link_to_an_outside_directory(
    store: castore.Store, tree: Path, outside: Path, pattern: str
) -> None:
    (tree / "conf").symlink_to(outside / "conf", target_is_directory=True)
    version = store.draft("ds").add_dir(tree, ignore=[pattern]).finalize()
    assert _paths(version) == ["a.txt", "sub/b.txt"]


def test_ignore_applies_to_dangling_links_and_loops(store: castore.Store, tree: Path) -> None:
    (tree / "dangling.lnk").symlink_to(tree / "missing")
    (tree / "loop.lnk").symlink_to(tree / "loop.lnk")
    version = store.draft("ds").add_dir(tree, ignore=["*.lnk"]).finalize()
    assert _paths(version) == ["a.txt", "sub/b.txt"]


@pytest.mark.parametrize("follow", [False, True])
def test_symlink_loop_is_an_invalid_path_naming_it(
    store: castore.Store, tree: Path, follow: bool
) -> None:
    """A loop was a raw OSError [Errno 40]; it is refused naming the link, either way."""
    (tree / "sub" / "ping").symlink_to("pong")
    (tree / "sub" / "pong").symlink_to("ping")
    draft = store.draft("ds")
    with pytest.raises(InvalidPathError, match="loop") as info:
        draft.add_dir(tree, follow_symlinks=follow)
    assert info.value.path == "sub/ping"
    assert len(draft) == 0


@pytest.mark.parametrize("follow", [False, True])
def test_dangling_link_is_refused_either_way(
    store: castore.Store, tree: Path, follow: bool
) -> None:
    (tree / "gone").symlink_to(tree / "missing")
    with pytest.raises(InvalidPathError, match="dangling") as info:
        store.draft("ds").add_dir(tree, follow_symlinks=follow)
    assert info.value.path == "gone"


def test_outside_links_are_refused_by_default(
    store: castore.Store, tree: Path, outside: Path
) -> None:
    (tree / "escape.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(InvalidPathError, match="outside") as info:
        store.draft("ds").add_dir(tree)
    assert info.value.path == "escape.txt"
    (tree / "escape.txt").unlink()
    (tree / "conf").symlink_to(outside / "conf", target_is_directory=True)
    with pytest.raises(InvalidPathError, match="outside") as info:
        store.draft("ds").add_dir(tree)
    assert info.value.path == "conf"


def test_follow_symlinks_stores_outside_files_and_skips_directories(
    store: castore.Store, tree: Path, outside: Path
) -> None:
    (tree / "escape.txt").symlink_to(outside / "secret.txt")
    (tree / "conf").symlink_to(outside / "conf", target_is_directory=True)
    (tree / "inner").symlink_to(tree / "sub", target_is_directory=True)
    version = store.draft("ds").add_dir(tree, follow_symlinks=True).finalize()
    assert _paths(version) == ["a.txt", "escape.txt", "sub/b.txt"]
    assert version.read_text("escape.txt") == "secret"


def test_follow_symlinks_is_keyword_only_and_defaults_off(store: castore.Store) -> None:
    import inspect

    param = inspect.signature(store.draft("ds").add_dir).parameters["follow_symlinks"]
    assert param.kind is inspect.Parameter.KEYWORD_ONLY and param.default is False


# -- issue 9 item 6: a store inside the added directory ------------------------------------


def test_store_inside_the_source_is_not_added(tmp_path: Path) -> None:
    """``castore --store .castore add .`` took the live catalog.db, -wal and -shm."""
    project = _write(tmp_path / "proj", {"main.py": "print()", "data/x.csv": "1"})
    with castore.init(project / ".castore", durable=False) as store:
        first = store.draft("proj").add_dir(project).finalize()
        assert _paths(first) == ["data/x.csv", "main.py"]
        second = store.draft("proj").add_dir(project).finalize()
        assert second.id == first.id  # unchanged: the artifact does not grow on every run
        assert store.fsck().ok


def test_store_is_matched_by_identity_not_by_name(tmp_path: Path) -> None:
    """A store under any name, reached by any spelling, is skipped; a look-alike is not."""
    project = _write(tmp_path / "proj", {"main.py": "x", "not-a-store/catalog.db": "mine"})
    with castore.init(project / "deep" / "my-store", durable=False) as store:
        via_link = tmp_path / "proj-link"
        via_link.symlink_to(project, target_is_directory=True)
        version = store.draft("proj").add_dir(via_link).finalize()
        assert _paths(version) == ["main.py", "not-a-store/catalog.db"]


def test_link_into_the_store_is_not_followed(tmp_path: Path) -> None:
    project = _write(tmp_path / "proj", {"main.py": "x"})
    with castore.init(project / ".castore", durable=False) as store:
        (project / "cfg.json").symlink_to(project / ".castore" / "castore.json")
        version = store.draft("proj").add_dir(project).finalize()
        assert _paths(version) == ["main.py"]


@pytest.mark.parametrize("inner", ["", "blobs", "tmp"])
def test_source_that_is_or_lies_inside_the_store_is_refused(
    store: castore.Store, inner: str
) -> None:
    source = store.path / inner if inner else store.path
    draft = store.draft("ds")
    with pytest.raises(UnsafeTargetError, match="store") as info:
        draft.add_dir(source)
    assert str(store.path.resolve()) in str(info.value)
    assert len(draft) == 0


def test_source_reaching_the_store_through_a_link_is_refused(
    store: castore.Store, tmp_path: Path
) -> None:
    link = tmp_path / "looks-innocent"
    link.symlink_to(store.path / "blobs", target_is_directory=True)
    with pytest.raises(UnsafeTargetError):
        store.draft("ds").add_dir(link)


def test_walk_skips_excluded_directory_by_inode(tmp_path: Path) -> None:
    from castore.artifact.walk import walk_tree
    from castore.ignore import IgnoreRules

    root = _write(tmp_path / "r", {"a": "1", "skip/b": "2", "keep/c": "3"})
    found = [rel for rel, _, _ in walk_tree(root, IgnoreRules(), exclude=[root / "skip"])]
    assert found == ["a", "keep/c"]
    assert os.path.isdir(root / "skip")


def test_walk_keeps_only_the_stat_fields_adding_reads(tmp_path: Path) -> None:
    """The walk's stats are slim (held per file until recorded) but keep what add_dir reads."""
    from castore.artifact.walk import walk_tree
    from castore.ignore import IgnoreRules

    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "run.sh").chmod(0o755)
    [(rel, abspath, st)] = list(walk_tree(tmp_path, IgnoreRules.from_dir(tmp_path, ())))
    full = os.stat(abspath)
    assert rel == "run.sh"
    assert (st.st_mode, st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns) == (
        full.st_mode, full.st_ino, full.st_dev, full.st_size, full.st_mtime_ns, full.st_ctime_ns
    )
    assert st.st_nlink == 0 and st.st_uid == 0  # dropped
