"""Throttling of failed sign-ins, per user name and per client address, with ``limits``.

A moving window of ``failures`` failed attempts per ``window_s`` seconds (5 per minute by
default) for each key; once either key is exhausted every attempt is refused — before the
password is even checked — with "try again in N s", N from the limiter's window stats.
Storage by URI: ``memory://`` (per process, the default) or the Redis URL (shared by every
console replica).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from limits import RateLimitItemPerSecond
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from accounts.errors import TooManyAttempts
from common.redact import redact_url

KEY_PREFIX = "tradeguard-signin"


class SignInThrottle:
    def __init__(
        self,
        storage_uri: str = "memory://",
        *,
        failures: int = 5,
        window_s: int = 60,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if failures < 1:
            raise ValueError(f"failures must be >= 1, got {failures}")
        if window_s < 1:
            raise ValueError(f"window_s must be >= 1 second, got {window_s}")
        kwargs = {"key_prefix": KEY_PREFIX} if storage_uri.startswith(("redis", "rediss")) else {}
        try:
            self.storage = storage_from_string(storage_uri, **kwargs)
        except Exception as exc:
            raise ValueError(f"sign-in throttle storage {redact_url(storage_uri)!r} is unusable: "
                             f"{type(exc).__name__}") from exc
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.item = RateLimitItemPerSecond(failures, window_s)
        self.wall = wall  # the limiter's clock (limits reads time.time); only for "try again in N s"

    @staticmethod
    def _keys(name: str, client_addr: str | None) -> list[tuple[str, str]]:
        keys = [("user", name.strip().lower())]
        if client_addr:
            keys.append(("addr", client_addr))
        return keys

    def check(self, name: str, client_addr: str | None) -> None:
        """Raise ``TooManyAttempts`` if the user or the address has no failure left in the window."""
        for kind, key in self._keys(name, client_addr):
            if not self.limiter.test(self.item, kind, key):
                stats = self.limiter.get_window_stats(self.item, kind, key)
                retry = max(1, math.ceil(stats.reset_time - self.wall()))
                who = f"for {name}" if kind == "user" else f"from {client_addr}"
                raise TooManyAttempts(who, retry)

    def failed(self, name: str, client_addr: str | None) -> None:
        for kind, key in self._keys(name, client_addr):
            self.limiter.hit(self.item, kind, key)

    def succeeded(self, name: str) -> None:
        """A good sign-in forgets the user's failures (not the address's)."""
        self.limiter.clear(self.item, "user", name.strip().lower())
