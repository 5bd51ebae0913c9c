"""Timeout cancellation: when an unpaid order gives its stock back."""

from __future__ import annotations

from datetime import datetime, timedelta


class FixedTimeout:
    """The service's payment timeout (default 15 minutes)."""

    def deadline(self, placed_at: datetime, default: timedelta) -> datetime | None:
        return placed_at + default


class CappedTimeout:
    """At most ``cap`` (flash sales hand unpaid stock back quickly)."""

    def __init__(self, cap: timedelta) -> None:
        self.cap = cap

    def deadline(self, placed_at: datetime, default: timedelta) -> datetime | None:
        return placed_at + min(default, self.cap)


class AfterTimeout:
    """Exactly ``after`` (an auction's winner has this long to pay)."""

    def __init__(self, after: timedelta) -> None:
        self.after = after

    def deadline(self, placed_at: datetime, default: timedelta) -> datetime | None:
        return placed_at + self.after


class NoTimeout:
    """Cash on delivery: nothing to pay online, so nothing times out."""

    def deadline(self, placed_at: datetime, default: timedelta) -> datetime | None:
        return None
