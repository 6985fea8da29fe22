"""gc, prune, fsck and stats of the Store facade."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from castore.facade.base import StoreBase
from castore.storage.reserve import ensure_reserve

if TYPE_CHECKING:
    from castore.models import FsckReport, GCReport, PruneReport, StoreStats

# The maintenance operations are imported inside the methods: a command that only reads (`castore
# ls`, `show`, `cat`) should not pay for importing gc, fsck and rebuild.

__all__ = ["MaintenanceMixin"]


class MaintenanceMixin(StoreBase):
    """Keeping the store healthy: plan, then act."""

    def gc(
        self,
        dry_run: bool = False,
        grace: timedelta | None = None,
        *,
        discard_unknown: bool = False,
    ) -> GCReport:
        """Delete expired versions, unreferenced blobs and stale temp files.

        Plans, then acts: expired versions (TTL) are deleted with the alias rules (``latest``
        repointed); blobs that no committed or pending version references and that are older
        than ``grace`` are deleted after the catalogue commit, under the maintenance lock.
        Safe beside writers in other processes, even with ``grace=timedelta(0)``.

        Args:
            dry_run: only report what would be deleted.
            grace: how old an unreferenced blob must be (default one hour).
            discard_unknown: also let go of versions that have a stored document but no
                catalogue row (after restoring an older ``catalog.db``). By default gc keeps
                them, and every blob they name, until ``fsck(repair=True)`` restores them.

        Returns:
            A :class:`GCReport`.

        Raises:
            ReadOnlyStoreError: the store is read-only (a dry run works).
            LockTimeoutError: another gc, prune or repair held the store too long.

        Example:
            >>> store.gc(dry_run=True).blobs_deleted  # doctest: +SKIP
            0
        """
        from castore.maintenance import budget
        from castore.maintenance import gc as gc_ops

        if dry_run:
            plan = gc_ops.gc(self.parts, dry_run=True, grace=grace,
                             discard_unknown=discard_unknown)
            evicted, freed = budget.plan_evict(self.parts)
            return plan.model_copy(update={"blobs_evicted": evicted, "bytes_evicted": freed})
        self.parts.require_writable("run gc")
        report = self.parts.freeing_space(
            lambda: gc_ops.gc(
                self.parts, dry_run=False, grace=grace, discard_unknown=discard_unknown
            )
        )
        evicted, freed = budget.evict(self.parts)  # set_budget: remote-held blobs, LRU first
        if evicted:
            report = report.model_copy(update={
                "blobs_evicted": evicted, "bytes_evicted": freed,
                "bytes_freed": report.bytes_freed + freed,
            })
        ensure_reserve(self.layout.root)  # taken again once there is room to spare
        return report

    def prune(
        self,
        collection: str | None = None,
        *,
        keep_last: int | None = None,
        only_unused: bool = False,
        dry_run: bool = False,
    ) -> PruneReport:
        """Delete versions by retention policy; their blobs go at the next :meth:`gc`.

        Args:
            collection: one collection (default: every collection).
            keep_last: keep the newest ``keep_last`` versions of each collection.
            only_unused: delete only versions no run used or produced (with ``keep_last``:
                both conditions must hold).
            dry_run: only report what would be deleted.

        A version holding any alias, ``latest`` included, is never pruned.

        Raises:
            ValueError: no policy was given.
            NotFoundError: ``collection`` does not exist.
            ReadOnlyStoreError: the store is read-only (a dry run works).

        Example:
            >>> store.prune("mnist", keep_last=3).versions_deleted  # doctest: +SKIP
            ['mnist:v0', 'mnist:v1']
        """
        from castore.maintenance import gc as gc_ops

        if not dry_run:
            self.parts.require_writable("prune versions")
        return self.parts.freeing_space(
            lambda: gc_ops.prune(
                self.parts, collection, keep_last=keep_last, only_unused=only_unused,
                dry_run=dry_run,
            )
        )

    def fsck(self, repair: bool = False) -> FsckReport:
        """Check the store's invariants: catalogue, blobs, aliases, temp files and drafts.

        Every stored blob is re-hashed. Findings use a fixed vocabulary (``missing_blob``,
        ``corrupt_blob``, ``dangling_ref``, ``alias_to_missing``, ``catalogue_integrity``:
        errors; ``orphan_blob``, ``stale_tmp``, ``stale_draft``: warnings).

        Args:
            repair: quarantine corrupt blobs (never delete them), flag affected versions
                damaged, remove stale temp files, and rebuild a damaged catalogue from the
                manifest blobs.

        Returns:
            A :class:`FsckReport`; ``ok`` is False only when there is an error.

        Raises:
            ReadOnlyStoreError: ``repair`` on a read-only store.

        Example:
            >>> store.fsck().ok  # doctest: +SKIP
            True
        """
        from castore.maintenance import fsck as fsck_ops
        from castore.maintenance import rebuild

        if repair:
            self.parts.require_writable("repair the store")
        return fsck_ops.fsck(
            self.parts, repair=repair, rebuild=lambda: rebuild.rebuild_in_place(self.parts)
        )

    def stats(self) -> StoreStats:
        """Counts and sizes: collections, versions, blobs, logical and stored bytes.

        ``dedup_ratio`` is the logical bytes of all versions over the bytes of their distinct
        contents (1.0 without any sharing); ``stored_bytes`` is what the blob files take here;
        ``remote_only_bytes`` what the versions need that only a remote holds (evicted under
        :meth:`set_budget`, fetched back on read); ``budget`` the budget, or None.

        Example:
            >>> store.stats().versions  # doctest: +SKIP
            12
        """
        from castore.maintenance import budget
        from castore.maintenance import gc as gc_ops

        stats = gc_ops.stats(self.parts)
        blobs, size = budget.remote_only(self.parts)
        return stats.model_copy(update={
            "remote_only_blobs": blobs, "remote_only_bytes": size,
            "budget": budget.get_budget(self.parts),
        })
