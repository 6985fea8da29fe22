"""The file side of a version handle: checkout, download, verify, open and reads.

Thin wrappers over :mod:`castore.worktree`, kept apart from :mod:`castore.handles.version` so
that each module stays one concept: :class:`VersionFiles` reads a version's entries, the
subclass :class:`~castore.handles.version.ArtifactVersion` adds its record and its changes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from castore._parts import Parts
from castore._progress import ProgressArg
from castore.errors import IntegrityError, VerificationError
from castore.models import ManifestEntry, VerifyReport
from castore.worktree import reading
from castore.worktree.entries import EntryStream
from castore.worktree.references import Row, select_stream

if TYPE_CHECKING:
    from castore.worktree.stat_cache import StatCache

__all__ = ["VersionFiles"]


class VersionFiles:
    """Checkout, download, verify and read the files of one version (see ArtifactVersion)."""

    _parts: Parts

    @property
    def collection(self) -> str:
        raise NotImplementedError

    @property
    def version(self) -> str | None:
        raise NotImplementedError

    @property
    def id(self) -> str:
        raise NotImplementedError

    @property
    def ref(self) -> str:
        raise NotImplementedError

    def files(self, prefix: str | None = None) -> Iterator[ManifestEntry]:
        raise NotImplementedError

    def get_entry(self, path: str) -> ManifestEntry:
        raise NotImplementedError

    def _rows(
        self, prefix: str | None = None
    ) -> Iterator[tuple[str, str | None, int, str | None, bool]]:
        raise NotImplementedError

    # -- files on disk: thin wrappers over castore.worktree --------------------------------

    def _local(self, rows: Iterable[Row]) -> list[Row]:
        """``rows`` as a list, once every blob they need is stored here (blobs evicted under a
        budget are fetched back from a remote, verified)."""
        rows = list(rows)
        self._parts.ensure_local((r[1], r[2]) for r in rows if r[3] is None)
        return rows

    def _stream(
        self,
        prefix: str | None = None,
        *,
        allow_patterns: str | Iterable[str] | None = None,
        ignore_patterns: str | Iterable[str] | None = None,
        allow_missing_references: bool = False,
    ) -> EntryStream:
        """The selected entries, streamed from the catalogue anew for each pass a checkout
        makes (never all in memory); the first pass fetches back evicted blobs, a batch at a
        time, and asks the servers of references whether they are reachable."""

        def fetch_back(rows: list[Row]) -> None:
            self._parts.ensure_local((r[1], r[2]) for r in rows if r[3] is None)

        return select_stream(
            lambda: self._rows(prefix), allow_patterns=allow_patterns,
            ignore_patterns=ignore_patterns, allow_missing_references=allow_missing_references,
            each_batch=fetch_back,
        )

    def _stat_cache(self) -> StatCache:
        from castore.worktree.stat_cache import NO_STAT_CACHE  # with checkout and verify

        return NO_STAT_CACHE if self._parts.read_only else self._parts.catalog.stat_cache

    def checkout(
        self,
        root: str | os.PathLike[str],
        *,
        link: str = "auto",
        progress: ProgressArg = None,
        force: bool = False,
        allow_missing_references: bool = False,
    ) -> Path:
        """Make ``root`` hold exactly this version's files; extra files and dirs are removed.

        Files already correct are skipped. Nothing outside ``root`` is written or followed; a
        missing or damaged blob raises before the target changes. A non-empty directory that
        castore did not check out before is refused unless ``force=True``.

        Args:
            root: the target directory (created if missing).
            link: ``"auto"`` (reflink where possible, else copy), ``"copy"``, ``"hardlink"``,
                ``"symlink"`` or ``"reflink"``; compressed blobs are always copied.
            progress: a ``(done_bytes, total_bytes)`` callable, or True for a stderr bar.
            force: allow deleting or overwriting files in an unmanaged directory.
            allow_missing_references: skip references that cannot be reached (they are not
                written) instead of failing; ``http(s)://`` and ``s3://`` references are
                fetched and checked against their recorded size and ETag or digest.

        Returns:
            The resolved root.

        Example:
            >>> store.get("mnist:prod").checkout("work/mnist")  # doctest: +SKIP
        """
        rows = self._stream(allow_missing_references=allow_missing_references)
        from castore.worktree import operations  # checkout and verify only

        return operations.checkout(
            self._parts.blobs, rows, root, link=link, force=force,
            store_root=self._parts.path, stat_cache=self._stat_cache(), progress=progress,
        )

    def _default_root(self) -> Path:
        return Path("artifacts") / self.collection / (self.version or self.id)

    def download(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        path_prefix: str | None = None,
        link: str = "auto",
        progress: ProgressArg = None,
        allow_patterns: str | Iterable[str] | None = None,
        ignore_patterns: str | Iterable[str] | None = None,
        allow_missing_references: bool = False,
    ) -> Path:
        """Write this version's files (those under ``path_prefix``) into ``root``.

        Other files in ``root`` are left alone. The default root is
        ``./artifacts/<collection>/v<N>``. Same safety as :meth:`checkout`.

        Args:
            root: the target directory.
            path_prefix: only the files under this directory of the artifact.
            link: as for :meth:`checkout`.
            progress: a ``(done_bytes, total_bytes)`` callable, or True for a stderr bar.
            allow_patterns: only paths matching one of these ``fnmatch`` patterns (on the
                whole path; ``*`` also crosses ``/``, as in huggingface_hub).
            ignore_patterns: leave out paths matching any of these.
            allow_missing_references: skip ``http(s)://``, ``s3://`` and ``file://``
                references that cannot be reached instead of failing.

        Returns:
            The resolved root.

        Raises:
            RemoteError: a reference cannot be fetched (nothing was written).
            IntegrityError: stored or referenced content does not match its record.

        Example:
            >>> v.download("out", allow_patterns=["*.json"])  # doctest: +SKIP
        """
        rows = self._stream(
            path_prefix, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns,
            allow_missing_references=allow_missing_references,
        )
        from castore.worktree import operations  # checkout and verify only

        return operations.download(
            self._parts.blobs, rows, root or self._default_root(),
            path_prefix=path_prefix, link=link, store_root=self._parts.path,
            stat_cache=self._stat_cache(), progress=progress,
        )

    def file(self, root: str | os.PathLike[str] | None = None) -> Path:
        """Write the only file of a single-file version and return its path.

        Raises:
            ValueError: the version holds more (or fewer) than one file.
        """
        entries = list(self.files())
        if len(entries) != 1:
            raise ValueError(
                f"{self.ref} holds {len(entries)} files, not one; use download() instead"
            )
        return self.download(root) / entries[0].path

    def verify(self, root: str | os.PathLike[str] | None = None) -> VerifyReport:
        """Check a directory against this version, or (no root) re-hash the stored blobs.

        Returns:
            A :class:`VerifyReport` that is ok.

        Raises:
            VerificationError: ``root`` differs (``.report`` says how).
            IntegrityError: (no root) stored content is damaged or missing; ``.paths`` names
                the files.
        """
        from castore.worktree import operations  # checkout and verify only

        if root is not None:
            report = operations.verify_dir(
                self._parts.blobs, self._rows(), root, stat_cache=self._stat_cache()
            )
            if not report.ok:
                parts = [
                    f"{len(v)} {k}" for k, v in
                    (("missing", report.missing), ("modified", report.modified),
                     ("extra", report.extra)) if v
                ]
                # "checkout restores it" is only true while the stored copy is whole.
                differing = set(report.missing) | set(report.modified)
                damaged = operations.verify_blobs(
                    self._parts.blobs, (r for r in self._rows() if r[0] in differing)
                )
                if damaged:
                    remedy = (
                        f"; the stored content of {len(damaged)} of them is damaged too, so "
                        "checkout cannot restore them: run fsck(repair=True), then add those "
                        "files again"
                    )
                else:
                    remedy = " (see .report; run checkout() to restore it)"
                raise VerificationError(
                    f"{str(root)!r} does not match {self.ref}: {', '.join(parts)}{remedy}",
                    report=report,
                    damaged=damaged,
                )
            return report
        damaged = operations.verify_blobs(self._parts.blobs, self._local(self._rows()))
        if damaged:
            shown = ", ".join(map(repr, damaged[:5])) + (" …" if len(damaged) > 5 else "")
            raise IntegrityError(
                f"{self.ref}: the stored content of {len(damaged)} file(s) is damaged or "
                f"missing: {shown}; run fsck(repair=True), then add those files again",
                paths=damaged,
            )
        return VerifyReport(ok=True)

    def open(self, path: str) -> BinaryIO:
        """A streaming binary reader of one file; its digest is checked when read to the end.

        Raises:
            NotFoundError: no such file in the version.
            IntegrityError: (while reading) the stored content is damaged.
        """
        entry = self.get_entry(path)
        if entry.ref is None:
            self._parts.ensure_local([(entry.digest, entry.size)])
        return reading.open_entry(self._parts.blobs, entry)

    def copy_to(self, path: str, out: BinaryIO) -> int:
        """Write one file to the binary stream ``out``, only once all of it is verified.

        Unlike copying from :meth:`open`, damaged content never reaches ``out``: it is
        checked first, in memory when small, else in an anonymous temp file in the store's
        ``tmp/`` (the system's temp directory when the store is not writable).

        Returns:
            The number of bytes written.

        Raises:
            NotFoundError: no such file in the version.
            IntegrityError: the stored content is damaged; nothing was written.

        Example:
            >>> store.get("mnist:prod").copy_to("train.csv", sys.stdout.buffer)  # doctest: +SKIP
        """
        entry = self.get_entry(path)
        if entry.ref is None:
            self._parts.ensure_local([(entry.digest, entry.size)])
        return reading.copy_verified(
            self._parts.blobs, entry, out, spool_dir=self._spool_dir()
        )

    def _spool_dir(self) -> Path | None:
        if self._parts.read_only:
            return None
        directory = self._parts.layout.tmp_dir()
        return directory if os.access(directory, os.W_OK | os.X_OK) else None

    def read_bytes(self, path: str) -> bytes:
        """The whole (verified) content of one file."""
        with self.open(path) as fh:
            return fh.read()

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        """The whole (verified) content of one file, decoded."""
        return self.read_bytes(path).decode(encoding)

