"""Shared fixtures: scratch stores and hypothesis profiles."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import castore

settings.register_profile(
    "default",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "ci",
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Never touch the real ~/.castore: point CASTORE_HOME at a scratch directory."""
    monkeypatch.setenv("CASTORE_HOME", str(tmp_path_factory.mktemp("home") / "castore"))
    monkeypatch.delenv("CASTORE_CRASH_AT", raising=False)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[castore.Store]:
    """A fresh scratch store (durable=False: fsync is not what most tests are about)."""
    s = castore.init(tmp_path / "store", durable=False)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def durable_store(tmp_path: Path) -> Iterator[castore.Store]:
    """A fresh store with fsync on, as users get it by default."""
    s = castore.init(tmp_path / "store")
    try:
        yield s
    finally:
        s.close()
