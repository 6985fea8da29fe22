"""Real servers on loopback for remote tests, started by the tests themselves.

- :class:`Moto`: moto's ``ThreadedMotoServer`` (an S3 API) on 127.0.0.1, stoppable and
  restartable on the same port (its state lives in the process, so a restart keeps it);
- :class:`Registry`: Debian's ``docker-registry`` (distribution) on a free loopback port,
  with its config file and storage in a temp directory, no auth.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["Moto", "Registry", "free_port", "registry_binary"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, *, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Moto:
    """moto's S3 server on 127.0.0.1 (``endpoint``), with a bucket ``bucket``."""

    def __init__(self, bucket: str | None = None) -> None:
        import uuid

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        # moto keeps buckets in the process, across servers: a fresh name per server
        self.bucket = bucket or f"castore-{uuid.uuid4().hex[:12]}"
        self._server: Any = None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        _wait(self.endpoint + "/moto-api/")

    def create_bucket(self) -> None:
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                     aws_access_key_id="test", aws_secret_access_key="test",
                     ).create_bucket(Bucket=self.bucket)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


def registry_binary() -> str | None:
    return shutil.which("docker-registry") or shutil.which("registry")


class Registry:
    """``docker-registry serve`` on 127.0.0.1:``port``, storing under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = registry_binary()
        assert binary is not None
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.root / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n"
        )
        self._proc = subprocess.Popen([binary, "serve", str(config)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(f"http://{self.host}/v2/")

    def url(self, repository: str) -> str:
        return f"oci+http://{self.host}/{repository}"

    def get_json(self, path: str) -> Any:
        import json

        with urllib.request.urlopen(f"http://{self.host}{path}", timeout=10) as fh:
            return json.loads(fh.read())

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            self._proc = None
