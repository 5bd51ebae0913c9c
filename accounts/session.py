"""A signed-in session with idle expiry on an injected clock (``touch(now)`` / ``expired(now)``)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from common.identity import Principal


class SessionExpired(Exception):
    def __init__(self, idle: timedelta) -> None:
        minutes = round(idle.total_seconds() / 60, 1)
        shown = int(minutes) if minutes == int(minutes) else minutes
        super().__init__(f"your session expired after {shown} idle minutes; sign in again")


@dataclass
class Session:
    principal: Principal
    idle: timedelta
    last_seen: datetime
    started_at: datetime | None = None
    id: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    def __post_init__(self) -> None:
        if self.idle.total_seconds() <= 0:
            raise ValueError(f"idle must be > 0, got {self.idle}")
        if self.started_at is None:
            self.started_at = self.last_seen

    def expired(self, now: datetime) -> bool:
        return now - self.last_seen >= self.idle

    def touch(self, now: datetime) -> None:
        """Record activity at ``now``; an expired session raises ``SessionExpired`` and stays expired."""
        if self.expired(now):
            raise SessionExpired(self.idle)
        self.last_seen = max(self.last_seen, now)
