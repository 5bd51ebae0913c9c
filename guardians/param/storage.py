"""A ``limits`` storage in memory that reads the engine's injected clock.

limits' own MemoryStorage reads ``time.time()`` and starts a timer thread; this
one counts fixed windows against our clock (so tests run on a fake clock) and
sweeps expired keys as it goes, keeping memory bounded by the active values.
"""

from __future__ import annotations

import threading

from limits.storage import Storage

from common.clock import Clock


class ClockedMemoryStorage(Storage):
    STORAGE_SCHEME = None  # not registered in limits' global scheme registry

    def __init__(self, clock: Clock, sweep_every: int = 4096) -> None:
        super().__init__()
        self.clock = clock
        self._counts: dict[str, list[float]] = {}  # key -> [count, expires_at]
        self._lock = threading.Lock()
        self._ops = 0
        self._sweep_every = sweep_every

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return ValueError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:  # type: ignore[override]
        now = self.clock.time()
        with self._lock:
            self._ops += 1
            if self._ops >= self._sweep_every:
                self._sweep(now)
            entry = self._counts.get(key)
            if entry is None or entry[1] <= now:
                entry = self._counts[key] = [0, now + expiry]
            entry[0] += amount
            return int(entry[0])

    def get(self, key: str) -> int:
        entry = self._counts.get(key)
        if entry is None or entry[1] <= self.clock.time():
            return 0
        return int(entry[0])

    def get_expiry(self, key: str) -> float:
        entry = self._counts.get(key)
        now = self.clock.time()
        return entry[1] if entry is not None and entry[1] > now else now

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        with self._lock:
            n = len(self._counts)
            self._counts.clear()
            return n

    def clear(self, key: str) -> None:
        with self._lock:
            self._counts.pop(key, None)

    def _sweep(self, now: float) -> None:
        self._ops = 0
        dead = [k for k, e in self._counts.items() if e[1] <= now]
        for k in dead:
            del self._counts[k]

    def __len__(self) -> int:
        return len(self._counts)
