"""Unit tests of castore.refs: names, aliases, tags and reference strings."""

from __future__ import annotations

import pytest

from castore.errors import InvalidReferenceError
from castore.refs import (
    LATEST,
    Ref,
    format_ref,
    parse_ref,
    validate_alias,
    validate_name,
    validate_tag,
)

UUID = "0199c455-21ee-74c6-b747-19a82f1a1e67"


@pytest.mark.parametrize(
    ("text", "expected", "canonical"),
    [
        ("mnist", Ref(collection="mnist", alias=LATEST), "mnist:latest"),
        ("mnist:latest", Ref(collection="mnist", alias="latest"), "mnist:latest"),
        ("mnist:prod", Ref(collection="mnist", alias="prod"), "mnist:prod"),
        ("mnist:v3", Ref(collection="mnist", number=3), "mnist:v3"),
        ("mnist:v0", Ref(collection="mnist", number=0), "mnist:v0"),
        ("mnist:v120", Ref(collection="mnist", number=120), "mnist:v120"),
        ("mnist@9f2c1a", Ref(collection="mnist", digest_prefix="9f2c1a"), "mnist@9f2c1a"),
        (
            "mnist@xxh3-128:9f2c1a0b",
            Ref(collection="mnist", digest_prefix="9f2c1a0b", digest_algorithm="xxh3-128"),
            "mnist@xxh3-128:9f2c1a0b",
        ),
        (
            "mnist:prod@9f2c1a",
            Ref(collection="mnist", alias="prod", digest_prefix="9f2c1a"),
            "mnist:prod@9f2c1a",
        ),
        (
            "mnist:v2@sha256:" + "ab" * 32,
            Ref(
                collection="mnist",
                number=2,
                digest_prefix="ab" * 32,
                digest_algorithm="sha256",
            ),
            "mnist:v2@sha256:" + "ab" * 32,
        ),
        (UUID, Ref(version_id=UUID), UUID),
        (UUID.upper(), Ref(version_id=UUID), UUID),
        ("my-data_set.v2:best-0.9", Ref(collection="my-data_set.v2", alias="best-0.9"), None),
        ("mnist:version3", Ref(collection="mnist", alias="version3"), None),
        ("mnist:v", Ref(collection="mnist", alias="v"), None),
        ("v3", Ref(collection="v3", alias=LATEST), "v3:latest"),
    ],
)
def test_parse_ref_cases(text: str, expected: Ref, canonical: str | None) -> None:
    ref = parse_ref(text)
    assert ref == expected
    assert str(ref) == (canonical or text)
    assert parse_ref(str(ref)) == ref


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("a:b:c", "more than one ':'"),
        ("a@9f2c1a@9f2c1a", "more than one '@'"),
        (":prod", "no collection"),
        ("@9f2c1a", "no collection"),
        ("mnist:", "nothing after ':'"),
        ("mnist@", "nothing after '@'"),
        ("mnist:prod@", "nothing after '@'"),
        ("mnist:v-1", "whole numbers"),
        ("mnist:v+1", "whole numbers"),
        ("mnist:v01", "leading zeros"),
        ("mnist:v00", "leading zeros"),
        ("mnist:V3", "lowercase 'v'"),
        ("mnist@9f2c1", "too short"),
        ("mnist@9f2c1g", "not lowercase hex"),
        ("mnist@9F2C1A", "use lowercase"),
        ("mnist@xxh3_128:9f2c1a", "not a digest algorithm"),
        ("mnist@:9f2c1a", "not a digest algorithm"),
        ("mnist@sha256:" + "a" * 129, "longer than"),
        ("mnist:v99999999999999999999", "too large"),
        (".hidden", "starts with '.'"),
        ("mn ist", "' '"),
        ("mnist/v1", "'/'"),
        ("mnist\n", "'\\n'"),
        ("mnïst", "'ï'"),
        ("x" * 129, "129 characters"),
        ("mnist:pr od", "' '"),
        ("mnist:.prod", "starts with '.'"),
        (UUID + ":prod", "looks like a version id"),
    ],
)
def test_parse_ref_refuses_malformed(text: str, reason: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        parse_ref(text)
    assert reason in str(info.value)
    assert info.value.ref == text


def test_parse_ref_refuses_non_string() -> None:
    with pytest.raises(InvalidReferenceError, match="must be a str"):
        parse_ref(3)  # type: ignore[arg-type]


def test_short_uuid_like_name_is_a_collection() -> None:
    # 35 hex-and-dash characters are a legal name, not a version id.
    ref = parse_ref(UUID[:-1])
    assert ref == Ref(collection=UUID[:-1], alias=LATEST)
    assert parse_ref(UUID + "0").version_id is None  # one too many: a name too


def test_ref_version_property() -> None:
    assert parse_ref("m:v7").version == "v7"
    assert parse_ref("m:prod").version is None


def test_invalid_reference_is_value_error() -> None:
    with pytest.raises(ValueError):
        parse_ref("a:b:c")


@pytest.mark.parametrize("name", ["a", "mnist", "A-b_c.d", "x" * 128, "0start", "_x", "-x", "a..b"])
def test_validate_name_accepts(name: str) -> None:
    assert validate_name(name) is name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        (".x", "starts with '.'"),
        ("x" * 129, "129 characters"),
        ("a b", "' '"),
        ("a/b", "'/'"),
        ("a:b", "':'"),
        ("a@b", "'@'"),
        ("é", "'é'"),
        (UUID, "looks like a version id"),
    ],
)
def test_validate_name_refuses(name: str, reason: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        validate_name(name)
    assert reason in str(info.value)
    assert info.value.ref == name
    assert "collection" in str(info.value)


def test_validate_name_uses_what_in_message() -> None:
    with pytest.raises(InvalidReferenceError, match=r"^type "):
        validate_name("a b", "type")
    assert validate_name(UUID, "type") == UUID  # only collections clash with version ids


@pytest.mark.parametrize("alias", ["prod", "latest", "best", "v", "version1", "v1a", "x-v1"])
def test_validate_alias_accepts(alias: str) -> None:
    assert validate_alias(alias) is alias


@pytest.mark.parametrize(
    ("alias", "reason"),
    [
        ("v0", "looks like a version number"),
        ("v12", "looks like a version number"),
        ("V3", "looks like a version number"),
        ("v01", "looks like a version number"),
        ("prod@9f2c1a", "'@'"),
        ("", "empty"),
        (".prod", "starts with '.'"),
        ("a b", "' '"),
    ],
)
def test_validate_alias_refuses(alias: str, reason: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        validate_alias(alias)
    assert reason in str(info.value)
    assert info.value.ref == alias


@pytest.mark.parametrize("tag", ["raw", "_x", "0", "A.b-c_d", "x" * 128])
def test_validate_tag_accepts(tag: str) -> None:
    assert validate_tag(tag) is tag


@pytest.mark.parametrize("tag", ["", ".x", "-x", "a b", "a,b", "x" * 129, "t@g"])
def test_validate_tag_refuses(tag: str) -> None:
    with pytest.raises(InvalidReferenceError, match="tag"):
        validate_tag(tag)


def test_format_ref() -> None:
    assert format_ref("mnist", 0) == "mnist:v0"
    assert format_ref("mnist", 42) == "mnist:v42"
    assert parse_ref(format_ref("mnist", 42)) == Ref(collection="mnist", number=42)


@pytest.mark.parametrize("number", [-1, True, 1.0, "3", None])
def test_format_ref_refuses_bad_numbers(number: object) -> None:
    with pytest.raises(InvalidReferenceError, match="non-negative int"):
        format_ref("mnist", number)  # type: ignore[arg-type]


def test_ref_is_frozen_and_hashable() -> None:
    ref = parse_ref("mnist:prod")
    with pytest.raises(AttributeError):
        ref.alias = "other"  # type: ignore[misc]
    assert {ref, parse_ref("mnist:prod")} == {ref}
