"""The command line's own cost: ``castore ls``, ``show`` and ``cat`` on a small store.

Wall time (median of ``--runs``) of each command against ``python -c pass`` and
``python -c "import castore"`` in the same run, with the CPU time (user + system) of the child
beside it: on a busy machine the wall time swings, the CPU time much less. Bytecode is cached
under a private ``PYTHONPYCACHEPREFIX`` (warmed first), as an installed package has it; the
commands run from a temp directory so that ``python -m castore`` imports this tree only::

    python benchmarks/bench_cli.py                 # 10 runs each
    python benchmarks/bench_cli.py --runs 3        # smoke run
    CASTORE_TREE=/tmp/before python benchmarks/bench_cli.py   # another tree (git archive)

Target (issue 15): each command under 0.25 s wall.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TREE = Path(os.environ.get("CASTORE_TREE") or Path(__file__).resolve().parents[1])
TARGET = 0.25


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(args: list[str], env: dict[str, str], cwd: str, runs: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``args`` over ``runs`` runs (after one warm-up)."""
    subprocess.run(args, env=env, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
    walls, cpus = [], []
    for _ in range(runs):
        cpu, started = _cpu(), time.perf_counter()
        subprocess.run(args, env=env, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
        walls.append(time.perf_counter() - started)
        cpus.append(_cpu() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="castore-cli-") as tmp:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(PYTHONPATH=str(TREE), PYTHONPYCACHEPREFIX=f"{tmp}/pycache")
        src = Path(tmp, "src")
        (src / "sub").mkdir(parents=True)
        (src / "a.txt").write_text("hello\n")
        (src / "sub" / "b.txt").write_text("x\n")
        store = f"{tmp}/store"
        cli = [sys.executable, "-m", "castore", "-C", store]
        for setup in (["init"], ["add", str(src), "--name", "ds"]):
            subprocess.run([*cli, *setup], env=env, cwd=tmp, stdout=subprocess.DEVNULL, check=True)
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "import castore": [sys.executable, "-c", "import castore"],
            "castore ls": [*cli, "ls"],
            "castore show ds": [*cli, "show", "ds"],
            "castore cat ds a.txt": [*cli, "cat", "ds", "a.txt"],
        }
        results = {name: measure(argv, env, tmp, args.runs) for name, argv in cases.items()}
    base = results["python -c pass"][0]
    load = os.getloadavg()[0]
    print(f"median of {args.runs} runs; load average {load:.1f} on {os.cpu_count()} cores "
          "(the machine may be shared: wall times are noisy)")
    print(f"{'command':22} {'wall s':>7} {'cpu s':>7} {'x pass':>7}  target")
    for name, (wall, cpu) in results.items():
        verdict = ("PASS" if wall < TARGET else "MISS") if name.startswith("castore") else ""
        print(f"{name:22} {wall:7.3f} {cpu:7.3f} {wall / base:7.1f}  {verdict}")


if __name__ == "__main__":
    main()
