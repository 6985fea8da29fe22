"""The CLI's value parsers and formatters: durations, sizes, metadata, tables, sizes, times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st

from castore.cli.formatting import (
    dump_json,
    human_duration,
    human_size,
    relative_time,
    render_table,
    short_digest,
)
from castore.cli.parsing import (
    DURATION,
    SIZE,
    DurationType,
    parse_duration,
    parse_metadata,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
        ("2w", timedelta(weeks=2)),
        ("1y", timedelta(days=365)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("1.5h", timedelta(minutes=90)),
        ("3600", timedelta(hours=1)),
        (" 7D ", timedelta(days=7)),
    ],
)
def test_parse_duration_accepts(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "d", "30x", "h12", "1d 2", "-3d", "1d-2h", "none"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_parse_duration_none_only_when_allowed() -> None:
    assert parse_duration("none", allow_none=True) is None
    assert parse_duration("never", allow_none=True) is None
    with pytest.raises(ValueError, match="or 'none'"):
        parse_duration("soon", allow_none=True)


@given(st.integers(min_value=1, max_value=10**8))
def test_duration_roundtrips_through_human_form(seconds: int) -> None:
    delta = timedelta(seconds=seconds)
    text = human_duration(delta)
    back = parse_duration(text)
    assert back is not None
    # human_duration keeps the two largest units: the rest is at most one unit of the second
    assert timedelta(0) <= delta - back < timedelta(days=1)
    assert back > timedelta(0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10GB", 10 * 1000**3),
        ("512MiB", 512 * 1024**2),
        ("512M", 512 * 1024**2),
        ("1.5kb", 1500),
        ("4096", 4096),
        ("7B", 7),
        ("2 TiB", 2 * 1024**4),
    ],
)
def test_parse_size_accepts(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "GB", "10 XB", "-1GB", "1,5GB", "10GBs"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


def test_parse_metadata_strings_and_json() -> None:
    assert parse_metadata(["split=train", "f1:=0.96", "n:=10", "ok:=true", "v=1.10"]) == {
        "split": "train",
        "f1": 0.96,
        "n": 10,
        "ok": True,
        "v": "1.10",
    }
    assert parse_metadata(["url=http://x/?a=b"]) == {"url": "http://x/?a=b"}
    assert parse_metadata(["empty="]) == {"empty": ""}


@pytest.mark.parametrize("item", ["novalue", "=x", "k:=notjson", " =x"])
def test_parse_metadata_rejects(item: str) -> None:
    with pytest.raises(ValueError, match="metadata"):
        parse_metadata([item])


def test_click_types_fail_as_usage_errors() -> None:
    with pytest.raises(click.BadParameter, match="not a duration"):
        DURATION.convert("soon", None, None)
    with pytest.raises(click.BadParameter, match="not a size"):
        SIZE.convert("big", None, None)
    assert DurationType(allow_none=True).convert("none", None, None) is None
    assert SIZE.convert("1KiB", None, None) == 1024


def test_human_size() -> None:
    assert human_size(0) == "0 B"
    assert human_size(1023) == "1023 B"
    assert human_size(1024) == "1.0 KiB"
    assert human_size(1536) == "1.5 KiB"
    assert human_size(150 * 1024**2) == "150 MiB"
    assert human_size(None) == "-"
    assert human_size(1024**6).endswith("PiB")


def test_relative_time() -> None:
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    assert relative_time(now - timedelta(seconds=5), now) == "just now"
    assert relative_time(now - timedelta(minutes=3), now) == "3 minutes ago"
    assert relative_time(now - timedelta(hours=1), now) == "1 hour ago"
    assert relative_time(now - timedelta(days=2, hours=5), now) == "2 days ago"
    assert relative_time(now + timedelta(days=30), now) == "in 1 month"
    assert relative_time(now - timedelta(days=800), now) == "2 years ago"
    assert relative_time(None, now) == "-"


def test_render_table_aligns_columns() -> None:
    text = render_table(["name", "size"], [("a", "1 B"), ("longer", None)], right=(1,))
    lines = text.splitlines()
    assert lines[0] == "NAME    SIZE"
    assert lines[1] == "a        1 B"
    assert lines[2] == "longer     -"
    assert all(line == line.rstrip() for line in lines)


def test_short_digest_and_json() -> None:
    assert short_digest("xxh3-128:0123456789abcdef0123") == "0123456789ab"
    assert short_digest(None) == "-"
    assert dump_json({"d": timedelta(seconds=3), "t": datetime(2026, 1, 1, tzinfo=UTC)}) == (
        '{\n  "d": 3.0,\n  "t": "2026-01-01T00:00:00+00:00"\n}'
    )
