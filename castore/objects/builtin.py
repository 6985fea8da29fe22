"""The materializers for Python's own values: JSON values, text, bytes, and paths."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from castore.errors import MaterializerError
from castore.objects._support import only_file, take_options

__all__ = [
    "BytesMaterializer",
    "DirectoryMaterializer",
    "FileMaterializer",
    "JsonMaterializer",
    "TextMaterializer",
]

JSON_FILE = "data.json"
TEXT_FILE = "data.txt"
BYTES_FILE = "data.bin"
_JSON_DEPTH = 500  # below the recursion limit json.dumps would hit


def _is_json(obj: Any, depth: int = 0) -> bool:
    """True for what ``json`` writes and reads back as the same value (no tuples, str keys)."""
    if depth > _JSON_DEPTH:
        return False
    if obj is None or isinstance(obj, bool | int | str):
        return type(obj) in (type(None), bool, int, str)  # no subclasses (enums come back plain)
    if type(obj) is float:
        return True
    if type(obj) is list:
        return all(_is_json(item, depth + 1) for item in obj)
    if type(obj) is dict:
        return all(
            type(k) is str and _is_json(v, depth + 1) for k, v in obj.items()
        )
    return False


class JsonMaterializer:
    """JSON values as ``data.json``: dict (str keys), list, int, float, bool, None.

    A ``str`` is text unless ``format="json"`` asks for a JSON string.

    NaN and infinities are written as Python's ``json`` spells them (``NaN``,
    ``Infinity``), so they come back; key order is kept.
    """

    name = "json"
    formats = ("json",)
    types: tuple[type, ...] = (dict, list, str, int, float, bool, type(None))

    @staticmethod
    def can_save(obj: Any) -> bool:
        return _is_json(obj)

    @staticmethod
    def save(obj: Any, draft: Any, **options: Any) -> None:
        take_options("json", options)
        draft.add_bytes(json.dumps(obj, ensure_ascii=False).encode(), JSON_FILE)

    @staticmethod
    def load(version: Any, **options: Any) -> Any:
        take_options("json", options)
        data = version.read_bytes(only_file(version, "json", JSON_FILE))
        return json.loads(data, parse_constant=_constant)


def _constant(word: str) -> float:
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[word]


class TextMaterializer:
    """A ``str``, as the UTF-8 file ``data.txt`` (newlines kept exactly)."""

    name = "text"
    formats = ("text", "txt")
    types: tuple[type, ...] = (str,)

    @staticmethod
    def can_save(obj: Any) -> bool:
        return type(obj) is str

    @staticmethod
    def save(obj: Any, draft: Any, **options: Any) -> None:
        take_options("text", options)
        draft.add_bytes(obj.encode("utf-8"), TEXT_FILE)

    @staticmethod
    def load(version: Any, **options: Any) -> Any:
        take_options("text", options)
        return version.read_bytes(only_file(version, "text", TEXT_FILE)).decode("utf-8")


class BytesMaterializer:
    """``bytes``, as the binary file ``data.bin``."""

    name = "bytes"
    formats = ("bytes", "bin")
    types: tuple[type, ...] = (bytes,)

    @staticmethod
    def can_save(obj: Any) -> bool:
        return type(obj) is bytes

    @staticmethod
    def save(obj: Any, draft: Any, **options: Any) -> None:
        take_options("bytes", options)
        draft.add_bytes(obj, BYTES_FILE)

    @staticmethod
    def load(version: Any, **options: Any) -> Any:
        take_options("bytes", options)
        data: bytes = version.read_bytes(only_file(version, "bytes", BYTES_FILE))
        return data


class FileMaterializer:
    """A ``Path`` to a file: the file itself, under its own name.

    Loading writes it into ``root`` (default ``./artifacts/<collection>/v<N>``, as
    ``download()``) and returns its path there. Options: ``root``, ``link``.
    """

    name = "file"
    formats = ("file",)
    types: tuple[type, ...] = (Path,)

    @staticmethod
    def can_save(obj: Any) -> bool:
        return bool(obj.is_file())

    @staticmethod
    def save(obj: Any, draft: Any, **options: Any) -> None:
        take_options("file", options)
        draft.add_file(obj, obj.name)

    @staticmethod
    def load(version: Any, **options: Any) -> Any:
        opts = take_options("file", options, root=None, link="auto")
        entries = list(version.files())
        if len(entries) != 1:
            raise MaterializerError(
                f"{version.ref} holds {len(entries)} files, not the one file the 'file' "
                "materializer writes",
                name="file",
            )
        root: Path = version.download(opts["root"], link=opts["link"])
        return root / entries[0].path


class DirectoryMaterializer:
    """A ``Path`` to a directory: the tree itself (``.castoreignore`` and ``ignore`` apply).

    Saving takes ``add_dir``'s options ``ignore`` and ``follow_symlinks``. Loading writes the
    tree into ``root`` (default ``./artifacts/<collection>/v<N>``; other files there are left
    alone) and returns it. Options: ``root``, ``link``.
    """

    name = "directory"
    formats = ("directory", "dir")
    types: tuple[type, ...] = (Path,)

    @staticmethod
    def can_save(obj: Any) -> bool:
        return bool(obj.is_dir())

    @staticmethod
    def save(obj: Any, draft: Any, **options: Any) -> None:
        opts = take_options("directory", options, ignore=(), follow_symlinks=False)
        draft.add_dir(obj, ignore=opts["ignore"], follow_symlinks=opts["follow_symlinks"])

    @staticmethod
    def load(version: Any, **options: Any) -> Any:
        opts = take_options("directory", options, root=None, link="auto")
        root: Path = version.download(opts["root"], link=opts["link"])
        return root
