"""Verbs that move versions off and onto the machine: ``export``, ``import``, ``push``,
``pull``, ``remote add|ls|rm``, and ``budget`` (remotes as the second home of blobs)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from castore.cli import formatting as fmt
from castore.cli.common import State, output_options, pass_state

__all__ = ["budget", "export", "import_", "pull", "push", "remote"]


def _print_report(state: State, verb: str, report: Any) -> None:
    if state.json:
        fmt.echo_json(report.model_dump(mode="json"))
        return
    if state.quiet:
        for ref in report.versions:
            click.echo(ref)
        return
    click.echo(
        f"{verb} {len(report.versions)} version(s): {report.blobs_sent} blob(s) "
        f"({report.bytes_sent:,} bytes) sent, {report.blobs_skipped} already there "
        f"({report.bytes_skipped:,} bytes), {report.seconds:.2f} s"
    )
    for ref in report.versions:
        click.echo(f"  {ref}")


@click.command(short_help="Write versions to a bundle (an OCI image layout in a tar).")
@click.argument("refs", nargs=-1)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The bundle file to write.")
@output_options
@pass_state
def export(state: State, refs: tuple[str, ...], output: Path) -> None:
    """Write versions (default: every version) to a bundle file.

    \b
    Examples:
      castore export mnist:prod model:v2 -o bundle.tar
    """
    store = state.open()
    with state.progress_bar(f"export {output.name}") as bar:
        report = store.export(output, refs=list(refs) or None, progress=bar.callback)
    _print_report(state, "exported", report)


@click.command("import", short_help="Import a bundle (all or nothing).")
@click.argument("bundle", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--renumber", is_flag=True, help="Give a taken number the next free one.")
@click.option("--force", is_flag=True, help="Move aliases that point elsewhere here.")
@output_options
@pass_state
def import_(state: State, bundle: Path, renumber: bool, force: bool) -> None:
    """Import every version of a bundle, keeping ids and numbers.

    \b
    Examples:
      castore import bundle.tar
    """
    store = state.open(create=True)
    with state.progress_bar(f"import {bundle.name}") as bar:
        report = store.import_bundle(bundle, renumber=renumber, force=force,
                                     progress=bar.callback)
    _print_report(state, "imported", report)


@click.command(short_help="Send versions to a remote.")
@click.argument("remote_")
@click.argument("refs", nargs=-1)
@click.option("--force", is_flag=True, help="Move aliases on the remote that point elsewhere.")
@output_options
@pass_state
def push(state: State, remote_: str, refs: tuple[str, ...], force: bool) -> None:
    """Send versions (default: every version) to REMOTE (a name, URL or directory).

    \b
    Examples:
      castore push /media/usb/castore-remote mnist:prod
    """
    store = state.open()
    with state.progress_bar(f"push {remote_}") as bar:
        report = store.push(remote_, refs=list(refs) or None, force=force,
                            progress=bar.callback)
    _print_report(state, "pushed", report)


@click.command(short_help="Fetch versions from a remote (all or nothing).")
@click.argument("remote_")
@click.argument("refs", nargs=-1)
@click.option("--renumber", is_flag=True, help="Give a taken number the next free one.")
@click.option("--force", is_flag=True, help="Move aliases that point elsewhere here.")
@output_options
@pass_state
def pull(state: State, remote_: str, refs: tuple[str, ...], renumber: bool, force: bool) -> None:
    """Fetch versions (default: everything REMOTE holds).

    \b
    Examples:
      castore pull /media/usb/castore-remote mnist:prod
    """
    store = state.open(create=True)
    with state.progress_bar(f"pull {remote_}") as bar:
        report = store.pull(remote_, refs=list(refs) or None, renumber=renumber, force=force,
                            progress=bar.callback)
    _print_report(state, "pulled", report)


@click.group(short_help="Name remotes: add, ls, rm.")
def remote() -> None:
    """The store's named remotes."""


@remote.command("add", short_help="Name a remote.")
@click.argument("name")
@click.argument("url")
@click.option("--endpoint", help="S3 endpoint URL (MinIO, Ceph, R2...).")
@click.option("--region", help="S3 region.")
@click.option("--username", help="Registry user name (default: ~/.docker/config.json).")
@click.option("--password-stdin", is_flag=True,
              help="Read the registry password (or token) from standard input.")
@output_options
@pass_state
def remote_add(state: State, name: str, url: str, endpoint: str | None,
               region: str | None, username: str | None, password_stdin: bool) -> None:
    """Name the remote at URL: a directory, s3://bucket/prefix, oci://host[:port]/repository
    (oci+http:// for a registry without TLS). The options are kept in the store's catalogue.

    
    Examples:
      castore remote add team s3://ml-artifacts/team --endpoint http://127.0.0.1:9000
      echo "$TOKEN" | castore remote add hub oci://ghcr.io/acme/artifacts \
          --username bot --password-stdin
    """
    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.UsageError("--password-stdin read an empty password")
    options = {k: v for k, v in {"endpoint": endpoint, "region": region, "username": username,
                                  "password": password}.items() if v}
    info = state.open().remotes.add(name, url, **options)
    if state.json:
        fmt.echo_json(_masked(info.model_dump(mode="json")))
    elif not state.quiet:
        click.echo(f"remote {name} -> {url}")


def _masked(info: dict[str, Any]) -> dict[str, Any]:
    """A remote's record with its password hidden (it is never printed)."""
    options = dict(info.get("options") or {})
    if "password" in options:
        options["password"] = "***"
    return {**info, "options": options}


@remote.command("ls", short_help="List the named remotes.")
@output_options
@pass_state
def remote_ls(state: State) -> None:
    """List the named remotes."""
    infos = state.open().remotes.list()
    if state.json:
        fmt.echo_json([_masked(i.model_dump(mode="json")) for i in infos])
        return
    for info in infos:
        click.echo(info.name if state.quiet else f"{info.name}\t{info.url}")


@remote.command("rm", short_help="Forget a remote.")
@click.argument("name")
@output_options
@pass_state
def remote_rm(state: State, name: str) -> None:
    """Forget the remote NAME (what it holds is untouched)."""
    state.open().remotes.remove(name)
    if state.json:
        fmt.echo_json({"removed": name})
    elif not state.quiet:
        click.echo(f"removed remote {name}")


@click.command(short_help="Keep stored bytes under a budget (evicting what a remote holds).")
@click.argument("size")
@output_options
@pass_state
def budget(state: State, size: str) -> None:
    """Set the disk budget to SIZE (10GB, 512MiB, 4096) or turn it off with `off`.

    Each `castore gc` then evicts the least recently used blobs that a remote is known to
    hold (push and pull record it); reading them fetches them back. The only copy of
    anything is never evicted.

    \b
    Examples:
      castore budget 50GB
      castore budget off
    """
    from castore.cli.parsing import parse_size

    if size.strip().lower() in ("off", "none"):
        limit = None
    else:
        try:
            limit = parse_size(size)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="SIZE") from None
    state.open().set_budget(limit)
    if state.json:
        fmt.echo_json({"budget": limit})
    elif not state.quiet:
        click.echo("budget off" if limit is None else
                   f"budget {fmt.human_size(limit)} ({limit:,} bytes); `castore gc` keeps to it")
