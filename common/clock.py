"""Injected time: the one clock of tradeguard. Every time-dependent behaviour reads a ``Clock``.

``time()`` is epoch seconds as a float (it also stamps the per-second metric buckets of the
guardians, so it must be wall-clock based); ``time_ns()`` the same instant in integer
nanoseconds (the guardians' hot path does integer bucket math on it); ``now()`` an aware UTC
datetime (the trading core, collectors and alerts); ``sleep()`` / ``asleep()`` how queueing
behaviours wait (a ``FakeClock`` just advances).

Production code takes ``clock: Clock | None = None`` and defaults to ``SystemClock()``; tests
pass a ``FakeClock`` and move it with ``advance()`` / ``set()``.
"""

from __future__ import annotations

import asyncio
import threading
import time as _time
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def time(self) -> float:
        """Seconds since the epoch (used for windows and response times)."""
        ...

    def time_ns(self) -> int:
        """The same instant as integer nanoseconds."""
        ...

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def sleep(self, seconds: float) -> None: ...

    async def asleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock. ``time`` is the builtin itself so the hot path pays one C call."""

    def __init__(self) -> None:
        self.time = _time.time
        self.time_ns = _time.time_ns

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            _time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)


def _ns(t: float | datetime) -> int:
    if isinstance(t, datetime):
        if t.tzinfo is None:
            raise ValueError(f"clock time: must be timezone-aware, got naive {t.isoformat()}")
        return round(t.timestamp() * 1e9)
    return round(t * 1e9)


class FakeClock:
    """A clock that only moves when told to (tests, simulations). ``sleep`` advances it.

    ``start`` (and ``set``) take epoch seconds or an aware datetime.
    """

    def __init__(self, start: float | datetime = 1_700_000_000.0) -> None:
        self._ns = _ns(start)
        self._lock = threading.Lock()
        self.slept: list[float] = []

    def time(self) -> float:
        return self._ns / 1e9

    def time_ns(self) -> int:
        return self._ns

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._ns / 1e9, UTC)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._ns += round(seconds * 1e9)

    def set(self, t: float | datetime) -> None:
        ns = _ns(t)
        with self._lock:
            self._ns = ns

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if seconds > 0:
            self.advance(seconds)

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)
