"""``python -m castore``: the command line."""

from castore.cli import main

main()
