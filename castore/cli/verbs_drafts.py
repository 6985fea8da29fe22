"""The ``drafts`` verb: list the drafts nobody finalized, and discard them.

A process killed during ``add`` leaves its draft behind (16 drafts after 67 kills,
invisible to the user). ``castore drafts`` shows them with their age and file count and
discards one (``--discard ID``) or every one older than a duration (``--all-older-than``),
planning first like the other destructive verbs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import click

from castore.cli import formatting as fmt
from castore.cli.common import (
    EXIT_NOT_FOUND,
    CliError,
    State,
    confirm,
    destructive_options,
    output_options,
    pass_state,
)
from castore.cli.parsing import DURATION

__all__ = ["drafts", "started_at"]


def started_at(draft_id: str) -> datetime | None:
    """When a draft was started, read from its id (a UUIDv7, ``API.md``); None if it is not one.

    Example:
        >>> started_at("0199c455-21ee-74c6-b747-19a82f1a1e67").year
        2025
    """
    hexdigits = draft_id.replace("-", "")
    if len(hexdigits) != 32 or hexdigits[12] != "7":
        return None
    try:
        ms = int(hexdigits[:12], 16)
    except ValueError:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _record(draft: Any, now: datetime) -> dict[str, Any]:
    started = started_at(draft.id)
    return {
        "id": draft.id,
        "collection": draft.collection,
        "type": draft.type,
        "file_count": len(draft),
        "started_at": fmt.to_jsonable(started),
        "age": (now - started).total_seconds() if started is not None else None,
    }


def _pick(
    found: list[Any], discard: str | None, older: timedelta | None, now: datetime
) -> list[Any]:
    if discard is not None:
        chosen = [d for d in found if d.id == discard] or [
            d for d in found if d.id.startswith(discard)
        ]
        if not chosen:
            raise CliError(f"no draft with id {discard!r}",
                           hint="list them with `castore drafts`", code=EXIT_NOT_FOUND)
        if len(chosen) > 1:
            raise click.BadParameter(
                f"{discard!r} starts {len(chosen)} draft ids; give more characters",
                param_hint="--discard",
            )
        return chosen
    assert older is not None
    picked = []
    for d in found:
        started = started_at(d.id)
        if started is not None and now - started > older:
            picked.append(d)
    return picked


@click.command(short_help="List or discard unfinished drafts.")
@click.argument("collection", required=False)
@click.option("--discard", metavar="ID", help="Discard the draft with this id (or id prefix).")
@click.option("--all-older-than", "older", type=DURATION, metavar="DURATION",
              help="Discard every draft started more than DURATION ago (1d).")
@destructive_options
@output_options
@pass_state
def drafts(
    state: State,
    collection: str | None,
    discard: str | None,
    older: timedelta | None,
    yes: bool,
    dry_run: bool,
) -> None:
    """List the drafts never finalized (of COLLECTION, or all), oldest first; discard them.

    A draft is left by an `add` that was killed or failed; another process may still be
    writing a young one, so prefer --all-older-than to discarding by id. Discarding keeps
    the blobs, which `castore gc` frees once nothing references them.

    \b
    Examples:
      castore drafts
      castore drafts --all-older-than 1d --dry-run
      castore drafts --discard 0199c455-21ee -y
    """
    if discard is not None and older is not None:
        raise click.UsageError("give --discard ID or --all-older-than DURATION, not both")
    store = state.open()
    if collection is not None:
        store.collection(collection)  # NotFoundError (exit 4) rather than an empty list
    found = list(store.drafts(collection))
    now = datetime.now(UTC)
    if discard is None and older is None:
        _list(state, found, now)
        return
    chosen = _pick(found, discard, older, now)
    records = [_record(d, now) for d in chosen]
    what = f"{len(chosen)} draft{'' if len(chosen) == 1 else 's'}"
    if chosen and not dry_run:
        confirm(f"discard {what}?", yes=yes)
        for d in chosen:
            d.discard()
    if state.json:
        fmt.echo_json({"discarded": records, "dry_run": dry_run})
        return
    verb = "would discard" if dry_run else "discarded"
    for r in records:
        click.echo(r["id"] if state.quiet else f"{verb} {r['collection']} draft {r['id']}")
    if not state.quiet:
        freed = "; `castore gc` frees their blobs" if chosen and not dry_run else ""
        click.echo(f"{verb} {what}{freed}")


def _list(state: State, found: list[Any], now: datetime) -> None:
    records = [_record(d, now) for d in found]
    if state.json:
        fmt.echo_json(records)
        return
    if state.quiet:
        for r in records:
            click.echo(r["id"])
        return
    if not records:
        fmt.err("No drafts.")
        return
    rows = [
        (r["collection"], r["id"],
         fmt.human_duration(timedelta(seconds=r["age"])) if r["age"] is not None else None,
         r["file_count"])
        for r in records
    ]
    click.echo(fmt.render_table(["collection", "id", "age", "files"], rows, right=(2, 3)))
