"""Verbs that change or clean up: ``alias``, ``tag``, ``ttl``, ``rm``, ``gc``, ``prune``,
``fsck`` and ``du``.

Destructive verbs (``rm``, ``gc``, ``prune``, ``fsck --repair``, ``alias rm``, ``ttl``) plan
first, print the plan with ``--dry-run`` (changing nothing), and otherwise ask before acting
unless ``-y`` (refusing at once when stdin is not a terminal).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from castore.cli import formatting as fmt
from castore.cli.common import (
    EXIT_VERIFY,
    State,
    confirm,
    destructive_options,
    output_options,
    pass_state,
)
from castore.cli.parsing import DURATION, DurationType
from castore.cli.wording import cli_wording

__all__ = ["alias", "du", "fsck", "gc", "prune", "rm", "tag", "ttl"]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# -- alias --------------------------------------------------------------------------------


@click.group()
def alias() -> None:
    """Set, remove and list aliases (movable names such as prod, best).

    \b
    Examples:
      castore alias set mnist:v3 prod
      castore alias rm mnist prod
      castore alias ls mnist
    """


@alias.command("set")
@click.argument("ref")
@click.argument("name")
@output_options
@pass_state
def alias_set(state: State, ref: str, name: str) -> None:
    """Point alias NAME at the version REF (moving it from another version).

    \b
    Examples:
      castore alias set mnist:v3 prod
      castore alias set resnet@9f2c1a best
    """
    store = state.open()
    v = store.get(ref)
    before = store.collection(v.collection).aliases.get(name)
    v.add_alias(name)
    moved_from = f"{v.collection}:{before}" if before and before != v.version else None
    if state.json:
        fmt.echo_json({"collection": v.collection, "alias": name, "ref": v.ref,
                       "previous": moved_from})
    elif state.quiet:
        click.echo(f"{v.collection}:{name}")
    elif moved_from:
        click.echo(f"{v.collection}:{name} moved from {moved_from} to {v.ref}")
    else:
        click.echo(f"{v.collection}:{name} -> {v.ref}")


@alias.command("rm")
@click.argument("collection")
@click.argument("name", required=False)
@destructive_options
@output_options
@pass_state
def alias_rm(
    state: State, collection: str, name: str | None, yes: bool, dry_run: bool
) -> None:
    """Remove alias NAME from COLLECTION (also written COLLECTION:NAME).

    \b
    Examples:
      castore alias rm mnist prod
      castore alias rm mnist:prod -y
    """
    if name is None:
        collection, sep, name = collection.partition(":")
        if not sep or not name:
            raise click.UsageError("give COLLECTION NAME or COLLECTION:NAME")
    v = state.open().get(f"{collection}:{name}")
    record = {"collection": collection, "alias": name, "ref": v.ref, "dry_run": dry_run}
    if dry_run:
        _done(state, record, f"would remove {collection}:{name} (points at {v.ref})")
        return
    confirm(f"remove alias {collection}:{name} (points at {v.ref})?", yes=yes)
    v.remove_alias(name)
    _done(state, record, f"removed {collection}:{name} (was {v.ref})")


@alias.command("ls")
@click.argument("collection", required=False)
@output_options
@pass_state
def alias_ls(state: State, collection: str | None) -> None:
    """List aliases and the versions they point at (of COLLECTION, or of every collection).

    \b
    Examples:
      castore alias ls
      castore alias ls mnist --json
    """
    store = state.open()
    colls = [store.collection(collection)] if collection else store.collections()
    rows = [
        {"collection": c.name, "alias": a, "ref": f"{c.name}:{vn}"}
        for c in colls
        for a, vn in sorted(c.aliases.items())
    ]
    if state.json:
        fmt.echo_json(rows)
    elif state.quiet:
        for r in rows:
            click.echo(f"{r['collection']}:{r['alias']}")
    elif not rows:
        fmt.err("No aliases found.")
    else:
        click.echo(fmt.render_table(
            ["collection", "alias", "version"],
            [(r["collection"], r["alias"], r["ref"]) for r in rows],
        ))


# -- tag ----------------------------------------------------------------------------------


@click.group()
def tag() -> None:
    """Add and remove tags of a version.

    \b
    Examples:
      castore tag add mnist:v3 reviewed gold
      castore tag rm mnist:v3 gold
    """


@tag.command("add")
@click.argument("ref")
@click.argument("tags", nargs=-1, required=True)
@output_options
@pass_state
def tag_add(state: State, ref: str, tags: tuple[str, ...]) -> None:
    """Add TAGS to the version REF.

    \b
    Example:
      castore tag add mnist:v3 reviewed gold
    """
    v = state.open().get(ref).add_tags(list(tags))
    _tags_done(state, v)


@tag.command("rm")
@click.argument("ref")
@click.argument("tags", nargs=-1, required=True)
@output_options
@pass_state
def tag_rm(state: State, ref: str, tags: tuple[str, ...]) -> None:
    """Remove TAGS from the version REF (absent tags are ignored).

    \b
    Example:
      castore tag rm mnist:v3 gold
    """
    v = state.open().get(ref).remove_tags(list(tags))
    _tags_done(state, v)


def _tags_done(state: State, v: Any) -> None:
    if state.json:
        fmt.echo_json({"ref": v.ref, "tags": v.tags})
    elif state.quiet:
        click.echo(v.ref)
    else:
        click.echo(f"{v.ref} tags: {', '.join(v.tags) or '(none)'}")


# -- ttl, rm ------------------------------------------------------------------------------


@click.command(short_help="Set or remove a version's time to live.")
@click.argument("ref")
@click.argument(
    "duration", type=DurationType(allow_none=True, positive=True), metavar="DURATION|none"
)
@click.option("--default", "as_default", is_flag=True,
              help="Set the collection's default TTL for versions created from now on.")
@destructive_options
@output_options
@pass_state
def ttl(
    state: State, ref: str, duration: Any, as_default: bool, yes: bool, dry_run: bool
) -> None:
    """Expire a version DURATION after its creation (none: never expires).

    An expired version disappears from listings at once and `castore gc` deletes it; a version
    holding a user alias never expires.

    \b
    Examples:
      castore ttl mnist:v1 30d
      castore ttl mnist:v1 none
      castore ttl mnist 90d --default      # versions created from now on
    """
    store = state.open()
    shown = fmt.human_duration(duration)
    if as_default:
        c = store.collection(ref)
        record = {"collection": c.name, "default_ttl": fmt.to_jsonable(duration),
                  "dry_run": dry_run}
        if dry_run:
            _done(state, record, f"would set the default TTL of {c.name} to {shown}")
            return
        confirm(f"set the default TTL of {c.name} to {shown}?", yes=yes)
        c.update(default_ttl=duration)
        _done(state, record, f"default TTL of {c.name}: {shown}")
        return
    v = store.get(ref)
    expires = v.created_at + duration if duration is not None else None
    record = {"ref": v.ref, "ttl": fmt.to_jsonable(duration),
              "expires_at": fmt.to_jsonable(expires), "dry_run": dry_run}
    when = f", expires {fmt.relative_time(expires)}" if expires is not None else ""
    if dry_run:
        _done(state, record, f"would set the TTL of {v.ref} to {shown}{when}")
        return
    confirm(f"set the TTL of {v.ref} to {shown}{when}?", yes=yes)
    v.set_ttl(duration)
    _done(state, record, f"TTL of {v.ref}: {shown}{when}")


@click.command(short_help="Delete a version or a collection.")
@click.argument("ref")
@click.option("--delete-aliases", is_flag=True,
              help="Also remove the user aliases pointing at the version.")
@click.option("--collection", "whole", is_flag=True,
              help="Delete the collection REF names, with all its versions.")
@destructive_options
@output_options
@pass_state
def rm(
    state: State, ref: str, delete_aliases: bool, whole: bool, yes: bool, dry_run: bool
) -> None:
    """Delete a version (latest moves back); its blobs go at the next `castore gc`.

    A version holding aliases other than latest is kept (exit 5) unless --delete-aliases.

    \b
    Examples:
      castore rm mnist:v2
      castore rm mnist:v3 --delete-aliases -y
      castore rm mnist --collection --dry-run
    """
    store = state.open()
    if whole:
        c = store.collection(ref)
        count = store.count(collection=c.name)
        record = {"collection": c.name, "versions": count, "dry_run": dry_run}
        what = f"collection {c.name} and its {_plural(count, 'version')}"
        if dry_run:
            _done(state, record, f"would delete {what}")
            return
        confirm(f"delete {what}?", yes=yes)
        c.delete()
        _done(state, record, f"deleted {what}")
        return
    v = store.get(ref)
    user_aliases = [a for a in v.aliases if a != "latest"]
    record = {"ref": v.ref, "aliases": user_aliases, "delete_aliases": delete_aliases,
              "dry_run": dry_run}
    held = f" (aliases: {', '.join(user_aliases)})" if user_aliases else ""
    if dry_run:
        note = ""
        if user_aliases and not delete_aliases:
            note = "; it holds aliases, so it would be kept without --delete-aliases"
        _done(state, record, f"would delete {v.ref}{held}{note}")
        return
    confirm(f"delete {v.ref}{held}?", yes=yes)
    v.delete(delete_aliases=delete_aliases)
    _done(state, record, f"deleted {v.ref}; its blobs go at the next `castore gc`")


def _done(state: State, record: dict[str, Any], message: str) -> None:
    if state.json:
        fmt.echo_json(record)
    elif not state.quiet:
        click.echo(message)


# -- gc, prune, fsck ----------------------------------------------------------------------


@click.command(short_help="Delete expired versions and unreferenced blobs.")
@click.option("--grace", type=DURATION, metavar="DURATION",
              help="Keep unreferenced blobs younger than this (default 1h).")
@destructive_options
@output_options
@pass_state
def gc(state: State, grace: Any, yes: bool, dry_run: bool) -> None:
    """Delete expired versions and the blobs nothing references any more.

    Safe beside writers in other processes.

    \b
    Examples:
      castore gc --dry-run
      castore gc -y --grace 0s
    """
    store = state.open()
    kwargs: dict[str, Any] = {} if grace is None else {"grace": grace}
    plan = store.gc(dry_run=True, **kwargs)
    tmp_files, drafts = plan.tmp_files_deleted, plan.drafts_discarded
    what = (
        f"{_plural(len(plan.versions_deleted), 'expired version')} and "
        f"{_plural(plan.blobs_deleted, 'blob')} ({fmt.human_size(plan.bytes_freed)})"
        + (f" and {_plural(drafts, 'stale draft')}" if drafts else "")
        + (f" and {_plural(tmp_files, 'stale temp file')}" if tmp_files else "")
        + (f", and evict {_plural(plan.blobs_evicted, 'blob')} "
           f"({fmt.human_size(plan.bytes_evicted)}) a remote holds (budget)"
           if plan.blobs_evicted else "")
    )
    if dry_run:
        report = plan
    elif not (plan.versions_deleted or plan.blobs_deleted or tmp_files or drafts
              or plan.blobs_evicted):
        report = plan.model_copy(update={"dry_run": False})  # nothing to do, nothing asked
    else:
        confirm(f"delete {what}?", yes=yes)
        report = store.gc(**kwargs)
    _gc_done(state, report)


def _gc_done(state: State, report: Any) -> None:
    if state.json:
        fmt.echo_json(report)
        return
    if state.quiet:
        for ref in report.versions_deleted:
            click.echo(ref)
        return
    verb = "would delete" if report.dry_run else "deleted"
    for ref in report.versions_deleted:
        click.echo(f"{verb} {ref}")
    now = datetime.now(UTC)
    removing = "would remove" if report.dry_run else "removed"
    _echo_leftovers(report.leftovers_removed, lambda x: f"{removing} {_leftover(x)}: {x.reason}")
    _echo_leftovers(
        report.leftovers_kept, lambda x: f"kept for now: {_leftover(x)}; {_when(x, now)}"
    )
    freed = "would free" if report.dry_run else "freed"
    counts = ((report.drafts_discarded, "draft"), (report.tmp_files_deleted, "temp file"))
    swept = [_plural(n, word) for n, word in counts if n]
    later = len(report.leftovers_kept)
    click.echo(
        f"{verb} {_plural(len(report.versions_deleted), 'version')} and "
        f"{_plural(report.blobs_deleted, 'blob')}"
        + (f", {removing} {' and '.join(swept)}" if swept else "")
        + f"; {freed} {fmt.human_size(report.bytes_freed)}"
        + (f"; {_plural(later, 'leftover')} kept for a later gc" if later else "")
    )


#: Leftovers named one a line; the rest are counted (926 temp files after a crash test).
_LEFTOVERS_SHOWN = 10


def _echo_leftovers(items: list[Any], line: Callable[[Any], str]) -> None:
    for item in items[:_LEFTOVERS_SHOWN]:
        click.echo(line(item))
    if len(items) > _LEFTOVERS_SHOWN:
        more = len(items) - _LEFTOVERS_SHOWN
        click.echo(f"  … and {more} more (list them with `castore gc --dry-run --json`)")


def _leftover(item: Any) -> str:
    held = f"{fmt.human_size(item.size)}, {fmt.human_duration(timedelta(seconds=item.age))} old"
    if item.kind == "draft":
        return f"draft {item.name} of {item.collection} ({held})"
    return f"temp file {item.name} ({held})"


def _when(item: Any, now: datetime) -> str:
    """When a later gc removes a kept leftover, in the CLI's words."""
    if item.due is None:
        return f"gc discards it {item.reason}"
    return f"gc removes it {item.reason}, {fmt.relative_time(item.due, now)}"


@click.command(short_help="Delete old versions by a retention policy.")
@click.argument("collection", required=False)
@click.option("--keep-last", type=click.IntRange(min=0), metavar="N",
              help="Keep the newest N versions of each collection.")
@click.option("--only-unused", is_flag=True,
              help="Only versions no run used or produced.")
@destructive_options
@output_options
@pass_state
def prune(
    state: State,
    collection: str | None,
    keep_last: int | None,
    only_unused: bool,
    yes: bool,
    dry_run: bool,
) -> None:
    """Delete old versions by policy; versions holding an alias (latest too) are kept.

    Blobs are freed by the next `castore gc`.

    \b
    Examples:
      castore prune --keep-last 5 --dry-run
      castore prune mnist --keep-last 2 -y
    """
    if keep_last is None and not only_unused:
        raise click.UsageError("give a policy: --keep-last N and/or --only-unused")
    store = state.open()
    if collection is not None:
        store.collection(collection)  # NotFoundError (exit 4)
    kwargs = {"keep_last": keep_last, "only_unused": only_unused}
    plan = store.prune(collection, dry_run=True, **kwargs)
    if dry_run:
        report = plan
    elif not plan.versions_deleted:
        report = plan.model_copy(update={"dry_run": False})  # nothing to do, nothing asked
    else:
        confirm(f"delete {_plural(len(plan.versions_deleted), 'version')}?", yes=yes)
        report = store.prune(collection, **kwargs)
    if state.json:
        fmt.echo_json(report)
        return
    verb = "would delete" if report.dry_run else "deleted"
    for ref in report.versions_deleted:
        click.echo(ref if state.quiet else f"{verb} {ref}")
    if not state.quiet:
        click.echo(f"{verb} {_plural(len(report.versions_deleted), 'version')}")


@click.command(short_help="Check (and repair) the whole store.")
@click.option("--repair", is_flag=True,
              help="Fix what can be fixed: quarantine corrupt blobs, drop stale temp files.")
@destructive_options
@output_options
@pass_state
def fsck(state: State, repair: bool, yes: bool, dry_run: bool) -> None:
    """Check the whole store: every blob re-hashed, every entry and alias resolvable.

    Exits 3 when it finds errors (warnings such as orphan blobs do not count).

    \b
    Examples:
      castore fsck
      castore fsck --repair --dry-run
      castore fsck --repair -y
    """
    import castore

    try:
        store = state.open()
    except castore.CatalogCorruptError:
        # The catalogue cannot even be opened: only a repair (which rebuilds it from the
        # manifest blobs, keeping the damaged file aside) can help.
        if not repair or dry_run:
            raise
        confirm("the catalogue is damaged: set it aside and rebuild it from the blobs?", yes=yes)
        report = castore.repair(state.store_path)
        store = None
    if store is None:
        pass
    elif repair and not dry_run and yes:  # one pass: re-hashing every blob twice is slow
        report = store.fsck(repair=True)
    else:
        report = store.fsck(repair=False)
        if repair and not dry_run and report.findings:
            confirm(f"repair {_plural(len(report.findings), 'finding')}?", yes=yes)
            report = store.fsck(repair=True)
    if state.json:
        fmt.echo_json(report)
    elif state.quiet:
        for f in report.findings:
            click.echo(f"{f.severity} {f.kind} {f.ref or f.path or f.digest or ''}".rstrip())
    else:
        rows = [
            (f.severity, f.kind, f.ref or f.path or fmt.short_digest(f.digest),
             cli_wording(f.message) + (" [repaired]" if f.repaired else ""))
            for f in report.findings
        ]
        if rows:
            click.echo(fmt.render_table(["severity", "kind", "where", "message"], rows))
        click.echo(_fsck_status(report))
    if not report.ok:
        if report.repaired:
            fmt.err(
                "error: the store still has errors that --repair cannot fix (hint: delete the "
                "damaged versions with `castore rm`, or log their files again with `castore add`)"
            )
        else:
            fmt.err("error: the store has errors (hint: `castore fsck --repair` fixes what it can)")
        raise click.exceptions.Exit(EXIT_VERIFY)


def _fsck_status(report: Any) -> str:
    """The last line of ``fsck``: true to what was found and what was fixed.

    ``"ok: 1 error"`` after a repair read as a contradiction: errors that a repair
    fixed are counted as fixed, and "ok" is said only when nothing was found.
    """
    errors = [f for f in report.findings if f.severity == "error"]
    fixed = sum(1 for f in errors if f.repaired)
    infos = sum(1 for f in report.findings if f.severity == "info")
    warnings = _plural(len(report.findings) - len(errors) - infos, "warning")
    if infos:
        warnings += f", {infos} note{'s' if infos != 1 else ''}"
    if not report.ok:
        note = f" ({fixed} repaired)" if fixed else ""
        return f"damaged: {_plural(len(errors), 'error')}{note}, {warnings}"
    if errors:
        return f"repaired: {_plural(len(errors), 'error')} fixed, {warnings}"
    return f"ok: 0 errors, {warnings}"


# -- du -----------------------------------------------------------------------------------


@click.command(short_help="Show sizes per collection and for the store.")
@click.argument("collection", required=False)
@output_options
@pass_state
def du(state: State, collection: str | None) -> None:
    """Show sizes: per collection (logical bytes of live versions) and for the whole store,
    with the bytes stored here and those only a remote holds (evicted under `castore budget`).

    \b
    Examples:
      castore du
      castore du mnist --json
    """
    store = state.open()
    colls = [store.collection(collection)] if collection else store.collections()
    rows = []
    for c in colls:
        versions = store.versions(collection=c.name, limit=None).items
        rows.append({"collection": c.name, "type": c.type, "versions": len(versions),
                     "logical_bytes": sum(v.size for v in versions)})
    stats = store.stats() if collection is None else None
    if state.json:
        fmt.echo_json({"collections": rows, "store": stats})
        return
    if state.quiet:
        for r in rows:
            click.echo(f"{r['logical_bytes']}\t{r['collection']}")
        return
    if rows:
        click.echo(fmt.render_table(
            ["collection", "type", "versions", "size"],
            [(r["collection"], r["type"], r["versions"], fmt.human_size(r["logical_bytes"]))
             for r in rows],
            right=(2, 3),
        ))
    if stats is not None:
        click.echo(
            f"store: {_plural(stats.collections, 'collection')}, "
            f"{_plural(stats.versions, 'version')}, {_plural(stats.blobs, 'blob')}; "
            f"{fmt.human_size(stats.logical_bytes)} logical, "
            f"{fmt.human_size(stats.stored_bytes)} stored "
            f"(dedup ratio {stats.dedup_ratio:.2f})"
        )
        if stats.remote_only_blobs or stats.budget is not None:
            budget = "no budget" if stats.budget is None else \
                f"budget {fmt.human_size(stats.budget)}"
            click.echo(
                f"local: {fmt.human_size(stats.stored_bytes)}; remote only: "
                f"{fmt.human_size(stats.remote_only_bytes)} in "
                f"{_plural(stats.remote_only_blobs, 'blob')} (fetched back on read); {budget}"
            )
