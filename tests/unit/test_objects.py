"""store.save / store.load through materializers: round trips, records, safety, registry."""

from __future__ import annotations

import builtins
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import castore
from castore.manifest import decode_manifest
from castore.objects import registry


@pytest.fixture(autouse=True)
def _clean_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with no registered materializers and entry points not yet loaded."""
    monkeypatch.setattr(registry, "_registered", [])
    monkeypatch.setattr(registry, "_plugins", None)
    monkeypatch.setattr(registry, "_plugin_errors", {})
    yield


# -- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {"lr": 0.1, "layers": [64, 32], "name": "ü", "nested": {"a": None, "b": True}},
        [1, 2.5, "x", None, False, [], {}],
        0,
        -(2**70),
        3.25,
        True,
        None,
        {"z": 1, "a": 2},  # key order kept
    ],
)
def test_json_values_round_trip(store: castore.Store, value: Any) -> None:
    v = store.save(value, "config")
    assert v.materializer == "json"
    loaded = store.load("config")
    assert loaded == value and type(loaded) is type(value)
    if isinstance(value, dict):
        assert list(loaded) == list(value)
    assert [e.path for e in v.files()] == ["data.json"]


def test_json_keeps_nan_and_infinity(store: castore.Store) -> None:
    loaded = store.save({"a": math.inf, "b": -math.inf, "c": math.nan}, "m").load()
    assert loaded["a"] == math.inf and loaded["b"] == -math.inf and math.isnan(loaded["c"])


@pytest.mark.parametrize("text", ["", "plain", "line\r\nwindows\nunix\r", "日本語 ✓ \x00"])
def test_str_round_trips_as_text(store: castore.Store, text: str) -> None:
    v = store.save(text, "notes")
    assert v.materializer == "text"
    assert v.load() == text
    assert v.read_bytes("data.txt") == text.encode()


@pytest.mark.parametrize("data", [b"", b"\x00\xff" * 1000, bytes(range(256))])
def test_bytes_round_trip_as_a_binary_file(store: castore.Store, data: bytes) -> None:
    v = store.save(data, "blob")
    assert v.materializer == "bytes"
    assert v.load() == data and type(v.load()) is bytes


def test_a_file_path_saves_the_file_itself(store: castore.Store, tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(b"weights")
    v = store.save(src, "model")
    assert v.materializer == "file"
    assert [e.path for e in v.files()] == ["model.bin"]
    out = v.load(root=tmp_path / "out")
    assert out == (tmp_path / "out" / "model.bin").resolve()
    assert out.read_bytes() == b"weights"


def test_a_directory_path_saves_the_tree(store: castore.Store, tmp_path: Path) -> None:
    src = tmp_path / "run-output"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "b.txt").write_text("b")
    (src / "skip.log").write_text("x")
    v = store.save(src, "run-output", ignore=["*.log"])
    assert v.materializer == "directory"
    assert [e.path for e in v.files()] == ["a.txt", "sub/b.txt"]
    out = store.load("run-output", root=tmp_path / "out")
    assert out == (tmp_path / "out").resolve()
    assert (out / "sub" / "b.txt").read_text() == "b" and not (out / "skip.log").exists()


@pytest.mark.parametrize(
    "array",
    [
        np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3)),
        np.array(3.5),  # 0-d
        np.zeros((0,), dtype=np.float64),
        np.zeros((3, 0, 2), dtype=np.int16),
        np.array([True, False]),
        np.array([1 + 2j], dtype=np.complex128),
        np.array(["ab", "ü"], dtype="<U2"),
        np.array([b"x", b"yz"], dtype="S2"),
        np.array([(1, 2.0)], dtype=[("a", "<i4"), ("b", ">f8")]),
        np.array(["2024-01-01"], dtype="datetime64[ns]"),
    ],
    ids=lambda a: f"{a.dtype}-{a.shape}",
)
def test_numpy_arrays_round_trip_with_dtype_and_shape(
    store: castore.Store, array: np.ndarray
) -> None:
    v = store.save(array, "weights")
    assert v.materializer == "numpy.ndarray"
    loaded = store.load("weights")
    assert loaded.dtype == array.dtype and loaded.shape == array.shape
    np.testing.assert_array_equal(loaded, array)


def test_a_large_array_streams_back_whole(store: castore.Store) -> None:
    array = np.random.default_rng(0).standard_normal((1024, 1024 + 7))  # ~8 MiB
    loaded = store.save(array, "big").load()
    np.testing.assert_array_equal(loaded, array)


def test_a_dataframe_keeps_dtypes_and_index(store: castore.Store) -> None:
    df = pd.DataFrame(
        {
            "i": np.array([1, 2, 3], dtype=np.int32),
            "f": [0.5, np.nan, 2.0],
            "s": ["a", "b", None],
            "b": [True, False, True],
            "t": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"], utc=True),
            "c": pd.Categorical(["x", "y", "x"]),
            "n": pd.array([1, None, 3], dtype="Int64"),
        },
        index=pd.Index(["r1", "r2", "r3"], name="row"),
    )
    v = store.save(df, "features", type="dataset", metadata={"rows": 3}, aliases=["prod"])
    assert v.materializer == "pandas.DataFrame" and v.metadata == {"rows": 3}
    loaded = store.load("features:prod")
    pd.testing.assert_frame_equal(loaded, df)
    assert list(loaded.dtypes) == list(df.dtypes)


def test_a_dataframe_with_a_multiindex_and_a_range_index(store: castore.Store) -> None:
    df = pd.DataFrame(
        {"v": [1.0, 2.0]}, index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["k", "n"])
    )
    pd.testing.assert_frame_equal(store.save(df, "m").load(), df)
    plain = pd.DataFrame({"v": [1, 2, 3]}, index=pd.RangeIndex(10, 16, 2))
    pd.testing.assert_frame_equal(store.save(plain, "r").load(), plain)


def test_a_dict_of_arrays_as_safetensors(store: castore.Store) -> None:
    ckpt = {
        "w": np.arange(12, dtype=np.float32).reshape(3, 4),
        "b": np.array([1, -1], dtype=np.int8),
        "h": np.ones((2, 2), dtype=np.float16),
        "s": np.array(7.0, dtype=np.float64),
        "t": np.arange(6, dtype=np.int64).reshape(2, 3).T,  # not contiguous
    }
    v = store.save(ckpt, "ckpt", format="safetensors")
    assert v.materializer == "safetensors"
    assert [e.path for e in v.files()] == ["tensors.safetensors"]
    loaded = v.load()
    assert sorted(loaded) == sorted(ckpt)
    for key, array in ckpt.items():
        assert loaded[key].dtype == array.dtype and loaded[key].shape == array.shape
        np.testing.assert_array_equal(loaded[key], array)
    # a dict of arrays has no other built-in taker: safetensors without format= too
    assert store.save({"w": ckpt["w"]}, "ckpt2").materializer == "safetensors"


def test_safetensors_refuses_what_it_cannot_hold(store: castore.Store) -> None:
    with pytest.raises(castore.MaterializerError, match=r"cannot save a dict"):
        store.save({"w": [1, 2]}, "c", format="safetensors")
    with pytest.raises(castore.MaterializerError, match="dtype object"):
        store.save({"w": np.array([object()], dtype=object)}, "c", format="safetensors")
    assert store.versions("c").total == 0


# -- what the version records -------------------------------------------------------------


def test_the_materializer_is_in_the_version_document_and_survives_a_rebuild(
    store: castore.Store,
) -> None:
    v = store.save(np.arange(3), "weights", metadata={"epoch": 2})
    doc = decode_manifest(store.blobs.read_bytes(v.manifest_blob), algorithm=store.hash)
    assert doc["materializer"] == "numpy.ndarray"
    assert doc["metadata"] == {"epoch": 2}  # metadata untouched
    raw = json.loads(store.blobs.read_bytes(v.manifest_blob))
    assert raw["materializer"] == "numpy.ndarray"
    path = store.path
    store.close()
    (path / "catalog.db").unlink()
    for suffix in ("-wal", "-shm"):
        (path / f"catalog.db{suffix}").unlink(missing_ok=True)
    castore.repair(path)
    with castore.open(path) as again:
        rebuilt = again.get("weights")
        assert rebuilt.materializer == "numpy.ndarray"
        np.testing.assert_array_equal(rebuilt.load(), np.arange(3))


def test_versions_made_from_files_keep_their_document_bytes(store: castore.Store) -> None:
    with store.draft("files") as d:
        d.add_bytes(b"x", "x.txt")
    v = d.version
    assert v is not None and v.materializer is None
    raw = json.loads(store.blobs.read_bytes(v.manifest_blob))
    assert "materializer" not in raw
    with pytest.raises(castore.MaterializerError, match=r"not written by store\.save"):
        v.load()


@pytest.mark.parametrize("bad", ['""', "null", "1", '"has space"', '"' + "x" * 200 + '"'])
def test_a_document_with_a_bad_materializer_is_refused(store: castore.Store, bad: str) -> None:
    from castore.manifest import ManifestDecodeError

    v = store.save("x", "t")
    raw = store.blobs.read_bytes(v.manifest_blob)
    forged = raw.replace(b'"materializer":"text"', b'"materializer":' + bad.encode())
    assert forged != raw
    with pytest.raises(ManifestDecodeError, match="materializer"):
        decode_manifest(forged, algorithm=store.hash)


def test_saving_the_same_object_again_reuses_the_version(store: castore.Store) -> None:
    first = store.save({"a": 1}, "cfg")
    assert store.save({"a": 1}, "cfg", aliases=["prod"]) == first
    assert store.get("cfg:prod") == first


def test_same_files_from_another_materializer_make_a_new_version(store: castore.Store) -> None:
    with store.draft("t") as d:
        d.add_bytes(b"hello", "data.txt")
    saved = store.save("hello", "t")
    assert saved != d.version and saved.number == 1 and saved.materializer == "text"


def test_bad_input_writes_nothing(store: castore.Store) -> None:
    with pytest.raises(castore.MaterializerError, match="no materializer can save a object"):
        store.save(object(), "x")
    with pytest.raises(castore.MaterializerError, match="JSON takes"):
        store.save({1: "int key"}, "x")
    with pytest.raises(castore.MaterializerError, match="no materializer writes the format"):
        store.save({"a": 1}, "x", format="hdf5")
    with pytest.raises(castore.InvalidReferenceError):
        store.save({"a": 1}, "x", aliases=["latest"])
    with pytest.raises(TypeError, match="takes no option"):
        store.save({"a": 1}, "x", compression=9)
    assert store.versions("x").total == 0 and store.drafts() == []


def test_load_takes_a_version_and_rejects_unknown_options(store: castore.Store) -> None:
    v = store.save([1, 2], "l")
    assert store.load(v) == [1, 2]
    assert store.load("l", allow_pickle=True) == [1, 2]  # accepted everywhere
    with pytest.raises(TypeError, match="takes no option"):
        store.load("l", mmap=True)
    with pytest.raises(castore.NotFoundError):
        store.load("nope")


# -- pickle -------------------------------------------------------------------------------


class _Plant:
    """A pickle that would create a file when unpickled."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.target), "w"))


def test_object_arrays_need_allow_pickle_on_both_sides(store: castore.Store) -> None:
    array = np.array([{"a": 1}, [2]], dtype=object)
    with pytest.raises(TypeError, match="allow_pickle=True") as info:
        store.save(array, "objs")
    assert info.value.option == "allow_pickle"
    assert store.versions("objs").total == 0
    v = store.save(array, "objs", allow_pickle=True)
    with pytest.raises(TypeError, match="allow_pickle=True"):
        v.load()
    assert list(v.load(allow_pickle=True)) == [{"a": 1}, [2]]


def test_a_hostile_npy_runs_nothing_without_allow_pickle(
    store: castore.Store, tmp_path: Path
) -> None:
    target = tmp_path / "planted"
    v = store.save(np.array([_Plant(target)], dtype=object), "evil", allow_pickle=True)
    assert not target.exists()  # pickling ran nothing either
    for load in (v.load, lambda: store.load("evil")):
        with pytest.raises(castore.MaterializerError, match="needs pickle, which can run code"):
            load()
        assert not target.exists()


def test_a_hostile_header_is_refused(store: castore.Store, tmp_path: Path) -> None:
    # A header that is not a literal (numpy parses it with ast.literal_eval, never eval).
    target = tmp_path / "planted"
    header = f"{{'descr': __import__('os').mkdir('{target}'), 'shape': (1,)}}".encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
    with store.draft("forged") as d:
        d.add_bytes(npy, "array.npy")
    store.catalog.update_version(d.version.id, materializer="numpy.ndarray")
    with pytest.raises(castore.MaterializerError, match=r"not a valid \.npy"):
        store.load("forged")
    assert not target.exists()


# -- registry -----------------------------------------------------------------------------


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y


class PointMaterializer:
    name = "tests.Point"
    types = (Point,)

    @staticmethod
    def can_save(obj: Any) -> bool:
        return True

    @staticmethod
    def save(obj: Any, draft: Any, **options: Any) -> None:
        draft.add_bytes(f"{obj.x},{obj.y}".encode(), "point.csv")

    @staticmethod
    def load(version: Any, **options: Any) -> Any:
        return Point(*map(int, version.read_text("point.csv").split(",")))


class UpperText:
    """Takes str before the built-in text materializer."""

    name = "tests.upper"
    types = (str,)

    @staticmethod
    def can_save(obj: Any) -> bool:
        return obj.isupper()

    @staticmethod
    def save(obj: Any, draft: Any, **options: Any) -> None:
        draft.add_bytes(obj.lower().encode(), "lower.txt")

    @staticmethod
    def load(version: Any, **options: Any) -> Any:
        return version.read_text("lower.txt").upper()


def test_a_registered_materializer_round_trips(store: castore.Store) -> None:
    assert castore.register_materializer(PointMaterializer) is PointMaterializer
    v = store.save(Point(3, 4), "pt")
    assert v.materializer == "tests.Point"
    p = store.load("pt")
    assert (p.x, p.y) == (3, 4)
    assert isinstance(PointMaterializer, castore.Materializer)  # the protocol, at run time


def test_a_registered_materializer_is_tried_before_the_builtins(store: castore.Store) -> None:
    castore.register_materializer(UpperText)
    assert store.save("LOUD", "a").materializer == "tests.upper"
    assert store.save("quiet", "b").materializer == "text"  # can_save said no
    assert store.load("a") == "LOUD"
    assert store.save("LOUD", "c", format="text").materializer == "text"


def test_the_newest_registration_wins(store: castore.Store) -> None:
    class Other(UpperText):
        name = "tests.other"

    castore.register_materializer(UpperText)
    castore.register_materializer(Other)
    assert store.save("X", "a").materializer == "tests.other"
    castore.register_materializer(UpperText)  # again: back to the front
    assert store.save("Y", "b").materializer == "tests.upper"


@pytest.mark.parametrize(
    "broken",
    [
        type("NoName", (), {"types": (), "can_save": 0, "save": 0, "load": 0}),
        type("BadName", (), {"name": "a b", "types": ()}),
        type("BadTypes", (), {"name": "x", "types": [int]}),
        type("NoLoad", (), {"name": "x", "types": (), "can_save": print, "save": print}),
    ],
)
def test_registering_a_malformed_class_is_refused(broken: type) -> None:
    with pytest.raises(castore.MaterializerError):
        castore.register_materializer(broken)
    assert registry._registered == []


def test_loading_with_an_unknown_materializer_names_it(store: castore.Store) -> None:
    castore.register_materializer(PointMaterializer)
    store.save(Point(1, 2), "pt")
    registry._registered.clear()
    with pytest.raises(castore.MaterializerError, match=r"'tests\.Point', which is not registered"):
        store.load("pt")


def _dist(tmp_path: Path, entry_points: str) -> Path:
    site = tmp_path / "site"
    info = site / "castore_points-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: castore-points\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)
    (site / "castore_points.py").write_text(
        "class PairMaterializer:\n"
        "    name = 'points.Pair'\n"
        "    types = (tuple,)\n"
        "    @staticmethod\n"
        "    def can_save(obj): return len(obj) == 2\n"
        "    @staticmethod\n"
        "    def save(obj, draft, **options):\n"
        "        draft.add_bytes(repr(obj).encode(), 'pair.txt')\n"
        "    @staticmethod\n"
        "    def load(version, **options):\n"
        "        a, b = version.read_text('pair.txt').strip('()').split(',')\n"
        "        return (int(a), int(b))\n"
    )
    return site


def test_an_entry_point_materializer_is_loaded_lazily(
    store: castore.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = _dist(
        tmp_path,
        "[castore.materializers]\npair = castore_points:PairMaterializer\n"
        "broken = castore_points_missing:Nothing\n",
    )
    monkeypatch.syspath_prepend(str(site))
    assert "castore_points" not in sys.modules
    v = store.save((1, 2), "pair")
    assert v.materializer == "points.Pair"
    assert store.load("pair") == (1, 2)
    assert "broken" in registry._plugin_errors  # skipped, kept for the error message
    # registered ones come before entry points, which come before the built-ins
    names = [m.name for m in registry.materializers()]
    assert names.index("points.Pair") < names.index("json")
    castore.register_materializer(PointMaterializer)
    assert registry.materializers()[0] is PointMaterializer
    monkeypatch.delitem(sys.modules, "castore_points")


def test_a_broken_entry_point_is_named_when_its_version_loads(
    store: castore.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    class FakeEntryPoint:
        name, value = "pointy", "pointy:PointMaterializer"

        def load(self) -> Any:
            raise ImportError("No module named 'pointy'")

    monkeypatch.setattr(
        registry.importlib.metadata, "entry_points", lambda group: [FakeEntryPoint()]
    )
    castore.register_materializer(PointMaterializer)
    store.save(Point(1, 2), "pt")
    registry._registered.clear()
    with pytest.raises(castore.MaterializerError, match="entry point 'pointy' failed to load"):
        store.load("pt")


# -- optional libraries -------------------------------------------------------------------


def _without(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    real = builtins.__import__

    def fake(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] in names:
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    for module in list(sys.modules):
        if module.split(".")[0] in names:
            monkeypatch.setitem(sys.modules, module, None)  # type: ignore[arg-type]
    monkeypatch.setattr(builtins, "__import__", fake)


def test_a_missing_numpy_names_the_extra(store: castore.Store) -> None:
    store.save(np.arange(3), "w")
    with pytest.MonkeyPatch.context() as mp:
        _without(mp, "numpy")
        with pytest.raises(ImportError, match=r"pip install 'castore\[numpy\]'"):
            store.load("w")


def test_a_missing_pyarrow_names_the_pandas_extra(store: castore.Store) -> None:
    df = pd.DataFrame({"a": [1]})
    with pytest.MonkeyPatch.context() as mp:
        _without(mp, "pyarrow")
        with pytest.raises(ImportError, match=r"pip install 'castore\[pandas\]'"):
            store.save(df, "t")
    assert store.versions("t").total == 0


def test_a_missing_safetensors_names_the_extra(store: castore.Store) -> None:
    with pytest.MonkeyPatch.context() as mp:
        _without(mp, "safetensors")
        with pytest.raises(ImportError, match=r"pip install 'castore\[safetensors\]'"):
            store.save({"w": np.zeros(2)}, "c", format="safetensors")


def test_json_text_and_bytes_need_none_of_the_optional_libraries(tmp_path: Path) -> None:
    import subprocess

    code = (
        "import sys\n"
        "sys.modules.update(dict.fromkeys(('numpy', 'pandas', 'pyarrow', 'safetensors')))\n"
        "import castore\n"
        f"s = castore.open({str(tmp_path / 's')!r})\n"
        "s.save({'a': 1}, 'c'); s.save('t', 't'); s.save(b'b', 'b')\n"
        "print(s.load('c'), s.load('t'), s.load('b'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "{'a': 1} t b'b'"


def test_a_str_saves_as_json_when_asked(store: castore.Store) -> None:
    v = store.save("quoted", "s", format="json")
    assert v.materializer == "json" and v.read_bytes("data.json") == b'"quoted"'
    assert v.load() == "quoted"
