"""Artifact path rules and gitignore-style ignore patterns.

Names inside an artifact are canonical POSIX relative paths that are also safe to write on
Windows and macOS. :func:`validate_path` refuses anything else and never rewrites a name: path
traversal is the most common security bug class of artifact stores (MLflow, W&B, huggingface_hub
#3896 all shipped fixes, several of them bypasses), so the rules are checked under POSIX *and*
Windows semantics on every platform.

:class:`IgnoreRules` implements gitignore(5) matching for ``Draft.add_dir(ignore=...)`` and
``.castoreignore`` files: pathspec compiles the patterns, and the decisions follow
``git check-ignore`` (the property tests compare the two).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pathspec.patterns.gitignore import GitIgnorePatternError
from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern

from castore.errors import InvalidPathError

__all__ = [
    "IGNORE_FILENAME",
    "MAX_PATH_BYTES",
    "MAX_SEGMENT_BYTES",
    "RESERVED_NAMES",
    "RESERVED_PREFIXES",
    "IgnoreRules",
    "collision_key",
    "find_collisions",
    "is_within",
    "validate_path",
]

#: Longest accepted path, in UTF-8 bytes (Linux ``PATH_MAX``).
MAX_PATH_BYTES = 4096
#: Longest accepted path segment, in UTF-8 bytes (``NAME_MAX`` of ext4, APFS, NTFS).
MAX_SEGMENT_BYTES = 255
#: Name of the per-directory ignore file read by :meth:`IgnoreRules.from_dir`.
IGNORE_FILENAME = ".castoreignore"
#: Names castore writes inside a checkout target (the marker file) and removes again; a
#: segment with one of them (compared case-insensitively) is refused and skipped by add_dir.
RESERVED_NAMES = frozenset([".castore-checkout"])
#: Prefixes of castore's own names in a checkout target (its staging directories).
RESERVED_PREFIXES = (".castore-staging-",)

# Characters Windows refuses in a file name (":" is checked separately for a clearer message).
_WINDOWS_FORBIDDEN = frozenset('<>"|?*')
_CONTROL = re.compile("[\x00-\x1f\x7f]")
# Segments already found valid (directory names repeat across a tree's paths); bounded.
_valid_segments: set[str] = set()
_VALID_SEGMENTS_MAX = 65536
# Device names Windows reserves whatever the extension ("con.txt" opens the console). COM0/LPT0
# and the superscript digits are reserved too on current Windows versions.
_RESERVED_STEMS = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{dev}{n}" for dev in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3"]
)


def _reject(path: object, reason: str) -> InvalidPathError:
    return InvalidPathError(path, reason)


def validate_path(path: str) -> str:
    """Check that ``path`` is a canonical artifact path and return it unchanged.

    A canonical path is relative, POSIX (``/`` separated), in Unicode NFC, with no empty, ``.``
    or ``..`` segment, and safe on Windows: no ``\\``, ``:``, ``<>"|?*``, control character,
    reserved device name (``CON``, ``con.txt``, ``LPT1``...) or segment ending in a dot or space.

    Args:
        path: The name of a file inside an artifact, such as ``"data/train.csv"``.

    Returns:
        ``path`` itself.

    Raises:
        InvalidPathError: ``path`` breaks a rule; the message names which.

    Example:
        >>> validate_path("images/cat.png")
        'images/cat.png'
    """
    if not isinstance(path, str):
        raise _reject(path, f"expected a str, got {type(path).__name__}")
    if not path:
        raise _reject(path, "the path is empty")
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        raise _reject(path, "it is not valid Unicode (undecodable bytes in a file name?)") from None
    if size > MAX_PATH_BYTES:
        raise _reject(path, f"it is {size} bytes long, more than {MAX_PATH_BYTES}")
    control = _CONTROL.search(path)
    if control is not None:
        code = ord(control.group())
        what = "a NUL byte" if code == 0 else f"the control character U+{code:04X}"
        raise _reject(path, f"it contains {what}")
    if "\\" in path:
        raise _reject(path, "it contains a backslash; use '/' to separate directories")
    if path.startswith("/"):
        raise _reject(path, "it is absolute; use a path relative to the artifact root")
    if ":" in path:
        raise _reject(path, "it contains ':' (a drive or stream separator on Windows)")
    if path.endswith("/"):
        raise _reject(path, "it ends with '/'; name a file, not a directory")
    if not unicodedata.is_normalized("NFC", path):
        nfc = unicodedata.normalize("NFC", path)
        raise _reject(path, f"it is not in Unicode NFC and names are never rewritten; pass {nfc!a}")
    for segment in path.split("/"):
        if segment not in _valid_segments:
            _check_segment(path, segment)
            if len(_valid_segments) >= _VALID_SEGMENTS_MAX:
                _valid_segments.clear()
            _valid_segments.add(segment)
    return path


def _check_segment(path: str, segment: str) -> None:
    if not segment:
        raise _reject(path, "it has an empty segment ('//')")
    if segment in (".", ".."):
        raise _reject(path, f"it has a {segment!r} segment")
    bad = sorted(set(segment) & _WINDOWS_FORBIDDEN)
    if bad:
        raise _reject(path, f"segment {segment!r} contains {''.join(bad)!r}, refused on Windows")
    if segment[-1] in ". ":
        what = "a dot" if segment[-1] == "." else "a space"
        raise _reject(path, f"segment {segment!r} ends with {what}, which Windows drops")
    reserved = _reserved(segment)
    if reserved is not None:
        raise _reject(path, f"segment {segment!r} is reserved: checkout uses {reserved} itself")
    stem = segment.split(".", 1)[0].rstrip(" ").upper()
    if stem in _RESERVED_STEMS:
        raise _reject(path, f"segment {segment!r} is the reserved Windows device name {stem}")
    size = len(segment.encode("utf-8"))
    if size > MAX_SEGMENT_BYTES:
        raise _reject(
            path, f"segment {segment[:20]!r}... is {size} bytes, over {MAX_SEGMENT_BYTES}"
        )


def _reserved(name: str) -> str | None:
    """The reserved name or prefix (``".castore-staging-*"``) that ``name`` is, else None."""
    key = collision_key(name)
    if key in RESERVED_NAMES:
        return key
    for prefix in RESERVED_PREFIXES:
        if key.startswith(prefix):
            return prefix + "*"
    return None


def collision_key(path: str) -> str:
    """Return the key under which case-insensitive or normalising file systems see ``path``.

    Two paths with the same key (``"A.txt"`` and ``"a.txt"``, or NFC and NFD spellings of one
    name) would land on one file on macOS or Windows.
    """
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", path).casefold())


def find_collisions(paths: Iterable[str]) -> list[tuple[str, str]]:
    """Find paths (or their directories) that collide on a case-insensitive file system.

    Directories count too: ``"Data/a"`` and ``"data/b"`` put two spellings of one directory in
    the artifact. Each colliding pair is reported once, in sorted order.

    Args:
        paths: The paths of one version.

    Returns:
        Sorted ``(first, second)`` pairs of distinct spellings that share a :func:`collision_key`.
    """
    seen: dict[str, set[str]] = {}
    for path in paths:
        segments = path.split("/")
        for depth in range(1, len(segments) + 1):
            name = "/".join(segments[:depth])
            seen.setdefault(collision_key(name), set()).add(name)
    pairs: list[tuple[str, str]] = []
    for names in seen.values():
        if len(names) > 1:
            ordered = sorted(names)
            pairs.extend((a, b) for i, a in enumerate(ordered) for b in ordered[i + 1 :])
    return sorted(pairs)


def is_within(prefix: str, path: str) -> bool:
    """Tell whether ``path`` is ``prefix`` or lies under the directory ``prefix``.

    Segment-wise: ``"a/b/c"`` is within ``"a/b"`` and ``"a/b/"``, ``"a/bc"`` is not. An empty
    prefix is the artifact root, which holds everything.
    """
    prefix = prefix.rstrip("/")
    if not prefix:
        return True
    return path == prefix or path.startswith(prefix + "/")


# --- gitignore ------------------------------------------------------------------------------
# pathspec compiles each line (comments, "!", anchoring, "**", a trailing "/"). Where pathspec
# 1.1 differs from `git check-ignore` (which the property tests compare against), castore keeps
# git's rules: brackets inside a segment (pathspec passes `[[:digit:]]`, `[b-a]` to `re` as is,
# and `[!a]` matches "/"), and the decision (`GitIgnoreSpec.check_file` re-includes files below
# an excluded directory): the last pattern matching the path itself wins, parents first.

_POSIX_CLASSES = {
    "alnum": "a-zA-Z0-9",
    "alpha": "a-zA-Z",
    "blank": " \\t",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": " \\t\\n\\r\\f\\v",
    "upper": "A-Z",
    "xdigit": "0-9a-fA-F",
}


def _class_char(char: str) -> str:
    return "\\" + char if char in "\\]^-[" else char


def _bracket(pattern: str, start: int) -> tuple[str, int] | None:
    """Translate the bracket expression at ``pattern[start] == "["``; None if malformed."""
    i = start + 1
    n = len(pattern)
    negate = i < n and pattern[i] in "!^"
    if negate:
        i += 1
    parts: list[str] = []
    first = True
    while True:
        if i >= n:
            return None  # unterminated: git's wildmatch aborts, the rule matches nothing
        char = pattern[i]
        if char == "]" and not first:
            break
        first = False
        if char == "[" and pattern.startswith("[:", i):
            end = pattern.find("]", i + 2)
            if end < 0:
                return None
            if pattern[end - 1] == ":" and end - 1 >= i + 2:
                cls = _POSIX_CLASSES.get(pattern[i + 2 : end - 1])
                if cls is None:
                    return None  # unknown class: git's wildmatch aborts
                parts.append(cls)
                i = end + 1
                continue
            # no ":]" before the next "]": "[" is an ordinary member, as in git
        if char == "\\":
            i += 1
            if i >= n:
                return None
            char = pattern[i]
        if i + 2 < n and pattern[i + 1] == "-" and pattern[i + 2] != "]":
            high_at = i + 2
            if pattern[high_at] == "\\":
                high_at += 1
                if high_at >= n:
                    return None
            high = pattern[high_at]
            # git tests the low end as a member before the range, so "[b-a]" matches "b".
            parts.append(
                f"{_class_char(char)}-{_class_char(high)}" if char <= high else _class_char(char)
            )
            i = high_at + 1
            continue
        parts.append(_class_char(char))
        i += 1
    body = "".join(parts)
    # A bracket never matches "/" (wildmatch with WM_PATHNAME).
    return ("[^/" + body + "]" if negate else "(?!/)[" + body + "]"), i + 1


# A "/" inside a bracket while pathspec splits segments (no file name holds a NUL).
_BRACKET_SLASH = "\x00"
# pathspec's mark for "matched a directory", in a pattern for any path and one ending in "/".
_DIR_MARK = "(?P<ps_d>"
_DIR_MARK_OPT = "(?:(?P<ps_d>/)|$)"
_DIR_MARK_ONLY = "(?P<ps_d>/)"
_TRAILING_SPACES = re.compile(r"(\\*)( +)$")


def _trim_trailing_spaces(line: str) -> str:
    """Drop trailing spaces unless escaped with a backslash (git's trim_trailing_spaces)."""
    run = _TRAILING_SPACES.search(line)
    if run is None:
        return line
    # An odd run of backslashes before the spaces escapes the first space.
    return line[: run.start(2) + len(run.group(1)) % 2]


def _segment_regex(glob: str) -> str:
    """Translate one path segment of a pattern the way git's wildmatch reads it."""
    glob = glob.replace(_BRACKET_SLASH, "/")
    out: list[str] = []
    i = 0
    n = len(glob)
    while i < n:
        char = glob[i]
        if char == "*":
            while i < n and glob[i] == "*":
                i += 1
            out.append("[^/]*")  # a run of "*" inside a segment is a plain "*"
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "[":
            translated = _bracket(glob, i)
            if translated is None:
                raise ValueError(f"malformed bracket expression in {glob!r}")
            out.append(translated[0])
            i = translated[1]
        elif char == "\\":
            if i + 1 >= n:
                raise ValueError(f"{glob!r} ends with a backslash")
            out.append(re.escape(glob[i + 1]))
            i += 2
        else:
            out.append(re.escape(char))
            i += 1
    return "".join(out)


class _WildmatchPattern(GitIgnoreSpecPattern):
    """pathspec's gitignore pattern, with git's rules inside a segment (see above)."""

    __slots__ = ()

    @staticmethod
    def _translate_segment_glob(pattern: str, range_error: Literal["literal", "raise"]) -> str:
        return _segment_regex(pattern)


def _for_pathspec(body: str) -> str | None:
    """Spell a trimmed pattern (without its ``!``) so pathspec splits it as git does.

    Returns None when git would never match it (an unterminated bracket, a trailing
    backslash).
    """
    out: list[str] = []
    slash_in_bracket = False
    i = 0
    n = len(body)
    while i < n:
        char = body[i]
        if char == "\\":
            if i + 1 >= n or (body[i + 1] == "/" and (i == 0 or i + 2 == n)):
                # A trailing backslash never matches; nor does "\/a" (a path has no leading
                # "/") or "a\/" (git drops the last "/" first, leaving a backslash).
                return None
            # "\/" is a plain "/"; pathspec would cut the segment before it.
            out.append("/" if body[i + 1] == "/" else body[i : i + 2])
            i += 2
        elif char == "[":
            bracket = _bracket(body, i)
            if bracket is None:
                return None
            text = body[i : bracket[1]]
            if "/" in text:
                slash_in_bracket = True
                text = text.replace("/", _BRACKET_SLASH)
            out.append(text)
            i = bracket[1]
        else:
            out.append(char)
            i += 1
    if out and out[-1][-1].isspace() and out[-1] != "\\ ":
        # pathspec strips any trailing whitespace; git trims only unescaped spaces.
        out[-1] = "[" + out[-1][-1] + "]"
    text = "".join(out)
    # git reads a run of 2+ "*" forming a whole segment as "**"; pathspec only "**" itself.
    segments = ["**" if len(s) > 2 and s.strip("*") == "" else s for s in text.split("/")]
    if segments[-1] == "" and segments[-2:-1] == ["**"] and set(segments[:-2]) - {"", "**"}:
        segments.insert(-1, "*")  # "a/**/" names directories below a, pathspec also a itself
    text = "/".join(segments)
    if slash_in_bracket and "/" not in text.rstrip("/"):
        text = "/" + text  # git anchors a pattern with any "/", one inside a bracket too
    return text


@dataclass(frozen=True)
class _Rule:
    pattern: str  # the line as written, for explain()
    negate: bool
    itself: re.Pattern[str]  # matches the path as a file or directory name
    as_dir: re.Pattern[str] | None  # matches "path/" when the pattern names directories
    base: str  # directory of the ignore file, "" for the root

    def match(self, relpath: str, is_dir: bool) -> bool:
        if self.base:
            if not relpath.startswith(self.base + "/"):
                return False
            relpath = relpath[len(self.base) + 1 :]
        if self.itself.search(relpath) is not None:
            return True
        return is_dir and self.as_dir is not None and self.as_dir.search(relpath + "/") is not None


def _compile(line: str, base: str) -> _Rule | None:
    """Compile one pattern line through pathspec; None for a line that matches nothing."""
    text = _trim_trailing_spaces(line)
    negate = text.startswith("!")
    raw = text[1:] if negate else text
    if not raw.removesuffix("/"):
        return None  # "/" and "!/" are empty once git drops the "/" (pathspec: every dir)
    body = _for_pathspec(raw)
    if body is None:
        return None
    try:
        pattern = _WildmatchPattern(("!" if negate else "") + body)
    except GitIgnorePatternError:
        return None  # e.g. "!" alone: git skips it too
    if pattern.include is None or pattern.regex is None:
        return None
    # pathspec's regex also matches everything below a matched directory (the ps_d group);
    # git decides each path by the patterns that match it, so split the two readings.
    source = pattern.regex.pattern
    itself = source.replace(_DIR_MARK_OPT, "\\Z").replace(_DIR_MARK_ONLY, "(?!)")
    as_dir = source.replace(_DIR_MARK_OPT, "/\\Z").replace(_DIR_MARK_ONLY, "/\\Z")
    if _DIR_MARK in itself:
        raise RuntimeError(f"unexpected pathspec regex {source!r} for {line!r}")
    return _Rule(
        pattern=line,
        negate=negate,
        itself=re.compile(itself, re.DOTALL),
        as_dir=re.compile(as_dir, re.DOTALL) if _DIR_MARK in source else None,
        base=base,
    )


def _parse(lines: Iterable[str], base: str) -> list[_Rule]:
    rules: list[_Rule] = []
    for raw in lines:
        for line in raw.split("\n"):
            line = line.removesuffix("\r")
            if not line or line.startswith("#"):
                continue
            rule = _compile(line, base)
            if rule is not None:
                rules.append(rule)
    return rules


class IgnoreRules:
    """Gitignore-style patterns (gitignore(5)), for ``add_dir(ignore=...)``.

    Supports comments, blank lines, ``!`` negation, a trailing ``/`` for directories only, a
    leading or middle ``/`` to anchor at the root, ``*``, ``?``, ``[a-z]``, ``[!a]``, ``**``
    (``**/x``, ``x/**``, ``a/**/b``), backslash escapes and trimmed trailing spaces. The last
    matching pattern wins, and nothing below an ignored directory can be re-included.

    Example:
        >>> rules = IgnoreRules(["*.tmp", "build/", "!keep.tmp"])
        >>> rules.matches("a/x.tmp", is_dir=False), rules.matches("keep.tmp", is_dir=False)
        (True, False)
        >>> rules.matches("build/out/lib.so", is_dir=False)
        True
    """

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        """Build the rules from pattern lines, as they would appear in a ``.gitignore``."""
        self._root: Path | None = None
        self._extra: list[_Rule] = _parse(patterns, "")
        self._files: dict[str, list[_Rule]] = {}  # base directory -> rules of its ignore file
        self._dir_cache: dict[str, bool] = {}
        self._rules_in: dict[str, list[_Rule]] = {}  # directory -> rules for its entries

    @classmethod
    def from_dir(cls, root: str | os.PathLike[str], extra: Iterable[str] = ()) -> IgnoreRules:
        """Rules of ``root/.castoreignore``, nested ``.castoreignore`` files and ``extra``.

        A nested ignore file applies to its own directory, and deeper files take precedence, as
        in git. ``extra`` patterns (the ``ignore=`` argument) take precedence over every file, like
        patterns given on git's command line. Files are read lazily, the first time a path
        below their directory is matched, and never through a symlink; the ignore file of an
        ignored directory is never read. castore's own names (:data:`RESERVED_NAMES`,
        :data:`RESERVED_PREFIXES`), left in a checkout target, are always ignored.
        """
        rules = cls(extra)
        rules._root = Path(root)
        return rules

    def _file_rules(self, base: str) -> list[_Rule]:
        rules = self._files.get(base)
        if rules is None:
            rules = []
            if self._root is not None:
                text = _read_no_follow(self._root.joinpath(*base.split("/"), IGNORE_FILENAME))
                if text is not None:
                    rules = _parse([text], base)
            self._files[base] = rules
        return rules

    def _applicable(self, relpath: str) -> list[_Rule]:
        """Rules that may match ``relpath``, lowest precedence first.

        They depend only on the directory holding ``relpath`` (the ignore files of it and its
        ancestors), so they are gathered once per directory.
        """
        parent = relpath.rpartition("/")[0]
        rules = self._rules_in.get(parent)
        if rules is None:
            rules = []
            if self._root is not None:
                segments = relpath.split("/")
                for depth in range(len(segments)):
                    rules.extend(self._file_rules("/".join(segments[:depth])))
            rules.extend(self._extra)
            self._rules_in[parent] = rules
        return rules

    def _decide(self, relpath: str, is_dir: bool) -> _Rule | None:
        for rule in reversed(self._applicable(relpath)):
            if rule.match(relpath, is_dir):
                return rule
        return None

    def _builtin(self, relpath: str) -> str | None:
        """castore's own names are ignored in a directory walk, as git ignores ``.git``."""
        name = relpath.rpartition("/")[2]
        if self._root is None or not name.startswith("."):
            return None
        return _reserved(name)

    def _dir_ignored(self, relpath: str) -> bool:
        cached = self._dir_cache.get(relpath)
        if cached is None:
            rule = self._decide(relpath, True)
            cached = (rule is not None and not rule.negate) or self._builtin(relpath) is not None
            self._dir_cache[relpath] = cached
        return cached

    def explain(self, relpath: str, is_dir: bool = False) -> str | None:
        """Return the pattern that decides ``relpath`` (``!...`` if re-included), else None."""
        segments = relpath.strip("/").split("/")
        for depth in range(1, len(segments) + 1):
            path = "/".join(segments[:depth])
            builtin = self._builtin(path)
            if builtin is not None:
                return builtin
            if depth < len(segments) and self._dir_ignored(path):
                rule = self._decide(path, True)
                return rule.pattern if rule else None
        rule = self._decide("/".join(segments), is_dir)
        return rule.pattern if rule else None

    def matches(self, relpath: str, is_dir: bool = False) -> bool:
        """Tell whether ``relpath`` (relative to the root, ``/`` separated) is ignored.

        A path under an ignored directory is ignored whatever later patterns say.
        """
        segments = relpath.strip("/").split("/")
        for depth in range(1, len(segments)):
            if self._dir_ignored("/".join(segments[:depth])):
                return True
        path = "/".join(segments)
        if is_dir:
            return self._dir_ignored(path)
        rule = self._decide(path, False)
        return (rule is not None and not rule.negate) or self._builtin(path) is not None

    def __bool__(self) -> bool:
        return bool(self._extra) or self._root is not None

    def __repr__(self) -> str:
        patterns = [rule.pattern for rule in self._extra]
        return f"IgnoreRules({patterns!r}, root={str(self._root) if self._root else None!r})"


def _read_no_follow(path: Path) -> str | None:
    """Read an ignore file, refusing symlinks (as git 2.32+ does for .gitignore)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if path.is_symlink():  # ELOOP: a symlinked ignore file is not followed
            return None
        raise exc
    with os.fdopen(fd, "rb") as handle:
        data = handle.read()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data.decode("utf-8", "surrogateescape")
