"""Content digests as values: ``"xxh3-128:9f2c…"``, a ``str`` that knows its algorithm."""

from __future__ import annotations

import re

from castore.errors import InvalidReferenceError

__all__ = ["ALGORITHMS", "Digest"]

#: Hex length of each supported algorithm's digest.
ALGORITHMS: dict[str, int] = {"xxh3-128": 32, "blake3": 64, "sha256": 64}

_DIGEST_RE = re.compile(r"^(?P<algo>[a-z0-9-]+):(?P<hex>[0-9a-f]+)$")


class Digest(str):
    """A content digest: a string ``"<algorithm>:<lowercase hex>"``.

    It compares, hashes and serialises as the plain string, so it can be stored in SQLite and
    JSON as it is, and exposes its parts as :attr:`algorithm` and :attr:`hex`.

    Example:
        >>> d = Digest.parse("sha256:" + "ab" * 32)
        >>> d.algorithm, d.hex[:4]
        ('sha256', 'abab')
    """

    __slots__ = ()

    @classmethod
    def parse(cls, value: str) -> Digest:
        """Validate ``value`` and return it as a :class:`Digest`.

        Raises:
            InvalidReferenceError: the algorithm is unknown or the hex has the wrong length.
        """
        if isinstance(value, Digest):
            return value
        match = _DIGEST_RE.match(value) if isinstance(value, str) else None
        if match is None:
            raise InvalidReferenceError(
                f"malformed digest {value!r}: expected '<algorithm>:<lowercase hex>'", ref=value
            )
        algo, hexpart = match["algo"], match["hex"]
        if algo not in ALGORITHMS:
            raise InvalidReferenceError(
                f"unknown hash algorithm {algo!r} in digest {value!r} "
                f"(known: {', '.join(ALGORITHMS)})",
                ref=value,
            )
        if len(hexpart) != ALGORITHMS[algo]:
            raise InvalidReferenceError(
                f"digest {value!r} has {len(hexpart)} hex digits; {algo} has {ALGORITHMS[algo]}",
                ref=value,
            )
        return cls(value)

    @classmethod
    def of(cls, algorithm: str, hexdigest: str) -> Digest:
        """Build a digest from an algorithm name and its hex digest (trusted input)."""
        return cls(f"{algorithm}:{hexdigest}")

    @property
    def algorithm(self) -> str:
        """The hash algorithm's name, e.g. ``"xxh3-128"``."""
        return self.partition(":")[0]

    @property
    def hex(self) -> str:
        """The lowercase hex digest, without the algorithm."""
        return self.partition(":")[2]

    def __repr__(self) -> str:
        return f"Digest({str(self)!r})"
