"""What every verb shares: exit codes, the ``State`` of the global options, shared options,
``fail`` and ``confirm``.

Verb modules import this module and never the group module (:mod:`castore.cli.app`), which
imports them to register them: dependencies point one way, with no circle.

Exit codes (``API.md`` "Command line", documented in ``castore --help`` and ``docs/cli.md``):
0 success, 1 other failure, 2 usage error (also a malformed reference), 3 verification failed,
4 not found, 5 conflict, 10 no store, 11 lock timeout, 130 interrupted.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from castore.cli import formatting as fmt
from castore.cli.progress import ProgressBar, progress_enabled
from castore.cli.wording import cli_wording

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
    "confirm",
    "destructive_options",
    "fail",
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

F = TypeVar("F", bound=Callable[..., Any])


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
    def store_path(self) -> Path | None:
        """The ``--store`` directory, or None for castore's default store.

        The default (``$CASTORE_HOME``, else ``~/.castore``) is resolved by ``castore.open``
        and ``castore.init`` themselves, so it is defined once, in the library.
        """
        return Path(self.store_arg).expanduser() if self.store_arg else None

    def open(self, *, create: bool = False) -> Any:
        """Open the store (once); a missing store raises ``StoreNotFoundError`` unless create.

        Whether a store is there is the library's decision (its layout), not a file-name test
        here; ``StoreNotFoundError`` carries the path it looked at and exits 10.
        """
        if self._store is None:
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


# -- failing and asking -------------------------------------------------------------------


def fail(code: int, message: str, hint: str | None = None) -> NoReturn:
    """Print ``error: ...`` on stderr and exit with ``code`` (after a verb printed its data)."""
    line = f"error: {cli_wording(' '.join(message.split()))}"
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
