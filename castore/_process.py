"""Process identity: is the process that started a run (or a draft) still the one running?

A pid alone is not an identity: Linux reuses pids, so after a crash another program may run
under the same number, and a liveness check by ``kill(pid, 0)`` would keep a dead run
``RUNNING`` forever. The identity is (host, pid, start token); the start token is the boot id
and the process start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), so a
reused pid, or the same pid after a reboot, reads as a different process. Where ``/proc`` is
not available the token is None and only the pid is checked.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["Identity", "current", "hostname", "is_gone", "start_token"]

_PROC = Path("/proc")

#: (host, pid, start token)
Identity = tuple[str, int, str | None]


def _boot_id() -> str:
    try:
        return (_PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of ``/proc/<pid>/stat`` (after the parenthesised command name), or None."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except (OSError, ValueError):
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    return text[text.rfind(")") + 2 :].split()


def hostname() -> str:
    """This machine's host name (as the runs and drafts tables record it)."""
    # socket is imported here: it costs every command ~8 ms at import, and only runs and
    # drafts ask for the host.
    import socket

    return socket.gethostname()


def start_token(pid: int) -> str | None:
    """``"<boot id>:<start ticks>"`` of process ``pid``, or None where it cannot be read."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    return f"{_boot_id()}:{fields[19]}"  # field 22 (starttime) is index 19 after the name


def current() -> Identity:
    """The identity of this process."""
    pid = os.getpid()
    return hostname(), pid, start_token(pid)


def is_gone(host: str | None, pid: int | None, token: str | None) -> bool:
    """True when the process (``host``, ``pid``, ``token``) has certainly ended.

    False when it runs, or when it cannot be checked from here (another host, no pid).
    A zombie (ended, not yet reaped) counts as gone; so does a live process whose start
    token differs from ``token`` (the pid was reused).
    """
    if pid is None or host != hostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, under another user
    except OverflowError:
        return True
    fields = _stat_fields(pid)
    if fields is not None and fields and fields[0] == "Z":
        return True
    if token is not None:
        now = start_token(pid)
        if now is not None and now != token:
            return True
    return False
