"""Remote benchmark: push and pull to an S3 API (moto's server on loopback) against DVC.

Data: the transfer benchmark's tree (``--small`` files of 1-64 KiB plus one ``--big-mib`` MiB
file). castore pushes it to ``s3://bench/castore`` and a fresh store pulls it back; when
``dvc`` is on PATH, DVC does the same with an S3 remote (``endpointurl``) on the same server
in the same run. Each castore operation runs in a fresh spawned process for its peak RSS::

    python benchmarks/bench_remotes.py                          # 20,000 files + 1 GiB
    python benchmarks/bench_remotes.py --small 100 --big-mib 2  # smoke run

Targets (issue 12): castore push and pull ≤ DVC's time; a second push of unchanged data
≤ 5% of the first; bounded peak RSS.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import in_child, mbps, print_table, timed, verdict
from bench_transfer import make_tree


def _env(endpoint: str) -> None:
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint)


def _push(store: str, url: str, endpoint: str) -> dict[str, Any]:
    import castore

    _env(endpoint)
    with castore.open(store) as s:
        seconds, report = timed(lambda: s.push(url))
    return {"seconds": seconds, "bytes": report.bytes_sent}


def _pull(store: str, url: str, endpoint: str) -> dict[str, Any]:
    import castore

    _env(endpoint)
    with castore.open(store, create=True) as s:
        seconds, report = timed(lambda: s.pull(url))
    return {"seconds": seconds, "bytes": report.bytes_sent}


def _dvc(work: Path, tree: Path, endpoint: str) -> dict[str, float] | None:
    dvc = shutil.which("dvc")
    if dvc is None:
        return None
    repo = work / "dvc"
    repo.mkdir()
    shutil.copytree(tree, repo / "tree")

    def run(*args: str) -> None:
        subprocess.run([dvc, *args], cwd=repo, check=True, capture_output=True)

    run("init", "--no-scm")
    run("remote", "add", "-d", "bench", "s3://bench/dvc")
    run("remote", "modify", "bench", "endpointurl", endpoint)
    run("add", "tree")
    push, _ = timed(lambda: run("push"))
    push2, _ = timed(lambda: run("push"))
    shutil.rmtree(repo / "tree")
    shutil.rmtree(repo / ".dvc" / "cache")
    pull, _ = timed(lambda: run("pull"))
    return {"push": push, "push2": push2, "pull": pull}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    _env(endpoint)
    work = Path(tempfile.mkdtemp(prefix="bench-remotes-", dir=args.dir))
    try:
        import boto3

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
        tree = work / "tree"
        size = make_tree(tree, args.small, args.big_mib)
        import castore

        with castore.init(work / "src") as s:
            s.draft("bench").add_dir(tree).finalize()
        url = "s3://bench/castore"
        push1 = in_child(_push, str(work / "src"), url, endpoint)
        push2 = in_child(_push, str(work / "src"), url, endpoint)
        pull = in_child(_pull, str(work / "dst"), url, endpoint)
        dvc = _dvc(work, tree, endpoint)
        rows = [
            ["castore push", f"{push1['seconds']:.2f}", f"{mbps(size, push1['seconds']):.0f}",
             f"{push1['peak_rss_mib']:.0f}"],
            ["castore push (unchanged)", f"{push2['seconds']:.2f}", "",
             f"{push2['peak_rss_mib']:.0f}"],
            ["castore pull", f"{pull['seconds']:.2f}", f"{mbps(size, pull['seconds']):.0f}",
             f"{pull['peak_rss_mib']:.0f}"],
        ]
        if dvc is not None:
            rows += [
                ["dvc push", f"{dvc['push']:.2f}", f"{mbps(size, dvc['push']):.0f}", "-"],
                ["dvc push (unchanged)", f"{dvc['push2']:.2f}", "", "-"],
                ["dvc pull", f"{dvc['pull']:.2f}", f"{mbps(size, dvc['pull']):.0f}", "-"],
            ]
        print(f"{args.small} files + {args.big_mib} MiB = {size / 2**20:.0f} MiB, moto S3 "
              "on loopback")
        print_table(["operation", "seconds", "MB/s", "peak RSS MiB"], rows)
        print(f"second push ≤ 5% of first: {verdict(push2['seconds'] <= 0.05 * push1['seconds'])}")
        if dvc is None:
            print("dvc is not installed: no comparison (pip install 'dvc[s3]')")
        else:
            print(f"push ≤ dvc push: {verdict(push1['seconds'] <= dvc['push'])}")
            print(f"pull ≤ dvc pull: {verdict(pull['seconds'] <= dvc['pull'])}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        server.stop()


if __name__ == "__main__":
    main()
