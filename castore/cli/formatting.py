"""Output for people and for scripts: aligned tables, human sizes, relative times, JSON.

Data goes to stdout, everything else to stderr (``research/ecosystem.md`` §2.2). ``--json``
prints exactly one JSON document per invocation, built from the pydantic records'
``model_dump(mode="json")`` so the shape is the API's and stays stable.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import click

__all__ = [
    "dump_json",
    "echo_json",
    "human_duration",
    "human_size",
    "relative_time",
    "render_table",
    "short_digest",
    "summary",
    "to_jsonable",
    "version_dict",
]

_SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(n: int | float | None) -> str:
    """``1536`` -> ``"1.5 KiB"``; powers of 1024, three significant figures.

    Example:
        >>> human_size(0), human_size(1536), human_size(10 * 1024**3)
        ('0 B', '1.5 KiB', '10.0 GiB')
    """
    if n is None:
        return "-"
    value = float(n)
    for unit in _SIZE_UNITS:
        if abs(value) < 1024 or unit == _SIZE_UNITS[-1]:
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f} {unit}" if abs(value) < 100 else f"{value:.0f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def human_duration(delta: timedelta | None) -> str:
    """``timedelta(days=30)`` -> ``"30d"``; the largest units, at most two of them.

    Example:
        >>> human_duration(timedelta(days=1, hours=12)), human_duration(None)
        ('1d12h', 'never')
    """
    if delta is None:
        return "never"
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return "0s"
    parts: list[str] = []
    for unit, size in (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
        if len(parts) == 2:
            break
    return "".join(parts)


def relative_time(when: datetime | None, now: datetime | None = None) -> str:
    """``"3 minutes ago"``, ``"in 2 days"``, ``"just now"``; ``"-"`` for None.

    Example:
        >>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
        >>> relative_time(t - timedelta(hours=3), now=t)
        '3 hours ago'
    """
    if when is None:
        return "-"
    now = now or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (now - when).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 45:
        return "just now"
    for unit, size in (
        ("year", 365 * 86400),
        ("month", 30 * 86400),
        ("week", 7 * 86400),
        ("day", 86400),
        ("hour", 3600),
        ("minute", 60),
    ):
        if seconds >= size:
            count = round(seconds / size) if unit == "minute" else int(seconds // size)
            count = max(count, 1)
            text = f"{count} {unit}{'s' if count != 1 else ''}"
            return f"in {text}" if future else f"{text} ago"
    return "in 1 minute" if future else "1 minute ago"  # pragma: no cover


def short_digest(digest: str | None, length: int = 12) -> str:
    """``"xxh3-128:9f2c1a…"`` -> ``"9f2c1a4b5c6d"`` (the hex, cut); ``"-"`` for None."""
    if not digest:
        return "-"
    return digest.split(":", 1)[-1][:length]


def render_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    right: Iterable[int] = (),
) -> str:
    """An aligned plain-text table (two spaces between columns, no trailing spaces).

    Args:
        headers: the column names, printed upper-case.
        rows: the cells; ``None`` prints as ``-``.
        right: indexes of columns aligned to the right (sizes, counts).
    """
    right_cols = set(right)
    cells = [[h.upper() for h in headers]]
    cells += [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [
            cell.rjust(widths[i]) if i in right_cols else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def to_jsonable(value: Any) -> Any:
    """Turn records, handles, datetimes, timedeltas and paths into JSON values."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def dump_json(value: Any, *, compact: bool = False) -> str:
    """The JSON text of ``value`` (indented, or on one line; keys in the records' order)."""
    import json

    if compact:
        return json.dumps(to_jsonable(value), ensure_ascii=False, separators=(",", ":"))
    return json.dumps(to_jsonable(value), indent=2, ensure_ascii=False)


def echo_json(value: Any) -> None:
    """Print ``value`` as one JSON document on stdout."""
    click.echo(dump_json(value))


def _get(obj: Any, name: str, default: Any = None) -> Any:
    return getattr(obj, name, default)


def version_dict(v: Any) -> dict[str, Any]:
    """The JSON record of an ``ArtifactVersion`` handle (stable keys, API names)."""
    ttl = _get(v, "ttl")
    aliases = _get(v, "aliases") or []
    tags = _get(v, "tags") or []
    return {
        "id": _get(v, "id"),
        "ref": _get(v, "ref"),
        "collection": _get(v, "collection"),
        "type": _get(v, "type"),
        "number": _get(v, "number"),
        "version": _get(v, "version"),
        "digest": _get(v, "digest"),
        "size": _get(v, "size"),
        "file_count": _get(v, "file_count"),
        "state": _get(v, "state"),
        "aliases": sorted(aliases),
        "tags": sorted(tags),
        "metadata": to_jsonable(_get(v, "metadata") or {}),
        "description": _get(v, "description"),
        "created_at": to_jsonable(_get(v, "created_at")),
        "updated_at": to_jsonable(_get(v, "updated_at")),
        "ttl": ttl.total_seconds() if isinstance(ttl, timedelta) else ttl,
        "expires_at": to_jsonable(_get(v, "expires_at")),
    }


def summary(v: Any) -> str:
    """``"12 files, 45.2 KiB"`` for a version."""
    files = f"{v.file_count} file{'s' if v.file_count != 1 else ''}"
    return f"{files}, {human_size(v.size)}"


def err(message: str) -> None:
    """Print a message for people on stderr (never data)."""
    click.echo(message, err=True)


def stdout_is_tty() -> bool:
    """True when stdout is a terminal."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False
