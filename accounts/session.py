"""Console sessions: the in-memory ``Session`` (idle expiry on an injected clock) and the pieces of
the server-side sessions kept in the control DB (``user_sessions``, see ``accounts.store``).

A server-side session is known to the browser only by an opaque random token (``new_token``: 256
bits, URL-safe); the control DB keeps its SHA-256 (``hash_token``), never the token itself, so a
read of the DB (a backup, a replica) yields no usable session. A random 256-bit token needs no salt
or slow hash: it cannot be guessed, only stolen.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from common.identity import Principal

TOKEN_BYTES = 32


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """The hex SHA-256 of a session token: what the control DB stores and looks up."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class SessionEnded(Exception):
    """The session can no longer be used; the message is safe to show on the login page."""


class SessionExpired(SessionEnded):
    def __init__(self, idle: timedelta) -> None:
        super().__init__(f"your session expired after {_minutes(idle)} idle minutes; sign in again")
        self.idle = idle


class SessionTooOld(SessionEnded):
    def __init__(self, max_age: timedelta) -> None:
        hours = max_age.total_seconds() / 3600
        shown = f"{hours:g} hours" if hours >= 1 else f"{_minutes(max_age)} minutes"
        super().__init__(f"your session reached its maximum age of {shown}; sign in again")


class SessionRevoked(SessionEnded):
    """Ended on the server: signed out (here or in another tab), the account disabled, its password
    or role changed. ``reason`` is one of ``REVOKE_REASONS``."""

    def __init__(self, reason: str) -> None:
        super().__init__(REVOKE_REASONS.get(reason, "your session has ended; sign in again"))
        self.reason = reason


class UnknownSession(SessionEnded):
    def __init__(self) -> None:
        super().__init__("your session is not known (it may have been removed); sign in again")


REVOKE_REASONS = {
    "signed out": "you are signed out",
    "user disabled": "your account was disabled; ask an admin to enable it",
    "user removed": "your account no longer exists",
    "password changed": "your password was changed; sign in again with the new one",
    "role changed": "your role or shops changed since you signed in; sign in again",
}


def _minutes(span: timedelta) -> int | float:
    minutes = round(span.total_seconds() / 60, 1)
    return int(minutes) if minutes == int(minutes) else minutes


@dataclass(frozen=True)
class ServerSession:
    """One row of ``user_sessions`` (never with the token; ``token_hash`` identifies it)."""

    token_hash: str
    user: str
    role: str
    shops: tuple[str, ...]
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    revoked_reason: str | None = None
    client_addr: str | None = None


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
