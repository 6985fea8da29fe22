"""pandas DataFrames as Parquet, through pyarrow (``castore[pandas]``), imported on use.

Parquet with pandas' own metadata keeps the dtypes and the index (a ``RangeIndex`` as
metadata, any other index as columns). Reading it runs no code from the file; the extra asks
for pyarrow 14.0.1 or newer, which no longer deserializes arbitrary extension types
(CVE-2023-47248).
"""

from __future__ import annotations

import io
import sys
from typing import Any

from castore.objects._support import only_file, require, take_options

__all__ = ["PandasMaterializer"]

PARQUET_FILE = "table.parquet"


class PandasMaterializer:
    """A pandas DataFrame, as ``table.parquet`` (Parquet through pyarrow)."""

    name = "pandas.DataFrame"
    formats = ("parquet", "pandas")
    types: tuple[type, ...] = ()  # pandas is not imported until a DataFrame shows up

    @staticmethod
    def can_save(obj: Any) -> bool:
        pandas = sys.modules.get("pandas")
        return pandas is not None and isinstance(obj, pandas.DataFrame)

    @staticmethod
    def save(obj: Any, draft: Any, **options: Any) -> None:
        take_options("pandas.DataFrame", options)
        require("pandas", "pandas")
        require("pyarrow", "pandas")
        with draft.new_file(PARQUET_FILE, "wb") as fh:
            obj.to_parquet(fh, engine="pyarrow", index=None)

    @staticmethod
    def load(version: Any, **options: Any) -> Any:
        take_options("pandas.DataFrame", options)
        pandas = require("pandas", "pandas")
        require("pyarrow", "pandas")
        # Parquet is read from its footer first: the verified bytes, in memory.
        data = version.read_bytes(only_file(version, "pandas.DataFrame", PARQUET_FILE))
        return pandas.read_parquet(io.BytesIO(data), engine="pyarrow")
