"""Verbs that log and inspect versions: ``add``, ``ls``, ``show``, ``files`` and ``cat``."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from castore.cli import formatting as fmt
from castore.cli.common import (
    EXIT_NOT_FOUND,
    CliError,
    State,
    output_options,
    pass_state,
)
from castore.cli.parsing import DURATION, POSITIVE_DURATION, SIZE, parse_metadata

__all__ = ["add", "cat", "files", "ls", "show"]

SORT_KEYS = ["created_at", "updated_at", "size", "number", "name"]


def _metadata(items: tuple[str, ...]) -> dict[str, Any] | None:
    if not items:
        return None
    try:
        return parse_metadata(items)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--metadata") from exc


# -- add ----------------------------------------------------------------------------------


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", metavar="NAME", help="Collection name (default: the PATH's basename).")
@click.option("--type", "type_", metavar="TYPE",
              help="Collection type, fixed on first use (default: dataset).")
@click.option("--description", "-m", metavar="TEXT", help="Description of the version.")
@click.option("--metadata", multiple=True, metavar="K=V",
              help="Metadata: key=string or key:=<json> (f1:=0.96). Repeatable.")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Tag the version. Repeatable.")
@click.option("--alias", "aliases", multiple=True, metavar="ALIAS",
              help="Point an alias at the version (moves it). Repeatable.")
@click.option("--ignore", multiple=True, metavar="PATTERN",
              help="gitignore-style pattern to leave out of a directory. Repeatable.")
@click.option("--follow-symlinks", is_flag=True,
              help="Store the content of files that links in the directory point to outside "
                   "it (else such a link is an error). Links to directories are never followed.")
@click.option("--ttl", type=POSITIVE_DURATION, metavar="DURATION",
              help="Expire the version after this long (30d, 12h).")
@output_options
@pass_state
def add(
    state: State,
    path: Path,
    name: str | None,
    type_: str | None,
    description: str | None,
    metadata: tuple[str, ...],
    tags: tuple[str, ...],
    aliases: tuple[str, ...],
    ignore: tuple[str, ...],
    follow_symlinks: bool,
    ttl: Any,
) -> None:
    """Log a file or a directory as a new version of a collection.

    If the content equals the latest version's, no version is made ("unchanged") and the
    aliases and tags are applied to the latest one. Creates the store if it is missing.

    \b
    Examples:
      castore add docs --name castore-docs
      castore add model.pt --name resnet --type model --alias prod --metadata f1:=0.96
      castore add data/ --name mnist --ignore '*.tmp' --ignore .git/ --tag raw
    """
    import castore

    meta = _metadata(metadata)
    if not path.exists() and not path.is_symlink():
        raise CliError(f"{str(path)!r} does not exist", hint="give a file or a directory",
                       code=EXIT_NOT_FOUND)
    if not (path.is_file() or path.is_dir()):
        raise CliError(f"{str(path)!r} is neither a regular file nor a directory")
    name = name or path.absolute().name
    store = state.open(create=True)
    try:
        previous = store.get(f"{name}:latest").id
    except (castore.NotFoundError, castore.InvalidReferenceError):
        previous = None
    draft = store.draft(name, type=type_, description=description, metadata=meta,
                        tags=list(tags))
    try:
        if path.is_dir():
            with state.progress_bar(f"add {name}") as bar:
                draft.add_dir(path, ignore=list(ignore), follow_symlinks=follow_symlinks,
                              progress=bar.callback)
        else:
            draft.add_file(path)
        version = draft.finalize(aliases=list(aliases))
    except BaseException:
        try:
            draft.discard()
        except Exception:  # the original error matters more; gc sweeps a stale draft
            pass
        raise
    if ttl is not None:
        version.set_ttl(ttl)
    unchanged = previous is not None and version.id == previous
    if state.json:
        fmt.echo_json({**fmt.version_dict(version), "unchanged": unchanged})
    elif state.quiet:
        click.echo(version.ref)
    elif unchanged:
        click.echo(f"unchanged, still {version.ref} ({fmt.summary(version)})")
    else:
        click.echo(f"added {version.ref} ({fmt.summary(version)})")


# -- ls -----------------------------------------------------------------------------------


@click.command(short_help="List collections, or versions with filters.")
@click.argument("name", required=False)
@click.option("--type", "type_", metavar="TYPE", help="Only this collection type.")
@click.option("--tag", "tags", multiple=True, metavar="TAG",
              help="Versions with this tag (all given tags; any with --match any).")
@click.option("--alias", metavar="ALIAS", help="Versions holding this alias.")
@click.option("--metadata", multiple=True, metavar="K=V", help="Versions with this metadata.")
@click.option("--since", type=DURATION, metavar="DURATION",
              help="Versions created within this long (7d).")
@click.option("--before", type=DURATION, metavar="DURATION",
              help="Versions created more than this long ago.")
@click.option("--min-size", type=SIZE, metavar="SIZE", help="Versions of at least SIZE (1GB).")
@click.option("--max-size", type=SIZE, metavar="SIZE", help="Versions of at most SIZE.")
@click.option("--match", type=click.Choice(["all", "any"]), default="all", show_default=True,
              help="Combine the filters with AND (all) or OR (any).")
@click.option("--sort", metavar="KEY", default="-created_at", show_default=True,
              help=f"One of {', '.join(SORT_KEYS)}; '-' for descending.")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="At most this many collections or versions (0: no limit).")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many.")
@click.option("--versions", "-v", "all_versions", is_flag=True,
              help="List versions of every collection instead of collections.")
@output_options
@pass_state
def ls(
    state: State,
    name: str | None,
    type_: str | None,
    tags: tuple[str, ...],
    alias: str | None,
    metadata: tuple[str, ...],
    since: Any,
    before: Any,
    min_size: int | None,
    max_size: int | None,
    match: str,
    sort: str,
    limit: int,
    offset: int,
    all_versions: bool,
) -> None:
    """List collections, or the versions of NAME (or matching the filters), newest first.

    \b
    Examples:
      castore ls
      castore ls mnist
      castore ls --type model --tag prod --since 30d --json
      castore ls mnist --sort=-size --limit 5 -q | xargs -n1 castore verify
    """
    meta = _metadata(metadata)
    for key in sort.split(","):
        if key.strip().lstrip("-+") not in SORT_KEYS:
            raise click.BadParameter(
                f"{key!r} is not a sort key; choose from {', '.join(SORT_KEYS)} ('-' = desc)",
                param_hint="--sort",
            )
    store = state.open()
    version_filters = bool(tags or alias or meta or since or before or min_size or max_size)
    if name is None and not version_filters and not all_versions:
        _ls_collections(state, store, type_, limit=limit, offset=offset)
        return
    if name is not None:
        store.collection(name)  # NotFoundError (exit 4) rather than an empty list
    now = datetime.now(UTC)
    query: dict[str, Any] = {
        "collection": name,
        "type": type_,
        "tags": list(tags) or None,
        "alias": alias,
        "metadata": meta,
        "created_after": now - since if since else None,
        "created_before": now - before if before else None,
        "match": match,
        "sort": sort,
    }
    if min_size is None and max_size is None:
        page = store.versions(**query, limit=limit or None, offset=offset)
        items, total, has_more = list(page.items), page.total, page.has_more
    else:  # sizes are filtered here, so fetch every match and page afterwards
        every = [
            v for v in store.versions(**query, limit=None).items
            if (min_size is None or v.size >= min_size)
            and (max_size is None or v.size <= max_size)
        ]
        total = len(every)
        items = every[offset: offset + limit] if limit else every[offset:]
        has_more = offset + len(items) < total
    if state.json:
        fmt.echo_json({
            "items": [fmt.version_dict(v) for v in items],
            "total": total,
            "limit": limit or None,
            "offset": offset,
            "has_more": has_more,
        })
        return
    if state.quiet:
        for v in items:
            click.echo(v.ref)
        return
    if not items:
        fmt.err("No versions found.")
        return
    rows: list[tuple[Any, ...]] = [
        (
            v.ref,
            v.type if name is None else None,
            ",".join(v.aliases) or None,
            ",".join(v.tags) or None,
            v.file_count,
            fmt.human_size(v.size),
            fmt.relative_time(v.created_at, now),
        )
        for v in items
    ]
    headers = ["ref", "type", "aliases", "tags", "files", "size", "created"]
    if name is not None:  # one collection: its type is the same on every row
        headers.pop(1)
        rows = [(r[0], *r[2:]) for r in rows]
    click.echo(fmt.render_table(headers, rows, right=(len(headers) - 3, len(headers) - 2)))
    if has_more:
        fmt.err(f"showing {len(items)} of {total}; use --limit/--offset for more")


def _ls_collections(
    state: State, store: Any, type_: str | None, *, limit: int, offset: int
) -> None:
    every = store.collections(type=type_)
    # --limit/--offset page collections too (they were ignored); the JSON stays a
    # list of collection records, and a cut list says so on stderr.
    collections = every[offset: offset + limit] if limit else every[offset:]
    latest = {v.collection: v for v in store.latest(type=type_)}
    if state.quiet:
        for c in collections:
            click.echo(c.name)
        return
    records = []
    for c in collections:
        v = latest.get(c.name)
        records.append({
            "name": c.name,
            "type": c.type,
            "description": c.description,
            "tags": c.tags,
            "aliases": c.aliases,
            "default_ttl": c.default_ttl.total_seconds() if c.default_ttl else None,
            "created_at": fmt.to_jsonable(c.created_at),
            "versions": store.count(collection=c.name),
            "latest": fmt.version_dict(v) if v is not None else None,
        })
    if state.json:
        fmt.echo_json(records)
        return
    if not records:
        fmt.err("No collections found. Log one with `castore add PATH --name NAME`.")
        return
    now = datetime.now(UTC)
    rows = []
    for r, c in zip(records, collections, strict=True):
        v = latest.get(c.name)
        rows.append((
            r["name"],
            r["type"],
            r["versions"],
            v.version if v is not None else None,
            fmt.human_size(v.size) if v is not None else None,
            fmt.relative_time(v.created_at, now) if v is not None else None,
        ))
    click.echo(fmt.render_table(
        ["name", "type", "versions", "latest", "size", "updated"], rows, right=(2, 4)
    ))
    if offset + len(collections) < len(every):
        fmt.err(f"showing {len(collections)} of {len(every)}; use --limit/--offset for more")


# -- show, files, cat ---------------------------------------------------------------------


@click.command(short_help="Show one version's details.")
@click.argument("ref")
@output_options
@pass_state
def show(state: State, ref: str) -> None:
    """Show one version: ref, digest, size, aliases, tags, metadata, TTL.

    \b
    Examples:
      castore show mnist
      castore show mnist:prod --json
      castore show mnist@9f2c1a
    """
    v = state.open().get(ref)
    if state.json:
        fmt.echo_json(fmt.version_dict(v))
        return
    if state.quiet:
        click.echo(v.ref)
        return
    now = datetime.now(UTC)
    rows: list[tuple[str, str]] = [
        ("ref", v.ref),
        ("id", v.id),
        ("type", v.type),
        ("digest", v.digest or "-"),
        ("files", str(v.file_count)),
        ("size", f"{fmt.human_size(v.size)} ({v.size} bytes)"),
        ("aliases", ", ".join(v.aliases) or "-"),
        ("tags", ", ".join(v.tags) or "-"),
        ("created", f"{v.created_at.isoformat(timespec='seconds')} "
                    f"({fmt.relative_time(v.created_at, now)})"),
        ("ttl", fmt.human_duration(v.ttl)),
    ]
    if v.expires_at is not None:
        rows.append(("expires", f"{v.expires_at.isoformat(timespec='seconds')} "
                                f"({fmt.relative_time(v.expires_at, now)})"))
    if v.description:
        rows.append(("description", v.description))
    for key, value in sorted(v.metadata.items()):
        shown = value if isinstance(value, str) else fmt.dump_json(value, compact=True)
        rows.append((f"metadata.{key}", shown))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key.ljust(width)}  {value}")


@click.command()
@click.argument("ref")
@click.option("--prefix", metavar="PATH", help="Only files under this path prefix.")
@output_options
@pass_state
def files(state: State, ref: str, prefix: str | None) -> None:
    """List the files of a version: path, size and digest.

    \b
    Examples:
      castore files mnist
      castore files mnist:v3 --prefix images/ -q
    """
    v = state.open().get(ref)
    entries = v.files(prefix=prefix)
    if state.json:
        fmt.echo_json([e.model_dump(mode="json") for e in entries])
        return
    if state.quiet:
        for e in entries:
            click.echo(e.path)
        return
    rows = [
        (e.path, fmt.human_size(e.size), fmt.short_digest(e.digest) if e.digest else e.ref)
        for e in entries
    ]
    if not rows:
        fmt.err("No files found.")
        return
    click.echo(fmt.render_table(["path", "size", "digest"], rows, right=(1,)))


@click.command(short_help="Write one file of a version to stdout.")
@click.argument("ref")
@click.argument("path")
@output_options
@pass_state
def cat(state: State, ref: str, path: str) -> None:
    """Write one file of a version to stdout (checked against its digest).

    With --json: the file's entry and its content (text, or base64 for binary data).

    \b
    Examples:
      castore cat castore-docs architecture.md
      castore cat mnist:prod data/train.csv | head
    """
    import castore

    v = state.open().get(ref)
    try:
        v.get_entry(path)  # exit 4 before anything is written
    except castore.NotFoundError as exc:
        raise CliError(exc.message, hint=f"list its files with `castore files {v.ref}`",
                       code=EXIT_NOT_FOUND) from exc
    if state.json:
        data = v.read_bytes(path)
        record = v.get_entry(path).model_dump(mode="json")
        try:
            record.update(encoding="utf-8", content=data.decode("utf-8"))
        except UnicodeDecodeError:
            import base64

            record.update(encoding="base64", content=base64.b64encode(data).decode("ascii"))
        fmt.echo_json(record)
        return
    out = sys.stdout.buffer
    v.copy_to(path, out)  # verified before the first byte reaches stdout
    out.flush()
