"""Artifact path rules and gitignore-style ignore patterns.

Names inside an artifact are canonical POSIX relative paths that are also safe to write on
Windows and macOS. :func:`validate_path` refuses anything else and never rewrites a name: path
traversal is the most common security bug class of artifact stores (MLflow, W&B, huggingface_hub
#3896 all shipped fixes, several of them bypasses), so the rules are checked under POSIX *and*
Windows semantics on every platform.

The gitignore-style patterns of ``add_dir(ignore=...)`` live in :mod:`castore.ignore`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from castore.errors import InvalidPathError

__all__ = [
    "MAX_PATH_BYTES",
    "MAX_SEGMENT_BYTES",
    "RESERVED_NAMES",
    "RESERVED_PREFIXES",
    "collision_key",
    "find_collisions",
    "is_within",
    "reserved_name",
    "validate_path",
]

#: Longest accepted path, in UTF-8 bytes (Linux ``PATH_MAX``).
MAX_PATH_BYTES = 4096
#: Longest accepted path segment, in UTF-8 bytes (``NAME_MAX`` of ext4, APFS, NTFS).
MAX_SEGMENT_BYTES = 255
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
    reserved = reserved_name(segment)
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


def reserved_name(name: str) -> str | None:
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
