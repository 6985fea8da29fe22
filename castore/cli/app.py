"""The ``castore`` click group: global options, errors mapped to exit codes, and the one list
that registers every verb.

Verb modules define plain click commands and never import this module; this module imports
them and adds each command from :data:`VERBS` (as restic's ``cmd/restic/main.go`` does with
``AddCommand``), so there is no registration by import side effect and no import circle.

Nothing heavy is imported here: ``castore`` itself resolves its names lazily and the store is
opened only when a verb runs, so ``castore --help`` loads neither SQLite nor pydantic.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any

import click

from castore.cli import (
    reporting,
    verbs_care,
    verbs_drafts,
    verbs_materialize,
    verbs_runs,
    verbs_store,
    verbs_transfer,
    verbs_versions,
)
from castore.cli.common import EXIT_INTERRUPTED, EXIT_OTHER, CliError, State

__all__ = ["VERBS", "cli", "main"]

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


class CastoreGroup(click.Group):
    """The root group: turns exceptions from verbs into one error line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt as exc:
            reporting.report_error(ctx, CliError("interrupted"), EXIT_INTERRUPTED, None)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from exc
        except BrokenPipeError as exc:  # `castore cat ... | head`
            reporting.silence_stdout()
            raise click.exceptions.Exit(EXIT_OTHER) from exc
        except Exception as exc:
            code, hint = reporting.classify(exc)
            reporting.report_error(ctx, exc, code, hint)
            raise click.exceptions.Exit(code) from exc


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


# Every verb, in one list. A new verb (`export`, `import`, `push`, `pull`, `lineage`) is a
# plain click command in its own verbs_*.py module, added here; `import` and `pull` create a
# missing store (State.open(create=True)), like `init` and `add`.
VERBS: tuple[click.Command, ...] = (
    # the store
    verbs_store.init,
    verbs_store.doctor,
    # logging and inspecting versions
    verbs_versions.add,
    verbs_versions.ls,
    verbs_versions.show,
    verbs_versions.files,
    verbs_versions.cat,
    # materializing and comparing
    verbs_materialize.checkout,
    verbs_materialize.download,
    verbs_materialize.verify,
    verbs_materialize.diff,
    # changing and cleaning up
    verbs_care.alias,
    verbs_care.tag,
    verbs_care.ttl,
    verbs_care.rm,
    verbs_care.gc,
    verbs_care.prune,
    verbs_care.fsck,
    verbs_care.du,
    verbs_drafts.drafts,
    # experiment tracking
    verbs_runs.runs,
    verbs_runs.lineage,
    # moving versions between machines
    verbs_transfer.export,
    verbs_transfer.import_,
    verbs_transfer.push,
    verbs_transfer.pull,
    verbs_transfer.remote,
    verbs_transfer.budget,
)

for _verb in VERBS:
    cli.add_command(_verb)


_PYDANTIC_LOADER = "pydantic.plugin._loader"


def _no_pydantic_plugins() -> None:
    """Give pydantic a plugin loader that finds none, as its own does when plugins are off.

    pydantic asks ``pydantic.plugin._loader.get_plugins()`` the first time it builds a model;
    with ``PYDANTIC_DISABLE_PLUGINS=__all__`` that returns ``()``, but importing the module
    imports :mod:`importlib.metadata` (zipfile, email, csv: ~12 ms of a ~0.25 s ``castore
    ls``). This stand-in returns the same ``()``; any other name asked of it loads the real
    module, so a pydantic that uses the loader differently still works.
    """
    if os.environ.get("PYDANTIC_DISABLE_PLUGINS") != "__all__" or _PYDANTIC_LOADER in sys.modules:
        return
    stub = types.ModuleType(_PYDANTIC_LOADER)

    def get_plugins() -> tuple[()]:
        return ()

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):  # `from ._loader import get_plugins` asks for __path__
            raise AttributeError(name)
        if sys.modules.get(_PYDANTIC_LOADER) is stub:
            del sys.modules[_PYDANTIC_LOADER]
        import importlib

        return getattr(importlib.import_module(_PYDANTIC_LOADER), name)

    stub.get_plugins = get_plugins  # type: ignore[attr-defined]
    stub.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[_PYDANTIC_LOADER] = stub


def main(argv: list[str] | None = None) -> None:
    """Run the ``castore`` command (the console script and ``python -m castore``)."""
    # pydantic looks for its plugins the first time a model is built, by reading the entry
    # points of every installed distribution: 40-60 ms of a 0.3 s `castore ls` in a venv with
    # numpy and pandas. The command builds only castore's own records and needs no
    # validation plugin; a PYDANTIC_DISABLE_PLUGINS set by the user is left as it is.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    _no_pydantic_plugins()
    cli.main(args=argv, prog_name="castore")
