"""The transfer verbs: export, import, push, pull, remote add|ls|rm; --json and exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

from click.testing import CliRunner

from castore.cli import cli


def _run(*args: str) -> object:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_transfer_verbs(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("hello")
    src, dst, usb = str(tmp_path / "src"), str(tmp_path / "dst"), str(tmp_path / "usb")
    assert _run("--store", src, "add", str(tmp_path / "data"), "--name", "ds").exit_code == 0
    out = _run("--store", src, "--json", "export", "ds", "-o", str(tmp_path / "b.tar"))
    assert out.exit_code == 0 and json.loads(out.output)["versions"] == ["ds:v0"]
    out = _run("--store", dst, "--json", "import", str(tmp_path / "b.tar"))
    assert out.exit_code == 0 and json.loads(out.output)["blobs_sent"] == 1
    assert _run("--store", src, "remote", "add", "usb", usb).exit_code == 0
    out = _run("--store", src, "--json", "remote", "ls")
    assert json.loads(out.output) == [{"name": "usb", "url": usb, "options": {}}]
    assert _run("--store", src, "push", "usb").exit_code == 0
    out = _run("--store", src, "--json", "push", "usb")
    assert json.loads(out.output)["blobs_sent"] == 0
    out = _run("--store", str(tmp_path / "new"), "-q", "pull", usb, "ds")
    assert out.exit_code == 0 and out.output.split() == ["ds:v0"]
    assert _run("--store", src, "remote", "rm", "usb").exit_code == 0
    assert _run("--store", src, "remote", "rm", "usb").exit_code == 4


def test_exit_codes(tmp_path: Path) -> None:
    (tmp_path / "bad.tar").write_bytes(b"junk")
    assert _run("--store", str(tmp_path / "s"), "import", str(tmp_path / "bad.tar")).exit_code == 3
    assert _run("--store", str(tmp_path / "none"), "export", "-o", "x.tar").exit_code == 10


def test_budget_du_and_registry_credentials(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.bin").write_bytes(os.urandom(50_000))
    src, usb = str(tmp_path / "src"), str(tmp_path / "usb")
    assert _run("--store", src, "add", str(tmp_path / "data"), "--name", "ds").exit_code == 0
    assert _run("--store", src, "remote", "add", "usb", usb).exit_code == 0
    assert _run("--store", src, "push", "usb").exit_code == 0
    out = _run("--store", src, "--json", "budget", "1KiB")
    assert json.loads(out.output) == {"budget": 1024}
    assert _run("--store", src, "budget", "lots").exit_code == 2
    assert _run("--store", src, "gc", "-y").exit_code == 0
    out = _run("--store", src, "--json", "du")
    stats = json.loads(out.output)["store"]
    assert stats["remote_only_bytes"] == 50_000 and stats["budget"] == 1024
    assert "remote only" in _run("--store", src, "du").output
    out = _run("--store", src, "fsck")
    assert out.exit_code == 0 and "1 note" in out.output
    out = _run("--store", src, "cat", "ds:v0", "a.bin")
    assert out.exit_code == 0 and len(out.stdout_bytes) == 50_000  # fetched back
    assert json.loads(_run("--store", src, "--json", "budget", "off").output) == {"budget": None}
    out = CliRunner().invoke(
        cli, ["--store", src, "--json", "remote", "add", "hub",
              "oci://registry.example:5000/team/artifacts", "--username", "bot",
              "--password-stdin"], input="s3cret\n", catch_exceptions=False)
    assert out.exit_code == 0 and "s3cret" not in out.output, out.output
    listed = json.loads(_run("--store", src, "--json", "remote", "ls").output)
    hub = next(r for r in listed if r["name"] == "hub")
    assert hub["options"] == {"username": "bot", "password": "***"}
