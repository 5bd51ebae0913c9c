"""A simulated payment gateway whose latency, error rate and outage change at run time.

The console, ``tradeguard chaos payment`` and benchmarks drive it through
``configure``; every call reads the current settings under a lock, so a change
applies to the very next charge. Refunds are idempotent by ``refund_id``, like
a real gateway's idempotency key.

``concurrency`` (0: unlimited) bounds the calls in progress at the gateway, like a
payment provider's contracted connection limit: a call beyond it waits for a free
slot (the wait is part of its latency). With ``concurrency = N`` and latency ``L`` ms
the gateway completes at most about ``N * 1000 / L`` calls per second — the bounded
downstream that sets a node's capacity in ``tradeguard bench surge``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from domain.ports import ChargeResult

log = logging.getLogger(__name__)


class GatewayUnavailable(ConnectionError):
    """The gateway is down (simulated outage): the call never reached it."""


@dataclass(frozen=True)
class GatewaySettings:
    latency_ms: float = 20.0
    error_rate: float = 0.0
    outage: bool = False
    jitter: float = 0.2  # latency varies uniformly ±jitter

    def validate(self) -> None:
        if not 0 <= self.latency_ms <= 60_000:
            raise ValueError(f"latency_ms must be within 0..60000, got {self.latency_ms}")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be within 0.0..1.0, got {self.error_rate}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be within 0.0..1.0, got {self.jitter}")


class SimulatedGateway:
    def __init__(
        self,
        *,
        latency_ms: float = 20.0,
        error_rate: float = 0.0,
        outage: bool = False,
        jitter: float = 0.2,
        seed: int | None = None,
        sleeper: Callable[[float], None] = time.sleep,
        concurrency: int = 0,
    ) -> None:
        if concurrency < 0:
            raise ValueError(f"concurrency must be >= 0 (0: unlimited), got {concurrency}")
        self._defaults = GatewaySettings(latency_ms=latency_ms, error_rate=error_rate, outage=outage,
                                         jitter=jitter)
        self._defaults.validate()
        self._settings = self._defaults
        self._rng = random.Random(seed)
        self._sleep = sleeper
        self._lock = threading.Lock()
        self._refunds: dict[str, ChargeResult] = {}
        self._counts = {"charges": 0, "charge_failures": 0, "refunds": 0, "outage_rejections": 0,
                        "slot_waits": 0, "max_waiting": 0}
        self.concurrency = concurrency
        self._slots = threading.BoundedSemaphore(concurrency) if concurrency else None
        self._waiting = 0

    # ------------------------------------------------------------- control
    def configure(self, *, latency_ms: float | None = None, error_rate: float | None = None,
                  outage: bool | None = None, jitter: float | None = None) -> dict[str, Any]:
        changes = {k: v for k, v in {"latency_ms": latency_ms, "error_rate": error_rate, "outage": outage,
                                     "jitter": jitter}.items() if v is not None}
        with self._lock:
            new = replace(self._settings, **changes)
            new.validate()
            self._settings = new
        log.info("payment gateway configured: %s", asdict(new))
        return asdict(new)

    def settings(self) -> dict[str, Any]:
        with self._lock:
            return asdict(self._settings)

    def reset(self) -> dict[str, Any]:
        with self._lock:
            self._settings = self._defaults
        log.info("payment gateway reset to %s", asdict(self._defaults))
        return asdict(self._defaults)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {**self._counts, "concurrency": self.concurrency, "waiting": self._waiting}

    def _hold(self, delay: float) -> None:
        """Spend ``delay`` seconds at the gateway, inside one of its slots when it has a limit."""
        slots = self._slots
        if slots is None:
            if delay:
                self._sleep(delay)
            return
        if not slots.acquire(blocking=False):
            with self._lock:
                self._waiting += 1
                self._counts["slot_waits"] += 1
                self._counts["max_waiting"] = max(self._counts["max_waiting"], self._waiting)
            try:
                slots.acquire()
            finally:
                with self._lock:
                    self._waiting -= 1
        try:
            if delay:
                self._sleep(delay)
        finally:
            slots.release()

    # ----------------------------------------------------------- the port
    def _draw(self) -> tuple[GatewaySettings, float, float]:
        with self._lock:
            s = self._settings
            delay = s.latency_ms * (1 + self._rng.uniform(-s.jitter, s.jitter)) / 1000.0
            return s, max(delay, 0.0), self._rng.random()

    def charge(self, payment_id: str, buyer_id: str, amount_cents: int) -> ChargeResult:
        s, delay, roll = self._draw()
        if s.outage:
            with self._lock:
                self._counts["outage_rejections"] += 1
            raise GatewayUnavailable("payment gateway outage (simulated)")
        self._hold(delay)
        with self._lock:
            self._counts["charges"] += 1
            if roll < s.error_rate:
                self._counts["charge_failures"] += 1
                return ChargeResult(ok=False, reason="declined by issuer (simulated)")
        return ChargeResult(ok=True, reference=f"sim_{payment_id}")

    def refund(self, refund_id: str, payment_reference: str, amount_cents: int) -> ChargeResult:
        s, delay, roll = self._draw()
        if s.outage:
            raise GatewayUnavailable("payment gateway outage (simulated)")
        with self._lock:
            done = self._refunds.get(refund_id)
        if done is not None:
            return done
        self._hold(delay)
        if roll < s.error_rate:
            return ChargeResult(ok=False, reason="refund rejected (simulated)")
        result = ChargeResult(ok=True, reference=f"simrf_{refund_id}")
        with self._lock:
            self._refunds.setdefault(refund_id, result)
            self._counts["refunds"] += 1
        return result
