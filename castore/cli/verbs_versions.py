"""Verbs about versions: ``add``, ``ls``, ``show``, ``files``, ``cat``, ``checkout``,
``download``, ``verify`` and ``diff``."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from castore.cli import formatting as fmt
from castore.cli.app import (
    EXIT_NOT_FOUND,
    EXIT_VERIFY,
    CliError,
    State,
    cli,
    output_options,
    pass_state,
)
from castore.cli.parsing import DURATION, SIZE, parse_metadata

__all__ = ["add", "cat", "checkout", "diff", "download", "files", "ls", "show", "verify"]

LINK_MODES = ["auto", "copy", "hardlink", "symlink", "reflink"]
SORT_KEYS = ["created_at", "updated_at", "size", "number", "name"]


def _metadata(items: tuple[str, ...]) -> dict[str, Any] | None:
    if not items:
        return None
    try:
        return parse_metadata(items)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--metadata") from exc


def _summary(v: Any) -> str:
    files = f"{v.file_count} file{'s' if v.file_count != 1 else ''}"
    return f"{files}, {fmt.human_size(v.size)}"


def fail(code: int, message: str, hint: str | None = None) -> None:
    """Print ``error: ...`` on stderr and exit with ``code`` (the verb printed its data)."""
    line = f"error: {' '.join(message.split())}"
    if hint:
        line += f" (hint: {hint})"
    fmt.err(line)
    raise click.exceptions.Exit(code)


# -- add ----------------------------------------------------------------------------------


@cli.command()
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
@click.option("--ttl", type=DURATION, metavar="DURATION",
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
            draft.add_dir(path, ignore=list(ignore))
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
        click.echo(f"unchanged, still {version.ref} ({_summary(version)})")
    else:
        click.echo(f"added {version.ref} ({_summary(version)})")


# -- ls -----------------------------------------------------------------------------------


@cli.command()
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
              help="At most this many versions (0: no limit).")
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
        _ls_collections(state, store, type_)
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


def _ls_collections(state: State, store: Any, type_: str | None) -> None:
    collections = store.collections(type=type_)
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


# -- show, files, cat ---------------------------------------------------------------------


@cli.command()
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
        rows.append((f"metadata.{key}", fmt.dump_json(value) if not isinstance(value, str)
                     else value))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key.ljust(width)}  {value}")


@cli.command()
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


@cli.command()
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
    import shutil

    out = sys.stdout.buffer
    with v.open(path) as reader:
        shutil.copyfileobj(reader, out, 1024 * 1024)
    out.flush()


# -- checkout, download, verify, diff -----------------------------------------------------


def _materialized(state: State, verb: str, v: Any, root: Path, link: str, extra: Any) -> None:
    if state.json:
        record = {"ref": v.ref, "path": str(root.absolute()), "file_count": v.file_count,
                  "size": v.size, "link": link}
        if hasattr(extra, "model_dump"):
            record["result"] = extra.model_dump(mode="json")
        fmt.echo_json(record)
    elif state.quiet:
        click.echo(str(root.absolute()))
    else:
        click.echo(f"{verb} {v.ref} into {root} ({_summary(v)})")


@cli.command()
@click.argument("ref")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--link", type=click.Choice(LINK_MODES), default="auto", show_default=True,
              help="auto: reflink where possible, else copy; hardlink/symlink share the stored "
                   "blob read-only.")
@click.option("--force", is_flag=True,
              help="Replace the contents of a non-empty directory castore did not check out.")
@output_options
@pass_state
def checkout(state: State, ref: str, directory: Path, link: str, force: bool) -> None:
    """Make DIRECTORY exactly the version: write its files, remove any others.

    Files already correct are left alone; the directory is unchanged if the version cannot be
    fully read. A non-empty directory castore did not check out before is refused unless
    --force.

    \b
    Examples:
      castore checkout castore-docs /tmp/castore-docs
      castore checkout mnist:prod work/mnist --link hardlink
      castore checkout mnist:v2 old-copy/ --force
    """
    v = state.open().get(ref)
    with state.progress_bar(f"checkout {v.ref}") as bar:
        result = v.checkout(directory, link=link, progress=bar.callback, force=force)
    _materialized(state, "checked out", v, directory, link, result)


@cli.command()
@click.argument("ref")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--prefix", metavar="PATH", help="Only files under this path prefix.")
@click.option("--link", type=click.Choice(LINK_MODES), default="auto", show_default=True,
              help="How files are placed (see `castore checkout --help`).")
@output_options
@pass_state
def download(state: State, ref: str, directory: Path, prefix: str | None, link: str) -> None:
    """Write the version's files into DIRECTORY, leaving other files there alone.

    \b
    Examples:
      castore download mnist work/mnist
      castore download mnist:v3 work/images --prefix images/
    """
    v = state.open().get(ref)
    with state.progress_bar(f"download {v.ref}") as bar:
        result = v.download(directory, path_prefix=prefix, link=link, progress=bar.callback)
    root = Path(result) if isinstance(result, (str, Path)) else directory
    _materialized(state, "downloaded", v, root, link, result)


@cli.command()
@click.argument("ref")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@output_options
@pass_state
def verify(state: State, ref: str, directory: Path | None) -> None:
    """Check DIRECTORY against the version byte for byte, or re-hash the stored blobs.

    Exits 3 when anything differs, listing missing, modified and extra files.

    \b
    Examples:
      castore verify castore-docs /tmp/castore-docs
      castore verify mnist:prod            # re-hash the stored blobs of the version
    """
    import castore

    v = state.open().get(ref)
    where = str(directory.absolute()) if directory is not None else None
    if directory is None:
        try:
            v.verify()
        except castore.IntegrityError as exc:
            damaged = list(getattr(exc, "paths", []) or [])
            if state.json:
                fmt.echo_json({"ref": v.ref, "path": None, "ok": False, "missing": [],
                               "modified": damaged, "extra": []})
            elif not state.quiet:
                for p in damaged:
                    click.echo(f"corrupt   {p}")
            fail(EXIT_VERIFY, exc.message, "run `castore fsck` to see what is damaged")
        report: dict[str, Any] = {"ref": v.ref, "path": None, "ok": True, "missing": [],
                                  "modified": [], "extra": []}
    else:
        if not directory.is_dir():
            raise CliError(f"{str(directory)!r} is not a directory",
                           hint=f"check it out with `castore checkout {ref} {directory}`",
                           code=EXIT_NOT_FOUND)
        try:
            report = {"ref": v.ref, "path": where, **_report_dict(v.verify(directory))}
        except castore.VerificationError as exc:
            report = {"ref": v.ref, "path": where,
                      **_report_dict(getattr(exc, "report", None))}
            report["ok"] = False
            _print_verify(state, report)
            counts = ", ".join(
                f"{len(report[k])} {k}" for k in ("missing", "modified", "extra") if report[k]
            )
            fail(EXIT_VERIFY, f"{str(directory)!r} does not match {v.ref}: {counts}",
                 f"`castore checkout {ref} {directory}` restores it")
    _print_verify(state, report)


def _report_dict(report: Any) -> dict[str, Any]:
    if report is None or not hasattr(report, "model_dump"):
        return {"ok": True, "missing": [], "modified": [], "extra": []}
    data: dict[str, Any] = report.model_dump(mode="json")
    return data


def _print_verify(state: State, report: dict[str, Any]) -> None:
    if state.json:
        fmt.echo_json(report)
        return
    if state.quiet:
        for kind in ("missing", "modified", "extra"):
            for p in report[kind]:
                click.echo(p)
        return
    for kind in ("missing", "modified", "extra"):
        for p in report[kind]:
            click.echo(f"{kind.ljust(9)} {p}")
    if report["ok"]:
        target = report["path"] or "the stored blobs"
        click.echo(f"ok: {target} matches {report['ref']}")


@cli.command()
@click.argument("a")
@click.argument("b")
@click.option("--exit-code", is_flag=True, help="Exit 1 when the versions differ (as git).")
@output_options
@pass_state
def diff(state: State, a: str, b: str, exit_code: bool) -> None:
    """Show the files added, removed and modified from version A to version B.

    \b
    Examples:
      castore diff mnist:v1 mnist:v2
      castore diff mnist:prod mnist:latest --json
    """
    d = state.open().diff(a, b)
    if state.json:
        fmt.echo_json(d)
    elif state.quiet:
        for e in [*d.added, *d.removed, *d.modified]:
            click.echo(e.path)
    else:
        rows = [("A", e.path, fmt.human_size(e.size_b)) for e in d.added]
        rows += [("D", e.path, fmt.human_size(e.size_a)) for e in d.removed]
        rows += [
            ("M", e.path, f"{fmt.human_size(e.size_a)} -> {fmt.human_size(e.size_b)}")
            for e in d.modified
        ]
        rows.sort(key=lambda r: r[1])
        for status, path, size in rows:
            click.echo(f"{status} {path}  ({size})")
        fmt.err(f"{len(d.added)} added, {len(d.removed)} removed, {len(d.modified)} modified")
    if exit_code and (d.added or d.removed or d.modified):
        raise click.exceptions.Exit(1)


