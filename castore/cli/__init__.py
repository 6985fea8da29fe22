"""The ``castore`` command line (click). See ``docs/cli.md``.

Example:
    >>> from castore.cli import main  # main(["--help"]) prints the verbs
"""

from __future__ import annotations

from castore.cli.app import cli, main

__all__ = ["cli", "main"]
