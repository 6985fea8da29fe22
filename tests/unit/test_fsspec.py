"""The read-only castore:// fsspec filesystem, through fsspec, pandas and universal_pathlib."""

from __future__ import annotations

import io
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

fsspec = pytest.importorskip("fsspec")
pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

import castore  # noqa: E402
from castore.errors import ReadOnlyStoreError  # noqa: E402
from castore.integrations.fsspec import CastoreFileSystem  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CSV = b"a,b\n1,x\n2,y\n3,z\n"


@pytest.fixture
def ds_store(tmp_path: Path) -> Iterator[castore.Store]:
    fsspec.register_implementation("castore", CastoreFileSystem, clobber=True)
    store = castore.init(tmp_path / "store", durable=False)
    frame = pd.DataFrame({"n": list(range(1000)), "s": [f"row {i}" for i in range(1000)]})
    buf = io.BytesIO()
    frame.to_parquet(buf)
    with store.draft("ds", type="dataset") as d:
        d.add_bytes(CSV, name="a.csv")
        d.add_bytes(buf.getvalue(), name="tables/t.parquet")
        d.add_bytes(b"hello", name="tables/deep/notes.txt")
    store.get("ds").add_alias("prod")
    with store.draft("other", type="model") as d:
        d.add_bytes(b"w", name="w.bin")
    CastoreFileSystem.clear_instance_cache()
    yield store
    CastoreFileSystem.clear_instance_cache()
    store.close()


def test_entry_point_is_declared() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    spec = meta["project"]["entry-points"]["fsspec.specs"]["castore"]
    module, _, name = spec.partition(":")
    assert module == "castore.integrations.fsspec" and name == "CastoreFileSystem"
    assert "fsspec" in "".join(meta["project"]["optional-dependencies"]["fsspec"])


def test_pandas_read_csv_and_parquet(ds_store: castore.Store) -> None:
    opts = {"store": str(ds_store.path)}
    frame = pd.read_csv("castore://ds:prod/a.csv", storage_options=opts)
    assert list(frame["a"]) == [1, 2, 3] and list(frame["b"]) == ["x", "y", "z"]
    table = pd.read_parquet("castore://ds:v0/tables/t.parquet", storage_options=opts)
    assert len(table) == 1000 and table["s"][999] == "row 999"


def test_default_store(ds_store: castore.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASTORE_HOME", str(ds_store.path))
    assert list(pd.read_csv("castore://ds/a.csv")["a"]) == [1, 2, 3]


def test_ls_info_find_glob_cat(ds_store: castore.Store) -> None:
    fs = fsspec.filesystem("castore", store=ds_store)
    assert fs.ls("", detail=False) == ["ds", "other"]
    assert fs.ls("ds:prod", detail=False) == ["ds:prod/a.csv", "ds:prod/tables"]
    assert fs.ls("castore://ds:prod/tables/", detail=False) == [
        "ds:prod/tables/deep",
        "ds:prod/tables/t.parquet",
    ]
    info = fs.info("ds:prod/a.csv")
    assert info["type"] == "file" and info["size"] == len(CSV)
    assert info["digest"] == ds_store.get("ds").get_entry("a.csv").digest
    assert fs.info("ds:prod/tables")["type"] == "directory"
    assert fs.isdir("ds:prod") and fs.isfile("ds:prod/a.csv") and not fs.exists("ds:prod/nope")
    assert fs.find("ds:prod") == [
        "ds:prod/a.csv",
        "ds:prod/tables/deep/notes.txt",
        "ds:prod/tables/t.parquet",
    ]
    assert fs.find("ds:prod/tables", maxdepth=1) == ["ds:prod/tables/t.parquet"]
    assert fs.glob("ds:prod/**/*.txt") == ["ds:prod/tables/deep/notes.txt"]
    assert fs.glob("ds:prod/*.csv") == ["ds:prod/a.csv"]
    assert fs.cat("ds:prod/a.csv") == CSV
    assert fs.cat_file("ds:prod/a.csv", start=2, end=5) == CSV[2:5]
    assert fs.cat_file("ds:prod/a.csv", start=-3) == CSV[-3:]
    with fs.open("ds:prod/tables/deep/notes.txt", "rt") as f:
        assert f.read() == "hello"
    with fs.open("ds:prod/a.csv") as f:
        f.seek(4)
        assert f.read(3) == CSV[4:7]


def test_errors(ds_store: castore.Store, tmp_path: Path) -> None:
    fs = fsspec.filesystem("castore", store=ds_store)
    with pytest.raises(FileNotFoundError):
        fs.info("nope:prod/a.csv")
    with pytest.raises(FileNotFoundError):
        fs.ls("ds:prod/missing")
    with pytest.raises(FileNotFoundError):
        fs.open("ds:prod/tables")
    with pytest.raises(ReadOnlyStoreError):
        fs.open("ds:prod/new.csv", "wb")
    with pytest.raises(ReadOnlyStoreError):
        fs.rm("ds:prod/a.csv")
    with pytest.raises(castore.StoreNotFoundError):
        CastoreFileSystem(store=tmp_path / "no-store", skip_instance_cache=True)


def test_damaged_blob_raises_through_fsspec(ds_store: castore.Store) -> None:
    path = ds_store.blobs.path_of(ds_store.get("ds").get_entry("a.csv").digest)
    path.chmod(0o644)
    path.write_bytes(b"a,b\n1,x\n2,y\n3,Z\n")
    fs = fsspec.filesystem("castore", store=ds_store)
    with pytest.raises(castore.IntegrityError):
        fs.cat("ds:prod/a.csv")


def test_upath(ds_store: castore.Store) -> None:
    upath = pytest.importorskip("upath")
    p = upath.UPath("castore://ds:prod/tables", store=str(ds_store.path))
    assert sorted(c.name for c in p.iterdir()) == ["deep", "t.parquet"]
    assert (p / "deep" / "notes.txt").read_text() == "hello"
    assert (p / "deep" / "notes.txt").stat().st_size == 5
