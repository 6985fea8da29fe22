"""Times between handles and the catalogue: UTC datetimes, microseconds, TTL seconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

__all__ = ["filter_time", "seconds", "to_datetime", "to_us"]


def to_datetime(us: int | None) -> datetime | None:
    """Catalogue microseconds → timezone-aware UTC datetime."""
    # Exact to the microsecond (a float timestamp can round one away, and then a time read
    # from a version would not match the same version as a query bound).
    return None if us is None else _EPOCH + timedelta(microseconds=us)


def to_us(value: datetime | None) -> int | None:
    """A datetime (naive means UTC) → catalogue microseconds."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // timedelta(microseconds=1)  # exact, unlike a float timestamp


def seconds(ttl: timedelta | None, what: str = "ttl") -> float | None:
    if ttl is None:
        return None
    if not isinstance(ttl, timedelta):
        raise TypeError(f"{what} must be a datetime.timedelta or None, not {type(ttl).__name__}")
    if ttl <= timedelta(0):
        raise ValueError(f"{what} must be positive, got {ttl}; use None for 'never expires'")
    return ttl.total_seconds()


def filter_time(value: datetime | str | None, what: str) -> int | None:
    """A time filter (``created_after=`` ...) → catalogue microseconds.

    Accepts a timezone-aware datetime or an ISO-8601 string with an offset (``"2026-01-02"``
    or ``"…T10:00:00Z"``; a date or time without an offset is read as UTC, as the catalogue
    keeps UTC). A naive datetime is refused: castore cannot know which zone it meant.

    Raises:
        TypeError: a naive datetime, or something that is neither a datetime nor a string.
        ValueError: a string that is not ISO-8601.
    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"{what}={value!r} is not an ISO-8601 time (e.g. '2026-01-02T10:00:00+00:00')"
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        value = parsed
    elif not isinstance(value, datetime):
        raise TypeError(
            f"{what} must be a timezone-aware datetime or an ISO-8601 string, "
            f"not {type(value).__name__}"
        )
    elif value.tzinfo is None or value.utcoffset() is None:
        raise TypeError(
            f"{what}={value!r} is a naive datetime; give a timezone "
            "(datetime.now(timezone.utc)) or an ISO-8601 string"
        )
    return (value - _EPOCH) // timedelta(microseconds=1)  # exact, unlike a float timestamp
