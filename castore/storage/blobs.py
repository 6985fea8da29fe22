"""The content-addressed blob store: one file per content digest. Knows nothing of SQLite.

Writes are two steps so that the catalogue's write lock can order them against gc (DESIGN.md
invariant 6): :meth:`BlobStore.stage_file` (and friends) hash, compress and write a temp file in
``tmp/`` with no lock; :meth:`BlobStore.publish` links it to its final name, where "already
exists" is the dedup hit (git's ``finalize_object_file``): a published blob is never
overwritten. ``put_*`` do both. Reads stream and check digest and size at the end.
"""

from __future__ import annotations

import io
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from castore import _faults
from castore.digest import ALGORITHMS, Digest
from castore.errors import (
    FileChangedError,
    HashCollisionError,
    IntegrityError,
    NotFoundError,
    ReadOnlyStoreError,
)
from castore.models import BlobStat
from castore.storage._blobio import (
    KERNEL_COPY,
    KERNEL_MIN,
    changed,
    chunk_buffer,
    copy_in_kernel,
    is_hex,
    read_exact,
    read_full,
)
from castore.storage.codec import (
    MIN_SAVING,
    SAMPLE_SIZE,
    TRAILER,
    Codec,
    choose_codec,
    compressor,
    content_size,
    open_decoder,
    trailer,
)
from castore.storage.fsutil import (
    create_readonly,
    fsync_dir,
    publish_noclobber,
    removing_on_error,
    syncfs,
    unique_tmp,
)

# Looked up through this module's globals at call time: the fault shims of the tests
# (tests/harness.py enospc_after) replace ``blobs._write_all`` to fill the disk mid-blob.
from castore.storage.fsutil import write_all as _write_all
from castore.storage.hashing import (
    CHUNK_SIZE,
    CRYPTOGRAPHIC,
    Hasher,
    Source,
    VerifyingReader,
    new_hasher,
)
from castore.storage.layout import Layout
from castore.storage.seekable import SeekableReader, buffered

__all__ = ["BlobStore", "PutResult", "StagedBlob"]

_ZST = ".zst"


@dataclass(frozen=True)
class StagedBlob:
    """Content written to a temp file in ``tmp/``, hashed, not yet published."""

    digest: Digest
    size: int
    codec: Codec
    stored_size: int
    tmp: Path
    source_stat: os.stat_result | None = None


@dataclass(frozen=True)
class PutResult:
    """A blob now in the store; ``new`` is False when it was already there (dedup)."""

    digest: Digest
    size: int
    codec: Codec
    stored_size: int
    new: bool


class BlobStore:
    """Blobs of one store, named by the digest of their uncompressed content.

    Args:
        layout: the store's paths.
        algorithm: the store's hash algorithm.
        compression: ``"zstd"`` or ``"none"``.
        level: zstd level.
        durable: fsync files and directories before they count as stored.
        read_only: refuse every write with :class:`ReadOnlyStoreError`.
    """

    def __init__(
        self,
        layout: Layout,
        *,
        algorithm: str,
        compression: str = "zstd",
        level: int = 3,
        durable: bool = True,
        read_only: bool = False,
    ) -> None:
        self.layout = layout
        self.algorithm = algorithm
        self.compression = compression
        self.level = level
        self.durable = durable
        self.read_only = read_only
        self._blobs_dir = str(layout.blobs)

    # -- names ---------------------------------------------------------------------------

    def _hasher(self) -> Hasher:
        return new_hasher(self.algorithm)

    def _base(self, digest: str) -> str:
        """``blobs/ab/<hex>`` as a string (hot path: no pathlib, no regex)."""
        algo, _, hexpart = digest.partition(":")
        if algo != self.algorithm or len(hexpart) != ALGORITHMS[algo] or not is_hex(hexpart):
            Digest.parse(digest)  # raises for a malformed digest
            raise NotFoundError(
                f"blob {digest} cannot be in this {self.algorithm} store", ref=digest
            )
        return f"{self._blobs_dir}/{hexpart[:2]}/{hexpart}"

    def _name(self, digest: str, codec: Codec) -> Path:
        return Path(self._base(digest) + (_ZST if codec == "zstd" else ""))

    def _find(self, digest: str) -> tuple[Path, Codec] | None:
        base = self._base(digest)
        if os.path.exists(base):
            return Path(base), "raw"
        if os.path.exists(base + _ZST):
            return Path(base + _ZST), "zstd"
        return None

    def _require(self, digest: str) -> tuple[Path, Codec]:
        found = self._find(digest)
        if found is None:
            raise NotFoundError(f"blob {digest} is not in the store", ref=digest)
        return found

    def path_of(self, digest: str) -> Path:
        """The file holding ``digest`` (raw or ``.zst``). Raises NotFoundError if absent."""
        return self._require(digest)[0]

    def raw_path(self, digest: str) -> Path | None:
        """The blob file when it is stored raw (so it can be linked), else None."""
        path = self._name(digest, "raw")
        return path if os.path.exists(path) else None

    def exists(self, digest: str) -> bool:
        """True when the blob is stored."""
        base = self._base(digest)
        return os.path.exists(base) or os.path.exists(base + _ZST)

    def stat(self, digest: str) -> BlobStat:
        """Size, stored size and codec of a blob. Raises NotFoundError if absent."""
        path, codec = self._require(digest)
        stored = os.stat(path).st_size
        size = stored if codec == "raw" else content_size(path)
        return BlobStat(digest=digest, size=size, stored_size=stored, codec=codec)

    def iter_digests(self) -> Iterator[Digest]:
        """Every blob in the store (order unspecified)."""
        if not self.layout.blobs.is_dir():
            return
        with os.scandir(self.layout.blobs) as it:
            shards = sorted(
                e.name for e in it if e.is_dir(follow_symlinks=False) and len(e.name) == 2
            )
        for shard in shards:
            with os.scandir(self.layout.blobs / shard) as it:
                names = [e.name.removesuffix(_ZST) for e in it]
            for name in names:
                if name.startswith(shard) and is_hex(name):
                    yield Digest.of(self.algorithm, name)

    def iter_tmp(self) -> Iterator[Path]:
        """Temp files in ``tmp/`` (in-flight or left by a crash)."""
        for entry in self.layout.iter_tmp_files():
            yield Path(entry.path)

    # -- writing -------------------------------------------------------------------------

    def _check_writable(self, operation: str) -> None:
        if self.read_only:
            raise ReadOnlyStoreError(self.layout.root, operation)

    def stage_bytes(self, data: bytes | memoryview, *, sync: bool | None = None) -> StagedBlob:
        """Stage ``data`` (see :meth:`stage_stream`)."""
        return self.stage_stream(io.BytesIO(data), size=len(data), sync=sync)

    def stage_file(self, path: str | Path, *, sync: bool | None = None) -> StagedBlob:
        """Stage a file's content, refusing one that changes while it is read.

        Raises:
            FileChangedError: the file vanished or is no longer a regular file (it was seen
                as one by the caller's walk), or size, mtime or ctime differ before and after
                reading, or the bytes read differ from the size: nothing is staged.
            OutOfSpaceError: the disk filled up; the temp file is removed.
        """
        # O_NONBLOCK: a file replaced by a FIFO since the walk must not hang the add; it
        # changes nothing for regular files.
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise FileChangedError(path, "vanished") from exc
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                raise FileChangedError(path, "was replaced by a directory or a special file")
        except BaseException:
            os.close(fd)
            raise
        with open(fd, "rb", buffering=0) as fh:
            staged = None
            if KERNEL_COPY and before.st_size >= KERNEL_MIN:
                staged = self._stage_raw_in_kernel(fh.fileno(), sync)
            if staged is None:
                staged = self.stage_stream(fh, size=before.st_size, sync=sync)
            after = os.fstat(fh.fileno())
        if changed(before, after) or staged.size != before.st_size:
            self.discard(staged)
            raise FileChangedError(path)
        return StagedBlob(
            staged.digest, staged.size, staged.codec, staged.stored_size, staged.tmp, before
        )

    def _stage_raw_in_kernel(self, src: int, sync: bool | None) -> StagedBlob | None:
        """Stage a large file that will be stored raw without passing its bytes through Python.

        Returns None (nothing left behind, ``src``'s offset untouched) when the content should
        be compressed or the kernel cannot copy between these two files.
        """
        self._check_writable("store a blob")
        sync = self.durable if sync is None else sync
        sample = os.pread(src, SAMPLE_SIZE, 0)
        if choose_codec(sample, compression=self.compression, level=self.level) != "raw":
            return None
        hasher = self._hasher()
        tmp = unique_tmp(self.layout.tmp_dir())
        with removing_on_error(tmp):
            fd = create_readonly(tmp, os.O_RDWR)
            try:
                total = copy_in_kernel(src, fd, hasher)
                if total is not None:
                    _faults.point("blob.tmp_written")
                    if sync:
                        os.fsync(fd)
                        _faults.point("blob.fsynced")
            finally:
                os.close(fd)
        if total is None:
            os.unlink(tmp)
            return None
        digest = Digest.of(self.algorithm, hasher.hexdigest())
        return StagedBlob(digest, total, "raw", total, tmp)

    def stage_stream(
        self, stream: BinaryIO, *, size: int = -1, sync: bool | None = None
    ) -> StagedBlob:
        """Hash, compress (where it pays) and write ``stream`` to a temp file, in one pass.

        Memory stays bounded by the chunk size whatever the content size.

        Args:
            stream: a binary reader.
            size: the content size when known (recorded in the zstd frame).
            sync: fsync the temp file (default: the store's ``durable``); pass False when
                many blobs are staged and :meth:`sync` is called once before the commit.

        Raises:
            OutOfSpaceError: the disk filled up; the temp file is removed.
        """
        self._check_writable("store a blob")
        sync = self.durable if sync is None else sync
        hasher = self._hasher()
        tmp = unique_tmp(self.layout.tmp_dir())
        view = chunk_buffer()
        total = 0
        stored = 0
        codec: Codec = "raw"
        with removing_on_error(tmp):
            fd = create_readonly(tmp, os.O_WRONLY)
            try:
                n = read_full(stream, view)
                if n < len(view):
                    # The whole content fits in one chunk (most files): one compression pass
                    # both decides the codec and produces the frame.
                    chunk = view[:n]
                    hasher.update(chunk)
                    total = n
                    out: bytes | memoryview = chunk
                    if self.compression == "zstd" and n >= 64:
                        frame = compressor(self.level).compress(chunk)
                        if len(frame) + TRAILER.size <= n * (1 - MIN_SAVING):
                            codec = "zstd"
                            out = frame + trailer(n)
                    stored = _write_all(fd, out)
                else:
                    codec = choose_codec(
                        view[:SAMPLE_SIZE], compression=self.compression, level=self.level
                    )
                    cobj = (
                        compressor(self.level, threads=-1).compressobj(size=size)
                        if codec == "zstd"
                        else None
                    )
                    while n:
                        chunk = view[:n]
                        hasher.update(chunk)
                        total += n
                        stored += _write_all(
                            fd, cobj.compress(chunk) if cobj else chunk
                        )
                        n = read_full(stream, view)
                    if cobj is not None:
                        stored += _write_all(fd, cobj.flush())
                        stored += _write_all(fd, trailer(total))
                _faults.point("blob.tmp_written")
                if sync:
                    os.fsync(fd)
                    _faults.point("blob.fsynced")
            finally:
                os.close(fd)
        digest = Digest.of(self.algorithm, hasher.hexdigest())
        return StagedBlob(digest, total, codec, stored, tmp)

    def discard(self, staged: StagedBlob) -> None:
        """Remove a staged temp file that will not be published."""
        try:
            os.unlink(staged.tmp)
        except FileNotFoundError:
            pass

    def publish(
        self, staged: StagedBlob, *, check_collision: bool = False, sync: bool | None = None
    ) -> bool:
        """Give a staged blob its final name, never overwriting one already there.

        Args:
            staged: from ``stage_*``; its temp file is consumed either way.
            check_collision: content from outside (import, pull) in a store whose algorithm is
                not cryptographic: at a dedup hit, compare the bytes with the stored blob.
            sync: fsync the shard directory (default: the store's ``durable``).

        Returns:
            True if the blob is new, False if it was already stored (dedup).

        Raises:
            HashCollisionError: ``check_collision`` found different content under the digest.
        """
        self._check_writable("store a blob")
        sync = self.durable if sync is None else sync
        base = self._base(staged.digest)
        if check_collision and self.algorithm not in CRYPTOGRAPHIC:
            existing = self._find(staged.digest)
            if existing is not None:
                try:
                    same = self._same_content(staged, *existing)
                except BaseException:
                    self.discard(staged)
                    raise
                self.discard(staged)
                if not same:
                    raise HashCollisionError(
                        f"different content arrived under digest {staged.digest}; the stored "
                        "blob is kept. Use a store with hash='blake3' or 'sha256' for content "
                        "from untrusted sources",
                        digest=staged.digest,
                    )
                return False
        # Hot path (one call per file of a draft): strings, no pathlib; the link itself finds
        # a blob stored under the same codec, one stat finds it under the other.
        final, other = (base + _ZST, base) if staged.codec == "zstd" else (base, base + _ZST)
        if os.path.exists(other):
            self.discard(staged)
            return False
        created = publish_noclobber(staged.tmp, final, make_dirs=True)
        _faults.point("blob.renamed")
        if created and sync:
            fsync_dir(os.path.dirname(final))
            _faults.point("blob.dir_fsynced")
        return created

    def sync(self) -> None:
        """Make every staged and published blob durable at once (``syncfs``)."""
        if self.durable and not self.read_only:
            syncfs(self.layout.root)

    def put_stream(self, stream: BinaryIO, *, size: int = -1) -> PutResult:
        """Store the content of a binary stream."""
        return self._put(self.stage_stream(stream, size=size))

    def put_bytes(self, data: bytes | memoryview) -> PutResult:
        """Store ``data``."""
        return self._put(self.stage_bytes(data))

    def put_file(self, path: str | Path) -> PutResult:
        """Store a file's content."""
        return self._put(self.stage_file(path))

    def _put(self, staged: StagedBlob) -> PutResult:
        new = self.publish(staged)
        return PutResult(staged.digest, staged.size, staged.codec, staged.stored_size, new)

    def delete(self, digest: str) -> int:
        """Delete a blob; return the bytes freed (0 if it was not there)."""
        self._check_writable("delete a blob")
        freed = 0
        for codec in ("raw", "zstd"):
            path = self._name(digest, codec)
            try:
                freed += os.stat(path).st_size
                os.unlink(path)
            except FileNotFoundError:
                pass
        return freed

    def move_to_trash(self, digest: str) -> int:
        """Rename a blob into ``trash/`` (gc, inside its catalogue transaction); return its size."""
        self._check_writable("delete a blob")
        moved = 0
        for codec in ("raw", "zstd"):
            path = self._name(digest, codec)
            try:
                size = os.stat(path).st_size
                os.rename(path, unique_tmp(self.layout.trash, suffix="." + path.name))
                moved += size
            except FileNotFoundError:
                pass
        return moved

    def empty_trash(self) -> int:
        """Delete what :meth:`move_to_trash` moved aside; return how many files."""
        count = 0
        if self.layout.trash.is_dir():
            with os.scandir(self.layout.trash) as it:
                paths = [entry.path for entry in it]
            for path in paths:
                os.unlink(path)
                count += 1
        return count

    def quarantine(self, digest: str) -> Path:
        """Move a (damaged) blob aside into ``quarantine/``; never delete it."""
        self._check_writable("quarantine a blob")
        path, _ = self._require(digest)
        self.layout.quarantine.mkdir(exist_ok=True)
        target = self.layout.quarantine / f"{path.name}.{time.time_ns()}"
        os.rename(path, target)
        if self.durable:
            fsync_dir(path.parent)
        return target

    # -- reading -------------------------------------------------------------------------

    def open(self, digest: str, *, size: int | None = None) -> io.BufferedReader:
        """A seekable reader of a blob's content; every byte it returns is checked.

        Read from the start to the end, it streams and checks digest and size at the end (as
        before); a read after a seek checks the whole blob once (cached for this process),
        then every chunk it returns (see :mod:`castore.storage.seekable`).

        Args:
            digest: the blob.
            size: the expected content size (from the manifest); decoding stops with an error
                past it, so a decompression bomb cannot fill memory or disk.

        Raises:
            NotFoundError: the blob is not stored.
            IntegrityError: (while reading) the content does not match digest or size.
        """
        path, codec = self._require(digest)
        if size is None:
            size = os.stat(path).st_size if codec == "raw" else content_size(path)
        if size < 0:
            # A zstd blob without its size trailer: stream it (not seekable) as before.
            stream = VerifyingReader(
                self._decoded(path, codec, None), digest=digest, size=-1, what=f"blob {digest}"
            )
            return io.BufferedReader(stream, CHUNK_SIZE)
        cap = size
        raw = SeekableReader(
            str(path),
            zstd=codec == "zstd",
            open_source=lambda: self._decoded(path, codec, cap),
            digest=digest,
            size=size,
            what=f"blob {digest}",
        )
        return buffered(raw)

    def open_staged(self, staged: StagedBlob) -> io.BufferedReader:
        """A reader of a staged (not yet published) blob's content, checked like :meth:`open`."""
        raw = VerifyingReader(
            self._decoded(staged.tmp, staged.codec, staged.size),
            digest=staged.digest, size=staged.size, what=f"staged blob {staged.digest}",
        )
        return io.BufferedReader(raw, max(8192, min(CHUNK_SIZE, staged.size + 1)))

    def read_bytes(self, digest: str, *, size: int | None = None) -> bytes:
        """The whole content of a (small) blob, verified."""
        with self.open(digest, size=size) as fh:
            return fh.read()

    def verify(self, digest: str, *, size: int | None = None) -> None:
        """Re-hash a blob. Raises IntegrityError if it does not match, NotFoundError if absent."""
        with self.open(digest, size=size) as fh:
            while fh.read1(CHUNK_SIZE):
                pass

    def _decoded(self, path: Path, codec: Codec, cap: int | None) -> Source:
        fh = open(path, "rb")  # noqa: SIM115 - ownership passes to the decoder or caller
        if codec == "raw":
            return fh
        return open_decoder(fh, cap=cap, name=path.name)

    def _same_content(self, staged: StagedBlob, path: Path, codec: Codec) -> bool:
        cap = staged.size
        new = self._decoded(staged.tmp, staged.codec, cap)
        old = self._decoded(path, codec, cap)
        try:
            while True:
                a = read_exact(new.read, CHUNK_SIZE)
                b = read_exact(old.read, CHUNK_SIZE)
                if a != b:
                    return False
                if not a:
                    return True
        except IntegrityError:
            return False
        finally:
            new.close()
            old.close()


