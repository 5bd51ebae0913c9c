"""Events guardians emit for collectors and alerts to subscribe to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"
BREAKER_STATES = (CLOSED, OPEN, HALF_OPEN)


@dataclass(frozen=True)
class BreakerStateChanged:
    """A circuit breaker moved from ``previous`` to ``state`` ("closed" | "open" | "half_open")."""

    resource: str
    previous: str
    state: str
    at: datetime  # aware UTC
    rule: Any  # guardians.breaker.rule.BreakerRule
