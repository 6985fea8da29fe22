"""Writing a draft: stage files, record their entries on the pending version row.

A draft is a ``PENDING`` version row. Every added file is staged in ``tmp/`` without any lock,
then, inside one catalogue ``BEGIN IMMEDIATE`` transaction per batch, its entry is recorded on
the pending row and the blob published (DESIGN.md invariant 6): gc, which takes the same lock,
either sees the entry and keeps the blob, or ran first and the publish brings the blob back.

``add_dir`` walks the tree with :mod:`castore.artifact.walk`: ignore rules first, then
symlinks as ``API.md`` states (``follow_symlinks=``), special files refused, the store skipped.
"""

from __future__ import annotations

import itertools
import os
import stat as stat_mod
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Self

from castore._parts import Parts
from castore._progress import Progress, ProgressArg
from castore.artifact.commit import commit_draft
from castore.artifact.grouping import GROUP_BYTES, GROUP_FILES, Slot, count_done, stage_group
from castore.artifact.names import DraftNames, WalkNames, collision_error, parents
from castore.artifact.references import MAX_OBJECTS, reference_rows
from castore.errors import (
    ArtifactFinalizedError,
    InvalidPathError,
    NotFoundError,
)
from castore.manifest import ManifestRow as Row
from castore.models import ManifestEntry
from castore.paths import collision_key, validate_path
from castore.storage.fsutil import unique_tmp

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from castore.storage.blobs import StagedBlob

__all__ = ["BATCH_SIZE", "MAX_OBJECTS", "WORKERS", "DraftWriter", "Row"]

#: Files recorded per catalogue transaction by ``add_dir``.
BATCH_SIZE = 2000
#: Threads staging files at once (I/O overlaps; hashing releases the GIL).
WORKERS = min(8, (os.cpu_count() or 2) * 2)


class DraftWriter:
    """The adding side of a draft: files go in, entries are recorded on the pending row.

    :class:`castore.Draft` extends it with ``finalize`` (which returns a version handle).
    """

    def __init__(self, parts: Parts, version_id: str, collection: str, type: str) -> None:
        self._parts = parts
        self.id = version_id
        self.collection = collection
        self.type = type
        self._done = False  # finalized or discarded
        self._finalized = False
        #: The id of the run whose output this draft is (``run.draft()``), or None.
        self.producer: str | None = None
        # Every name of the draft, loaded from the catalogue when a check first needs it: an
        # add_dir into an empty draft never loads it (DraftNames, WalkNames).
        self._loaded: DraftNames | None = None

    # -- bookkeeping -----------------------------------------------------------------------

    def __repr__(self) -> str:
        state = "finalized" if self._done else f"{len(self)} files"
        return f"<Draft {self.collection} {self.id} {state}>"

    def __len__(self) -> int:
        if self._loaded is not None:
            return len(self._loaded.entries)
        return self._parts.catalog.entry_totals(self.id)[0]

    @property
    def paths(self) -> list[str]:
        """The paths in the draft, sorted."""
        if self._loaded is not None:
            return sorted(self._loaded.entries)
        return [row[0] for row in self._parts.catalog.iter_entries(self.id)]

    @property
    def _names(self) -> DraftNames:
        if self._loaded is None:
            names = DraftNames()
            for row in self._parts.catalog.iter_entries(self.id):
                names.add(row)
            self._loaded = names
        return self._loaded

    def _check_open(self) -> None:
        if self._done:
            raise ArtifactFinalizedError(self.collection)

    def _check_name(self, path: str, *, overwrite: bool, pending: _Pending | None = None) -> None:
        """Validate ``path`` and check it against the draft (and ``pending`` new names)."""
        validate_path(path)
        names = self._names
        if path in names.dirs:
            raise FileExistsError(
                f"{path!r} is a directory in the draft; remove it first or choose another name"
            )
        for parent in parents(path):
            if parent in names.entries:
                raise FileExistsError(
                    f"cannot add {path!r}: {parent!r} is a file in the draft; remove it first"
                )
        if path in names.entries and not overwrite:
            raise FileExistsError(
                f"{path!r} is already in the draft; pass overwrite=True to replace it"
            )
        for name in [*parents(path), path]:
            if name != path and (name in names.dirs or (pending and name in pending.dirs)):
                continue  # a directory already checked: its spelling is registered
            key = collision_key(name)
            other = names.keys.get(key) or (pending.keys.get(key) if pending else None)
            if other is not None and other != name:
                raise collision_error(path, name, other)
            if pending is not None:
                pending.keys[key] = name
                if name != path:
                    pending.dirs.add(name)

    def _record(
        self,
        rows: list[Row],
        staged: list[StagedBlob],
        expect: Iterable[str] = (),
        stamps: list[tuple[str, os.stat_result, str]] | None = None,
    ) -> None:
        """Record entries on the pending row and publish their blobs, in one transaction.

        ``expect`` are digests taken from the stat cache without staging: they are checked
        inside the transaction, where gc cannot run, and :class:`_BlobsGone` names the ones a
        gc removed meanwhile (the caller stages them again).
        """
        catalog, blobs = self._parts.catalog, self._parts.blobs
        try:
            # A draft's batches need no fsync: a crash loses the draft anyway, and finalize
            # commits durably (blobs synced first) before anything counts as a version.
            with catalog.write_txn(sync=False):
                state = catalog.execute(
                    "SELECT state FROM versions WHERE id = ?", (self.id,)
                ).fetchone()
                if state is None or state[0] != "PENDING":
                    raise NotFoundError(
                        f"the draft {self.id} of {self.collection!r} no longer exists (discarded "
                        "or removed by gc as stale); start a new draft",
                        ref=self.id,
                    )
                gone = blobs.missing(expect)
                if gone:
                    raise _BlobsGone(gone)
                catalog.put_entries(self.id, rows)
                blobs.publish_many(staged, sync=False)
                if stamps:  # the stat cache, in the same commit
                    catalog.stat_cache.record_many(stamps)
        except _BlobsGone:
            raise  # the staged blobs are kept for the retry
        except BaseException:
            for blob in staged:
                blobs.discard(blob)
            raise
        if self._loaded is not None:
            for row in rows:
                self._loaded.add(row)

    # -- adding ----------------------------------------------------------------------------

    def add_file(
        self, path: str | os.PathLike[str], name: str | None = None, *, overwrite: bool = False
    ) -> Self:
        """Add one local file as ``name`` (default: its basename).

        Raises:
            InvalidPathError: ``name`` is not a canonical artifact path.
            FileExistsError: ``name`` is taken and not ``overwrite``.
            FileChangedError: the file changed while it was read; nothing was stored.
        """
        self._check_open()
        source = Path(path)
        name = source.name if name is None else name
        self._check_name(name, overwrite=overwrite)
        st = os.stat(source)
        if not stat_mod.S_ISREG(st.st_mode):
            raise InvalidPathError(str(source), "it is not a regular file")
        self._add_staged([(name, str(source.absolute()), st)])
        return self

    def add_bytes(self, data: bytes, name: str, *, overwrite: bool = False) -> Self:
        """Add ``data`` as the file ``name``."""
        self._check_open()
        self._check_name(name, overwrite=overwrite)
        staged = self._parts.blobs.stage_bytes(bytes(data), sync=False, packable=True)
        self._record([(name, staged.digest, staged.size, None, False)], [staged])
        return self

    @contextmanager
    def new_file(
        self, name: str, mode: str = "w", *, encoding: str = "utf-8", overwrite: bool = False
    ) -> Iterator[IO[Any]]:
        """Write a new file of the draft: ``with draft.new_file("a.txt") as f: f.write("x")``.

        The content is added when the block ends without an exception.
        """
        self._check_open()
        if mode not in ("w", "wb"):
            raise ValueError(f"new_file mode must be 'w' or 'wb', not {mode!r}")
        self._check_name(name, overwrite=overwrite)

        tmp = unique_tmp(self._parts.layout.tmp, suffix=".new")
        try:
            if mode == "w":
                handle: IO[Any] = open(tmp, "w", encoding=encoding, newline="")  # noqa: SIM115
            else:
                handle = open(tmp, "wb")  # noqa: SIM115
            with handle:
                yield handle
            staged = self._parts.blobs.stage_file(tmp, sync=False, packable=True)
            self._record([(name, staged.digest, staged.size, None, False)], [staged])
        finally:
            tmp.unlink(missing_ok=True)

    def add_reference(
        self,
        uri: str | ManifestEntry,
        name: str | None = None,
        *,
        checksum: bool | str = True,
        size: int | None = None,
        overwrite: bool = False,
        max_objects: int | None = MAX_OBJECTS,
    ) -> Self:
        """Record an external file (or directory) by URI without storing its bytes.

        ``file://``: the size is read and, with ``checksum=True``, the digest too.
        ``http(s)://`` and ``s3://``: the size and the server's ETag (or, without one, the
        content's digest) are recorded; ``checksum`` as a digest string is recorded as given.
        A ``file://`` directory or an ``s3://bucket/prefix/`` adds one reference per file
        below it (at most ``max_objects``), under ``name`` as a prefix. A
        :class:`ManifestEntry` of another version (``v.get_entry(...)``) is recorded as it
        is: its reference, or its stored content. Checkout and download fetch and verify
        references (docs/links.md).

        Raises:
            NotFoundError: a ``file://`` path that does not exist.
            RemoteError: an ``http(s)://`` or ``s3://`` object that cannot be reached.
            ValueError: more than ``max_objects`` files, or no scheme.
        """
        self._check_open()
        if isinstance(uri, ManifestEntry):
            entry = uri
            target = entry.path if name is None else name
            self._check_name(target, overwrite=overwrite)
            expect = [entry.digest] if entry.digest and not entry.ref else []
            row: Row = (target, entry.digest, entry.size, entry.ref, entry.executable)
            try:
                self._record([row], [], expect=expect)
            except _BlobsGone:
                raise NotFoundError(
                    f"the stored content of {entry.path!r} ({entry.digest}) is no longer in the "
                    "store (removed by gc); add the file itself", ref=entry.path,
                ) from None
            return self
        rows = reference_rows(
            uri, name, self._parts.blobs.algorithm, checksum=checksum, size=size,
            max_objects=max_objects, check_name=lambda n: self._check_name(n, overwrite=overwrite),
        )
        pending = _Pending()
        for found in rows:
            self._check_name(found[0], overwrite=overwrite, pending=pending)
        for start in range(0, len(rows), BATCH_SIZE):
            self._record(rows[start : start + BATCH_SIZE], [])
        return self

    def add_dir(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        *,
        ignore: Iterable[str] = (),
        merge: bool = False,
        follow_symlinks: bool = False,
        progress: ProgressArg = None,
    ) -> Self:
        """Add a directory tree under the prefix ``name`` (default: the artifact root).

        Into an empty draft the tree is streamed (memory stays flat for millions of files)
        and added whole or not at all: on an error the draft is left empty.

        Args:
            path: the local directory.
            name: the prefix inside the artifact.
            ignore: gitignore-style patterns; ``.castoreignore`` files are honoured too.
            merge: replace files already in the draft whose content differs (else ValueError).
            follow_symlinks: store the content of files that symlinks outside ``path`` point
                to (else such a link raises InvalidPathError); links to directories are never
                followed. Ignore rules apply to links before this.
            progress: a callable receiving ``(done_bytes, total_bytes)``, or True for a
                stderr bar; the library prints nothing otherwise.

        Raises:
            InvalidPathError: a file name is not a valid artifact path, names collide, or a
                symlink (not ignored) dangles, loops, or points outside the directory without
                ``follow_symlinks``.
            UnsafeTargetError: ``path`` is the store or lies inside it (a store inside
                ``path`` is skipped, never added).
            ValueError: a special file (FIFO, socket, device) is in the tree.
            FileChangedError: a file changed while it was read; nothing was stored for it.
        """
        # Imported here: the walk and its gitignore rules (pathspec) are needed only to add a
        # directory, and importing them costs every read-only command.
        from castore.artifact.walk import check_source, walk_tree
        from castore.ignore import IgnoreRules

        self._check_open()
        root = Path(path)
        if not root.is_dir():
            raise NotADirectoryError(f"{str(root)!r} is not a directory")
        prefix = "" if not name else validate_path(name.rstrip("/")) + "/"
        store_root = self._parts.path
        check_source(root, store_root)
        rules = IgnoreRules.from_dir(root, ignore)

        def walk() -> Iterator[tuple[str, str, os.stat_result]]:
            return walk_tree(root, rules, follow_symlinks=follow_symlinks, exclude=[store_root])

        if self._loaded is None and len(self) == 0:
            self._add_walk(walk, prefix, str(root), progress=progress)
            return self
        pending = _Pending()
        items = []
        # One list, filled as the walk goes (not the walk's list, then this one).
        for rel, abspath, st in walk():
            target = prefix + rel
            self._check_name(target, overwrite=True, pending=pending)
            items.append((target, abspath, st))
        # Files already in the draft first, so a content conflict is found before new files land.
        items.sort(key=lambda item: item[0] not in self._names.entries)
        tracker = Progress(progress, sum(st.st_size for _, _, st in items))
        self._add_staged(items, replace_ok=merge, tracker=tracker)
        tracker.finish()
        return self

    def _add_walk(
        self,
        walk: Callable[[], Iterator[tuple[str, str, os.stat_result]]],
        prefix: str,
        root: str,
        *,
        progress: ProgressArg,
    ) -> None:
        """``add_dir`` into an empty draft, streamed: the walk's files are checked, staged and
        recorded a batch at a time, so memory stays flat however many files the tree holds.

        A name is checked when the walk reaches it, after earlier batches were recorded: on
        any error the entries this call recorded are removed again, leaving the draft empty
        as it was (their blobs stay until gc, as a discarded draft's do). With ``progress``
        the tree is walked once more first, to learn the total size.
        """
        names = WalkNames(prefix, root)

        def checked() -> Iterator[tuple[str, str, os.stat_result]]:
            for rel, abspath, st in walk():
                target = prefix + rel
                validate_path(target)
                names.check(target)
                yield target, abspath, st

        total = sum(st.st_size for _, _, st in walk()) if progress else 0
        tracker = Progress(progress, total)
        try:
            self._add_staged(checked(), tracker=tracker, new_only=True)
        except BaseException:
            self._parts.catalog.delete_all_entries(self.id)
            raise
        tracker.finish()

    def _add_staged(
        self,
        items: Iterable[tuple[str, str, os.stat_result]],
        *,
        replace_ok: bool = True,
        tracker: Progress | None = None,
        new_only: bool = False,
    ) -> None:
        """Stage ``(name, local path, stat)`` files in a thread pool; record them in batches.

        ``new_only``: no name is in the draft yet (a streamed add into an empty draft), so
        there is nothing to compare with and the draft's names are never loaded.

        Staging runs up to two batches ahead of recording, so hashing and writing new files
        overlaps with the catalogue transaction (and blob publishing) of the previous batch.
        """
        blobs = self._parts.blobs
        window: deque[_Batch] = deque()
        # Imported here: concurrent.futures imports logging, which read-only commands never need.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            try:
                files = iter(items)
                while chunk := list(itertools.islice(files, BATCH_SIZE)):
                    window.append(self._prepare(pool, chunk, tracker))
                    if len(window) > 2:
                        self._finish(window.popleft(), replace_ok=replace_ok, new_only=new_only)
                while window:
                    self._finish(window.popleft(), replace_ok=replace_ok, new_only=new_only)
            except BaseException:
                for batch in window:  # wait for staging in flight, then drop its temp files
                    for _, _, future in batch.futures:
                        with suppress(BaseException):
                            blobs.discard(future.result())
                raise

    def _prepare(
        self,
        pool: ThreadPoolExecutor,
        batch: list[tuple[str, str, os.stat_result]],
        tracker: Progress | None = None,
    ) -> _Batch:
        """Look a batch up in the stat cache and submit the other files for staging."""
        blobs = self._parts.blobs
        known = self._parts.catalog.stat_cache.lookup_many(st for _, _, st in batch)
        prepared = _Batch(batch)
        group: list[tuple[str, str, int]] = []
        group_bytes = 0

        def submit() -> None:
            future = pool.submit(stage_group, blobs, [abspath for _, abspath, _ in group])
            if tracker is not None:
                future.add_done_callback(count_done(tracker, group_bytes))
            for i, (name, abspath, _) in enumerate(group):
                prepared.futures.append((name, abspath, Slot(future, i)))

        for name, abspath, st in batch:
            digest = known.get((st.st_dev, st.st_ino))
            if digest is not None:  # the blob's presence is checked inside the transaction
                prepared.results[name] = (digest, st.st_size)
                if tracker is not None:
                    tracker.add(st.st_size)
                continue
            group.append((name, abspath, st.st_size))
            group_bytes += st.st_size
            if len(group) >= GROUP_FILES or group_bytes >= GROUP_BYTES:
                submit()
                group, group_bytes = [], 0
        if group:
            submit()
        return prepared

    def _finish(self, batch: _Batch, *, replace_ok: bool, new_only: bool) -> None:
        """Wait for a batch's staging, then record it (one transaction) and stamp the cache."""
        blobs = self._parts.blobs
        staged: list[tuple[str, str, StagedBlob]] = []
        errors: list[BaseException] = []
        for name, abspath, future in batch.futures:
            try:
                blob = future.result()
            except BaseException as exc:  # wait for all, then raise the first
                errors.append(exc)
                continue
            staged.append((name, abspath, blob))
            batch.results[name] = (blob.digest, blob.size)
        batch.futures = []
        try:
            if errors:
                raise errors[0]
            rows: list[Row] = []
            olds: dict[str, Row] = {} if new_only else self._names.entries
            for name, _, st in batch.items:
                digest, size = batch.results[name]
                # any x bit set: executable, as git and DVC's isexec read it
                executable = bool(st.st_mode & 0o111)
                old = olds.get(name)
                changed = old is not None and (old[1] != digest or any(old[4:]) != executable)
                if changed and not replace_ok:
                    raise ValueError(
                        f"{name!r} is already in the draft with other content or mode; pass "
                        "merge=True to replace it"
                    )
                rows.append((name, digest, size, None, executable))
        except BaseException:
            for _, _, blob in staged:
                blobs.discard(blob)
            raise
        cached = {batch.results[n][0] for n, _, _ in batch.items} - {b.digest for *_, b in staged}
        stat_of = {name: st for name, _, st in batch.items}

        def stamps() -> list[tuple[str, os.stat_result, str]]:
            return [
                (abspath, blob.source_stat or stat_of[name], str(blob.digest))
                for name, abspath, blob in staged
            ]

        try:
            self._record(rows, [b for *_, b in staged], expect=cached, stamps=stamps())
        except _BlobsGone as gone:
            # gc removed cached blobs between lookup and record: store them again.
            for name, abspath, _ in batch.items:
                if batch.results[name][0] in gone.digests:
                    blob = blobs.stage_file(abspath, sync=False, packable=True)
                    staged.append((name, abspath, blob))
            self._record(
                rows, [b for *_, b in staged], expect=cached - gone.digests, stamps=stamps()
            )

    def remove(self, path: str | ManifestEntry) -> Self:
        """Remove a file (a path or its :class:`ManifestEntry`), or every file under a
        directory prefix.

        Raises:
            NotFoundError: nothing in the draft is at ``path``.
        """
        self._check_open()
        if isinstance(path, ManifestEntry):
            path = path.path
        path = path.rstrip("/")
        names = self._names
        if path in names.entries:
            gone = [path]
        elif path in names.dirs:
            gone = [p for p in names.entries if p.startswith(path + "/")]
        else:
            raise NotFoundError(f"{path!r} is not in the draft of {self.collection!r}", ref=path)
        self._parts.catalog.delete_entries(self.id, gone)
        for name in gone:
            names.remove(name)
        return self

    # -- ending ----------------------------------------------------------------------------

    def _commit(self, aliases: Iterable[str], tags: Iterable[str]) -> dict[str, Any]:
        """Finalize: commit the entries as a version; the draft takes no more changes."""
        self._check_open()
        row = commit_draft(
            self._parts, self.id, self.collection,
            aliases=aliases, tags=tags, producer=self.producer,
        )
        self._done = self._finalized = True
        return row

    def discard(self) -> None:
        """Drop the draft and its entries (its blobs stay until gc). Idempotent."""
        if self._done:
            if self._finalized:
                raise ArtifactFinalizedError(self.collection)
            return
        # A failed commit may have written the version's marker: drop it first, or the
        # discarded draft would look like an unknown version to fsck and gc.
        self._parts.markers.remove(self.id)
        self._parts.catalog.discard_draft(self.id)
        self._done = True



class _Pending:
    """Names an ``add_dir`` is about to add: collision key → spelling, and directories."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}
        self.dirs: set[str] = set()

    def __bool__(self) -> bool:
        return True


class _Batch:
    """Files of one ``add_dir`` batch: digests known so far and staging in flight."""

    def __init__(self, items: list[tuple[str, str, os.stat_result]]) -> None:
        self.items = items
        self.results: dict[str, tuple[str, int]] = {}
        self.futures: list[tuple[str, str, Slot]] = []


class _BlobsGone(Exception):
    def __init__(self, digests: set[str]) -> None:
        super().__init__(sorted(digests))
        self.digests = digests
