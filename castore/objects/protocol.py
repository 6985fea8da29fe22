"""What a materializer is: a class with a name, the types it saves, and three static methods."""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

__all__ = ["Materializer"]


@runtime_checkable
class Materializer(Protocol):
    """Saves one kind of object as the files of a draft, and loads it back from a version.

    Register one with :func:`castore.register_materializer` or the ``castore.materializers``
    entry point; registered materializers are tried before the built-in ones.

    Attributes:
        name: recorded on each version it writes (``v.materializer``) and used to find it
            again at load time, e.g. ``"numpy.ndarray"``.
        types: the classes it saves; an object is offered to :meth:`can_save` only if it is
            an instance of one of them (an empty tuple offers every object, for materializers
            whose library is imported lazily).

    Example:
        >>> class Point:
        ...     def __init__(self, x, y): self.x, self.y = x, y
        >>> class PointMaterializer:
        ...     name = "example.Point"
        ...     types = (Point,)
        ...     @staticmethod
        ...     def can_save(obj): return True
        ...     @staticmethod
        ...     def save(obj, draft, **options):
        ...         draft.add_bytes(f"{obj.x},{obj.y}".encode(), "point.csv")
        ...     @staticmethod
        ...     def load(version, **options):
        ...         return Point(*map(int, version.read_text("point.csv").split(",")))
    """

    name: ClassVar[str]
    types: ClassVar[tuple[type, ...]]

    @staticmethod
    def can_save(obj: Any) -> bool:
        """True if this materializer can save ``obj`` (already an instance of ``types``)."""
        ...

    @staticmethod
    def save(obj: Any, draft: Any, **options: Any) -> None:
        """Add the files that represent ``obj`` to ``draft`` (a :class:`castore.Draft`).

        Raises:
            TypeError: an option is unknown, or ``obj`` needs one not given
                (``allow_pickle``).
        """
        ...

    @staticmethod
    def load(version: Any, **options: Any) -> Any:
        """Build the object back from ``version`` (a :class:`castore.ArtifactVersion`).

        Must never run code from the version's files unless an option explicitly allows it.
        """
        ...
