"""Walking a directory for ``add_dir``: ignore rules, symlinks and special files.

Symlinks are never followed out of the added directory: a link to a file inside it is stored
as that file's content, a link to a directory is skipped (following it could loop), and a link
that points outside the directory (or nowhere) is refused with :class:`InvalidPathError`.
FIFOs, sockets and devices are refused too.
"""

from __future__ import annotations

import os
import stat as stat_mod
from collections.abc import Iterator
from pathlib import Path

from castore.errors import InvalidPathError
from castore.paths import IgnoreRules

__all__ = ["walk_tree"]


def walk_tree(root: Path, rules: IgnoreRules) -> Iterator[tuple[str, str, os.stat_result]]:
    real_root = os.path.realpath(root)
    stack = [("", str(root))]
    while stack:
        rel_dir, abs_dir = stack.pop()
        with os.scandir(abs_dir) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            rel = rel_dir + entry.name
            st = entry.stat(follow_symlinks=False)
            mode = st.st_mode
            if stat_mod.S_ISLNK(mode):
                target = os.path.realpath(entry.path)
                if os.path.commonpath([real_root, target]) != real_root:
                    raise InvalidPathError(
                        rel,
                        f"it is a symlink to {target!r}, outside the added directory; "
                        "add the target itself or ignore the link",
                    )
                try:
                    st = os.stat(entry.path)
                except FileNotFoundError:
                    raise InvalidPathError(rel, "it is a dangling symlink") from None
                mode = st.st_mode
                if stat_mod.S_ISDIR(mode):
                    continue  # never follow directory links: they may loop
            if stat_mod.S_ISDIR(mode):
                if not rules.matches(rel, is_dir=True):
                    stack.append((rel + "/", entry.path))
                continue
            if rules.matches(rel, is_dir=False):
                continue
            if not stat_mod.S_ISREG(mode):
                kind = (
                    "a FIFO"
                    if stat_mod.S_ISFIFO(mode)
                    else "a socket"
                    if stat_mod.S_ISSOCK(mode)
                    else "a device"
                    if stat_mod.S_ISCHR(mode) or stat_mod.S_ISBLK(mode)
                    else "not a regular file"
                )
                raise ValueError(
                    f"cannot add {entry.path!r}: it is {kind}; remove it or add it to ignore="
                )
            yield rel, entry.path, st
