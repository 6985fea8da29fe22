"""The content-addressed blob store: loose files and packs (:mod:`.packs`). No SQLite here.

Writes are two steps so that the catalogue's write lock orders them against gc (invariant 6):
``stage_*`` hash, compress and write a temp file in ``tmp/`` (or keep a small blob in memory);
:meth:`BlobStore.publish` links it to its final name, "already exists" being the dedup hit, and
:meth:`BlobStore.publish_many` writes the small ones into one new pack. Nothing published is
ever overwritten. Reads check digest and size; callers never see loose vs. packed."""

from __future__ import annotations

import io
import os
import stat
import time
from collections.abc import Iterable, Iterator
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
    copy_to_new_file,
    is_hex,
    read_full,
)
from castore.storage.codec import (
    MIN_SAVING,
    SAMPLE_SIZE,
    Codec,
    choose_codec,
    compressor,
    content_size,
    encode_whole,
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
from castore.storage.hashing import CHUNK_SIZE, CRYPTOGRAPHIC, Hasher, new_hasher
from castore.storage.layout import Layout
from castore.storage.packs import PACK_THRESHOLD, PackEntry, PackIndex, pack_rows, write_pack
from castore.storage.reading import open_in_memory, open_staged, open_stored_file, read_packed
from castore.storage.staged import (
    PutResult,
    StagedBlob,
    same_content,
    spill,
)

__all__ = ["BlobStore", "PutResult", "StagedBlob"]

_ZST = ".zst"


class BlobStore:
    """Blobs of one store, named by the digest of their uncompressed content.

    Args:
        layout: the store's paths.
        algorithm: the store's hash algorithm.
        compression: ``"zstd"`` or ``"none"``.
        level: zstd level.
        min_saving: store a blob compressed only when zstd saves at least this fraction.
        durable: fsync files and directories before they count as stored.
        read_only: refuse every write with :class:`ReadOnlyStoreError`.
        packs: write small blobs published together into pack files (format 2).
    """

    def __init__(
        self,
        layout: Layout,
        *,
        algorithm: str,
        compression: str = "zstd",
        level: int = 3,
        min_saving: float = MIN_SAVING,
        durable: bool = True,
        read_only: bool = False,
        packs: bool = False,
    ) -> None:
        self.layout = layout
        self.algorithm = algorithm
        self.compression = compression
        self.level = level
        self.min_saving = min_saving
        self.durable = durable
        self.read_only = read_only
        self._blobs_dir = str(layout.blobs)
        self.packs = packs
        self.pack_index = PackIndex(layout.packs)

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
        """The file holding ``digest``: its loose file (raw or ``.zst``) or its pack (shared
        with other blobs: never link or change it). Raises NotFoundError if absent."""
        entry = self.packed(digest)
        return self.layout.packs / entry.pack if entry else self._require(digest)[0]

    def raw_path(self, digest: str) -> Path | None:
        """The blob file when it is stored raw (so it can be linked), else None."""
        path = self._name(digest, "raw")
        return path if os.path.exists(path) else None

    def exists(self, digest: str) -> bool:
        """True when the blob is stored (loose or in a pack)."""
        base = self._base(digest)
        return (os.path.exists(base) or os.path.exists(base + _ZST)
                or self.pack_index.lookup(digest) is not None)

    def packed(self, digest: str) -> PackEntry | None:
        """Where a blob is in a pack, when it is not a loose file."""
        return None if self._find(digest) is not None else self.pack_index.lookup(digest)

    def missing(self, digests: Iterable[str]) -> set[str]:
        """The digests of ``digests`` that are not stored (loose or packed); a batch looks at
        each pack file once, and at loose files only for digests no pack holds."""
        seen: dict[str, bool] = {}
        return {d for d in digests
                if not self.pack_index.holds(d, seen) and self._find(d) is None}

    def in_pack(self, digest: str) -> bool:
        """True when the pack index holds the blob (no file is looked at: a fast test for
        planning reads, which fall back when the pack turns out to be gone)."""
        return self.pack_index.find(digest) is not None

    def stat(self, digest: str) -> BlobStat:
        """Size, stored size and codec of a blob. Raises NotFoundError if absent."""
        entry = self.packed(digest)
        if entry is not None:
            return BlobStat(digest=digest, size=entry.size, stored_size=entry.length,
                            codec=entry.codec)
        path, codec = self._require(digest)
        stored = os.stat(path).st_size
        size = stored if codec == "raw" else content_size(path)
        return BlobStat(digest=digest, size=size, stored_size=stored, codec=codec)

    def iter_digests(self) -> Iterator[Digest]:
        """Every blob in the store, loose or packed, once each (order unspecified)."""
        seen = set(self.iter_loose())
        yield from seen
        yield from (Digest(d) for d in self.pack_index.digests()
                    if d not in seen and d.partition(":")[0] == self.algorithm)

    def iter_loose(self) -> Iterator[Digest]:
        """Every blob stored as its own file."""
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

    def stage_bytes(
        self, data: bytes | memoryview, *, sync: bool | None = None, packable: bool = False
    ) -> StagedBlob:
        """Stage ``data`` (see :meth:`stage_stream`)."""
        return self.stage_stream(io.BytesIO(data), size=len(data), sync=sync, packable=packable)

    def stage_file(
        self, path: str | Path, *, sync: bool | None = None, packable: bool = False
    ) -> StagedBlob:
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
            if packable and self.packs and before.st_size < PACK_THRESHOLD:
                staged = self._stage_small(fh, before.st_size)
            elif KERNEL_COPY and before.st_size >= KERNEL_MIN:
                staged = self._stage_raw_in_kernel(fh.fileno(), sync)
            if staged is None:
                staged = self.stage_stream(fh, size=before.st_size, sync=sync,
                                           packable=packable)
            after = os.fstat(fh.fileno())
        if changed(before, after) or staged.size != before.st_size:
            self.discard(staged)
            raise FileChangedError(path)
        return StagedBlob(
            staged.digest, staged.size, staged.codec, staged.stored_size, staged.tmp, before,
            staged.data,
        )

    def _encode_whole(self, content: bytes | memoryview) -> tuple[Codec, bytes | memoryview]:
        return encode_whole(content, compression=self.compression, level=self.level,
                            min_saving=self.min_saving)

    def _stage_small(self, fh: io.FileIO, size: int) -> StagedBlob:
        """Stage a small file (``size`` bytes at the walk) for a pack by one read: no temp
        file, no read loop. One byte more is asked for, so the caller's size check catches
        a file that grew."""
        self._check_writable("store a blob")
        data, hasher = fh.read(size + 1) or b"", self._hasher()
        hasher.update(data)
        codec, out = self._encode_whole(data)
        return StagedBlob(Digest.of(self.algorithm, hasher.hexdigest()), len(data), codec,
                          len(out), unique_tmp(self.layout.tmp_dir()), data=bytes(out))

    def _stage_raw_in_kernel(self, src: int, sync: bool | None) -> StagedBlob | None:
        """Stage a large file that will be stored raw without passing its bytes through Python.

        Returns None (nothing left behind, ``src``'s offset untouched) when the content should
        be compressed or the kernel cannot copy between these two files.
        """
        self._check_writable("store a blob")
        sync = self.durable if sync is None else sync
        sample = os.pread(src, SAMPLE_SIZE, 0)
        if choose_codec(sample, compression=self.compression, level=self.level,
                        min_saving=self.min_saving) != "raw":
            return None
        hasher = self._hasher()
        tmp = unique_tmp(self.layout.tmp_dir())
        total = copy_to_new_file(src, tmp, hasher, sync=sync)
        if total is None:
            return None
        digest = Digest.of(self.algorithm, hasher.hexdigest())
        return StagedBlob(digest, total, "raw", total, tmp)

    def stage_stream(
        self, stream: BinaryIO, *, size: int = -1, sync: bool | None = None,
        packable: bool = False,
    ) -> StagedBlob:
        """Hash, compress (where it pays) and write ``stream`` to a temp file, in one pass.

        Memory stays bounded by the chunk size whatever the content size.

        Args:
            stream: a binary reader.
            size: the content size when known (recorded in the zstd frame).
            sync: fsync the temp file (default: the store's ``durable``); pass False when
                many blobs are staged and :meth:`sync` is called once before the commit.
            packable: a small blob may stay in memory (no temp file) for
                :meth:`publish_many` to put into a pack (in a store with packs).

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
        data: bytes | None = None
        with removing_on_error(tmp):
            fd = -1 if packable and self.packs else create_readonly(tmp, os.O_WRONLY)
            try:
                n = read_full(stream, view)
                if n < len(view):
                    # The whole content fits in one chunk (most files): one compression pass
                    # both decides the codec and produces the frame.
                    chunk = view[:n]
                    hasher.update(chunk)
                    total = n
                    codec, out = self._encode_whole(chunk)
                    if packable and self.packs and len(out) < PACK_THRESHOLD:
                        data = bytes(out)
                        stored = len(data)
                    else:
                        fd = fd if fd >= 0 else create_readonly(tmp, os.O_WRONLY)
                        stored = _write_all(fd, out)
                else:
                    fd = fd if fd >= 0 else create_readonly(tmp, os.O_WRONLY)
                    codec = choose_codec(
                        view[:SAMPLE_SIZE], compression=self.compression, level=self.level,
                        min_saving=self.min_saving,
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
                        stored += _write_all(fd, cobj.compress(chunk) if cobj else chunk)
                        n = read_full(stream, view)
                    if cobj is not None:
                        stored += _write_all(fd, cobj.flush())
                        stored += _write_all(fd, trailer(total))
                _faults.point("blob.tmp_written")
                if sync and fd >= 0:
                    os.fsync(fd)
                    _faults.point("blob.fsynced")
            finally:
                if fd >= 0:
                    os.close(fd)
        digest = Digest.of(self.algorithm, hasher.hexdigest())
        return StagedBlob(digest, total, codec, stored, tmp, data=data)

    def discard(self, staged: StagedBlob) -> None:
        """Remove a staged temp file that will not be published."""
        if staged.data is not None:
            return
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
        if staged.data is not None:
            staged = spill(staged, sync)
        if check_collision and self.algorithm not in CRYPTOGRAPHIC:
            existing = self._find(staged.digest)
            if existing is not None:
                try:
                    same = same_content(staged, *existing)
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

    def publish_many(self, staged: list[StagedBlob], *, sync: bool | None = None) -> None:
        """Publish blobs together: the small ones staged in memory go into one new pack.

        Called inside the catalogue transaction that records them (invariant 6), like
        :meth:`publish`. Blobs already stored are left out of the pack (dedup).
        """
        sync = self.durable if sync is None else sync
        small: dict[str, StagedBlob] = {}
        for blob in staged:
            if blob.data is None:
                self.publish(blob, sync=sync)
            else:
                small.setdefault(blob.digest, blob)
        new = self.missing(small)
        items = [(d, b.data, b.codec, b.size) for d, b in small.items()
                 if d in new and b.data is not None]
        if items:
            self._check_writable("store a blob")
            tmp, packs = unique_tmp(self.layout.tmp_dir()), self.layout.packs
            self.pack_index.add(write_pack(tmp, packs, items, sync=sync), pack_rows(items))

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
        entry = self.packed(digest)
        if entry is not None:  # its pack is rewritten without it
            self.pack_index.drop(entry, digest, self.layout.tmp_dir(), sync=self.durable)
            return entry.length
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
        return sum(self._trash(self._name(digest, codec)) for codec in ("raw", "zstd"))

    def _trash(self, path: Path) -> int:
        try:
            size = os.stat(path).st_size
            os.rename(path, unique_tmp(self.layout.trash, suffix="." + path.name))
        except FileNotFoundError:
            return 0
        return size

    def move_pack_to_trash(self, name: str) -> int:
        """Rename a whole pack into ``trash/`` (gc, inside its transaction); its size."""
        self._check_writable("delete a blob")
        path = self.layout.packs / name
        self.pack_index.forget(name)
        return self._trash(path)

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
        entry, quarantine = self.packed(digest), self.layout.quarantine
        if entry is not None:  # its stored bytes go aside, its pack is rewritten without it
            return self.pack_index.quarantine(entry, digest, self.layout.tmp_dir(), quarantine,
                                              sync=self.durable)
        path = self._require(digest)[0]
        quarantine.mkdir(exist_ok=True)
        target = quarantine / f"{path.name}.{time.time_ns()}"
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
        entry = self.packed(digest)
        if entry is not None:
            try:
                stored = self.pack_index.read(entry)
            except FileNotFoundError:
                self.pack_index.forget(entry.pack)  # rewritten or removed by gc: look again
                return self.open(digest, size=size)
            return open_in_memory(stored, entry, digest, size)
        path, codec = self._require(digest)
        return open_stored_file(path, codec, digest, size)

    def open_staged(self, staged: StagedBlob) -> io.BufferedReader:
        """A reader of a staged (not yet published) blob's content, checked like :meth:`open`."""
        return open_staged(staged)

    def read_bytes(self, digest: str, *, size: int | None = None) -> bytes:
        """The whole content of a (small) blob, verified."""
        entry = self.pack_index.find(digest)
        if entry is not None:
            try:
                return read_packed(self.pack_index, entry, digest,
                                   entry.size if size is None else size, self._hasher())
            except FileNotFoundError:
                self.pack_index.forget(entry.pack)  # rewritten or removed by gc: look again
            except IntegrityError:
                if self._find(digest) is None:
                    raise  # else a loose copy of the blob is read below
        with self.open(digest, size=size) as fh:
            return fh.read()


    def verify(self, digest: str, *, size: int | None = None) -> None:
        """Re-hash a blob. Raises IntegrityError if it does not match, NotFoundError if absent."""
        with self.open(digest, size=size) as fh:
            while fh.read1(CHUNK_SIZE):
                pass
