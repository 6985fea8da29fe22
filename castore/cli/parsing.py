"""Parse the values people type on the command line: durations, sizes, ``k=v`` metadata.

Everything here is stdlib only, so ``castore --help`` stays fast. Errors are ``ValueError``
with a message that shows an accepted example; the click parameter types below turn them
into usage errors (exit 2), as does a verb that calls ``parse_metadata`` itself.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    _ParamType = click.ParamType[Any, Any]
else:  # click before 8.2 has no generic ParamType
    _ParamType = click.ParamType

__all__ = [
    "DURATION",
    "POSITIVE_DURATION",
    "SIZE",
    "DurationType",
    "SizeType",
    "parse_duration",
    "parse_metadata",
    "parse_size",
]

_DURATION_UNITS = {
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "y": 365 * 86400,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdwy])")
_NO_DURATION = ("none", "never", "off")

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "m": 1024**2,
    "g": 1024**3,
    "t": 1024**4,
    "p": 1024**5,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "pb": 1000**5,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
    "pib": 1024**5,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")


def parse_duration(text: str, *, allow_none: bool = False) -> timedelta | None:
    """Parse ``30d``, ``12h``, ``90m``, ``45s``, ``2w``, ``1y`` or a sum such as ``1d12h``.

    Args:
        text: the duration; a bare number means seconds.
        allow_none: accept ``none``/``never``/``off`` and return None (no expiry).

    Raises:
        ValueError: the text is not a duration.

    Example:
        >>> parse_duration("1d12h")
        datetime.timedelta(days=1, seconds=43200)
    """
    raw = text.strip().lower()
    if allow_none and raw in _NO_DURATION:
        return None
    if re.fullmatch(r"\d+(?:\.\d+)?", raw):
        return timedelta(seconds=float(raw))
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(raw):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(raw) or not raw:
        extra = " or 'none'" if allow_none else ""
        raise ValueError(
            f"{text!r} is not a duration; write a number and a unit (s, m, h, d, w, y), "
            f"e.g. 30d, 12h, 90m or 1d12h{extra}"
        )
    return timedelta(seconds=total)


def parse_size(text: str) -> int:
    """Parse a size in bytes: ``10GB`` (powers of 1000), ``512MiB`` or ``512M`` (powers of 1024).

    Raises:
        ValueError: the text is not a size.

    Example:
        >>> parse_size("10GB"), parse_size("512MiB")
        (10000000000, 536870912)
    """
    match = _SIZE.fullmatch(text.strip().lower())
    if match is None or match.group(2) not in _SIZE_UNITS:
        raise ValueError(
            f"{text!r} is not a size; write a number and a unit, e.g. 10GB, 512MiB or 4096"
        )
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def parse_metadata(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Parse ``key=value`` (a string) and ``key:=json`` (a JSON value) pairs into a dict.

    ``f1:=0.96`` gives a float, ``epochs:=10`` an int, ``ok:=true`` a bool; ``split=train`` is
    always the string ``"train"`` (so ``version=1.10`` is never read as a number).

    Raises:
        ValueError: an item has no ``=``, an empty key, or invalid JSON after ``:=``.

    Example:
        >>> parse_metadata(["split=train", "f1:=0.96"])
        {'split': 'train', 'f1': 0.96}
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"metadata {item!r} has no '='; write key=value or key:=<json>")
        if key.endswith(":"):
            import json

            key = key[:-1]
            try:
                parsed: Any = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"metadata {item!r}: {value!r} is not JSON ({exc.msg}); write key=value "
                    "for a string"
                ) from exc
        else:
            parsed = value
        if not key.strip():
            raise ValueError(f"metadata {item!r} has an empty key; write key=value")
        out[key] = parsed
    return out


class DurationType(_ParamType):
    """A click type for durations (``30d``); with ``allow_none``, ``none`` gives None.

    With ``positive``, zero is a usage error (a TTL of ``0s`` would expire at once; the
    library refuses it with a ``ValueError`` that used to reach the terminal as exit 1).
    """

    name = "duration"

    def __init__(self, *, allow_none: bool = False, positive: bool = False) -> None:
        self.allow_none = allow_none
        self.positive = positive

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta) or value is None:
            return value
        try:
            parsed = parse_duration(str(value), allow_none=self.allow_none)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if self.positive and parsed is not None and parsed <= timedelta(0):
            never = "; for no expiry write 'none'" if self.allow_none else ""
            self.fail(f"{value!r} is not a positive duration; write e.g. 30d or 12h{never}",
                      param, ctx)
        return parsed


class SizeType(_ParamType):
    """A click type for sizes (``10GB``, ``512MiB``) converted to bytes."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = DurationType()
POSITIVE_DURATION = DurationType(positive=True)
SIZE = SizeType()
