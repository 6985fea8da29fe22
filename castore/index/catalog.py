"""The catalogue: collections, versions, entries, aliases and tags in one SQLite database.

The catalogue knows SQLite and nothing of blob files (``storage`` is the other half). The
package is split by concept, and :class:`Catalog` gathers it for the layers above:

- ``database``: connections per thread, WAL, ``BEGIN IMMEDIATE`` transactions, error
  translation (the :class:`~castore.index.database.Database` every other piece works on);
- ``migrations``: the schema, numbered steps;
- ``collection``, ``versions``, ``aliases``, ``entries``: the writes and reads of each table;
- ``queries``: reads of version rows and the ``Store.versions`` listing;
- ``statcache``: the stat cache; ``maintenance``: what gc, prune, fsck and stats ask;
- ``runs``: runs, their edges to versions, and the lineage walk.

The operations are module functions over a ``Database``; :class:`Catalog` *is* a ``Database``
and lists each function once as a method, so ``catalog.get_version(id)`` and
``queries.get_version(catalog, id)`` are the same call.

Rows are returned as plain ``dict``s (the handles turn them into objects); records where the
public API wants them (:meth:`Catalog.alias_events`). Times are integers of microseconds since
the epoch (UTC), TTLs are seconds.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from castore.index import aliases as _aliases
from castore.index import collection as _collection
from castore.index import entries as _entries
from castore.index import migrations as _migrations
from castore.index import queries as _queries
from castore.index import runs as _runs
from castore.index import transfer as _transfer
from castore.index import versions as _versions
from castore.index.database import DEFAULT_TIMEOUT, Database
from castore.index.ids import now_us, uuid7
from castore.index.statcache import StatCache
from castore.refs import LATEST

__all__ = ["LATEST", "Catalog", "Database", "StatCache", "now_us", "uuid7"]


class Catalog(Database):
    """The SQLite catalogue of a store: its :class:`Database` with the operations as methods.

    Opening a writable catalogue brings its schema up to date (``migrations``).

    Args:
        path: the database file (``STORE/catalog.db``).
        timeout: seconds to wait for SQLite's write lock before :class:`LockTimeoutError`.
        read_only: open with ``mode=ro``; any write raises :class:`ReadOnlyStoreError`.
        durable: ``synchronous=FULL`` (every commit reaches the disk) instead of ``NORMAL``.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        read_only: bool = False,
        durable: bool = True,
    ) -> None:
        super().__init__(path, timeout=timeout, read_only=read_only, durable=durable)
        self.stat_cache = StatCache(self)
        conn = self.conn
        if not read_only:
            try:
                _migrations.migrate(conn)
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc

    def now(self) -> int:
        """Catalogue time, read through this module's ``now_us``.

        Tests and gc's clock move time by patching ``castore.index.catalog.now_us``; every
        operation asks ``db.now()``, so the patch reaches all of them.
        """
        return now_us()

    # -- collections (collection.py) -------------------------------------------------------
    get_collection = _collection.get_collection
    get_collection_by_id = _collection.get_collection_by_id
    ensure_collection = _collection.ensure_collection
    list_collections = _collection.list_collections
    list_collections_page = _collection.list_collections_page
    update_collection = _collection.update_collection
    delete_collection = _collection.delete_collection

    # -- version reads (queries.py) --------------------------------------------------------
    get_version = _queries.get_version
    live_version = _queries.live_version
    version_by_number = _queries.version_by_number
    version_by_alias = _queries.version_by_alias
    newest_live = _queries.newest_live
    versions_by_digest_prefix = _queries.versions_by_digest_prefix
    list_drafts = _queries.list_drafts
    expired_versions = _queries.expired_versions
    query_versions = _queries.query_versions
    count_versions_where = _queries.count_versions_where
    count_versions = _queries.count_versions
    latest_per_collection = _queries.latest_per_collection
    types = _queries.types

    # -- version writes and tags (versions.py) ---------------------------------------------
    create_version = _versions.create_version
    update_version = _versions.update_version
    set_ttl = _versions.set_ttl
    commit_version = _versions.commit_version
    delete_version = _versions.delete_version
    links_to = _versions.links_to
    discard_draft = _versions.discard_draft
    tags_of = _versions.tags_of
    add_tags = _versions.add_tags
    remove_tags = _versions.remove_tags

    # -- aliases (aliases.py) --------------------------------------------------------------
    collection_aliases = _aliases.collection_aliases
    stored_aliases_of = _aliases.stored_aliases_of
    aliases_of = _aliases.aliases_of
    set_alias = _aliases.set_alias
    remove_alias = _aliases.remove_alias
    repoint_latest = _aliases.repoint_latest
    alias_history = _aliases.alias_history
    alias_events = _aliases.alias_events

    # -- entries (entries.py) --------------------------------------------------------------
    put_entries = _entries.put_entries
    delete_entries = _entries.delete_entries
    delete_all_entries = _entries.delete_all_entries
    copy_entries = _entries.copy_entries
    iter_entries = _entries.iter_entries
    entry_totals = _entries.entry_totals
    get_entry = _entries.get_entry
    referenced_digests = _entries.referenced_digests

    # -- runs and lineage (runs.py) --------------------------------------------------------
    create_run = _runs.create_run
    get_run = _runs.get_run
    find_run = _runs.find_run
    crashed_running_ids = _runs.crashed_running_ids
    end_run = _runs.end_run
    mark_crashed = _runs.mark_crashed
    merge_summary = _runs.merge_summary
    query_runs = _runs.query_runs
    add_edge = _runs.add_edge
    edge_versions = _runs.edge_versions
    versions_by_ids = _runs.versions_by_ids
    runs_by_ids = _runs.runs_by_ids
    runs_of_version = _runs.runs_of_version
    lineage_edges = _runs.lineage_edges
    export_run_records = _runs.export_run_records
    import_run_records = _runs.import_run_records
    # -- offline transfer (transfer.py) ----------------------------------------------------
    known_sha256 = _transfer.known_sha256
    remember_sha256 = _transfer.remember_sha256
    add_remote = _transfer.add_remote
    get_remote = _transfer.get_remote
    list_remotes = _transfer.list_remotes
    remove_remote = _transfer.remove_remote
    record_blob_remote = _transfer.record_blob_remote
    forget_blob_remote = _transfer.forget_blob_remote
    blob_homes = _transfer.blob_homes
    remote_held_digests = _transfer.remote_held_digests
    get_setting = _transfer.get_setting
    set_setting = _transfer.set_setting
