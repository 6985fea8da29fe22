"""The command line's own cost: ``castore ls``, ``show`` and ``cat`` on a small store.

Wall time (median of ``--runs``) of each command against ``python -c pass`` and
``python -c "import castore"`` in the same run, with the CPU time (user + system) of the child
beside it: on a busy machine the wall time swings, the CPU time much less. Bytecode is cached
under a private ``PYTHONPYCACHEPREFIX`` (warmed first), as an installed package has it; the
commands run from a temp directory so that ``python -m castore`` imports this tree only::

    python benchmarks/bench_cli.py                 # 10 runs each
    python benchmarks/bench_cli.py --runs 3        # smoke run
    CASTORE_TREE=/tmp/before python benchmarks/bench_cli.py   # another tree (git archive)
    python benchmarks/bench_cli.py --compare /tmp/before    # both trees, in turn, same run

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


def measure(
    cases: list[tuple[list[str], dict[str, str]]], cwd: str, runs: int
) -> list[tuple[float, float]]:
    """Median wall and CPU seconds of each ``(argv, env)`` over ``runs`` rounds.

    The cases take turns within each round (after one warm-up each), so a load that comes and
    goes on a shared machine falls on all of them alike.
    """
    for argv, env in cases:
        subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
    walls: list[list[float]] = [[] for _ in cases]
    cpus: list[list[float]] = [[] for _ in cases]
    for _ in range(runs):
        for i, (argv, env) in enumerate(cases):
            cpu, started = _cpu(), time.perf_counter()
            subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
            walls[i].append(time.perf_counter() - started)
            cpus[i].append(_cpu() - cpu)
    return [(statistics.median(w), statistics.median(c)) for w, c in zip(walls, cpus, strict=True)]


def _setup(tree: Path, tmp: str, label: str) -> tuple[list[str], dict[str, str]]:
    """A store with one small version ``ds`` made by ``tree``; its command prefix and env."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPATH=str(tree), PYTHONPYCACHEPREFIX=f"{tmp}/pycache")
    src = Path(tmp, "src")
    if not src.exists():
        (src / "sub").mkdir(parents=True)
        (src / "a.txt").write_text("hello\n")
        (src / "sub" / "b.txt").write_text("x\n")
    cli = [sys.executable, "-m", "castore", "-C", f"{tmp}/store-{label}"]
    for setup in (["init"], ["add", str(src), "--name", "ds"]):
        subprocess.run([*cli, *setup], env=env, cwd=tmp, stdout=subprocess.DEVNULL, check=True)
    return cli, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--compare", metavar="DIR", type=Path,
                        help="another castore tree, timed in turn with this one")
    args = parser.parse_args()
    trees = {"": TREE} | ({"before ": args.compare.resolve()} if args.compare else {})
    with tempfile.TemporaryDirectory(prefix="castore-cli-") as tmp:
        names: list[str] = []
        cases: list[tuple[list[str], dict[str, str]]] = []
        for label, tree in trees.items():
            cli, env = _setup(tree, tmp, label.strip() or "this")
            if not cases:
                names += ["python -c pass", "import castore"]
                cases += [([sys.executable, "-c", "pass"], env),
                          ([sys.executable, "-c", "import castore"], env)]
            for name, verb in (("castore ls", ["ls"]), ("castore show ds", ["show", "ds"]),
                               ("castore cat ds a.txt", ["cat", "ds", "a.txt"])):
                names.append(label + name)
                cases.append(([*cli, *verb], env))
        results = dict(zip(names, measure(cases, tmp, args.runs), strict=True))
    base = results["python -c pass"][0]
    load = os.getloadavg()[0]
    print(f"median of {args.runs} runs; load average {load:.1f} on {os.cpu_count()} cores "
          "(the machine may be shared: wall times are noisy)")
    if args.compare:
        print(f"this tree: {TREE}; before: {args.compare}")
    print(f"{'command':29} {'wall s':>7} {'cpu s':>7} {'x pass':>7}  target")
    for name, (wall, cpu) in results.items():
        verdict = ("PASS" if wall < TARGET else "MISS") if "castore " in name else ""
        print(f"{name:29} {wall:7.3f} {cpu:7.3f} {wall / base:7.1f}  {verdict}")


if __name__ == "__main__":
    main()
