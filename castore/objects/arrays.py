"""numpy arrays as ``.npy`` and dicts of arrays as safetensors; numpy is imported on use.

Neither format runs code when read: ``.npy`` is read with ``allow_pickle=False`` unless the
caller says otherwise (numpy refuses an object array before it unpickles anything), and
safetensors holds only a JSON header and raw tensor bytes.
"""

from __future__ import annotations

import sys
from typing import Any

from castore.errors import MaterializerError
from castore.objects._support import only_file, require, take_options

__all__ = ["NumpyMaterializer", "SafetensorsMaterializer"]

NPY_FILE = "array.npy"
SAFETENSORS_FILE = "tensors.safetensors"


def is_ndarray(obj: Any) -> bool:
    """True for a numpy array, without importing numpy (an array means it is imported)."""
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(obj, numpy.ndarray)


def _refuse_pickle(ref: str, name: str, what: str) -> MaterializerError:
    return MaterializerError(
        f"{ref} {what} needs pickle, which can run code: pass allow_pickle=True to both "
        "save() and load() if you trust its source",
        name=name,
        option="allow_pickle",
    )


class NumpyMaterializer:
    """A numpy array (any shape and dtype), as ``array.npy``.

    Object arrays are pickled, so they need ``allow_pickle=True`` on both ``save`` and
    ``load``. Loading streams the file into one new array, verified as it is read.
    """

    name = "numpy.ndarray"
    formats = ("npy", "numpy")
    types: tuple[type, ...] = ()  # numpy is not imported until an array shows up

    @staticmethod
    def can_save(obj: Any) -> bool:
        return is_ndarray(obj)

    @staticmethod
    def save(obj: Any, draft: Any, **options: Any) -> None:
        numpy = require("numpy", "numpy")
        allow_pickle = bool(options.get("allow_pickle", False))
        take_options("numpy.ndarray", options)
        if obj.dtype.hasobject and not allow_pickle:
            raise _refuse_pickle("an array of dtype object", "numpy.ndarray", "(Python objects)")
        with draft.new_file(NPY_FILE, "wb") as fh:
            numpy.save(fh, obj, allow_pickle=allow_pickle)

    @staticmethod
    def load(version: Any, **options: Any) -> Any:
        numpy = require("numpy", "numpy")
        allow_pickle = bool(options.get("allow_pickle", False))
        take_options("numpy.ndarray", options)
        path = only_file(version, "numpy.ndarray", NPY_FILE)
        with version.open(path) as fh:
            try:
                # read_array reads the header (size-capped, parsed as a literal) and then the
                # data; it refuses an object dtype before touching pickle unless allowed.
                array = numpy.lib.format.read_array(fh, allow_pickle=allow_pickle)
            except ValueError as exc:
                if "allow_pickle" in str(exc):
                    raise _refuse_pickle(
                        f"{version.ref}:{path}", "numpy.ndarray", "holds an object array and"
                    ) from None
                raise MaterializerError(
                    f"{version.ref}:{path} is not a valid .npy file ({exc})",
                    name="numpy.ndarray",
                ) from exc
            if fh.read(1):  # also reads to the end, where the digest is checked
                raise MaterializerError(
                    f"{version.ref}:{path} has bytes after the array", name="numpy.ndarray"
                )
        return array


def _is_tensor_dict(obj: Any) -> bool:
    return (
        type(obj) is dict
        and bool(obj)
        and all(type(k) is str and is_ndarray(v) for k, v in obj.items())
    )


class SafetensorsMaterializer:
    """A dict of numpy arrays (str keys), as ``tensors.safetensors`` (``castore[safetensors]``).

    Chosen for such a dict, or with ``format="safetensors"``. Loading returns a dict of numpy
    arrays, in the file's key order (sorted).
    """

    name = "safetensors"
    formats = ("safetensors",)
    types: tuple[type, ...] = (dict,)

    @staticmethod
    def can_save(obj: Any) -> bool:
        return _is_tensor_dict(obj)

    @staticmethod
    def save(obj: Any, draft: Any, **options: Any) -> None:
        take_options("safetensors", options)
        numpy = require("numpy", "safetensors")
        st = require("safetensors.numpy", "safetensors")
        for key, array in obj.items():
            if array.dtype.hasobject:
                raise MaterializerError(
                    f"safetensors holds numbers, not Python objects: {key!r} has dtype object",
                    name="safetensors",
                )
        try:
            # (ascontiguousarray would turn a 0-d array into a 1-d one)
            data = st.save({k: numpy.require(v, requirements="C") for k, v in obj.items()})
        except Exception as exc:  # safetensors raises its own SafetensorError and others
            raise MaterializerError(
                f"safetensors cannot save this dict: {exc}", name="safetensors"
            ) from exc
        draft.add_bytes(data, SAFETENSORS_FILE)

    @staticmethod
    def load(version: Any, **options: Any) -> Any:
        take_options("safetensors", options)
        require("numpy", "safetensors")
        st = require("safetensors.numpy", "safetensors")
        data = version.read_bytes(only_file(version, "safetensors", SAFETENSORS_FILE))
        try:
            return st.load(data)
        except Exception as exc:
            raise MaterializerError(
                f"{version.ref}:{SAFETENSORS_FILE} is not a valid safetensors file ({exc})",
                name="safetensors",
            ) from exc
