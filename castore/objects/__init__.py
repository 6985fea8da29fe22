"""Objects in, objects out: the materializers behind ``store.save()`` and ``store.load()``.

A materializer turns one kind of Python object into the files of a draft and back. The
registry (:mod:`castore.objects.registry`) picks one for an object at save time and finds the
one a version names at load time; :mod:`castore.objects.builtin` holds those for JSON values,
text, bytes and paths; :mod:`castore.objects.arrays` and :mod:`castore.objects.tables` those for
numpy arrays, safetensors and pandas DataFrames, whose libraries are imported only on use.
"""

from __future__ import annotations

from castore.objects.protocol import Materializer
from castore.objects.registry import (
    load_version,
    materializer_for,
    materializer_named,
    materializers,
    register_materializer,
)

__all__ = [
    "Materializer",
    "load_version",
    "materializer_for",
    "materializer_named",
    "materializers",
    "register_materializer",
]
