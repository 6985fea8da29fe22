"""The materializer registry: registered ones first, then entry points, then the built-ins.

``register_materializer`` puts a class in front of the list (the newest first). Entry points
of the group ``castore.materializers`` are loaded once, lazily, the first time the list is
used; each names a materializer class. An entry point that fails to load is skipped and its
error kept, so a version it wrote fails to load with a message that names it. The built-ins
come last, in the order that makes the most specific one win.
"""

from __future__ import annotations

import importlib.metadata
import threading
from typing import Any

from castore.errors import MaterializerError
from castore.manifest import MATERIALIZER_NAME
from castore.objects.arrays import NumpyMaterializer, SafetensorsMaterializer
from castore.objects.builtin import (
    BytesMaterializer,
    DirectoryMaterializer,
    FileMaterializer,
    JsonMaterializer,
    TextMaterializer,
)
from castore.objects.tables import PandasMaterializer

__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "load_version",
    "materializer_for",
    "materializer_named",
    "materializers",
    "register_materializer",
]

#: The entry point group that packages use to contribute materializers.
ENTRY_POINT_GROUP = "castore.materializers"

#: The built-in materializers, in the order they are offered an object.
BUILTIN: tuple[Any, ...] = (
    NumpyMaterializer,
    PandasMaterializer,
    FileMaterializer,
    DirectoryMaterializer,
    TextMaterializer,
    BytesMaterializer,
    JsonMaterializer,
    SafetensorsMaterializer,
)

_lock = threading.Lock()
_registered: list[Any] = []  # newest first
_plugins: list[Any] | None = None  # from entry points, loaded on first use
_plugin_errors: dict[str, str] = {}  # entry point name -> why it did not load


def _check(cls: Any) -> Any:
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not MATERIALIZER_NAME.match(name):
        raise MaterializerError(
            f"a materializer needs a class attribute name: str of letters, digits and "
            f"'_ . : / -' (up to 128), not {name!r}",
            name=name if isinstance(name, str) else None,
        )
    types = getattr(cls, "types", None)
    if not isinstance(types, tuple) or not all(isinstance(t, type) for t in types):
        raise MaterializerError(
            f"materializer {name!r} needs a class attribute types: tuple[type, ...], "
            f"not {types!r}",
            name=name,
        )
    missing = [m for m in ("can_save", "save", "load") if not callable(getattr(cls, m, None))]
    if missing:
        raise MaterializerError(
            f"materializer {name!r} lacks the static method(s) {', '.join(missing)}", name=name
        )
    return cls


def register_materializer(cls: Any) -> Any:
    """Register a materializer class; it is tried before every earlier one and the built-ins.

    Registering the same class again moves it to the front. Usable as a class decorator.

    Args:
        cls: a class with ``name``, ``types`` and static methods ``can_save(obj)``,
            ``save(obj, draft, **options)`` and ``load(version, **options)``
            (see :class:`castore.Materializer`).

    Returns:
        ``cls``.

    Raises:
        MaterializerError: (a ``TypeError``) ``cls`` lacks one of those.

    Example:
        >>> castore.register_materializer(PointMaterializer)  # doctest: +SKIP
    """
    _check(cls)
    with _lock:
        if cls in _registered:
            _registered.remove(cls)
        _registered.insert(0, cls)
    return cls


def _load_plugins() -> list[Any]:
    global _plugins
    with _lock:
        if _plugins is not None:
            return _plugins
        found: list[Any] = []
        for ep in sorted(
            importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name
        ):
            try:
                found.append(_check(ep.load()))
            except Exception as exc:  # a broken plugin must not break every save and load
                _plugin_errors[ep.name] = f"{ep.value}: {type(exc).__name__}: {exc}"
        _plugins = found
        return found


def materializers() -> list[Any]:
    """Every materializer in the order they are tried: registered, entry points, built-in."""
    plugins = _load_plugins()
    with _lock:
        return [*_registered, *plugins, *BUILTIN]


def _offers(cls: Any, obj: Any) -> bool:
    return (not cls.types or isinstance(obj, cls.types)) and bool(cls.can_save(obj))


def materializer_for(obj: Any, format: str | None = None) -> Any:
    """The materializer that saves ``obj``: the first that can, or the one ``format`` names.

    ``format`` matches a materializer's ``name`` or one of its ``formats``
    (``"safetensors"``, ``"npy"``, ``"parquet"``, ``"json"``, ...).

    Raises:
        MaterializerError: no materializer can save ``obj`` (in ``format``).
    """
    kind = type(obj).__qualname__
    if format is not None:
        named = [
            m for m in materializers()
            if format == m.name or format in getattr(m, "formats", ())
        ]
        if not named:
            raise MaterializerError(
                f"no materializer writes the format {format!r}; known: "
                f"{', '.join(sorted({m.name for m in materializers()}))}",
                name=format,
            )
        for cls in named:
            if _offers(cls, obj):
                return cls
        raise MaterializerError(
            f"the {format!r} materializer cannot save a {kind}", name=named[0].name
        )
    for cls in materializers():
        if _offers(cls, obj):
            return cls
    hint = ""
    if isinstance(obj, dict | list | tuple):
        hint = (
            " (JSON takes dicts with str keys, lists, str, int, float, bool and None; a dict "
            "of numpy arrays saves with format='safetensors')"
        )
    raise MaterializerError(
        f"no materializer can save a {kind}{hint}; register one with "
        "castore.register_materializer()"
    )


def materializer_named(name: str, *, ref: str = "the version") -> Any:
    """The materializer called ``name`` (the one that wrote a version).

    Raises:
        MaterializerError: none is registered under that name here.
    """
    for cls in materializers():
        if cls.name == name:
            return cls
    broken = "".join(f"; entry point {k!r} failed to load ({v})" for k, v in _plugin_errors.items())
    raise MaterializerError(
        f"{ref} was written by the materializer {name!r}, which is not registered here: "
        f"install the package that provides it (entry point group {ENTRY_POINT_GROUP!r}) or "
        f"call castore.register_materializer(){broken}",
        name=name,
    )


def load_version(version: Any, **options: Any) -> Any:
    """Load the object a version holds, with the materializer that wrote it.

    Raises:
        MaterializerError: the version was not written by ``store.save()``, or its
            materializer is not registered here, or it refused (``allow_pickle``).
    """
    name = version.materializer
    if name is None:
        raise MaterializerError(
            f"{version.ref} holds files, not a saved object (it was not written by "
            "store.save()); read them with files(), open() or download()"
        )
    return materializer_named(name, ref=version.ref).load(version, **options)
