"""Reference strings: collection, alias, tag names and ``"mnist:v3"``-style references.

The grammar (``API.md`` "Reference strings")::

    ref       := version-id | collection [":" selector] ["@" digest]
    selector  := "v" number | alias          (no selector: alias "latest")
    digest    := [algorithm ":"] hex         (6 or more lowercase hex characters)
    version-id:= a UUID, 8-4-4-4-12 hex (any case, normalised to lowercase)

Names are 1-128 ASCII letters, digits, ``_``, ``-`` or ``.``, not starting with ``.``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from castore.errors import InvalidReferenceError

__all__ = [
    "LATEST",
    "MAX_NAME_LENGTH",
    "MIN_DIGEST_PREFIX",
    "Ref",
    "check_user_alias",
    "format_ref",
    "parse_ref",
    "tag_list",
    "validate_alias",
    "validate_name",
    "validate_tag",
]

#: The alias the store keeps on the newest version of each collection.
LATEST = "latest"
#: Longest name, alias or tag.
MAX_NAME_LENGTH = 128
#: Fewest hex characters a digest prefix may have.
MIN_DIGEST_PREFIX = 6
# Longest digest hex accepted (sha512 is 128 characters).
_MAX_DIGEST_HEX = 128
# Version numbers are stored as SQLite integers.
_MAX_NUMBER = 2**63 - 1

_NAME_CHARS = re.compile(r"[A-Za-z0-9_.\-]+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_VERSION = re.compile(r"v(0|[1-9][0-9]*)")
_VERSION_LIKE = re.compile(r"[vV][-+]?[0-9]+")
_ALGORITHM = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_HEX = re.compile(r"[0-9a-f]+")

_RULE = "1-128 ASCII letters, digits, '_', '-' or '.'"


def _invalid(message: str, value: object) -> InvalidReferenceError:
    return InvalidReferenceError(message, ref=value)


def _check_chars(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise _invalid(f"{what} must be a str, got {type(value).__name__}", value)
    if not value:
        raise _invalid(f"{what} is empty: use {_RULE}", value)
    if len(value) > MAX_NAME_LENGTH:
        raise _invalid(
            f"{what} {value[:20]!r}... is {len(value)} characters long: use {_RULE}", value
        )
    if _NAME_CHARS.fullmatch(value) is None:
        bad = sorted({c for c in value if _NAME_CHARS.fullmatch(c) is None})
        shown = ", ".join(repr(c) for c in bad)
        raise _invalid(f"{what} {value!r} contains {shown}: use {_RULE}", value)
    return value


def validate_name(name: str, what: str = "collection") -> str:
    """Check a collection (or other) name and return it unchanged.

    Args:
        name: The name to check.
        what: What the name is for, used in the error message.

    Raises:
        InvalidReferenceError: the name is empty, too long, has other characters than
            letters, digits, ``_ - .``, starts with ``.``, or (for a collection) looks like a
            version id, which a bare reference would read as one.
    """
    _check_chars(name, what)
    if name.startswith("."):
        raise _invalid(f"{what} {name!r} starts with '.': use {_RULE}, not starting with '.'", name)
    if what == "collection" and _UUID.fullmatch(name):
        raise _invalid(
            f"collection name {name!r} looks like a version id (a UUID); choose another name",
            name,
        )
    return name


def validate_alias(alias: str) -> str:
    """Check an alias and return it unchanged.

    An alias is a name that does not look like a version number (``v0``, ``v12``), which
    ``"name:v12"`` would read as one.

    Raises:
        InvalidReferenceError: the alias is not a valid name or looks like ``vN``.
    """
    if isinstance(alias, str) and "@" in alias:
        raise _invalid(
            f"alias {alias!r} contains '@', which starts a digest in a reference; use {_RULE}",
            alias,
        )
    validate_name(alias, "alias")
    if _VERSION_LIKE.fullmatch(alias):
        raise _invalid(
            f"alias {alias!r} looks like a version number; choose a name not of the form 'vN'",
            alias,
        )
    return alias


def validate_tag(tag: str) -> str:
    """Check a tag and return it unchanged: name characters, starting with a letter, digit or _.

    Raises:
        InvalidReferenceError: the tag breaks the rule.
    """
    _check_chars(tag, "tag")
    if tag[0] in ".-":
        raise _invalid(f"tag {tag!r} must start with a letter, a digit or '_'", tag)
    return tag


@dataclass(frozen=True)
class Ref:
    """A parsed reference; ``str(ref)`` gives its canonical form.

    Exactly one way of naming the version is set: ``version_id``; or ``collection`` with
    ``alias``, ``number`` or ``digest_prefix``. ``digest_prefix`` alongside an alias or number
    is an assertion that the version it names has that digest.

    Attributes:
        collection: The collection name, None for a bare version id.
        alias: An alias such as ``"latest"`` or ``"prod"``.
        number: A version number (``3`` for ``v3``).
        digest_prefix: Lowercase hex prefix of the version's content digest.
        version_id: A version id (lowercase UUID).
        digest_algorithm: The algorithm written before the digest prefix, if any.
    """

    collection: str | None = None
    alias: str | None = None
    number: int | None = None
    digest_prefix: str | None = None
    version_id: str | None = None
    digest_algorithm: str | None = None

    @property
    def version(self) -> str | None:
        """The version label ``"vN"``, if the reference names a number."""
        return None if self.number is None else f"v{self.number}"

    def __str__(self) -> str:
        if self.version_id is not None:
            return self.version_id
        text = self.collection or ""
        if self.number is not None:
            text += f":v{self.number}"
        elif self.alias is not None:
            text += f":{self.alias}"
        if self.digest_prefix is not None:
            algorithm = f"{self.digest_algorithm}:" if self.digest_algorithm else ""
            text += f"@{algorithm}{self.digest_prefix}"
        return text


def _parse_digest(text: str, ref: str) -> tuple[str | None, str]:
    algorithm: str | None = None
    hex_part = text
    if ":" in text:
        algorithm, hex_part = text.split(":", 1)
        if _ALGORITHM.fullmatch(algorithm) is None:
            raise _invalid(
                f"reference {ref!r}: {algorithm!r} is not a digest algorithm name "
                "(such as 'xxh3-128' or 'sha256')",
                ref,
            )
    if not hex_part:
        raise _invalid(f"reference {ref!r} has nothing after '@': give a digest prefix", ref)
    if _HEX.fullmatch(hex_part) is None:
        hint = " (use lowercase)" if _HEX.fullmatch(hex_part.lower()) else ""
        raise _invalid(f"reference {ref!r}: digest {hex_part!r} is not lowercase hex{hint}", ref)
    if len(hex_part) < MIN_DIGEST_PREFIX:
        raise _invalid(
            f"reference {ref!r}: digest prefix {hex_part!r} is too short; "
            f"give at least {MIN_DIGEST_PREFIX} hex characters",
            ref,
        )
    if len(hex_part) > _MAX_DIGEST_HEX:
        raise _invalid(f"reference {ref!r}: digest is longer than {_MAX_DIGEST_HEX} hex", ref)
    return algorithm, hex_part


def _parse_selector(selector: str, ref: str) -> tuple[str | None, int | None]:
    if not selector:
        raise _invalid(f"reference {ref!r} has nothing after ':': give an alias or 'vN'", ref)
    version = _VERSION.fullmatch(selector)
    if version:
        number = int(version.group(1))
        if number > _MAX_NUMBER:
            raise _invalid(f"reference {ref!r}: version number {number} is too large", ref)
        return None, number
    if _VERSION_LIKE.fullmatch(selector):
        if selector[0] == "V":
            why = "write version numbers with a lowercase 'v'"
        elif selector[1] in "-+":
            why = "version numbers are whole numbers such as 'v0' or 'v3'"
        else:
            why = "version numbers have no leading zeros"
        raise _invalid(f"reference {ref!r}: {selector!r} is not a version number: {why}", ref)
    try:
        return validate_alias(selector), None
    except InvalidReferenceError as exc:
        raise _invalid(f"reference {ref!r}: {exc.message}", ref) from None


def parse_ref(ref: str) -> Ref:
    """Parse a reference string.

    Args:
        ref: ``"mnist"``, ``"mnist:prod"``, ``"mnist:v3"``, ``"mnist@9f2c1a"``,
            ``"mnist:prod@xxh3-128:9f2c1a"`` or a version id.

    Returns:
        The :class:`Ref`; a bare collection name means alias ``latest``.

    Raises:
        InvalidReferenceError: the string is malformed; the message says which part.

    Example:
        >>> parse_ref("mnist:v3")
        Ref(collection='mnist', alias=None, number=3, digest_prefix=None, version_id=None, \
digest_algorithm=None)
        >>> str(parse_ref("mnist"))
        'mnist:latest'
    """
    if not isinstance(ref, str):
        raise _invalid(f"a reference must be a str, got {type(ref).__name__}", ref)
    if not ref:
        raise _invalid("the reference is empty: give 'name', 'name:alias' or 'name:vN'", ref)
    if _UUID.fullmatch(ref):
        return Ref(version_id=ref.lower())
    head, at, digest = ref.partition("@")
    if "@" in digest:
        raise _invalid(f"reference {ref!r} has more than one '@'", ref)
    collection, colon, selector = head.partition(":")
    if ":" in selector:
        raise _invalid(
            f"reference {ref!r} has more than one ':' before '@': use 'name:alias' or 'name:vN'",
            ref,
        )
    if not collection:
        raise _invalid(f"reference {ref!r} has no collection name before ':' or '@'", ref)
    try:
        validate_name(collection)
    except InvalidReferenceError as exc:
        raise _invalid(f"reference {ref!r}: {exc.message}", ref) from None
    alias: str | None = None
    number: int | None = None
    if colon:
        alias, number = _parse_selector(selector, ref)
    elif not at:
        alias = LATEST
    algorithm: str | None = None
    prefix: str | None = None
    if at:
        algorithm, prefix = _parse_digest(digest, ref)
    return Ref(
        collection=collection,
        alias=alias,
        number=number,
        digest_prefix=prefix,
        digest_algorithm=algorithm,
    )


def format_ref(collection: str, number: int) -> str:
    """Return the canonical reference ``"name:vN"`` of a version.

    Raises:
        InvalidReferenceError: ``number`` is not a non-negative int.
    """
    if isinstance(number, bool) or not isinstance(number, int) or number < 0:
        raise _invalid(f"version number {number!r} must be a non-negative int", number)
    return f"{collection}:v{number}"


def check_user_alias(alias: str) -> str:
    """Validate an alias a user may set: any valid alias except ``latest``.

    Raises:
        InvalidReferenceError: malformed, or ``"latest"`` (the store moves it by itself).
    """
    validate_alias(alias)
    if alias == LATEST:
        raise InvalidReferenceError(
            "'latest' is managed by the store and moves by itself; choose another alias",
            ref=alias,
        )
    return alias


def tag_list(tags: Iterable[str]) -> list[str]:
    """Validate tags; a single string is one tag, not a sequence of characters."""
    if isinstance(tags, str):
        tags = [tags]
    return [validate_tag(tag) for tag in tags]
