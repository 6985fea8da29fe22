"""Verbs that materialize and compare versions: ``checkout``, ``download``, ``verify``, ``diff``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from castore.cli import formatting as fmt
from castore.cli.common import (
    EXIT_NOT_FOUND,
    EXIT_VERIFY,
    CliError,
    State,
    fail,
    output_options,
    pass_state,
)
from castore.cli.reporting import BLOB_DAMAGE_HINT

__all__ = ["checkout", "diff", "download", "verify"]

LINK_MODES = ["auto", "copy", "hardlink", "symlink", "reflink"]


# -- checkout, download, verify, diff -----------------------------------------------------


def _materialized(
    state: State,
    verb: str,
    v: Any,
    root: Path,
    link: str,
    extra: Any,
    *,
    written: tuple[int, int] | None = None,
) -> None:
    """Report a checkout or download; ``written`` is ``(files, bytes)`` when not all of v."""
    count, size = written if written is not None else (v.file_count, v.size)
    if state.json:
        record = {"ref": v.ref, "path": str(root.absolute()), "file_count": count,
                  "size": size, "link": link}
        if hasattr(extra, "model_dump"):
            record["result"] = extra.model_dump(mode="json")
        fmt.echo_json(record)
    elif state.quiet:
        click.echo(str(root.absolute()))
    else:
        files = f"{count} file{'s' if count != 1 else ''}"
        click.echo(f"{verb} {v.ref} into {root} ({files}, {fmt.human_size(size)})")


@click.command(short_help="Make a directory exactly a version (mirror).")
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


@click.command(short_help="Write a version's files into a directory.")
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
    written = None
    if prefix is not None:  # report what was written, not the whole version
        sizes = [e.size for e in v.files(prefix=prefix)]
        written = (len(sizes), sum(sizes))
    _materialized(state, "downloaded", v, root, link, result, written=written)


@click.command(short_help="Check a directory or the stored blobs against a version.")
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
            fail(EXIT_VERIFY, exc.message, BLOB_DAMAGE_HINT)
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
            damaged = list(getattr(exc, "damaged", []) or [])
            if damaged:
                # The stored copy is damaged too: checkout would fail on the same blob.
                fail(EXIT_VERIFY, f"{str(directory)!r} does not match {v.ref}: {counts}; "
                     f"the stored content of {len(damaged)} of them is damaged too",
                     BLOB_DAMAGE_HINT.replace("the file", "those files"))
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


@click.command(short_help="Show what changed between two versions.")
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


