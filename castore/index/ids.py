"""Catalogue ids and time: time-ordered UUIDv7 version ids and microsecond timestamps.

Times in the catalogue are integers of microseconds since the epoch (UTC).
"""

from __future__ import annotations

import secrets
import threading
import time

__all__ = ["now_us", "uuid7"]

_uuid_lock = threading.Lock()
_uuid_last = [0, 0]  # last millisecond, last counter


def uuid7() -> str:
    """A new UUIDv7 (RFC 9562): time-ordered, monotonic within this process."""
    with _uuid_lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _uuid_last[0]:
            ms = _uuid_last[0]
            counter = _uuid_last[1] + 1
            if counter > 0xFFF:  # 4096 ids in one millisecond: borrow the next one
                ms, counter = ms + 1, secrets.randbits(8)
        else:
            counter = secrets.randbits(8)
        _uuid_last[0], _uuid_last[1] = ms, counter
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | counter << 64
    value |= 0b10 << 62 | secrets.randbits(62)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def now_us() -> int:
    """The current time in microseconds since the epoch."""
    return time.time_ns() // 1000
