"""Objects in and out of the Store facade: ``save`` and ``load`` through materializers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from castore.artifact.commit import start_draft
from castore.facade.base import StoreBase
from castore.handles.query import resolve_ref
from castore.handles.version import ArtifactVersion, Draft
from castore.refs import check_user_alias

__all__ = ["ObjectsMixin"]


class ObjectsMixin(StoreBase):
    """``save`` and ``load``: Python objects as versions (see :mod:`castore.objects`)."""

    def save(
        self,
        obj: Any,
        /,
        name: str,
        *,
        type: str | None = None,
        metadata: dict[str, Any] | None = None,
        aliases: Iterable[str] = (),
        format: str | None = None,
        **options: Any,
    ) -> ArtifactVersion:
        """Save ``obj`` as the next version of the collection ``name``.

        The first materializer that can save ``obj`` writes its files (registered ones
        first, then the built-ins: numpy arrays as ``.npy``, pandas DataFrames as Parquet, a
        ``Path`` as the file or tree itself, ``str`` as text, ``bytes`` as a binary file,
        JSON values, dicts of arrays as safetensors). The version records its name as
        ``v.materializer``; ``v.metadata`` holds only what you pass.

        Args:
            obj: the object.
            name: the collection (created on first use).
            type: the collection's type, as for :meth:`draft`.
            metadata: JSON-serialisable metadata of the version.
            aliases: aliases to point at the new version.
            format: the materializer's name or format, e.g. ``"safetensors"``.
            **options: passed to the materializer (``allow_pickle=True`` for object arrays).

        Returns:
            The new :class:`ArtifactVersion` (the latest one when the same object was saved
            last, as for a draft).

        Raises:
            MaterializerError: (a ``TypeError``) no materializer can save ``obj``, or it
                needs pickle and ``allow_pickle`` is not set.
            ImportError: the materializer's library is missing (names the extra).

        Example:
            >>> v = store.save({"lr": 0.1}, "config", aliases=["prod"])  # doctest: +SKIP
            >>> store.load("config:prod")  # doctest: +SKIP
            {'lr': 0.1}
        """
        from castore.objects import materializer_for  # the registry: only for save and load

        materializer = materializer_for(obj, format)
        aliases = [check_user_alias(a) for a in aliases]
        draft_id, coll_type = start_draft(
            self.parts, name, type=type, description=None, metadata=metadata, tags=[]
        )
        with Draft(self.parts, draft_id, name, coll_type) as draft:  # discarded on error
            materializer.save(obj, draft, **options)
            # On the pending row, so the finalize transaction writes it into the version
            # document and compares it before reusing the latest version.
            self.parts.catalog.update_version(draft_id, materializer=materializer.name)
            version = draft.finalize(aliases=aliases)
        return version

    def load(self, ref: str | ArtifactVersion, /, **options: Any) -> Any:
        """The object a version written by :meth:`save` holds, built by the same materializer.

        Loading never unpickles unless ``allow_pickle=True`` is passed here too.

        Args:
            ref: a reference string (as for :meth:`get`) or a version.
            **options: passed to the materializer (``allow_pickle``; ``root`` and ``link``
                for paths).

        Raises:
            NotFoundError: nothing matches ``ref``.
            MaterializerError: (a ``TypeError``) the version was not written by ``save``, its
                materializer is not registered here, or it needs ``allow_pickle=True``.
            ImportError: the materializer's library is missing (names the extra).

        Example:
            >>> weights = store.load("weights:prod")  # doctest: +SKIP
        """
        from castore.objects import load_version

        version = (
            ref if isinstance(ref, ArtifactVersion)
            else ArtifactVersion(self.parts, resolve_ref(self.parts.catalog, ref))
        )
        return load_version(version, **options)
