"""The ``castore`` click group: global options, shared state, errors mapped to exit codes.

Exit codes (``API.md`` "Command line", documented in ``castore --help`` and ``docs/cli.md``):
0 success, 1 other failure, 2 usage error (also a malformed reference), 3 verification failed,
4 not found, 5 conflict, 10 no store, 11 lock timeout, 130 interrupted.

Nothing heavy is imported here: ``castore`` itself resolves its names lazily and the store is
opened only when a verb runs, so ``castore --help`` loads neither SQLite nor pydantic.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from castore.cli import formatting as fmt
from castore.cli.progress import ProgressBar, progress_enabled

__all__ = [
    "EXIT_CONFLICT",
    "EXIT_INTERRUPTED",
    "EXIT_LOCK",
    "EXIT_NOT_FOUND",
    "EXIT_NO_STORE",
    "EXIT_OK",
    "EXIT_OTHER",
    "EXIT_USAGE",
    "EXIT_VERIFY",
    "CliError",
    "State",
    "cli",
    "confirm",
    "destructive_options",
    "fail",
    "main",
    "output_options",
    "pass_state",
]

EXIT_OK = 0
EXIT_OTHER = 1
EXIT_USAGE = 2
EXIT_VERIFY = 3
EXIT_NOT_FOUND = 4
EXIT_CONFLICT = 5
EXIT_NO_STORE = 10
EXIT_LOCK = 11
EXIT_INTERRUPTED = 130

DEFAULT_HOME = "~/.castore"
F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES_HELP = """\b
Exit codes:
  0    success
  1    other failure
  2    usage error (bad option, malformed reference)
  3    verification failed (a directory or a stored blob differs)
  4    not found (collection, version, alias, path)
  5    conflict (alias, version number, digest prefix, hash collision)
  10   no store at the path (create one with `castore init`)
  11   store lock not acquired in time
  130  interrupted (Ctrl-C)

Set CASTORE_DEBUG=1 to see tracebacks. Docs: docs/cli.md"""


class CliError(Exception):
    """A failure found by the CLI itself, with its exit code and a hint."""

    def __init__(self, message: str, *, hint: str | None = None, code: int = EXIT_OTHER):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


class State:
    """What the global options chose, and the store once a verb opens it."""

    def __init__(
        self,
        store: str | None = None,
        *,
        json: bool = False,
        quiet: bool = False,
        progress: bool = True,
    ) -> None:
        self.store_arg = store
        self.json = json
        self.quiet = quiet
        self.progress = progress
        self._store: Any = None

    @property
    def store_path(self) -> Path:
        """``--store``, else ``$CASTORE_HOME``, else ``~/.castore``."""
        raw = self.store_arg or os.environ.get("CASTORE_HOME") or DEFAULT_HOME
        return Path(raw).expanduser()

    def open(self, *, create: bool = False) -> Any:
        """Open the store (once); a missing store raises ``StoreNotFoundError`` unless create."""
        if self._store is None:
            if not create and not (self.store_path / "castore.json").is_file():
                # The same test castore.open() makes, before importing the heavy modules, so
                # a script probing for a store gets its exit 10 quickly.
                from castore.errors import StoreNotFoundError

                raise StoreNotFoundError(self.store_path)
            import castore

            self._store = castore.open(self.store_path, create=create)
        return self._store

    def close(self) -> None:
        """Close the store if a verb opened it."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def progress_bar(self, label: str) -> ProgressBar:
        """A stderr progress bar, enabled only for people at a terminal."""
        wanted = self.progress and not self.json and not self.quiet
        return ProgressBar(label, enabled=progress_enabled(requested=wanted))


pass_state = click.make_pass_decorator(State, ensure=True)


# -- errors -------------------------------------------------------------------------------


def _classify(exc: BaseException) -> tuple[int, str | None]:
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
        (e.IntegrityError, EXIT_VERIFY,
         "run `castore fsck` to see what is damaged"),
        (e.InvalidReferenceError, EXIT_USAGE,
         "refs look like NAME, NAME:ALIAS, NAME:vN, NAME@DIGEST or a version id"),
        (e.InvalidPathError, EXIT_USAGE,
         "artifact paths are relative POSIX paths: no '..', backslashes or reserved names"),
        (e.NotFoundError, EXIT_NOT_FOUND, "list what exists with `castore ls`"),
        (e.MultipleResourcesFoundError, EXIT_CONFLICT,
         "give more digest characters, or a NAME:vN ref"),
        (e.AliasConflictError, EXIT_CONFLICT, None),
        (e.VersionConflictError, EXIT_CONFLICT, None),
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
            if kind is e.InvalidReferenceError and "reference" not in str(exc):
                hint = None  # a bad name, alias or tag: the message says what is allowed
            return code, hint
    return EXIT_OTHER, None


def _error_line(exc: BaseException, hint: str | None) -> str:
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
    message = " ".join(str(message).split())
    if hint and hint not in message:
        return f"error: {message} (hint: {hint})"
    return f"error: {message}"


def _report_error(ctx: click.Context, exc: BaseException, code: int, hint: str | None) -> None:
    if os.environ.get("CASTORE_DEBUG", "").strip() not in ("", "0"):
        traceback.print_exception(exc, file=sys.stderr)
    line = _error_line(exc, hint)
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


class CastoreGroup(click.Group):
    """The root group: turns exceptions from verbs into one error line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt as exc:
            _report_error(ctx, CliError("interrupted"), EXIT_INTERRUPTED, None)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from exc
        except BrokenPipeError as exc:  # `castore cat ... | head`
            _silence_stdout()
            raise click.exceptions.Exit(EXIT_OTHER) from exc
        except Exception as exc:
            code, hint = _classify(exc)
            if code == EXIT_OTHER and hint is None and not isinstance(exc, CliError):
                from castore.errors import CastoreError

                if not isinstance(exc, (CastoreError, OSError)):
                    hint = "set CASTORE_DEBUG=1 to see the traceback"
            _report_error(ctx, exc, code, hint)
            raise click.exceptions.Exit(code) from exc


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


# -- shared options -----------------------------------------------------------------------


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(State).json = True


def _set_quiet(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(State).quiet = True


def output_options(func: F) -> F:
    """``--json`` and ``-q`` after the verb too (``castore ls --json``)."""
    func = click.option(
        "--json", "json_", is_flag=True, expose_value=False, callback=_set_json,
        help="Print one JSON document on stdout.",
    )(func)
    func = click.option(
        "-q", "--quiet", is_flag=True, expose_value=False, callback=_set_quiet,
        help="Print only refs or paths, one a line; no messages.",
    )(func)
    return func


def destructive_options(func: F) -> F:
    """``--dry-run`` and ``-y/--yes`` for verbs that delete or change things."""
    func = click.option(
        "--dry-run", "-n", is_flag=True, help="Show what would change; change nothing."
    )(func)
    func = click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")(func)
    return func


def fail(code: int, message: str, hint: str | None = None) -> NoReturn:
    """Print ``error: ...`` on stderr and exit with ``code`` (after a verb printed its data)."""
    line = f"error: {' '.join(message.split())}"
    if hint:
        line += f" (hint: {hint})"
    fmt.err(line)
    raise click.exceptions.Exit(code)


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def confirm(question: str, *, yes: bool) -> None:
    """Go on if ``-y`` or the person at the terminal says yes; otherwise raise ``CliError``.

    With no terminal on stdin and no ``-y`` it refuses at once (exit 1): scripts never hang.
    """
    if yes:
        return
    if not _stdin_is_tty():
        raise CliError(
            f"refusing to {question.rstrip('?')} without confirmation",
            hint="pass -y to go ahead, or --dry-run to see what would change",
        )
    try:
        agreed = click.confirm(question[:1].upper() + question[1:], default=False, err=True)
    except click.Abort:  # Ctrl-C or end of input at the prompt
        agreed = False
    if not agreed:
        raise CliError("cancelled; nothing was changed")


# -- the group ----------------------------------------------------------------------------


def _version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    import castore

    click.echo(f"castore {castore.__version__}")
    ctx.exit(0)


@click.group(
    cls=CastoreGroup,
    epilog=EXIT_CODES_HELP,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "-C", "--store", "store", metavar="PATH", type=click.Path(file_okay=False),
    help="The store directory (else $CASTORE_HOME, else ~/.castore).",
)
@click.option("--json", "json_", is_flag=True, help="Machine-readable JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="Only refs or paths on stdout; no messages.")
@click.option("--no-progress", is_flag=True, help="Never draw progress bars.")
@click.option(
    "--version", is_flag=True, expose_value=False, is_eager=True, callback=_version,
    help="Print the castore version and exit.",
)
@click.pass_context
def cli(ctx: click.Context, store: str | None, json_: bool, quiet: bool, no_progress: bool) -> None:
    """castore: a local-first, content-addressed artifact store.

    Log files and directories as versions (v0, v1, …) of named collections, move aliases,
    check out exact copies and verify them byte for byte. Data goes to stdout, messages and
    progress bars to stderr.

    \b
    Examples:
      castore add docs --name castore-docs
      castore checkout castore-docs /tmp/castore-docs
      castore verify castore-docs /tmp/castore-docs
      castore --store /data/store ls --json
    """
    state = ctx.ensure_object(State)
    state.store_arg = store
    state.json = state.json or json_
    state.quiet = state.quiet or quiet
    state.progress = not no_progress
    ctx.call_on_close(state.close)


# Verbs register themselves on `cli` when their modules are imported (all light: click only).
from castore.cli import (  # noqa: E402
    verbs_care,  # noqa: F401  alias, tag, ttl, rm, gc, prune, fsck, du
    verbs_materialize,  # noqa: F401  checkout, download, verify, diff
    verbs_store,  # noqa: F401  init, doctor
    verbs_versions,  # noqa: F401  add, ls, show, files, cat
)

# Room for the verbs that come with their issues: `export`, `import` (verbs_transfer.py:
# bundles), `push`, `pull` (remotes), `lineage` (runs). `import` and `pull` create a missing
# store (State.open(create=True)), like `init` and `add`.


def main(argv: list[str] | None = None) -> None:
    """Run the ``castore`` command (the console script and ``python -m castore``)."""
    cli.main(args=argv, prog_name="castore")
