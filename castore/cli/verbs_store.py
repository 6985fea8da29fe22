"""Verbs about the store itself: ``init`` and ``doctor``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from castore.cli import formatting as fmt
from castore.cli.common import EXIT_NO_STORE, State, output_options, pass_state

__all__ = ["doctor", "init", "probe_link_modes"]

_FICLONE = 0x40049409  # _IOW(0x94, 9, int), linux/fs.h
_PACKAGES = ("click", "pydantic", "sqlite-utils", "xxhash", "zstandard", "filelock", "blake3")


@click.command(short_help="Create a store (or open it if the settings match).")
@click.argument("path", required=False, type=click.Path(file_okay=False))
@click.option(
    "--hash", "hash_", type=click.Choice(["xxh3-128", "blake3", "sha256"]), default="xxh3-128",
    show_default=True, help="Content hash, fixed for the store's life (sha256/blake3 where "
    "untrusted parties write).",
)
@click.option(
    "--compression", type=click.Choice(["zstd", "none"]), default="zstd", show_default=True,
    help="How blobs are compressed (per blob, only where it pays).",
)
@click.option("--level", type=click.IntRange(1, 22), default=3, show_default=True,
              help="zstd level.")
@click.option(
    "--min-saving", type=click.FloatRange(0.0, 1.0), default=0.1, show_default=True,
    help="Keep a blob compressed only when zstd saves at least this fraction; others stay "
    "raw so checkout can link them (0 keeps every saving: smaller, copy-only).",
)
@output_options
@pass_state
def init(
    state: State, path: str | None, hash_: str, compression: str, level: int, min_saving: float
) -> None:
    """Create a store (or open the existing one if its settings match).

    PATH defaults to --store, else $CASTORE_HOME, else ~/.castore.

    \b
    Examples:
      castore init
      castore init /data/castore --hash sha256
      castore --store /data/castore init --compression none
    """
    import castore

    where = Path(path).expanduser() if path else state.store_path
    try:  # the library decides what is a store (its layout), not a file name test here
        castore.open(where, create=False, read_only=True).close()
        existed = True
    except castore.StoreNotFoundError:
        existed = False
    with castore.init(
        where, hash=hash_, compression=compression, level=level, min_saving=min_saving
    ) as store:
        config = store.config
        root = store.path
    if state.json:
        fmt.echo_json({"path": str(root), "created": not existed, "config": config})
        return
    if state.quiet:
        click.echo(str(root))
        return
    codec = config.compression.codec
    how = (f"zstd level {config.compression.level}, min saving {config.compression.min_saving:g}"
           if codec == "zstd" else "no compression")
    verb = "store already exists at" if existed else "initialized store at"
    click.echo(f"{verb} {root} ({config.hash}, {how})")


def _probe_dir(root: Path) -> Path:
    """Where to probe: the store's tmp/ if there is one, else the nearest existing parent."""
    tmp = root / "tmp"
    if tmp.is_dir():
        return tmp
    probe = root
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return probe


def probe_link_modes(directory: Path) -> dict[str, bool | None]:
    """Which link modes work inside ``directory``: hardlink, symlink, reflink (None: unknown).

    Creates two small files with unique names and removes them again.
    """
    import fcntl

    result: dict[str, bool | None] = {"copy": True, "hardlink": None, "symlink": None,
                                      "reflink": None}
    if not os.access(directory, os.W_OK):
        return result
    base = directory / f".doctor-{os.getpid()}-{os.urandom(4).hex()}"
    src = base.with_suffix(".src")
    others = [base.with_suffix(s) for s in (".hard", ".sym", ".ref")]
    try:
        src.write_bytes(b"castore doctor probe\n")
        try:
            os.link(src, others[0])
            result["hardlink"] = True
        except OSError:
            result["hardlink"] = False
        try:
            os.symlink(src, others[1])
            result["symlink"] = True
        except OSError:
            result["symlink"] = False
        try:
            with open(src, "rb") as fin, open(others[2], "wb") as fout:
                fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
            result["reflink"] = True
        except OSError:
            result["reflink"] = False
    except OSError:
        pass
    finally:
        for p in (src, *others):
            try:
                p.unlink()
            except OSError:
                pass
    return result


def _lock_state(root: Path) -> dict[str, str]:
    """``{lock file: "held" | "free"}`` for the store's maintenance locks (nothing is created)."""
    import errno
    import fcntl

    out: dict[str, str] = {}
    locks = root / "locks"
    if not locks.is_dir():
        return out
    for path in sorted(locks.iterdir()):
        if not path.is_file():
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            out[path.name] = "unreadable"
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            out[path.name] = "free"
        except OSError as exc:
            out[path.name] = "held" if exc.errno in (errno.EAGAIN, errno.EACCES) else "unknown"
        finally:
            os.close(fd)
    return out


def _versions() -> dict[str, str | None]:
    import platform
    from importlib import metadata

    import castore

    out: dict[str, str | None] = {
        "castore": castore.__version__,
        "python": platform.python_version(),
    }
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    import sqlite3

    out["sqlite"] = sqlite3.sqlite_version
    return out


@click.command(short_help="Check the installation and the store.")
@output_options
@pass_state
def doctor(state: State) -> None:
    """Check the installation and the store: versions, format, free space, link modes, locks.

    Exits 10 (after printing what it found) when there is no store at the path.

    \b
    Examples:
      castore doctor
      castore --store /data/castore doctor --json
    """
    import platform
    import shutil

    import castore

    try:
        store = state.open(create=False)
    except castore.StoreNotFoundError as exc:
        store = None
        root = Path(str(getattr(exc, "path", "")))  # where castore.open looked
    else:
        root = Path(store.path)
    found = store is not None
    store_info: dict[str, Any] = {"path": str(root.absolute()), "exists": False}
    report: dict[str, Any] = {
        "versions": _versions(),
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "store": store_info,
    }
    if store is not None:
        config = store.config
        store_info.update(
            exists=True,
            format=config.format,
            store_id=config.store_id,
            hash=config.hash,
            compression=config.compression.model_dump(mode="json"),
            read_only=bool(getattr(store, "read_only", False)),
        )
        drafts = getattr(store, "drafts", None)
        if callable(drafts):
            try:
                store_info["pending_drafts"] = len(list(drafts()))
            except castore.CastoreError:
                store_info["pending_drafts"] = None
    usage = shutil.disk_usage(_probe_dir(root))
    report["disk"] = {"total": usage.total, "used": usage.used, "free": usage.free}
    report["link_modes"] = probe_link_modes(_probe_dir(root))
    report["locks"] = _lock_state(root) if found else {}
    if state.json:
        fmt.echo_json(report)
    elif not state.quiet:
        _print_doctor(report)
    if not found:
        fmt.err(
            f"error: no castore store at {str(root)!r} (hint: create it with `castore init`, "
            "or point --store / $CASTORE_HOME at a store)"
        )
        raise click.exceptions.Exit(EXIT_NO_STORE)


def _print_doctor(report: dict[str, Any]) -> None:
    rows: list[tuple[str, str]] = []
    for name, version in report["versions"].items():
        rows.append((name, version or "not installed"))
    rows.append(("platform", report["platform"]))
    store = report["store"]
    rows.append(("store", store["path"] + ("" if store["exists"] else "  (missing)")))
    if store["exists"]:
        comp = store["compression"]
        codec = (f"zstd level {comp['level']}, min saving {comp['min_saving']:g}"
                 if comp["codec"] == "zstd" else "none")
        rows += [
            ("format", str(store["format"])),
            ("hash", store["hash"]),
            ("compression", codec),
            ("store id", store["store_id"]),
            ("writable", "no (read-only)" if store["read_only"] else "yes"),
        ]
        if "pending_drafts" in store:
            rows.append(("pending drafts", str(store["pending_drafts"])))
    disk = report["disk"]
    rows.append(
        ("free space", f"{fmt.human_size(disk['free'])} of {fmt.human_size(disk['total'])}")
    )
    modes = report["link_modes"]
    rows.append(
        ("link modes", ", ".join(m for m, ok in modes.items() if ok) or "copy")
    )
    unavailable = [m for m, ok in modes.items() if ok is False]
    if unavailable:
        rows.append(("unavailable", ", ".join(unavailable)))
    locks = report["locks"]
    rows.append(
        ("locks", ", ".join(f"{k}: {v}" for k, v in locks.items()) if locks else "none held")
    )
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key.ljust(width)}  {value}")

