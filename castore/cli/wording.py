"""Say it the CLI's way: hints in library messages, rewritten with verbs and flags.

The library's errors speak Python to Python callers ("list them with store.collections()",
"pass delete_aliases=True"); a person at a terminal needs the command that does it. The
messages are not edited in the library (they are
right there): the CLI rewrites the known hints where it prints them, here, in one table.
"""

from __future__ import annotations

import re

__all__ = ["cli_wording"]

# (library wording, CLI wording); the first match of each pattern is replaced, in order. Plain
# strings, compiled (and cached by ``re``) only when an error is printed: compiling them at
# import cost every command a few milliseconds.
_REWRITES: tuple[tuple[str, str], ...] = (
    (r"\s*\(castore\.repair\(path\) in Python\)", ""),
    (r"list them with store\.collections\(\)", "list them with `castore ls`"),
    (r"remove them first or pass delete_aliases=True",
     "remove them first with `castore alias rm` or pass --delete-aliases"),
    (r"\bdelete_aliases=True", "--delete-aliases"),
    (r"use None for 'never expires'", "use `none` for 'never expires'"),
    (r"run store\.fsck\(\)", "run `castore fsck`"),
    (r"(?:run )?fsck\(repair=True\)", "run `castore fsck --repair`"),
    (r"\(see \.report; run checkout\(\) to restore it\)", "(`castore checkout` restores it)"),
    (r"run checkout\(\) to restore it", "`castore checkout` restores it"),
    (r"use download\(\), or pass force=True", "use `castore download`, or pass --force"),
    (r"use download\(\) instead", "use `castore download` instead"),
    (r"pass force=True", "pass --force"),
    (r"\(?create one with castore\.init\(\) or open it with create=True\)?",
     "(create one with `castore init`)"),
    (r"\(open it with castore\.open\(\) to use its own settings\)",
     "(leave out --hash, --compression and --level to use its own settings)"),
    (r"start a new one with store\.draft\(\) or version\.new_draft\(\)",
     "run `castore add` again"),
    (r"pass keep_last=N", "pass --keep-last N"),
    (r"\bonly_unused=True", "--only-unused"),
    (r"add it to ignore=, or pass follow_symlinks=True",
     "pass --ignore PATTERN, or --follow-symlinks"),
    (r"add it to ignore=", "pass --ignore PATTERN"),
)


def cli_wording(text: str) -> str:
    """``text`` with the library's Python hints replaced by the CLI's verbs and flags.

    Example:
        >>> cli_wording("no collection named 'x'; list them with store.collections()")
        "no collection named 'x'; list them with `castore ls`"
    """
    for pattern, replacement in _REWRITES:
        text = re.sub(pattern, replacement, text, count=1)
    return text
