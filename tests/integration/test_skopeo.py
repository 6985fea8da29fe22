"""Interop with a real OCI tool: skopeo reads a bundle, copies it, castore pulls the copy."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import harness
import pytest

import castore

pytestmark = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")


def test_skopeo_inspect_copy_and_pull(tmp_path: Path) -> None:
    with castore.init(tmp_path / "src") as src:
        harness.finalize(src, "ds", {"a.txt": b"A0", "d/b.bin": b"B" * 3000})
        src.export(tmp_path / "b.tar")
        v0 = src.get("ds:v0")
        snap = harness.snapshot(src)
    raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci-archive:{tmp_path}/b.tar:ds:v0"],
                         check=True, capture_output=True, text=True).stdout
    manifest = json.loads(raw)
    assert manifest["artifactType"] == "application/vnd.castore.version.v1+json"
    titles = sorted(la["annotations"]["org.opencontainers.image.title"]
                    for la in manifest["layers"])
    assert titles == ["a.txt", "d/b.bin"]
    # skopeo's oci: destination names the image "ds-v0" (the registry tag form)
    subprocess.run(["skopeo", "copy", f"oci-archive:{tmp_path}/b.tar:ds:v0",
                    f"oci:{tmp_path}/site:ds-v0"], check=True, capture_output=True)
    with castore.init(tmp_path / "dst") as dst:
        dst.pull(str(tmp_path / "site"), refs=["ds:v0"])
        assert dst.get("ds:v0").id == v0.id
        assert harness.snapshot(dst) == snap
