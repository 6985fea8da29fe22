"""Materialize versions: checkout, download, verify, open and diff over manifest entries.

Pure functions over a :class:`~castore.blobs.BlobStore` and a list of
:class:`~castore.models.ManifestEntry`; the store and the handles compose them. The rules
(``docs/checkout.md``):

1. Plan before acting: every path is validated again, every blob (or ``file://`` reference) must
   exist, and the target must be safe (:mod:`castore._containment`) before anything changes.
2. Stage, then commit: every file to write is placed in a private staging directory inside the
   root and checked (digest and size while streaming, for copies), and only when *all* of them
   are good are they renamed into place. A missing or corrupt blob leaves the target unchanged.
3. Never follow a link found in the root; a rename replaces a link or breaks a hardlink at a
   target path, so nothing outside the root is written (reliability.md §3.7 tests 35–39).
4. Skip files that are already correct: the stat cache first, then a hash.
"""

from __future__ import annotations

import io
import os
import secrets
import stat
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from castore import _containment as _c
from castore import _linking as _l
from castore.errors import (
    ConfigurationError,
    IntegrityError,
    InvalidPathError,
    NotFoundError,
    RemoteError,
    UnsafeTargetError,
)
from castore.models import Diff, DiffEntry, ManifestEntry, VerifyReport
from castore.paths import validate_path

if TYPE_CHECKING:
    from castore.blobs import BlobStore

__all__ = [
    "MemoryStatCache",
    "ProgressArg",
    "StatCache",
    "checkout",
    "diff",
    "download",
    "open_entry",
    "read_bytes",
    "verify_blobs",
    "verify_dir",
]

ProgressArg = Callable[[int, int], None] | bool | None
_CHUNK = 1024 * 1024
#: Below this many files the work runs in the calling thread.
_POOL_MIN = 16


class StatCache(Protocol):
    """Remembers the digest of a file by its stat, so unchanged files are not re-read."""

    def lookup(self, path: str, st: os.stat_result) -> str | None:
        """The digest recorded for ``path`` if its stat still matches, else None."""

    def record_many(self, items: Iterable[tuple[str, os.stat_result, str]]) -> None:
        """Record ``(path, stat, digest)`` triples."""


class MemoryStatCache:
    """A :class:`StatCache` in a dict (tests, benchmarks, one-off scripts)."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[tuple[int, int, int, int, int], str]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(st: os.stat_result) -> tuple[int, int, int, int, int]:
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def lookup(self, path: str, st: os.stat_result) -> str | None:
        with self._lock:
            found = self._data.get(path)
        return found[1] if found is not None and found[0] == self._key(st) else None

    def record_many(self, items: Iterable[tuple[str, os.stat_result, str]]) -> None:
        with self._lock:
            for path, st, digest in items:
                self._data[path] = (self._key(st), digest)


# -- sources -------------------------------------------------------------------------------


def _ref_path(entry: ManifestEntry) -> Path:
    """The local file behind an external ``file://`` reference."""
    ref = entry.ref or ""
    parsed = urllib.parse.urlparse(ref)
    if parsed.scheme != "file":
        raise RemoteError(
            f"cannot materialize {entry.path!r}: its reference {ref!r} is not a file:// URI, "
            "and fetching other schemes is not supported yet; copy the data locally and add it "
            "to a version instead"
        )
    return Path(urllib.parse.unquote(parsed.path))


def open_entry(blobs: BlobStore, entry: ManifestEntry) -> BinaryIO:
    """A streaming reader of one entry's content; digest and size are checked at EOF.

    Raises:
        NotFoundError: the blob (or referenced file) is missing.
        IntegrityError: (while reading) the content does not match.
        RemoteError: the entry references a non-``file://`` location.
    """
    if entry.ref is not None:
        path = _ref_path(entry)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - the reader owns it
        except FileNotFoundError as exc:
            raise NotFoundError(
                f"the file {str(path)!r} referenced by {entry.path!r} is missing", ref=entry.ref
            ) from exc
        what = f"the file {str(path)!r} referenced by {entry.path!r}"
        return io.BufferedReader(_l.HashingReader(fh, entry.digest, entry.size, what), _CHUNK)
    if entry.digest is None:
        raise IntegrityError(f"entry {entry.path!r} has neither a digest nor a reference")
    return blobs.open(entry.digest, size=entry.size)


def read_bytes(blobs: BlobStore, entry: ManifestEntry) -> bytes:
    """The whole (verified) content of one entry."""
    with open_entry(blobs, entry) as fh:
        return fh.read()


# -- planning ------------------------------------------------------------------------------


def _validate_entries(entries: Iterable[ManifestEntry]) -> list[ManifestEntry]:
    """Validate every path again (defence in depth against a tampered catalogue row)."""
    out = list(entries)
    paths: set[str] = set()
    for entry in out:
        if validate_path(entry.path) != entry.path:
            raise InvalidPathError(entry.path, "not in canonical form")
        if entry.path in paths:
            raise InvalidPathError(entry.path, "listed twice (collision)")
        paths.add(entry.path)
    for entry in out:
        for parent in _c.iter_parents(entry.path):
            if parent in paths:
                raise InvalidPathError(
                    entry.path, f"collision: {parent!r} is both a file and a directory"
                )
    return out


def _check_sources(blobs: BlobStore, entries: Sequence[ManifestEntry]) -> None:
    missing: list[tuple[str, str]] = []
    for entry in entries:
        if entry.ref is not None:
            if not _ref_path(entry).is_file():
                missing.append((entry.path, entry.ref))
        elif entry.digest is None or not blobs.exists(entry.digest):
            missing.append((entry.path, entry.digest or "<no digest>"))
    if missing:
        shown = ", ".join(f"{p!r} ({d})" for p, d in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise IntegrityError(
            f"cannot materialize: the content of {shown}{more} is missing from the store; "
            "nothing was changed (run castore fsck, or pull the version again)",
            digest=missing[0][1],
            paths=[p for p, _ in missing],
        )


class _Progress:
    """Thread-safe byte counter that reports to a callable or a stderr bar."""

    def __init__(self, progress: ProgressArg, total: int) -> None:
        self.total = total
        self.done = 0
        self._lock = threading.Lock()
        self._last = 0.0
        if progress is True:
            self._cb: Callable[[int, int], None] | None = _stderr_bar
        elif callable(progress):
            self._cb = progress
        else:
            self._cb = None
        if self._cb:
            self._cb(0, total)

    def add(self, n: int) -> None:
        if self._cb is None:
            return
        with self._lock:
            self.done += n
            now = time.monotonic()
            if now - self._last < 0.05 and self.done < self.total:
                return
            self._last = now
            self._cb(min(self.done, self.total), self.total)

    def finish(self) -> None:
        if self._cb is not None and self.done < self.total:
            self.done = self.total
            self._cb(self.total, self.total)


def _stderr_bar(done: int, total: int) -> None:
    """A one-line progress bar on stderr (``progress=True``)."""
    frac = done / total if total else 1.0
    width = 30
    bar = "#" * int(frac * width)
    sys.stderr.write(
        f"\rcastore [{bar:<{width}}] {frac:6.1%} {done / 1e6:,.1f}/{total / 1e6:,.1f} MB"
    )
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _run(fn: Callable[..., object], items: Sequence[object], workers: int | None) -> list[object]:
    """Apply ``fn`` to each item, in a thread pool when there are many; first error wins."""
    if len(items) < _POOL_MIN or workers == 1:
        return [fn(item) for item in items]
    n = workers or min(16, 4 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="castore-io") as pool:
        futures: list[Future[object]] = [pool.submit(fn, item) for item in items]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _check_existing(
    entries: Sequence[ManifestEntry],
    root: Path,
    root_fd: int,
    scan: _c.Scan,
    blobs: BlobStore,
    mode: str,
    stat_cache: StatCache | None,
    workers: int | None,
    progress: _Progress | None = None,
) -> list[bool]:
    """For each entry: is the file at its path already right (content and link kind)?"""
    cursors = _c.ThreadCursors(root_fd)
    learned: list[tuple[str, os.stat_result, str]] = []
    lock = threading.Lock()

    def check(entry: ManifestEntry) -> bool:
        ok = _entry_ok(entry)
        if ok and progress is not None:
            progress.add(entry.size)
        return ok

    def _entry_ok(entry: ManifestEntry) -> bool:
        st = scan.files.get(entry.path)
        if st is None or entry.digest is None:
            return False
        if st.st_size != entry.size and not stat.S_ISLNK(st.st_mode):
            return False
        if any(p in scan.files for p in _c.iter_parents(entry.path)):
            return False
        if stat.S_ISLNK(st.st_mode):
            if mode != "symlink":
                return False
            try:
                dir_fd = cursors.get().dir_of(entry.path)
            except (OSError, UnsafeTargetError):
                return False
            return _links_to_blob(dir_fd, entry, blobs) is not None
        if not stat.S_ISREG(st.st_mode):
            return False
        if st.st_nlink > 1:
            raw = blobs.raw_path(entry.digest)
            if raw is not None and os.path.samestat(st, os.stat(raw)):
                # the blob itself: right for hardlink mode; a copy must replace it so that an
                # edit cannot damage the store
                return mode == "hardlink"
        abs_path = str(root / entry.path)
        if stat_cache is not None and stat_cache.lookup(abs_path, st) == entry.digest:
            return True
        try:
            dir_fd = cursors.get().dir_of(entry.path)
        except (OSError, UnsafeTargetError):
            return False
        ok, st2 = _l.file_matches(dir_fd, entry.path.rsplit("/", 1)[-1], entry)
        if ok and st2 is not None and stat_cache is not None:
            with lock:
                learned.append((abs_path, st2, entry.digest))
        return ok

    try:
        result = [bool(r) for r in _run(check, entries, workers)]  # type: ignore[arg-type]
    finally:
        cursors.close()
    if learned and stat_cache is not None:
        stat_cache.record_many(learned)
    return result


def _links_to_blob(dir_fd: int, entry: ManifestEntry, blobs: BlobStore) -> Path | None:
    """The blob a symlink at ``entry.path`` points to, if it is this entry's raw blob."""
    if entry.digest is None:
        return None
    raw = blobs.raw_path(entry.digest)
    if raw is None:
        return None
    try:
        target = os.readlink(entry.path.rsplit("/", 1)[-1], dir_fd=dir_fd)
    except OSError:
        return None
    return raw if os.path.abspath(target) == os.path.abspath(raw) else None


# -- checkout and download -------------------------------------------------------------------


def _top_level(paths: set[str]) -> list[str]:
    """The members of ``paths`` that have no ancestor in ``paths``."""
    return sorted(p for p in paths if not any(q in paths for q in _c.iter_parents(p)))


def _has_marker(root_fd: int) -> bool:
    try:
        st = os.stat(_c.MARKER_NAME, dir_fd=root_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(st.st_mode)


def _write_marker(root_fd: int) -> None:
    for _ in range(3):
        try:
            fd = os.open(
                _c.MARKER_NAME,
                os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW,
                0o666,
                dir_fd=root_fd,
            )
        except OSError:
            _c.remove_entry(root_fd, _c.MARKER_NAME, is_dir=True)
            continue
        try:
            os.write(fd, b"managed by castore checkout: extra files here are removed\n")
        finally:
            os.close(fd)
        return


class _Job:
    """One file to stage: where it comes from and how it is placed."""

    __slots__ = ("entry", "how", "name", "raw")

    def __init__(self, entry: ManifestEntry, how: str, raw: Path | None, name: str) -> None:
        self.entry, self.how, self.raw, self.name = entry, how, raw, name


def _plan_jobs(
    blobs: BlobStore,
    todo: Sequence[ManifestEntry],
    mode: str,
    target: Path,
    root_fd: int,
    staging_fd: int,
) -> list[_Job]:
    jobs: list[_Job] = []
    reflink_ok: bool | None = None
    same_dev: bool | None = None
    for i, entry in enumerate(todo):
        raw = blobs.raw_path(entry.digest) if entry.ref is None and entry.digest else None
        if entry.ref is not None or raw is None or mode == "copy":
            how = "stream" if raw is None else "copy_raw"
        elif mode in ("auto", "reflink"):
            if reflink_ok is None:
                reflink_ok = _l.reflink_supported(raw, staging_fd, probe_name=".probe")
                if not reflink_ok and mode == "reflink":
                    raise _l.reflink_error(raw, target)
            how = "reflink" if reflink_ok else "copy_raw"
        else:
            if same_dev is None:
                same_dev = os.stat(raw).st_dev == os.fstat(root_fd).st_dev
                if not same_dev and mode == "hardlink":
                    raise ConfigurationError(
                        f"link='hardlink' needs the target {str(target)!r} on the same "
                        "filesystem as the store; use link='copy' or link='symlink'"
                    )
            how = mode
        jobs.append(_Job(entry, how, raw, str(i)))
    return jobs


def _stage(blobs: BlobStore, job: _Job, staging_fd: int, tracker: _Progress) -> None:
    entry = job.entry
    try:
        if job.how == "copy_raw":
            assert job.raw is not None
            _l.copy_raw(job.raw, entry, staging_fd, job.name)
        elif job.how == "stream":
            with open_entry(blobs, entry) as src:
                _l.place_stream(src, staging_fd, job.name)
        elif job.how == "reflink":
            assert job.raw is not None
            _l.place_reflink(job.raw, staging_fd, job.name)
            ok, _ = _l.file_matches(staging_fd, job.name, entry)
            if not ok:
                raise IntegrityError(f"blob {entry.digest} is damaged", digest=entry.digest)
        else:
            assert job.raw is not None
            _l.make_readonly(job.raw)
            if os.stat(job.raw).st_size != entry.size:
                raise IntegrityError(f"blob {entry.digest} has the wrong size", digest=entry.digest)
            if job.how == "hardlink":
                _l.place_hardlink(job.raw, staging_fd, job.name)
            else:
                _l.place_symlink(job.raw, staging_fd, job.name)
    except IntegrityError as exc:
        if exc.paths:
            raise
        raise IntegrityError(
            f"cannot materialize {entry.path!r}: {exc.message}; the target was left unchanged",
            digest=entry.digest,
            paths=[entry.path],
        ) from exc
    except (NotFoundError, FileNotFoundError) as exc:
        raise IntegrityError(
            f"cannot materialize {entry.path!r}: its content {entry.digest} vanished from the "
            "store while reading; the target was left unchanged (run castore fsck)",
            digest=entry.digest,
            paths=[entry.path],
        ) from exc
    tracker.add(entry.size)


def _materialize(
    blobs: BlobStore,
    entries: Iterable[ManifestEntry],
    root: str | os.PathLike[str],
    *,
    link: str,
    store_root: str | os.PathLike[str],
    exact: bool,
    force: bool,
    stat_cache: StatCache | None,
    progress: ProgressArg,
    workers: int | None,
) -> Path:
    mode = _l.check_mode(link)
    wanted_list = _validate_entries(entries)
    target = _c.check_target(root, store_root)
    _check_sources(blobs, wanted_list)
    root_fd, created = _c.open_root(target, create=True)
    staging: str | None = None
    staging_fd = -1
    committing = False
    try:
        wanted = {e.path for e in wanted_list}
        scan = _c.scan_tree(root_fd, skip_top=frozenset({_c.MARKER_NAME} - wanted))
        stale = {d for d in scan.dirs if "/" not in d and d.startswith(_c.STAGING_PREFIX)}
        for d in stale:
            scan.dirs.difference_update({x for x in scan.dirs if x == d or x.startswith(d + "/")})
            for f in [x for x in scan.files if x.startswith(d + "/")]:
                del scan.files[f]
        tracker = _Progress(progress, sum(e.size for e in wanted_list))
        ok = _check_existing(
            wanted_list, target, root_fd, scan, blobs, mode, stat_cache, workers, tracker
        )
        todo = [e for e, good in zip(wanted_list, ok, strict=True) if not good]
        needed = {p for e in wanted_list for p in _c.iter_parents(e.path)}
        removals: list[tuple[str, bool]] = []
        if exact:
            extra_dirs = _top_level(scan.dirs - needed)
            under = set(extra_dirs)
            extra_files = [
                p
                for p in scan.files
                if p not in wanted and not any(q in under for q in _c.iter_parents(p))
            ]
            if not force and not _has_marker(root_fd):
                doomed = sorted(
                    extra_files + extra_dirs + [e.path for e in todo if e.path in scan.files]
                )
                if doomed:
                    raise UnsafeTargetError(
                        f"{str(target)!r} holds files that a checkout would delete or overwrite "
                        f"({', '.join(map(repr, doomed[:5]))}{' …' if len(doomed) > 5 else ''}) "
                        "and was not made by castore checkout; empty it, use download(), or "
                        "pass force=True",
                        path=target,
                    )
            removals = [(p, False) for p in extra_files] + [(d, True) for d in extra_dirs]
            removals += [(d, True) for d in sorted(stale)]
        else:
            for e in todo:
                if e.path in scan.dirs:
                    raise UnsafeTargetError(
                        f"a directory stands where the file {e.path!r} goes in {str(target)!r};"
                        " remove it or use checkout()",
                        path=target / e.path,
                    )
        if todo:
            staging = _c.STAGING_PREFIX + secrets.token_hex(6)
            os.mkdir(staging, 0o700, dir_fd=root_fd)
            staging_fd = _c.open_subdir(root_fd, staging, create=False)
            jobs = _plan_jobs(blobs, todo, mode, target, root_fd, staging_fd)
            _run(lambda job: _stage(blobs, job, staging_fd, tracker), jobs, workers)
        else:
            jobs = []
        committing = True
        if exact:
            _write_marker(root_fd)
        with _c.DirCursor(root_fd, create=False) as cursor:
            for path, is_dir in sorted(removals, key=lambda r: _c.sort_key(r[0])):
                fd = cursor.dir_of(path)
                _c.remove_entry(fd, path.rsplit("/", 1)[-1], is_dir=is_dir)
        learned = _commit(jobs, target, root_fd, staging_fd, stat_cache)
        if learned and stat_cache is not None:
            stat_cache.record_many(learned)
        tracker.finish()
    except BaseException:
        if staging is not None:
            _c.remove_entry(root_fd, staging, is_dir=True)
            staging = None
        if created and not committing:
            try:
                os.rmdir(target)
            except OSError:
                pass
        raise
    finally:
        if staging_fd >= 0:
            os.close(staging_fd)
        if staging is not None:
            _c.remove_entry(root_fd, staging, is_dir=True)
        os.close(root_fd)
    return target


def _commit(
    jobs: Sequence[_Job],
    target: Path,
    root_fd: int,
    staging_fd: int,
    stat_cache: StatCache | None,
) -> list[tuple[str, os.stat_result, str]]:
    """Rename every staged file into place, making directories (never following links)."""
    learned: list[tuple[str, os.stat_result, str]] = []
    with _c.DirCursor(root_fd, create=True) as cursor:
        for job in sorted(jobs, key=lambda j: _c.sort_key(j.entry.path)):
            fd = cursor.dir_of(job.entry.path)
            name = job.entry.path.rsplit("/", 1)[-1]
            try:
                os.rename(job.name, name, src_dir_fd=staging_fd, dst_dir_fd=fd)
            except (IsADirectoryError, NotADirectoryError, OSError) as exc:
                if isinstance(exc, (IsADirectoryError, NotADirectoryError)) or exc.errno in (
                    39,
                    21,
                ):
                    raise UnsafeTargetError(
                        f"a directory appeared at {job.entry.path!r} in {str(target)!r} while "
                        "the checkout ran; nothing was written through it",
                        path=target / job.entry.path,
                    ) from exc
                raise
            if stat_cache is not None and job.how in ("copy_raw", "stream", "reflink"):
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                learned.append((str(target / job.entry.path), st, job.entry.digest or ""))
    return learned


def checkout(
    blobs: BlobStore,
    entries: Iterable[ManifestEntry],
    root: str | os.PathLike[str],
    *,
    link: str = "auto",
    store_root: str | os.PathLike[str],
    force: bool = False,
    stat_cache: StatCache | None = None,
    progress: ProgressArg = None,
    workers: int | None = None,
) -> Path:
    """Make ``root`` hold exactly ``entries``: write what differs, remove everything else.

    Args:
        blobs: the store's blobs.
        entries: the version's manifest entries.
        root: the target directory (created if missing).
        link: ``"auto"``, ``"copy"``, ``"hardlink"``, ``"symlink"`` or ``"reflink"``.
        store_root: the store's directory (targets overlapping it are refused).
        force: allow deleting or overwriting files in a non-empty directory that castore did
            not check out before (it carries no ``.castore-checkout`` marker).
        stat_cache: skip re-hashing files whose stat is unchanged since castore wrote them.
        progress: ``(done_bytes, total_bytes)`` callable, or True for a stderr bar.
        workers: threads for reading and writing (default: 4 per CPU, at most 16).

    Returns:
        The resolved root.

    Raises:
        IntegrityError: a blob is missing or damaged; the target is left unchanged.
        UnsafeTargetError: the root is unsafe, or links keep being swapped in while it runs.
        InvalidPathError: a manifest path is not canonical (a tampered catalogue).
        ConfigurationError: the link mode cannot work here (reflink unsupported, hardlink
            across filesystems).
    """
    return _materialize(
        blobs,
        entries,
        root,
        link=link,
        store_root=store_root,
        exact=True,
        force=force,
        stat_cache=stat_cache,
        progress=progress,
        workers=workers,
    )


def download(
    blobs: BlobStore,
    entries: Iterable[ManifestEntry],
    root: str | os.PathLike[str],
    *,
    path_prefix: str | None = None,
    link: str = "auto",
    store_root: str | os.PathLike[str],
    stat_cache: StatCache | None = None,
    progress: ProgressArg = None,
    workers: int | None = None,
) -> Path:
    """Write ``entries`` (those whose path starts with ``path_prefix``) into ``root``.

    Files not in the selection are left alone. Same safety and arguments as :func:`checkout`.
    """
    selected = [e for e in entries if path_prefix is None or e.path.startswith(path_prefix)]
    return _materialize(
        blobs,
        selected,
        root,
        link=link,
        store_root=store_root,
        exact=False,
        force=True,
        stat_cache=stat_cache,
        progress=progress,
        workers=workers,
    )


# -- verify and diff ---------------------------------------------------------------------------


def verify_dir(
    blobs: BlobStore,
    entries: Iterable[ManifestEntry],
    root: str | os.PathLike[str],
    *,
    stat_cache: StatCache | None = None,
    workers: int | None = None,
) -> VerifyReport:
    """Compare a directory with ``entries``: which files are missing, modified or extra.

    Regular files are checked by the stat cache, then by hashing. A symlink castore made into the
    store counts as the entry when it points at this entry's blob and the blob is intact; a
    hardlink shares the blob's inode, so editing it damages the store: it is reported as
    modified here (and by ``fsck`` as a damaged blob). Nothing is followed out of the root.
    """
    wanted_list = _validate_entries(entries)
    target = Path(os.path.realpath(os.fspath(root)))
    try:
        root_fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        missing = sorted(e.path for e in wanted_list)
        return VerifyReport(ok=not missing, missing=missing)
    try:
        wanted = {e.path for e in wanted_list}
        scan = _c.scan_tree(root_fd, skip_top=frozenset({_c.MARKER_NAME} - wanted))
        extra = sorted(
            p for p in scan.files if p not in wanted and not p.startswith(_c.STAGING_PREFIX)
        )
        present = [e for e in wanted_list if e.path in scan.files]
        missing = sorted(e.path for e in wanted_list if e.path not in scan.files)
        cursors = _c.ThreadCursors(root_fd)

        def good(entry: ManifestEntry) -> bool:
            st = scan.files[entry.path]
            try:
                dir_fd = cursors.get().dir_of(entry.path)
            except (OSError, UnsafeTargetError):
                return False
            if stat.S_ISLNK(st.st_mode):
                if _links_to_blob(dir_fd, entry, blobs) is None or entry.digest is None:
                    return False
                try:
                    blobs.verify(entry.digest, size=entry.size)
                except (IntegrityError, NotFoundError, OSError):
                    return False
                return True
            if not stat.S_ISREG(st.st_mode) or st.st_size != entry.size:
                return False
            abs_path = str(target / entry.path)
            if stat_cache is not None and stat_cache.lookup(abs_path, st) == entry.digest:
                return True
            return _l.file_matches(dir_fd, entry.path.rsplit("/", 1)[-1], entry)[0]

        try:
            results = _run(good, present, workers)  # type: ignore[arg-type]
        finally:
            cursors.close()
    finally:
        os.close(root_fd)
    modified = sorted(e.path for e, r in zip(present, results, strict=True) if not r)
    return VerifyReport(
        ok=not (missing or modified or extra), missing=missing, modified=modified, extra=extra
    )


def verify_blobs(
    blobs: BlobStore, entries: Iterable[ManifestEntry], *, workers: int | None = None
) -> list[str]:
    """Re-hash the stored content of ``entries``; return the sorted paths whose content is bad.

    A missing blob counts as damaged. ``file://`` references with a recorded digest are re-hashed
    too; other references are skipped (nothing local to check).
    """
    by_key: dict[tuple[str, str], list[ManifestEntry]] = {}
    for entry in entries:
        key = (entry.ref or "", entry.digest or "")
        by_key.setdefault(key, []).append(entry)

    def damaged(group: list[ManifestEntry]) -> bool:
        entry = group[0]
        if entry.ref is not None and (
            entry.digest is None or urllib.parse.urlparse(entry.ref).scheme != "file"
        ):
            return False
        try:
            if entry.ref is None and entry.digest is not None:
                blobs.verify(entry.digest, size=entry.size)
            else:
                with open_entry(blobs, entry) as fh:
                    while fh.read(_CHUNK):
                        pass
        except (IntegrityError, NotFoundError, OSError):
            return True
        return False

    groups = list(by_key.values())
    flags = _run(damaged, groups, workers)  # type: ignore[arg-type]
    return sorted(e.path for g, bad in zip(groups, flags, strict=True) if bad for e in g)


def diff(
    entries_a: Iterable[ManifestEntry],
    entries_b: Iterable[ManifestEntry],
    *,
    a: str = "a",
    b: str = "b",
) -> Diff:
    """What changed from ``entries_a`` to ``entries_b``: added, removed and modified paths.

    An entry is modified when its digest, size or reference differs. Lists are sorted by path.
    """
    left = {e.path: e for e in entries_a}
    right = {e.path: e for e in entries_b}
    added = [
        DiffEntry(path=p, size_b=right[p].size, digest_b=right[p].digest)
        for p in sorted(right.keys() - left.keys())
    ]
    removed = [
        DiffEntry(path=p, size_a=left[p].size, digest_a=left[p].digest)
        for p in sorted(left.keys() - right.keys())
    ]
    modified = [
        DiffEntry(
            path=p,
            size_a=left[p].size,
            size_b=right[p].size,
            digest_a=left[p].digest,
            digest_b=right[p].digest,
        )
        for p in sorted(left.keys() & right.keys())
        if (left[p].digest, left[p].size, left[p].ref)
        != (right[p].digest, right[p].size, right[p].ref)
    ]
    return Diff(a=a, b=b, added=added, removed=removed, modified=modified)
