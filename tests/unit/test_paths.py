"""Unit tests of castore.paths: artifact path rules, collisions and ignore patterns."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest

import castore
from castore.errors import InvalidPathError
from castore.ignore import IgnoreRules
from castore.paths import (
    RESERVED_NAMES,
    RESERVED_PREFIXES,
    collision_key,
    find_collisions,
    is_within,
    validate_path,
)

ACCEPTED = [
    "a",
    "data/train.csv",
    ".hidden",
    "dir/.gitignore",
    "a/b/c/d/e.txt",
    "archive.tar.gz",
    "v1.2.3/model..bin",
    "...a",
    "données/été.csv",
    "日本語/ファイル.txt",
    "emoji-🙂.png",
    "with space/in name.txt",
    "console.log",  # only the whole stem is reserved: "con" is, "console" is not
    "icon.png",
    "COM10",
    "LPT",
    "nul-device",
    "a-b_c+d=e,f;g'h!i@j#k$l%m^n&o(p)q[r]s{t}u~v`w",
    "x" * 255,
    "/".join(["d" * 200] * 20),  # 4019 bytes
]


@pytest.mark.parametrize("path", ACCEPTED)
def test_accepts_canonical_paths_unchanged(path: str) -> None:
    assert validate_path(path) is path


HOSTILE = [
    ("", "empty"),
    ("/etc/passwd", "absolute"),
    ("/", "absolute"),
    ("..", "'..'"),
    ("../x", "'..'"),
    ("a/../../x", "'..'"),
    ("a/..", "'..'"),
    (".", "'.'"),
    ("./a", "'.'"),
    ("a/./b", "'.'"),
    ("a//b", "empty segment"),
    ("a/", "ends with '/'"),
    ("a\x00b", "NUL"),
    ("a\nb", "U+000A"),
    ("a\tb", "U+0009"),
    ("a\x1fb", "U+001F"),
    ("a\x7fb", "U+007F"),
    ("a\\b", "backslash"),
    ("..\\x", "backslash"),
    ("C:\\x", "backslash"),
    ("C:x", "':'"),
    ("a:b", "':'"),
    ("file.txt:stream", "':'"),
    ("CON", "CON"),
    ("con", "CON"),
    ("con.txt", "CON"),
    ("dir/Con.tar.gz", "CON"),
    ("PRN", "PRN"),
    ("aux.md", "AUX"),
    ("NUL", "NUL"),
    ("nul.bin", "NUL"),
    ("COM1", "COM1"),
    ("com9.log", "COM9"),
    ("LPT1", "LPT1"),
    ("a/lpt9", "LPT9"),
    ("CON .txt", "CON"),
    ("a.", "ends with a dot"),
    ("a/b./c", "ends with a dot"),
    ("...", "ends with a dot"),
    ("a ", "ends with a space"),
    ("dir /x", "ends with a space"),
    ("a<b", "'<'"),
    ("a>b", "'>'"),
    ('a"b', "'\"'"),
    ("a|b", "'|'"),
    ("a?b", "'?'"),
    ("a*b", "'*'"),
    ("x" * 256, "256 bytes"),
    ("é" * 128, "256 bytes"),  # 128 characters, 256 UTF-8 bytes
    ("/".join(["d" * 200] * 21), "bytes long"),
    (unicodedata.normalize("NFD", "été.csv"), "NFC"),
    ("a/e\u0301", "NFC"),
    ("bad-\udcff-bytes", "Unicode"),
]


@pytest.mark.parametrize(("path", "reason"), HOSTILE)
def test_refuses_hostile_paths_naming_the_problem(path: str, reason: str) -> None:
    with pytest.raises(InvalidPathError) as info:
        validate_path(path)
    assert info.value.path == path
    assert reason in info.value.reason
    assert reason in str(info.value)


# Checkout keeps its marker file and staging directories inside the target and deletes them
# afterwards; an artifact file with one of these names was accepted, then deleted by checkout.
RESERVED = [
    ".castore-checkout",
    "sub/.castore-checkout",
    ".castore-staging-1234",
    "a/.castore-staging-x/f.txt",
    ".CASTORE-Checkout",  # the same file on a case-insensitive file system
]


@pytest.mark.parametrize("path", RESERVED)
def test_refuses_castore_reserved_names(path: str) -> None:
    with pytest.raises(InvalidPathError) as info:
        validate_path(path)
    assert info.value.path == path
    assert "reserved" in info.value.reason
    assert ".castore-checkout" in info.value.reason or ".castore-staging-" in info.value.reason


@pytest.mark.parametrize("path", [".castore-checkouts", ".castore-staging", "castore-checkout"])
def test_accepts_names_near_the_reserved_ones(path: str) -> None:
    assert validate_path(path) is path


def test_reserved_names_are_the_ones_checkout_uses() -> None:
    from castore.worktree import containment

    assert containment.MARKER_NAME in RESERVED_NAMES
    assert containment.STAGING_PREFIX in RESERVED_PREFIXES


def test_add_refuses_reserved_names(store: castore.Store) -> None:
    draft = store.draft("ds")
    with pytest.raises(InvalidPathError, match=r"\.castore-checkout"):
        draft.add_bytes(b"x", "data/.castore-checkout")
    with pytest.raises(InvalidPathError, match=r"\.castore-staging-"):
        draft.add_bytes(b"x", ".castore-staging-abc/f")


def test_add_dir_skips_castore_files_left_in_a_checkout(
    store: castore.Store, tmp_path: Path
) -> None:
    tree = tmp_path / "checkout"
    _write(tree / "a.txt", "a")
    _write(tree / ".castore-checkout", "")
    _write(tree / ".castore-staging-123" / "partial.bin", "p")
    assert IgnoreRules.from_dir(tree).matches(".castore-checkout", is_dir=False)
    version = store.draft("ds").add_dir(tree).finalize()
    assert [e.path for e in version.files()] == ["a.txt"]


def test_refusal_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="absolute"):
        validate_path("/x")


@pytest.mark.parametrize("value", [None, b"a", 3, Path("a")])
def test_refuses_non_strings(value: object) -> None:
    with pytest.raises(InvalidPathError, match="expected a str"):
        validate_path(value)  # type: ignore[arg-type]


def test_nfc_error_tells_the_nfc_spelling_without_rewriting() -> None:
    nfd = unicodedata.normalize("NFD", "café")
    with pytest.raises(InvalidPathError) as info:
        validate_path(nfd)
    assert ascii(unicodedata.normalize("NFC", nfd)) in info.value.reason
    assert info.value.path == nfd


def test_collision_key_folds_case_and_normalisation() -> None:
    assert collision_key("A.TXT") == collision_key("a.txt")
    assert collision_key(unicodedata.normalize("NFD", "Été")) == collision_key("été")
    assert collision_key("straße") == collision_key("STRASSE")
    assert collision_key("a.txt") != collision_key("b.txt")


def test_find_collisions_reports_files_and_directories() -> None:
    paths = ["Data/a.csv", "data/b.csv", "x.txt", "X.TXT", "ok/one", "ok/two"]
    assert find_collisions(paths) == [("Data", "data"), ("X.TXT", "x.txt")]


def test_find_collisions_reports_each_pair_once() -> None:
    assert find_collisions(["a", "A", "a"]) == [("A", "a")]
    assert find_collisions(["readme", "README", "ReadMe"]) == [
        ("README", "ReadMe"),
        ("README", "readme"),
        ("ReadMe", "readme"),
    ]


def test_find_collisions_file_against_directory() -> None:
    assert find_collisions(["Model", "model/weights.bin"]) == [("Model", "model")]


def test_find_collisions_none() -> None:
    assert find_collisions(["a/b", "a/c", "b"]) == []
    assert find_collisions([]) == []


@pytest.mark.parametrize(
    ("prefix", "path", "expected"),
    [
        ("a", "a", True),
        ("a", "a/b", True),
        ("a/", "a/b/c", True),
        ("a/b", "a/b/c", True),
        ("a/b/", "a/b", True),
        ("a/b", "a/bc", False),
        ("a/b", "a/bc/d", False),
        ("a/b", "a", False),
        ("a", "b/a", False),
        ("", "anything/at/all", True),
        ("/", "x", True),
    ],
)
def test_is_within_is_segment_wise(prefix: str, path: str, expected: bool) -> None:
    assert is_within(prefix, path) is expected


# --- IgnoreRules --------------------------------------------------------------------------


def test_ignore_basic_and_last_match_wins() -> None:
    rules = IgnoreRules(["*.tmp", "!keep.tmp", "keep.tmp"])
    assert rules.matches("keep.tmp", is_dir=False)
    rules = IgnoreRules(["*.tmp", "!keep.tmp"])
    assert not rules.matches("keep.tmp", is_dir=False)
    assert rules.matches("deep/dir/x.tmp", is_dir=False)


def test_ignored_directory_cannot_be_reincluded_below() -> None:
    rules = IgnoreRules(["build/", "!build/keep.txt"])
    assert rules.matches("build", is_dir=True)
    assert rules.matches("build/keep.txt", is_dir=False)
    assert rules.matches("build/a/b/c", is_dir=False)
    assert not rules.matches("build", is_dir=False)  # a file named build is kept


def test_ignore_explain_names_the_deciding_pattern() -> None:
    rules = IgnoreRules(["*.log", "!important.log", "out/"])
    assert rules.explain("x.log") == "*.log"
    assert rules.explain("important.log") == "!important.log"
    assert rules.explain("out/deep/f.txt") == "out/"
    assert rules.explain("src/main.py") is None


def test_ignore_multiline_pattern_strings_and_crlf() -> None:
    rules = IgnoreRules(["# comment\r\n*.a\r\n\r\n*.b"])
    assert rules.matches("x.a", is_dir=False)
    assert rules.matches("x.b", is_dir=False)
    assert not rules.matches("# comment", is_dir=False)


def test_malformed_bracket_matches_nothing() -> None:
    rules = IgnoreRules(["[abc", "x\\"])
    assert not rules.matches("[abc", is_dir=False)
    assert not rules.matches("a", is_dir=False)
    assert not rules.matches("x", is_dir=False)


def test_empty_rules_are_falsy() -> None:
    assert not IgnoreRules([])
    assert not IgnoreRules(["# only a comment", ""])  # parsed to nothing
    assert IgnoreRules(["*.tmp"])


def _write(path: Path, text: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_from_dir_reads_root_and_nested_ignore_files(tmp_path: Path) -> None:
    _write(tmp_path / ".castoreignore", "*.log\n/top-only.txt\n")
    _write(tmp_path / "sub" / ".castoreignore", "!keep.log\n/anchored.txt\nlocal/\n")
    rules = IgnoreRules.from_dir(tmp_path)
    assert rules.matches("a.log", is_dir=False)
    assert rules.matches("other/a.log", is_dir=False)
    assert not rules.matches("sub/keep.log", is_dir=False)
    assert rules.matches("keep.log", is_dir=False)  # the nested file scopes to sub/
    assert rules.matches("top-only.txt", is_dir=False)
    assert not rules.matches("sub/top-only.txt", is_dir=False)
    assert rules.matches("sub/anchored.txt", is_dir=False)
    assert not rules.matches("sub/x/anchored.txt", is_dir=False)
    assert not rules.matches("anchored.txt", is_dir=False)
    assert rules.matches("sub/x/local", is_dir=True)
    assert not rules.matches("local", is_dir=True)


def test_from_dir_extra_patterns_take_precedence(tmp_path: Path) -> None:
    _write(tmp_path / ".castoreignore", "!*.tmp\n")
    rules = IgnoreRules.from_dir(tmp_path, extra=["*.tmp"])
    assert rules.matches("x.tmp", is_dir=False)
    rules = IgnoreRules.from_dir(tmp_path / "missing", extra=["*.bak"])
    assert rules.matches("x.bak", is_dir=False)
    assert not rules.matches("x.tmp", is_dir=False)


def test_from_dir_skips_ignore_file_of_ignored_directory(tmp_path: Path) -> None:
    _write(tmp_path / ".castoreignore", "vendor/\n")
    _write(tmp_path / "vendor" / ".castoreignore", "!*\n")
    rules = IgnoreRules.from_dir(tmp_path)
    assert rules.matches("vendor/lib.py", is_dir=False)


def test_from_dir_does_not_follow_symlinked_ignore_file(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("*\n")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside, root / ".castoreignore")
    rules = IgnoreRules.from_dir(root)
    assert not rules.matches("anything.txt", is_dir=False)


def test_from_dir_strips_utf8_bom(tmp_path: Path) -> None:
    (tmp_path / ".castoreignore").write_bytes(b"\xef\xbb\xbf*.log\n")
    assert IgnoreRules.from_dir(tmp_path).matches("x.log", is_dir=False)
