"""Opening and creating stores: settings, formats, errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import zstandard

import castore
from castore.errors import ConfigurationError, StoreNotFoundError, UnsupportedFormatError


def test_open_creates_with_defaults(tmp_path: Path) -> None:
    with castore.open(tmp_path / "s") as store:
        assert store.path == (tmp_path / "s").absolute()
        cfg = json.loads((tmp_path / "s" / "castore.json").read_text())
        assert cfg["format"] == 2
        assert cfg["hash"] == "xxh3-128"
        assert cfg["compression"] == {"codec": "zstd", "level": 3}
        assert len(cfg["store_id"]) == 36
        for name in ("blobs", "tmp", "quarantine", "locks"):
            assert (store.path / name).is_dir()


def test_open_default_path_uses_castore_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("CASTORE_HOME", str(tmp_path / "home-store"))
    with castore.open() as store:
        assert store.path == (tmp_path / "home-store").absolute()


def test_open_missing_without_create(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match="no castore store") as info:
        castore.open(tmp_path / "missing", create=False)
    assert info.value.path == tmp_path / "missing"
    assert not (tmp_path / "missing").exists()


def test_read_only_open_of_missing_store_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError):
        castore.open(tmp_path / "missing", read_only=True)
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("algo", ["xxh3-128", "blake3", "sha256"])
def test_init_each_algorithm(tmp_path: Path, algo: str) -> None:
    with castore.init(tmp_path / algo, hash=algo, durable=False) as store:
        r = store.blobs.put_bytes(b"data")
        assert r.digest.algorithm == algo
    with castore.open(tmp_path / algo) as again:
        assert again.hash == algo


def test_init_again_same_settings_opens(tmp_path: Path) -> None:
    castore.init(tmp_path / "s", hash="sha256", level=5).close()
    with castore.init(tmp_path / "s", hash="sha256", level=5) as s:
        assert s.config.compression.level == 5


@pytest.mark.parametrize(
    "settings",
    [{"hash": "sha256"}, {"compression": "none"}, {"level": 9}, {"min_saving": 0.0}],
)
def test_init_with_other_settings_is_a_configuration_error(tmp_path: Path, settings) -> None:
    castore.init(tmp_path / "s").close()
    with pytest.raises(ConfigurationError, match="cannot change"):
        castore.init(tmp_path / "s", **settings)


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"hash": "md5"}, "unknown hash algorithm 'md5'"),
        ({"compression": "gzip"}, "unknown compression 'gzip'"),
        ({"level": 0}, "level"),
        ({"level": 23}, "level"),
        ({"min_saving": -0.1}, "min_saving must be a fraction"),
        ({"min_saving": 1.5}, "min_saving must be a fraction"),
        ({"min_saving": float("nan")}, "min_saving must be a fraction"),
        ({"min_saving": "0.1"}, "min_saving must be a fraction"),
        ({"min_saving": True}, "min_saving must be a fraction"),
    ],
)
def test_invalid_settings(tmp_path: Path, settings, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        castore.init(tmp_path / "s", **settings)
    assert not (tmp_path / "s").exists()


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    castore.init(tmp_path / "s").close()
    cfg_path = tmp_path / "s" / "castore.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["format"] = 99
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedFormatError, match="format 99") as info:
        castore.open(tmp_path / "s")
    assert info.value.found == 99


def test_garbage_config_is_refused(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "castore.json").write_text("{not json")
    with pytest.raises(UnsupportedFormatError, match="not valid JSON"):
        castore.open(tmp_path / "s")


def test_non_empty_foreign_directory_is_not_taken_over(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(ConfigurationError, match="not empty"):
        castore.open(tmp_path / "photos")
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["cat.jpg"]


def test_close_is_idempotent_and_context_manager_closes(tmp_path: Path) -> None:
    store = castore.open(tmp_path / "s")
    with store:
        pass
    assert store.closed
    store.close()
    assert "castore.Store" in repr(store)


def _slightly_compressible(size: int, seed: int) -> bytes:
    """Random bytes with a zero in every 16th place: zstd saves a few percent, under 10%."""
    data = bytearray(random.Random(seed).randbytes(size))
    data[::16] = bytes(len(data[::16]))
    return bytes(data)


def test_min_saving_decides_raw_or_zstd(tmp_path: Path) -> None:
    """Data that zstd shrinks by a few percent stays raw by default and is compressed when the
    store's min_saving is 0; the setting is kept in castore.json and used after reopening."""
    big, small = _slightly_compressible(1 << 20, 1), _slightly_compressible(20_000, 2)
    saving = 1 - len(zstandard.ZstdCompressor(level=3).compress(big)) / len(big)
    assert 0.01 < saving < 0.10
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(big)
    (src / "small.bin").write_bytes(small)
    codecs = {}
    for min_saving in (None, 0.0):
        path = tmp_path / f"store-{min_saving}"
        kwargs = {} if min_saving is None else {"min_saving": min_saving}
        castore.init(path, **kwargs).close()
        config = json.loads((path / "castore.json").read_text())
        assert ("min_saving" in config["compression"]) == (min_saving is not None)
        with castore.open(path) as store:  # the setting comes from castore.json
            with store.draft("w") as draft:
                draft.add_dir(src)
            v = store.get("w")
            codecs[min_saving] = {
                name: store.blobs.stat(v.get_entry(name).digest).codec
                for name in ("big.bin", "small.bin")
            }
            v.checkout(tmp_path / f"out-{min_saving}", link="hardlink")
            assert (tmp_path / f"out-{min_saving}" / "big.bin").read_bytes() == big
            assert v.verify().ok
    assert codecs[None] == {"big.bin": "raw", "small.bin": "raw"}
    assert codecs[0.0] == {"big.bin": "zstd", "small.bin": "zstd"}


def test_open_with_the_stores_own_min_saving_opens_it(tmp_path: Path) -> None:
    castore.init(tmp_path / "s", min_saving=0.25).close()
    with castore.open(tmp_path / "s", min_saving=0.25) as store:
        assert store.config.compression.min_saving == 0.25
    with pytest.raises(ConfigurationError, match=r"min_saving=0\.25"):
        castore.open(tmp_path / "s", min_saving=0.1)
