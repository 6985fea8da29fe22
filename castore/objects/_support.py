"""Helpers shared by the built-in materializers: options, optional imports, one-file reads."""

from __future__ import annotations

import importlib
from typing import Any

from castore.errors import MaterializerError

__all__ = ["only_file", "require", "take_options"]

#: Options every built-in accepts (and ignores where they mean nothing), so that
#: ``store.load(ref, allow_pickle=True)`` works whatever the version holds.
COMMON = ("allow_pickle",)


def take_options(name: str, options: dict[str, Any], **defaults: Any) -> dict[str, Any]:
    """``defaults`` updated from ``options``; an option it does not know raises TypeError."""
    unknown = sorted(set(options) - set(defaults) - set(COMMON))
    if unknown:
        known = sorted({*defaults, *COMMON})
        raise TypeError(
            f"the {name!r} materializer takes no option(s) {', '.join(unknown)} "
            f"(it takes {', '.join(known)})"
        )
    return {**defaults, **{k: v for k, v in options.items() if k in defaults}}


def require(module: str, extra: str) -> Any:
    """Import an optional library, or raise ImportError naming the extra that brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{module.split('.')[0]} is not installed; pip install 'castore[{extra}]'",
            name=module,
        ) from exc


def only_file(version: Any, name: str, expected: str) -> str:
    """Check that ``version`` holds exactly the file ``expected`` that ``name`` writes."""
    paths = [entry.path for entry in version.files()]
    if paths != [expected]:
        raise MaterializerError(
            f"{version.ref} does not hold what the {name!r} materializer writes "
            f"(one file {expected!r}; it holds {paths[:5]})",
            name=name,
        )
    return expected
