"""set_budget of the Store facade: a disk budget kept by evicting what a remote also holds."""

from __future__ import annotations

from castore.facade.base import StoreBase
from castore.maintenance import budget

__all__ = ["BudgetMixin"]


class BudgetMixin(StoreBase):
    """A disk budget over the blob files, with remotes as the second home."""

    def set_budget(self, max_bytes: int | None) -> None:
        """Keep the stored bytes under ``max_bytes`` (None: no budget); kept in the catalogue.

        Each :meth:`gc` then evicts the least recently used blobs that a remote is known to
        hold (every push and pull records what the remote holds), after asking the remote
        that it still does. The only copy of anything is never evicted; the version stays
        listed, and reading an evicted blob fetches it back from that remote, verified.

        Raises:
            ValueError: ``max_bytes`` is not a non-negative integer or None.
            ReadOnlyStoreError: the store is read-only.

        Example:
            >>> store.set_budget(50 * 2**30)  # doctest: +SKIP
        """
        self.parts.require_writable("set a budget")
        budget.set_budget(self.parts, max_bytes)
