"""Times between handles and the catalogue: UTC datetimes, microseconds, TTL seconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["seconds", "to_datetime", "to_us"]


def to_datetime(us: int | None) -> datetime | None:
    """Catalogue microseconds → timezone-aware UTC datetime."""
    return None if us is None else datetime.fromtimestamp(us / 1_000_000, tz=UTC)


def to_us(value: datetime | None) -> int | None:
    """A datetime (naive means UTC) → catalogue microseconds."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1_000_000)


def seconds(ttl: timedelta | None, what: str = "ttl") -> float | None:
    if ttl is None:
        return None
    if not isinstance(ttl, timedelta):
        raise TypeError(f"{what} must be a datetime.timedelta or None, not {type(ttl).__name__}")
    if ttl <= timedelta(0):
        raise ValueError(f"{what} must be positive, got {ttl}; use None for 'never expires'")
    return ttl.total_seconds()
