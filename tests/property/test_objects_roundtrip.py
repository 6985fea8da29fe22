"""Hypothesis round trips of objects through store.save / store.load."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import castore

DTYPES = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(endianness="="),
    hnp.unsigned_integer_dtypes(endianness="="),
    hnp.floating_dtypes(endianness="="),
    hnp.complex_number_dtypes(endianness="="),
    hnp.integer_dtypes(endianness=">"),
    hnp.datetime64_dtypes(),
    hnp.timedelta64_dtypes(),
    hnp.byte_string_dtypes(max_len=8),
    hnp.unicode_string_dtypes(max_len=8),
)
ARRAYS = hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6))

# safetensors holds bool, (u)int 8-64 and float 16-64
TENSOR_DTYPES = st.sampled_from(
    ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
     "float16", "float32", "float64"]
)
TENSORS = TENSOR_DTYPES.flatmap(
    lambda d: hnp.arrays(d, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory):
    s = castore.init(tmp_path_factory.mktemp("objects") / "store", durable=False)
    yield s
    s.close()


@given(array=ARRAYS, order=st.sampled_from(["C", "F"]))
def test_numpy_arrays_round_trip(
    shared_store: castore.Store, array: np.ndarray, order: str
) -> None:
    array = np.asarray(array, order=order)
    v = shared_store.save(array, "arrays")
    assert v.materializer == "numpy.ndarray"
    loaded = shared_store.load(v)
    assert loaded.dtype == array.dtype and loaded.shape == array.shape
    np.testing.assert_array_equal(loaded, array)  # NaN equals NaN here


@given(tensors=st.dictionaries(st.text(min_size=1, max_size=10), TENSORS, min_size=1, max_size=4))
def test_dicts_of_arrays_round_trip_as_safetensors(
    shared_store: castore.Store, tensors: dict[str, np.ndarray]
) -> None:
    loaded = shared_store.save(tensors, "tensors", format="safetensors").load()
    assert loaded.keys() == tensors.keys()
    for key, array in tensors.items():
        assert loaded[key].dtype == array.dtype and loaded[key].shape == array.shape
        np.testing.assert_array_equal(loaded[key], array)


@given(value=JSON)
def test_json_values_round_trip(shared_store: castore.Store, value: Any) -> None:
    v = shared_store.save(value, "json", format=None if not isinstance(value, str) else "json")
    assert shared_store.load(v) == value


@given(text=st.text())
def test_text_round_trips(shared_store: castore.Store, text: str) -> None:
    assert shared_store.save(text, "text").load() == text
