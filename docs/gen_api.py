"""Generate docs/api.md, the API reference, from the docstrings of ``castore.__all__``.

python docs/gen_api.py            # rewrite docs/api.md
python docs/gen_api.py --check    # exit 1 if docs/api.md is out of date (tests run this)
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

import castore

OUT = Path(__file__).with_name("api.md")
HANDLES = ("Store", "Draft", "ArtifactVersion", "Collection")


def _summary(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.split("\n\n", 1)[0].replace("\n", " ").strip()


def _signature(obj: object) -> str:
    try:
        text = str(inspect.signature(obj))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "(...)"
    # a sentinel default ("only given fields change") prints with its address: name it
    text = re.sub(r"<object object at 0x[0-9a-f]+>", "(unchanged)", text)
    # annotations are strings (PEP 563): show them unquoted
    return (
        re.sub(r"(: |-> )'([^']*)'", r"\1\2", text).replace("(self, ", "(").replace("(self)", "()")
    )


def _members(cls: type) -> list[str]:
    lines = []
    found: dict[str, object] = {}
    for klass in reversed(cls.__mro__):  # inherited castore members too (Draft's adding side)
        if klass.__module__.startswith("castore"):
            found.update(vars(klass))
    for name, member in sorted(found.items()):
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            lines.append(f"- `.{name}` — {_summary(member)}")
        elif callable(member):
            signature = _signature(member).replace("-> Self", f"-> {cls.__name__}")
            lines.append(f"- `.{name}{signature}` — {_summary(member)}")
    return lines


def render() -> str:
    """The whole reference page."""
    parts = [
        "# API reference",
        "",
        "Generated from the docstrings by `python docs/gen_api.py`; every name below is "
        "importable from `castore`. The contract these implement is in the project's API "
        "document; the guides are in [the index](index.md).",
        "",
    ]
    names = [n for n in castore.__all__ if n != "__version__"]
    functions = [n for n in names if inspect.isfunction(getattr(castore, n))]
    handles = [n for n in HANDLES if n in names]
    errors = [n for n in names if isinstance(getattr(castore, n), type) and n.endswith("Error")]
    records = [n for n in names if n not in {*functions, *handles, *errors}]
    parts += ["## Functions", ""]
    for name in functions:
        obj = getattr(castore, name)
        parts += [f"### `castore.{name}{_signature(obj)}`", "", _summary(obj), ""]
    parts += ["## Handles", ""]
    for name in handles:
        cls = getattr(castore, name)
        parts += [f"### `{name}`", "", _summary(cls), "", *_members(cls), ""]
    parts += ["## Records and values", ""]
    for name in records:
        obj = getattr(castore, name)
        fields = getattr(obj, "model_fields", None)
        line = f"- **`{name}`** — {_summary(obj)}"
        if fields:
            line += " Fields: " + ", ".join(f"`{f}`" for f in fields) + "."
        parts.append(line)
    parts += ["", "## Errors", "", "See [errors.md](errors.md) for the tree and what to do.", ""]
    for name in errors:
        parts.append(f"- **`{name}`** — {_summary(getattr(castore, name))}")
    return "\n".join(parts).rstrip() + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            print("docs/api.md is out of date: run python docs/gen_api.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
