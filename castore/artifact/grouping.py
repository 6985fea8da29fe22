"""Staging an ``add_dir`` batch in groups: many small files per thread-pool task.

A task per small file cost more in thread hand-offs (a future, its locks and callbacks) than
staging the file itself; a group stages its files one after another and hands back each one's
blob, or the error it raised, so the caller still sees every file's own outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from castore._progress import Progress

if TYPE_CHECKING:
    from concurrent.futures import Future

    from castore.storage.blobs import BlobStore, StagedBlob

__all__ = ["GROUP_BYTES", "GROUP_FILES", "Slot", "count_done", "stage_group"]

#: Files staged by one pool task, one after another.
GROUP_FILES = 32
#: ... unless they add up to this many bytes first (large files get a task each).
GROUP_BYTES = 4 * 1024 * 1024


def stage_group(blobs: BlobStore, paths: list[str]) -> list[StagedBlob | BaseException]:
    """Stage files one after another in one pool task; a file's error is its result."""
    out: list[StagedBlob | BaseException] = []
    for path in paths:
        try:
            out.append(blobs.stage_file(path, sync=False, packable=True))
        except Exception as exc:  # handed to the caller, which raises the first one
            out.append(exc)
    return out


class Slot:
    """One file's place in a staged group: ``result()`` is its blob, or raises its error."""

    __slots__ = ("future", "index")

    def __init__(self, future: Future[list[StagedBlob | BaseException]], index: int) -> None:
        self.future, self.index = future, index

    def result(self) -> StagedBlob:
        outcome = self.future.result()[self.index]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome



def count_done(
    tracker: Progress, size: int
) -> Callable[[Future[list[StagedBlob | BaseException]]], None]:
    """A future's done-callback that counts ``size`` bytes (staged or failed, it is done)."""

    def done(_: Future[list[StagedBlob | BaseException]]) -> None:
        tracker.add(size)

    return done
