"""Runs: operations over the parts that start, end and link runs (offline experiment tracking).

See :mod:`castore.runs.tracking`; the catalogue side is :mod:`castore.index.runs`.
"""
