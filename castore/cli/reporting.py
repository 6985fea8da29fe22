"""Errors raised by verbs, turned into one ``error: ... (hint: ...)`` line and an exit code.

The group (:mod:`castore.cli.app`) hands any exception a verb lets out to :func:`classify`
and :func:`report_error`; this module knows the error tree of ``castore.errors`` and the exit
codes of :mod:`castore.cli.common`, and nothing of the verbs.
"""

from __future__ import annotations

import os
import sys

import click

from castore.cli import formatting as fmt
from castore.cli.common import (
    EXIT_CONFLICT,
    EXIT_LOCK,
    EXIT_NO_STORE,
    EXIT_NOT_FOUND,
    EXIT_OTHER,
    EXIT_USAGE,
    EXIT_VERIFY,
    CliError,
    State,
)
from castore.cli.wording import cli_wording

__all__ = ["BLOB_DAMAGE_HINT", "classify", "error_line", "report_error", "silence_stdout"]

#: A stored blob is damaged: checkout reads that same blob, so only a good copy of the file
#: helps ("checkout restores it" was said when the blob itself was damaged).
BLOB_DAMAGE_HINT = (
    "the stored copy is damaged: run `castore fsck --repair` to quarantine it, then add the "
    "file again (or import a good copy)"
)


def classify(exc: BaseException) -> tuple[int, str | None]:
    """The exit code and a CLI hint for an exception raised by a verb."""
    from castore import errors as e

    if isinstance(exc, CliError):
        return exc.code, exc.hint
    table: list[tuple[type[BaseException], int, str | None]] = [
        (e.StoreNotFoundError, EXIT_NO_STORE,
         "create it with `castore init`, or point --store / $CASTORE_HOME at a store"),
        (e.VerificationError, EXIT_VERIFY,
         "`castore checkout REF DIR` restores the directory"),
        (e.HashCollisionError, EXIT_CONFLICT,
         "two contents share one digest; use a store with hash sha256 or blake3"),
        (e.CatalogCorruptError, EXIT_VERIFY, None),  # its message names fsck --repair
        (e.StoreDamagedError, EXIT_VERIFY, None),  # so does this one
        (e.IntegrityError, EXIT_VERIFY, BLOB_DAMAGE_HINT),
        (e.InvalidReferenceError, EXIT_USAGE,
         "refs look like NAME, NAME:ALIAS, NAME:vN, NAME@DIGEST or a version id"),
        (e.InvalidPathError, EXIT_USAGE,
         "artifact paths are relative POSIX paths: no '..', backslashes or reserved names"),
        (e.NotFoundError, EXIT_NOT_FOUND, "list what exists with `castore ls`"),
        (e.MultipleResourcesFoundError, EXIT_CONFLICT,
         "give more digest characters, or a NAME:vN ref"),
        (e.AliasConflictError, EXIT_CONFLICT, None),
        (e.VersionConflictError, EXIT_CONFLICT, None),
        (e.RunError, EXIT_CONFLICT, "list runs and their states with `castore runs`"),
        (e.BundleError, EXIT_VERIFY, "the bundle or remote is damaged or not castore's; "
         "nothing was imported"),
        (e.RemoteError, EXIT_OTHER, "check the remote's path or URL"),
        (e.LockTimeoutError, EXIT_LOCK,
         "another castore process holds the store; retry when it is done"),
        (e.UnsafeTargetError, EXIT_OTHER,
         "`castore checkout --force` replaces a directory castore did not make; a target in "
         "the store is never allowed"),
        (e.ReadOnlyStoreError, EXIT_OTHER, "check the permissions of the store directory"),
        (e.UnsupportedFormatError, EXIT_OTHER, "upgrade castore to open this store"),
        (FileNotFoundError, EXIT_NOT_FOUND, None),
        (PermissionError, EXIT_OTHER, "check the file permissions"),
    ]
    for kind, code, hint in table:
        if isinstance(exc, kind):
            if kind is e.IntegrityError and not (
                getattr(exc, "digest", None) or getattr(exc, "paths", None)
            ):
                hint = "run `castore fsck` to see what is damaged"  # not a blob: say no more
            if kind is e.InvalidReferenceError and "reference" not in str(exc):
                hint = None  # a bad name, alias or tag: the message says what is allowed
            if kind is e.UnsupportedFormatError and not isinstance(
                getattr(exc, "found", None), int
            ):
                # not a newer format but an unreadable castore.json: upgrading cannot help
                hint = "the store's castore.json is damaged; restore it from a backup"
            return code, hint
    if not isinstance(exc, (e.CastoreError, OSError)):
        return EXIT_OTHER, "set CASTORE_DEBUG=1 to see the traceback"
    return EXIT_OTHER, None


def error_line(exc: BaseException, hint: str | None) -> str:
    """``error: MESSAGE (hint: HINT)`` on one line."""
    from castore.errors import CastoreError, StoreNotFoundError

    if isinstance(exc, StoreNotFoundError):
        message = f"no castore store at {str(getattr(exc, 'path', '?'))!r}"
    elif isinstance(exc, (CliError, CastoreError)):
        message = exc.message if hasattr(exc, "message") else str(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename!r}" if exc.filename else ""
        message = f"{exc.strerror}{where}"
    else:
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    message = cli_wording(" ".join(str(message).split()))
    if hint and hint not in message:
        return f"error: {message} (hint: {hint})"
    return f"error: {message}"


def report_error(ctx: click.Context, exc: BaseException, code: int, hint: str | None) -> None:
    """Print the error line on stderr (and, with ``--json``, an error document on stdout)."""
    if os.environ.get("CASTORE_DEBUG", "").strip() not in ("", "0"):
        import traceback  # CASTORE_DEBUG only

        traceback.print_exception(exc, file=sys.stderr)
    line = error_line(exc, hint)
    click.echo(line, err=True)
    state = ctx.find_object(State)
    if state is not None and state.json:
        # Scripts read the error without 2>&1 (research/ecosystem.md §2.2 rule 5).
        fmt.echo_json(
            {
                "error": {
                    "type": type(exc).__name__,
                    "message": line.removeprefix("error: "),
                    "exit_code": code,
                }
            }
        )


def silence_stdout() -> None:
    """Point stdout at /dev/null, so a closed pipe (``castore cat ... | head``) stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
