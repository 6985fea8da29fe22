"""Shared helpers for castore's benchmark scripts (scripts, not tests: pytest never collects them).

What is here, and nothing more:

* :func:`load_gen_data` / :func:`write_data_file`: deterministic data from the shared
  performance-anchor generator (``/work/shared/bench/gen_data.py``, or ``$CASTORE_GEN_DATA``),
  loaded by path with importlib so its code is never copied. It needs numpy.
* :func:`in_child`: run a module-level function in a fresh ``spawn`` process and return its
  result together with that process's peak RSS, so one case's memory never pollutes another's.
* :func:`timed`, :func:`median`, :func:`mbps`: wall-clock timing; MB/s is 10^6 bytes/s.
* :func:`drop_caches`, :func:`evict_file`: best-effort page-cache control.
* :func:`print_table`, :func:`machine_summary`, :func:`verdict`: output.

A benchmark prints; it never asserts. Import it from a script in ``benchmarks/`` with
``sys.path.insert(0, str(Path(__file__).parent))`` then ``import _common``.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

MiB = 1024 * 1024
GiB = 1024 * MiB
DEFAULT_GEN_DATA = Path("/work/shared/bench/gen_data.py")
#: Data is generated in pieces of this size (each with its own seed) to bound memory.
PIECE = 64 * MiB

_gen_data: ModuleType | None = None


def load_gen_data() -> ModuleType:
    """The shared ``gen_data`` module, imported by path (``$CASTORE_GEN_DATA`` overrides it)."""
    global _gen_data
    if _gen_data is None:
        path = Path(os.environ.get("CASTORE_GEN_DATA", DEFAULT_GEN_DATA))
        if not path.is_file():
            raise SystemExit(f"gen_data.py not found at {path}; set CASTORE_GEN_DATA to its path")
        spec = importlib.util.spec_from_file_location("castore_bench_gen_data", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except ModuleNotFoundError as exc:
            raise SystemExit(f"{path} needs {exc.name}: pip install {exc.name}") from exc
        _gen_data = module
    return _gen_data


def write_data_file(path: Path, size: int, kind: str, *, seed: int = 0, unique: int = 0) -> Path:
    """Write ``size`` bytes of ``kind`` data to ``path`` unless a file of that size is there.

    Args:
        kind: ``"random"`` (incompressible), ``"csv"``, ``"jsonl"`` or ``"f32"`` (float32
            weights), i.e. gen_data's ``random_bytes``, ``csv_text``, ``jsonl_text``,
            ``weights_f32``.
        seed: base seed; piece ``i`` of :data:`PIECE` bytes uses ``seed + i``.
        unique: if > 0, only this many distinct pieces are generated and then repeated (text
            generation is slow; zstd's window at level 3 is far smaller than one piece, and
            castore dedups whole files, so the repetition changes no measured figure).
    """
    if path.is_file() and path.stat().st_size == size:
        return path
    gen = load_gen_data()
    make: Callable[[int, int], bytes] = {
        "random": gen.random_bytes,
        "csv": gen.csv_text,
        "jsonl": gen.jsonl_text,
        "f32": gen.weights_f32,
    }[kind]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    cache: dict[int, bytes] = {}
    written = 0
    with open(tmp, "wb") as fh:
        i = 0
        while written < size:
            n = min(PIECE, size - written)
            key = i % unique if unique else i
            if key not in cache or len(cache[key]) < n:
                piece = make(PIECE, seed + key)
                if unique:
                    cache[key] = piece
            else:
                piece = cache[key]
            fh.write(piece[:n])
            written += n
            i += 1
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def peak_rss_mib() -> float:
    """This process image's peak resident set size so far, in MiB.

    On Linux this is ``VmHWM`` from ``/proc/self/status``: ``getrusage``'s ``ru_maxrss`` of a
    process started by fork+exec (``spawn``, ``subprocess``) also counts the parent's RSS at the
    fork (the kernel keeps the pre-exec high-water mark), so it would report the parent's
    memory, not the child's. Elsewhere: ``resource.getrusage(RUSAGE_SELF).ru_maxrss``.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def maxrss_mib() -> float:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` in MiB (see :func:`peak_rss_mib` for its catch)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _child_entry(fn: Callable[..., dict[str, Any]], args: tuple[Any, ...]) -> dict[str, Any]:
    base = peak_rss_mib()
    result = dict(fn(*args))
    result["rss_before_mib"] = base
    result["peak_rss_mib"] = peak_rss_mib()
    result["ru_maxrss_mib"] = maxrss_mib()
    return result


def in_child(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``fn(*args)`` (a module-level function returning a dict) in a fresh spawned process.

    The returned dict gains ``peak_rss_mib`` (the child's peak RSS, interpreter and imports
    included) and ``rss_before_mib`` (its peak RSS before ``fn`` ran: the import baseline).
    """
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(_child_entry, fn, args).result()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """``(wall seconds, result)`` of one call."""
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def median(xs: Sequence[float]) -> float:
    """Median, NaN for an empty sequence."""
    return statistics.median(xs) if xs else float("nan")


def mbps(nbytes: int, seconds: float) -> float:
    """Throughput in MB/s (10^6 bytes per second)."""
    return nbytes / seconds / 1e6 if seconds > 0 else float("inf")


def drop_caches() -> bool:
    """``sync`` then drop the page cache if allowed (root); return whether it was dropped."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return True
    except OSError:
        return False


def evict_file(path: str | Path) -> None:
    """Best effort, no root needed: fsync then drop one file's clean pages from the cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def warm_file(path: str | Path) -> None:
    """Read a file once so it sits in the page cache."""
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(4 * MiB)
        while fh.readinto(buf):
            pass


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a Markdown table (floats with 2 decimals)."""

    def fmt(v: Any) -> str:
        return f"{v:,.2f}" if isinstance(v, float) else str(v)

    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells:
        print("| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |")


def verdict(ok: bool) -> str:
    """``PASS`` or ``MISS`` (benchmarks report targets, they do not assert them)."""
    return "PASS" if ok else "MISS"


def machine_summary(path: str | Path) -> str:
    """One line: CPUs, memory, free disk at ``path``, Python, platform."""
    mem = "?"
    try:
        with open("/proc/meminfo") as fh:
            mem = f"{int(fh.readline().split()[1]) / 1024 / 1024:.1f} GiB RAM"
    except OSError:
        pass
    free = shutil.disk_usage(path).free / GiB
    return (
        f"{os.cpu_count()} CPUs, {mem}, {free:.0f} GiB free at {path}, "
        f"Python {platform.python_version()}, {platform.platform()}"
    )
