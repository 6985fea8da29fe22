"""Gitignore-style ignore patterns for ``Draft.add_dir(ignore=...)`` and ``.castoreignore``.

:class:`IgnoreRules` implements gitignore(5) matching: pathspec compiles the patterns, and the
decisions follow ``git check-ignore`` (the property tests compare the two).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pathspec.patterns.gitignore import GitIgnorePatternError
from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern

from castore.paths import reserved_name

__all__ = ["IGNORE_FILENAME", "IgnoreRules"]

#: Name of the per-directory ignore file read by :meth:`IgnoreRules.from_dir`.
IGNORE_FILENAME = ".castoreignore"

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
        return reserved_name(name)

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
