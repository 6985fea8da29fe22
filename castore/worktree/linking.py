"""Link modes: probe what a filesystem pair can do, and place one file by each mode.

Modes (``API.md``): ``"copy"`` streams the blob through its verifying reader; ``"reflink"``
clones a raw blob with the ``FICLONE`` ioctl (copy-on-write, btrfs/XFS/bcachefs); ``"hardlink"``
and ``"symlink"`` share the raw blob file itself, which is made read-only first (DVC's
"protected" mode, dvc#859: an edited link would otherwise corrupt the store). ``"auto"`` picks
reflink where the pair of filesystems supports it, else copy. Blobs stored zstd-compressed cannot
be shared and are always decompressed (copied).

Executable entries are created with mode ``0o777`` less the umask (git's rule; 0o755 under the
usual umask 022), other files with ``0o666`` less the umask. A blob's mode is never changed for
an executable: one blob may back executable and plain entries alike, so executables are always
copied, even in ``"hardlink"`` and ``"symlink"`` modes.

Support is probed once per (store device, target device) pair and kept in memory, the way DVC's
``test_links`` probes a cache once.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import threading
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, get_args

from castore.digest import Digest
from castore.errors import ConfigurationError, IntegrityError, NotFoundError, RemoteError
from castore.models import LinkMode
from castore.storage.external import is_etag, is_remote, open_remote
from castore.storage.fsutil import translate_oserror

# Every byte a checkout or download writes goes through this one name, so tests
# (tests/harness.py enospc_after(at="checkout")) can fill the disk mid-file.
from castore.storage.fsutil import write_all as _write_all
from castore.storage.hashing import new_hasher
from castore.storage.seekable import SeekableReader, buffered
from castore.worktree.entries import Entry

if TYPE_CHECKING:
    from castore.storage.blobs import BlobStore

__all__ = [
    "CHUNK",
    "FICLONE",
    "LINK_MODES",
    "LinkMode",
    "check_mode",
    "copy_raw",
    "file_matches",
    "file_mode",
    "hash_fd",
    "is_executable",
    "make_readonly",
    "open_source",
    "out_of_space",
    "place_bytes",
    "place_hardlink",
    "place_reflink",
    "place_stream",
    "place_symlink",
    "ref_path",
    "reflink_supported",
]

LINK_MODES: tuple[str, ...] = get_args(LinkMode)
#: ``_IOW(0x94, 9, int)`` from ``linux/fs.h``.
FICLONE = 0x40049409
CHUNK = 1024 * 1024
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_NO_REFLINK = {
    errno.EOPNOTSUPP,
    errno.ENOTSUP,
    errno.EXDEV,
    errno.EINVAL,
    errno.ENOTTY,
    errno.EPERM,
    errno.ENOSYS,
    errno.EBADF,
}

_probe_lock = threading.Lock()
_reflink_cache: dict[tuple[int, int], bool] = {}


def file_mode(entry: Entry) -> int:
    """The mode to create ``entry``'s file with (the umask applies): 0o777 or 0o666."""
    return 0o777 if entry.executable else 0o666


def is_executable(st_mode: int) -> bool:
    """Whether a file's mode counts as executable: any ``x`` bit set, as git reads it."""
    return bool(st_mode & 0o111)


def check_mode(link: str) -> str:
    """Return ``link`` if it names a link mode, else raise ``ConfigurationError``."""
    if link not in LINK_MODES:
        raise ConfigurationError(
            f"unknown link mode {link!r}; choose one of {', '.join(LINK_MODES)}"
        )
    return link


def _fs_name(path: str | os.PathLike[str]) -> str:
    """The filesystem type of ``path`` from /proc/mounts (best effort, for messages)."""
    try:
        target = os.path.realpath(path)
        best, fstype = "", "unknown"
        with open("/proc/mounts", encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 3:
                    mnt = parts[1].replace("\\040", " ")
                    inside = target == mnt or target.startswith(mnt.rstrip("/") + "/")
                    if inside and len(mnt) >= len(best):
                        best, fstype = mnt, parts[2]
        return fstype
    except OSError:
        return "unknown"


def reflink_supported(src: str | os.PathLike[str], dst_dir_fd: int, *, probe_name: str) -> bool:
    """Whether ``FICLONE`` works from ``src``'s filesystem into ``dst_dir_fd``'s; probed once.

    The probe clones ``src`` (a raw blob) into ``probe_name`` inside ``dst_dir_fd`` and removes
    the clone; the answer is cached per (source device, target device).
    """
    key = (os.stat(src).st_dev, os.fstat(dst_dir_fd).st_dev)
    with _probe_lock:
        known = _reflink_cache.get(key)
    if known is not None:
        return known
    ok = False
    try:
        place_reflink(src, dst_dir_fd, probe_name)
        ok = True
    except OSError as exc:
        if exc.errno not in _NO_REFLINK:
            raise
    finally:
        try:
            os.unlink(probe_name, dir_fd=dst_dir_fd)
        except FileNotFoundError:
            pass
    with _probe_lock:
        _reflink_cache[key] = ok
    return ok


def reflink_error(src: str | os.PathLike[str], target: Path) -> ConfigurationError:
    """The error for ``link="reflink"`` where the filesystems cannot clone."""
    return ConfigurationError(
        f"link='reflink' is not supported from the store ({_fs_name(src)}) to the target "
        f"{str(target)!r} ({_fs_name(target)}): reflinks need btrfs, XFS or bcachefs with both "
        "on the same filesystem; use link='auto' or link='copy'"
    )


def make_readonly(path: str | os.PathLike[str]) -> os.stat_result:
    """chmod a blob read-only (0o444) before sharing it by a hard or symbolic link.

    Blobs never change, so this costs nothing; it stops an editor from writing through a link
    into the store (dvc#859).
    """
    st = os.stat(path)
    if st.st_mode & 0o222:
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o222)
    return st


def out_of_space(exc: OSError, path: str | os.PathLike[str], *, unchanged: bool) -> Exception:
    """A disk-full error while materializing ``path`` as :class:`OutOfSpaceError`.

    Other errors are returned unchanged. A bare ``OSError [Errno 28]`` from checkout or
    download named neither the file nor what was left behind.

    Args:
        exc: the error raised while placing or committing files.
        path: the file (or target directory) being written.
        unchanged: whether the target was left as it was (the staging phase) or may be
            partly updated (the commit phase).
    """
    outcome = (
        "the target was left unchanged; free some space and try again"
        if unchanged
        else "the target may be partly updated; free some space and run it again"
    )
    return translate_oserror(exc, os.fspath(path), outcome=outcome)


def place_stream(src: BinaryIO, dir_fd: int, name: str, *, mode: int = 0o666) -> int:
    """Write everything ``src`` yields to a new file ``name`` inside ``dir_fd``.

    The file is created exclusively (``O_EXCL | O_NOFOLLOW``), never opened over an existing one,
    with ``mode`` less the umask. The caller's reader checks digest and size at EOF, so a
    mismatch raises before this returns.

    Returns:
        The number of bytes written.
    """
    fd = os.open(name, _FILE_FLAGS, mode, dir_fd=dir_fd)
    written = 0
    try:
        while True:
            chunk = src.read(CHUNK)
            if not chunk:
                break
            written += _write_all(fd, chunk)
    finally:
        os.close(fd)
    return written


def place_bytes(data: bytes, dir_fd: int, name: str, *, mode: int = 0o666) -> None:
    """Write ``data`` (a small, already verified content) to a new file ``name`` in ``dir_fd``."""
    fd = os.open(name, _FILE_FLAGS, mode, dir_fd=dir_fd)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)


def place_reflink(
    src: str | os.PathLike[str], dir_fd: int, name: str, *, mode: int = 0o666
) -> None:
    """Clone ``src`` into a new file ``name`` inside ``dir_fd`` (``FICLONE``)."""
    src_fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        dst_fd = os.open(name, _FILE_FLAGS, 0o666, dir_fd=dir_fd)
        try:
            fcntl.ioctl(dst_fd, FICLONE, src_fd)
        finally:
            os.close(dst_fd)
    except BaseException:
        try:
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        raise
    finally:
        os.close(src_fd)
    # a clone carries the blob's read-only mode; a reflinked file is the user's to edit
    os.chmod(name, mode & ~_umask(), dir_fd=dir_fd)


def place_hardlink(src: str | os.PathLike[str], dir_fd: int, name: str) -> bool:
    """Hard-link the (read-only) blob ``src`` as ``name`` inside ``dir_fd``.

    Returns:
        False (and nothing placed) when the blob already has as many links as its
        filesystem allows (``EMLINK``: 65,000 on ext4, met with 100,000
        empty files sharing one blob); the caller copies that file instead.
    """
    try:
        os.link(src, name, dst_dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        if exc.errno == errno.EMLINK:
            return False
        raise
    return True


def place_symlink(src: str | os.PathLike[str], dir_fd: int, name: str) -> None:
    """Make ``name`` inside ``dir_fd`` a symlink to the absolute path of the blob ``src``."""
    os.symlink(os.path.abspath(src), name, dir_fd=dir_fd)


_umask_value: int | None = None


def _umask() -> int:
    global _umask_value
    if _umask_value is None:
        current = os.umask(0o022)
        os.umask(current)
        _umask_value = current
    return _umask_value


def copy_raw(src: str | os.PathLike[str], entry: Entry, dir_fd: int, name: str) -> None:
    """Copy a raw blob into ``name``, hashing while streaming (the fast path for small files).

    The file gets :func:`file_mode` of ``entry`` (less the umask).
    """
    assert entry.digest is not None
    hasher = new_hasher(Digest.parse(entry.digest).algorithm)
    src_fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        dst_fd = os.open(
            name,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
            file_mode(entry),
            dir_fd=dir_fd,
        )
        seen = 0
        try:
            while chunk := os.read(src_fd, CHUNK if seen or entry.size > CHUNK else entry.size + 1):
                seen += len(chunk)
                hasher.update(chunk)
                _write_all(dst_fd, chunk)
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)
    if seen != entry.size or hasher.hexdigest() != Digest.parse(entry.digest).hex:
        raise IntegrityError(
            f"blob {entry.digest} for {entry.path!r} is damaged: read {seen} bytes, expected "
            f"{entry.size} with that digest (run castore fsck)",
            digest=entry.digest,
            paths=[entry.path],
        )


def hash_fd(fd: int, algorithm: str) -> tuple[str, int]:
    hasher = new_hasher(algorithm)
    size = 0
    while chunk := os.read(fd, CHUNK):
        hasher.update(chunk)
        size += len(chunk)
    return Digest.of(algorithm, hasher.hexdigest()), size


def file_matches(
    dir_fd: int, name: str, entry: Entry
) -> tuple[bool, os.stat_result | None]:
    """Hash an existing regular file (opened without following links) against ``entry``."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return False, None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != entry.size or entry.digest is None:
            return False, None
        if is_etag(entry.digest):
            return False, None  # an ETag says nothing of local bytes: fetched again
        digest, size = hash_fd(fd, Digest.parse(entry.digest).algorithm)
        return digest == entry.digest and size == entry.size, st
    finally:
        os.close(fd)


def ref_path(entry: Entry) -> Path:
    """The local file behind an external ``file://`` reference."""
    ref = entry.ref or ""
    parsed = urllib.parse.urlparse(ref)
    if parsed.scheme != "file":
        raise RemoteError(
            f"cannot materialize {entry.path!r}: its reference {ref!r} has a scheme castore "
            "cannot fetch (file://, http(s):// and s3:// can be); copy the data locally and "
            "add it to a version instead"
        )
    return Path(urllib.parse.unquote(parsed.path))


def open_source(blobs: BlobStore, entry: Entry) -> BinaryIO:
    """A seekable reader of one entry's content (:class:`castore.storage.seekable.SeekableReader`):
    read straight through, digest and size are checked at EOF; a read after a seek checks the
    whole content once, then every chunk it returns.

    ``http(s)://`` and ``s3://`` references are fetched (:mod:`castore.storage.external`).

    Raises:
        NotFoundError: the blob (or referenced file) is missing.
        IntegrityError: (while reading) the content does not match.
        RemoteError: a referenced object cannot be fetched, or its scheme is unknown.
    """
    if entry.ref is not None and is_remote(entry.ref):
        return open_remote(
            entry.ref, digest=entry.digest, size=entry.size,
            what=f"{entry.ref} (referenced by {entry.path!r})",
        )
    if entry.ref is not None:
        path = ref_path(entry)
        what = f"the file {str(path)!r} referenced by {entry.path!r}"
        try:
            reader = SeekableReader(
                str(path),
                zstd=False,
                open_source=lambda: open(path, "rb"),  # noqa: SIM115 - the reader owns it
                digest=entry.digest,
                size=entry.size,
                what=what,
            )
        except FileNotFoundError as exc:
            raise NotFoundError(
                f"the file {str(path)!r} referenced by {entry.path!r} is missing", ref=entry.ref
            ) from exc
        return buffered(reader)
    if entry.digest is None:
        raise IntegrityError(f"entry {entry.path!r} has neither a digest nor a reference")
    return blobs.open(entry.digest, size=entry.size)
