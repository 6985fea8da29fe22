"""Properties of the path rules, reference grammar and ignore patterns.

The ignore patterns are checked against a table of gitignore(5) examples and, when ``git`` is
installed, against ``git check-ignore --no-index`` itself on a generated tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from castore.errors import InvalidPathError, InvalidReferenceError
from castore.ignore import IgnoreRules
from castore.paths import validate_path
from castore.refs import Ref, parse_ref

# --- paths ----------------------------------------------------------------------------------

_RESERVED = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"} | {
    f"{d}{n}" for d in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3"
}


def _good_segment(segment: str) -> bool:
    return (
        segment not in (".", "..")
        and segment[-1] not in ". "
        and unicodedata.is_normalized("NFC", segment)
        and segment.split(".", 1)[0].rstrip(" ").upper() not in _RESERVED
    )


segments = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='/\\:<>"|?*'),
    min_size=1,
    max_size=16,
).filter(_good_segment)
valid_paths = st.lists(segments, min_size=1, max_size=6).map("/".join)

BAD_SEGMENTS = [
    "",
    ".",
    "..",
    "CON",
    "con.txt",
    "Lpt3.log",
    "a:b",
    "c:",
    "x.",
    "x ",
    "a\\b",
    "nul\x00",
    "tab\tchar",
    "del\x7f",
    "q?",
    "st*r",
    "<x>",
    'qu"ote',
    "pi|pe",
    "e\u0301",  # NFD
    "x" * 256,
]


@given(valid_paths)
@settings(max_examples=200)
def test_paths_of_valid_segments_validate_unchanged(path: str) -> None:
    assume(unicodedata.is_normalized("NFC", path))
    assert validate_path(path) is path


@given(
    st.lists(segments, min_size=0, max_size=4),
    st.sampled_from(BAD_SEGMENTS),
    st.integers(min_value=0, max_value=4),
)
@settings(max_examples=200)
def test_paths_with_a_bad_segment_are_refused(parts: list[str], bad: str, at: int) -> None:
    parts.insert(min(at, len(parts)), bad)
    path = "/".join(parts)
    with pytest.raises(InvalidPathError) as info:
        validate_path(path)
    assert info.value.path == path


@given(valid_paths, st.sampled_from(["/", "./", "../", "a/../"]))
@settings(max_examples=100)
def test_prefixed_paths_are_refused(path: str, prefix: str) -> None:
    with pytest.raises(InvalidPathError):
        validate_path(prefix + path)


@given(st.text(max_size=40))
@settings(max_examples=300)
def test_validate_path_only_accepts_or_raises_invalid_path(text: str) -> None:
    try:
        assert validate_path(text) is text
    except InvalidPathError:
        return
    assert text and not text.startswith("/") and ".." not in text.split("/")
    assert "\\" not in text and ":" not in text and "\x00" not in text


# --- references -----------------------------------------------------------------------------

_NAME = r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,40}"
names = st.from_regex(_NAME, fullmatch=True).filter(lambda s: len(s) != 36)
aliases = st.from_regex(_NAME, fullmatch=True).filter(
    lambda s: not (s[0] in "vV" and s[1:].lstrip("+-").isdigit())
)
numbers = st.integers(min_value=0, max_value=2**63 - 1)
hexes = st.from_regex(r"[0-9a-f]{6,64}", fullmatch=True)
algorithms = st.sampled_from([None, "xxh3-128", "sha256", "blake3"])
uuids = st.uuids().map(str)


@st.composite
def refs(draw: st.DrawFn) -> Ref:
    if draw(st.booleans()) and draw(st.booleans()):
        return Ref(version_id=draw(uuids))
    collection = draw(names)
    shape = draw(st.sampled_from(["alias", "number", "digest", "alias+digest", "number+digest"]))
    alias = draw(aliases) if shape.startswith("alias") else None
    number = draw(numbers) if shape.startswith("number") else None
    digest = draw(hexes) if "digest" in shape else None
    algorithm = draw(algorithms) if digest else None
    return Ref(
        collection=collection,
        alias=alias,
        number=number,
        digest_prefix=digest,
        digest_algorithm=algorithm,
    )


@given(refs())
@settings(max_examples=300)
def test_ref_round_trips_through_its_string(ref: Ref) -> None:
    assert parse_ref(str(ref)) == ref


@given(st.text(alphabet="mn:v0123@abcf-xX.prod ", max_size=24) | st.text(max_size=24))
@settings(max_examples=300)
def test_parse_ref_accepts_canonically_or_raises_invalid_reference(text: str) -> None:
    try:
        ref = parse_ref(text)
    except InvalidReferenceError as exc:
        assert exc.ref == text
        return
    again = parse_ref(str(ref))
    assert again == ref and str(again) == str(ref)


# --- ignore patterns: gitignore(5) examples ------------------------------------------------

# (patterns, path, is_dir, ignored)
GITIGNORE_TABLE: list[tuple[list[str], str, bool, bool]] = [
    (["*.log"], "debug.log", False, True),
    (["*.log"], "logs/debug.log", False, True),
    (["*.log"], "debug.log.txt", False, False),
    (["debug.log"], "logs/debug.log", False, True),  # no slash: any level
    (["/debug.log"], "debug.log", False, True),
    (["/debug.log"], "logs/debug.log", False, False),  # leading slash: anchored
    (["logs/debug.log"], "logs/debug.log", False, True),
    (["logs/debug.log"], "build/logs/debug.log", False, False),  # middle slash: anchored
    (["frotz/"], "frotz", True, True),
    (["frotz/"], "a/frotz", True, True),
    (["frotz/"], "frotz", False, False),  # trailing slash: directories only
    (["frotz/"], "frotz/x/y.txt", False, True),  # everything below an ignored directory
    (["doc/frotz/"], "doc/frotz", True, True),
    (["doc/frotz/"], "a/doc/frotz", True, False),
    (["foo/*"], "foo/test.json", False, True),
    (["foo/*"], "foo/bar", True, True),
    (["foo/*"], "foo/bar/hello.c", False, True),  # via the ignored directory foo/bar
    (["foo/*"], "a/foo/x", False, False),
    (["debug?.log"], "debug0.log", False, True),
    (["debug?.log"], "debug10.log", False, False),
    (["debug[0-9].log"], "debug7.log", False, True),
    (["debug[0-9].log"], "debuga.log", False, False),
    (["debug[!01].log"], "debug2.log", False, True),
    (["debug[!01].log"], "debug1.log", False, False),
    (["debug[a-z].log"], "debugb.log", False, True),
    (["**/logs"], "logs", True, True),
    (["**/logs"], "build/logs", True, True),
    (["**/logs/debug.log"], "a/b/logs/debug.log", False, True),
    (["**/logs/debug.log"], "logs/debug.log", False, True),
    (["logs/**"], "logs/debug.log", False, True),
    (["logs/**"], "logs/a/b/c", False, True),
    (["logs/**"], "logs", True, False),  # "/**" matches inside, not the directory itself
    (["a/**/b"], "a/b", False, True),
    (["a/**/b"], "a/x/b", False, True),
    (["a/**/b"], "a/x/y/b", False, True),
    (["a/**/b"], "c/a/x/b", False, False),
    (["logs/**/debug.log"], "logs/monday/pm/debug.log", False, True),
    (["abc**"], "abcdef", False, True),  # other runs of "*" are a plain "*"
    (["abc**"], "x/abcdef", False, True),
    (["a**/b"], "ax/b", False, True),
    (["a**/b"], "ax/y/b", False, False),
    (["*.log", "!important.log"], "important.log", False, False),
    (["*.log", "!important.log"], "trace.log", False, True),
    (["*.log", "!important/*.log", "trace.*"], "important/trace.log", False, True),
    (["logs/", "!logs/important.log"], "logs/important.log", False, True),  # cannot re-include
    (["/*", "!/foo", "/foo/*", "!/foo/bar"], "foo/bar/x", False, False),  # gitignore(5) example
    (["/*", "!/foo", "/foo/*", "!/foo/bar"], "foo/baz", False, True),
    (["/*", "!/foo", "/foo/*", "!/foo/bar"], "other", False, True),
    (["\\#file"], "#file", False, True),
    (["#file"], "#file", False, False),  # a comment
    (["\\!important"], "!important", False, True),
    (["trailing   "], "trailing", False, True),  # trailing spaces are trimmed
    (["space\\ "], "space ", False, True),  # unless escaped
    (["", "   ", "# c"], "anything", False, False),
    (["*"], ".hidden", False, True),  # "*" matches a leading dot
    (["*"], "dir/file", False, True),
    (["[ab]/c"], "a/c", False, True),
    (["[ab]/c"], "a_b/c", False, False),
    (["a?c"], "a/c", False, False),  # "?" never matches "/"
    (["a*c"], "a/c", False, False),  # "*" never matches "/"
    (["a[/]c"], "a/c", False, False),  # nor does a bracket
    (["*.TXT"], "a.txt", False, False),  # case-sensitive, like git on Linux
    (["[[:digit:]]*.csv"], "2024.csv", False, True),
    (["[[:digit:]]*.csv"], "x2024.csv", False, False),
    (["!*.log"], "x.log", False, False),  # negation alone ignores nothing
    (["[b-a]"], "b", False, True),  # git tests the low end of a reversed range
    (["[b-a]"], "a", False, False),
    (["[[:a]"], ":", False, True),  # no ":]": an ordinary set
    (["[[:bogus:]]"], "b", False, False),  # unknown class: the rule matches nothing
]


@pytest.mark.parametrize(("patterns", "path", "is_dir", "ignored"), GITIGNORE_TABLE)
def test_gitignore_table(patterns: list[str], path: str, is_dir: bool, ignored: bool) -> None:
    assert IgnoreRules(patterns).matches(path, is_dir=is_dir) is ignored


# --- ignore patterns against git itself --------------------------------------------------

GIT = shutil.which("git")
needs_git = pytest.mark.skipif(GIT is None, reason="git is not installed")

TREE_FILES = [
    "a.txt",
    "b.log",
    "ab",
    ".hidden",
    "#hash",
    "!bang",
    "a/b",
    "a/c.txt",
    "a/b2/c.log",
    "a/x/b/c",
    "a/x/y/b/d.txt",
    "b/a.txt",
    "b/a/c",
    "c/d/e/f.log",
    "c/b.txt",
    "doc/frotz/x",
    "x/doc/frotz/y",
    "logs/debug.log",
    "logs/deep/debug1.log",
    "foo/bar/hello.c",
    "foo/baz",
    "1.csv",
    "dir.d/keep.txt",
]

_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "HOME": os.devnull,
    "LC_ALL": "C",
    "PATH": os.environ.get("PATH", ""),
}


def _all_paths(root: Path) -> list[tuple[str, bool]]:
    found: list[tuple[str, bool]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        rel = Path(dirpath).relative_to(root).as_posix()
        for name in dirnames:
            found.append((f"{rel}/{name}" if rel != "." else name, True))
        for name in filenames:
            if name not in (".gitignore", ".castoreignore"):
                found.append((f"{rel}/{name}" if rel != "." else name, False))
    return sorted(found)


def _git_ignored(root: Path, paths: list[str]) -> set[str]:
    assert GIT is not None
    result = subprocess.run(
        [
            GIT,
            "-c",
            f"core.excludesFile={os.devnull}",
            "check-ignore",
            "--no-index",
            "--stdin",
            "-z",
        ],
        cwd=root,
        input="\0".join(paths).encode() + b"\0",
        capture_output=True,
        env=_GIT_ENV,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr.decode()
    return {p for p in result.stdout.decode().split("\0") if p}


@pytest.fixture(scope="module")
def git_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if GIT is None:
        pytest.skip("git is not installed")
    root = tmp_path_factory.mktemp("gitignore-tree")
    subprocess.run([GIT, "init", "-q", str(root)], check=True, env=_GIT_ENV)
    for rel in TREE_FILES:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("x")
    return root


def _compare_with_git(root: Path, patterns: list[str]) -> None:
    (root / ".gitignore").write_text("\n".join(patterns) + "\n")
    entries = _all_paths(root)
    expected = _git_ignored(root, [p for p, _ in entries])
    rules = IgnoreRules(patterns)
    ours = {p for p, is_dir in entries if rules.matches(p, is_dir=is_dir)}
    assert ours == expected, f"patterns {patterns!r}"


GIT_PATTERN_SETS = [
    ["*.log"],
    ["/a", "b/"],
    ["a/**/b", "!a/x/b"],
    ["**/b", "!b/a.txt"],
    ["*", "!*/", "!*.txt"],
    ["doc/frotz/", "foo/*", "!foo/bar"],
    ["/*", "!/foo", "/foo/*", "!/foo/bar"],
    ["logs/**", "!logs/deep/"],
    ["\\#hash", "\\!bang", ".*"],
    ["[a-b]", "[!c]/*.txt"],
    ["?", "??", "a?c*"],
    ["c/**/f.*", "*.d/"],
    ["[[:digit:]].csv", "a**"],
    ["x/", "b", "!a/b"],
]


@needs_git
@pytest.mark.parametrize("patterns", GIT_PATTERN_SETS)
def test_ignore_rules_agree_with_git(git_tree: Path, patterns: list[str]) -> None:
    _compare_with_git(git_tree, patterns)


_TOKENS = ["a", "b", "c", "x", "*", "**", "?", "/", ".txt", ".log", "[ab]", "[!a]", "d"]
# Corners where a hand-written translator tends to differ from git's wildmatch.
_TOKENS += ["\\*", " ", "[]a]", "[b-a]", "[[:alpha:]]", "[[:", "["]
patterns = st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=5).map("".join)
pattern_lines = st.lists(
    st.tuples(st.booleans(), patterns).map(lambda t: ("!" if t[0] else "") + t[1]),
    min_size=1,
    max_size=4,
)


@needs_git
@given(pattern_lines)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_generated_patterns_agree_with_git(git_tree: Path, lines: list[str]) -> None:
    _compare_with_git(git_tree, lines)


@needs_git
def test_nested_ignore_files_agree_with_git(tmp_path: Path) -> None:
    root = tmp_path / "nested"
    subprocess.run([GIT, "init", "-q", str(root)], check=True, env=_GIT_ENV)
    for rel in TREE_FILES:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("x")
    files = {
        "": "*.log\n/b\n",
        "a": "!c.log\n/b\nx/\n",
        "c/d": "!*.log\n",
        "logs": "!debug.log\n",
    }
    for base, text in files.items():
        for name in (".gitignore", ".castoreignore"):
            (root / base / name).write_text(text)
    entries = _all_paths(root)
    expected = _git_ignored(root, [p for p, _ in entries])
    rules = IgnoreRules.from_dir(root)
    ours = {p for p, is_dir in entries if rules.matches(p, is_dir=is_dir)}
    assert ours == expected
    assert "a/b2/c.log" not in ours and "c/d/e/f.log" not in ours and "b.log" in ours
