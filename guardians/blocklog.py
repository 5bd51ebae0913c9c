"""The block log (Sentinel's ``sentinel-block.log``): blocked calls counted per second.

Each blocked call is counted under ``(resource, rule, kind, origin, param, value)``: ``param`` and
``value`` are the limited parameter and its value for a param block (``client_ip`` /
``203.0.113.7``, ``sku`` / ``FLASH-001``), else the request's client address when the HTTP
middleware knows it (``client_ip``), else ``-``. Memory is bounded: at most ``max_keys`` distinct
keys a second (later ones are counted under value ``(other)``) and the last ``keep_s`` seconds.
``drain(before)`` hands over every completed second once (the collectors' ``blocks`` measurement).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from guardians.context import current_origin

NONE = "-"
OTHER = "(other)"
Key = tuple[str, str, str, str, str, str]


class BlockLog:
    def __init__(self, *, max_keys: int = 200, keep_s: int = 120) -> None:
        self.max_keys = max_keys
        self.keep_s = keep_s
        self._seconds: dict[int, Counter[Key]] = {}
        self._lock = threading.Lock()
        self.dropped = 0  # blocks of seconds already drained (counted nowhere else)

    def record(self, t: float, resource: str, exc: Any, origin: str | None, args: Any) -> None:
        param = getattr(exc, "param_name", None)
        value = getattr(exc, "param_value", None)
        if param is None and args:
            ip = args.get("client_ip") if hasattr(args, "get") else None
            if ip is not None:
                param, value = "client_ip", ip
        key = (
            resource,
            str(getattr(exc, "rule_name", NONE) or NONE),
            str(getattr(exc, "kind", NONE)),
            origin if origin is not None else current_origin(),
            param or NONE,
            str(value)[:200] if value is not None else NONE,
        )
        s = int(t)
        with self._lock:
            c = self._seconds.get(s)
            if c is None:
                if self._seconds and s < min(self._seconds) - 1:
                    self.dropped += 1
                    return
                c = self._seconds[s] = Counter()
                if len(self._seconds) > self.keep_s:
                    del self._seconds[min(self._seconds)]
            if key not in c and len(c) >= self.max_keys:
                key = (*key[:5], OTHER)
            c[key] += 1

    def drain(self, before_second: int) -> list[tuple[int, Key, int]]:
        """Every counted second older than ``before_second`` (once): ``(second, key, count)`` rows."""
        with self._lock:
            done = sorted(s for s in self._seconds if s < before_second)
            taken = [(s, self._seconds.pop(s)) for s in done]
        return [(s, k, n) for s, c in taken for k, n in c.items()]

    def top(self, field: int, n: int = 10) -> list[tuple[str, int]]:
        """Top values of key field ``field`` (3 origin, 5 value) over the seconds not yet drained."""
        total: Counter[str] = Counter()
        with self._lock:
            for c in self._seconds.values():
                for k, v in c.items():
                    total[k[field]] += v
        return total.most_common(n)
