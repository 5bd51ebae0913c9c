"""Payment-gateway chaos: latency, error rate and outage, changed at run time on every node.

The settings live in one small table of the control DB (``tradeguard_chaos``, one row
per target), so ``tradeguard chaos payment …``, the console and a node's
``PUT /ops/chaos/payment`` all change the same thing. Each node runs a
``ChaosPoller`` every ``chaos_poll_s`` (1 s): when the stored settings differ from what
its gateway has, it calls ``gateway.configure(...)`` — a change is in force on every
node within 2 s.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    select,
)
from sqlalchemy.exc import IntegrityError

from common.sql import create_tables, open_engine

log = logging.getLogger(__name__)

TARGETS = ("payment",)
MAX_LATENCY_MS = 60_000

metadata = MetaData()
chaos_table = Table(
    "tradeguard_chaos",
    metadata,
    Column("target", String(32), primary_key=True),
    Column("latency_ms", Integer, nullable=False, default=0),
    Column("error_rate", Float, nullable=False, default=0.0),
    Column("outage", Boolean, nullable=False, default=False),
    Column("version", Integer, nullable=False, default=1),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(128), nullable=False, default=""),
)


class ChaosError(ValueError):
    """A chaos setting out of range; the message names the field and the allowed values."""


@dataclass(frozen=True)
class ChaosSettings:
    latency_ms: int = 0
    error_rate: float = 0.0
    outage: bool = False

    def __post_init__(self) -> None:
        validate(self.latency_ms, self.error_rate, self.outage)

    @property
    def is_calm(self) -> bool:
        return self == ChaosSettings()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def validate(latency_ms: Any, error_rate: Any, outage: Any) -> None:
    """Raise ``ChaosError`` naming the first bad field and its allowed range."""
    if isinstance(latency_ms, bool) or not isinstance(latency_ms, int):
        raise ChaosError(f"latency_ms must be an integer from 0 to {MAX_LATENCY_MS}, got {latency_ms!r}")
    if not 0 <= latency_ms <= MAX_LATENCY_MS:
        raise ChaosError(f"latency_ms must be from 0 to {MAX_LATENCY_MS} (milliseconds), got {latency_ms}")
    if isinstance(error_rate, bool) or not isinstance(error_rate, int | float):
        raise ChaosError(f"error_rate must be a number from 0.0 to 1.0, got {error_rate!r}")
    if math.isnan(error_rate) or not 0.0 <= error_rate <= 1.0:
        raise ChaosError(f"error_rate must be from 0.0 to 1.0 (share of failed charges), got {error_rate}")
    if not isinstance(outage, bool):
        raise ChaosError(f"outage must be true or false (on|off), got {outage!r}")


def parse_on_off(value: str) -> bool:
    """``on|off`` (also true/false, yes/no, 1/0) → bool, or ``ChaosError`` naming the allowed values."""
    v = value.strip().lower()
    if v in ("on", "true", "yes", "1"):
        return True
    if v in ("off", "false", "no", "0"):
        return False
    raise ChaosError(f"outage must be on or off, got {value!r}")


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise ChaosError(f"chaos target must be one of {', '.join(TARGETS)}, got {target!r}")
    return target


class ChaosStore:
    """Chaos settings per target in the control DB (SQLAlchemy; SQLite or PostgreSQL)."""

    def __init__(self, control_db_url: str, *, engine: Engine | None = None) -> None:
        if engine is None:
            engine = open_engine(control_db_url, what="control DB", field="control_db")
            self._owns_engine = True
        else:
            self._owns_engine = False
        self.engine = engine
        self.url = control_db_url
        create_tables(metadata, engine)

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    def read(self, target: str = "payment") -> tuple[ChaosSettings, int]:
        """The stored settings of ``target`` and their version (0: never set)."""
        check_target(target)
        with self.engine.connect() as conn:
            row = conn.execute(select(chaos_table).where(chaos_table.c.target == target)).mappings().first()
        if row is None:
            return ChaosSettings(), 0
        settings = ChaosSettings(
            latency_ms=int(row["latency_ms"]), error_rate=float(row["error_rate"]), outage=bool(row["outage"])
        )
        return settings, int(row["version"])

    def get(self, target: str = "payment") -> ChaosSettings:
        return self.read(target)[0]

    def set(
        self,
        target: str = "payment",
        *,
        latency_ms: int | None = None,
        error_rate: float | None = None,
        outage: bool | None = None,
        by: str = "",
    ) -> ChaosSettings:
        """Change some of ``target``'s settings (others keep their stored value); returns the new settings."""
        check_target(target)
        for attempt in range(3):
            current, version = self.read(target)
            new = ChaosSettings(
                latency_ms=current.latency_ms if latency_ms is None else latency_ms,
                error_rate=current.error_rate if error_rate is None else error_rate,
                outage=current.outage if outage is None else outage,
            )
            values = {**new.as_dict(), "updated_at": datetime.now(UTC), "updated_by": by}
            try:
                with self.engine.begin() as conn:
                    if version == 0:
                        conn.execute(chaos_table.insert().values(target=target, version=1, **values))
                    else:
                        conn.execute(
                            chaos_table.update()
                            .where(chaos_table.c.target == target)
                            .values(version=chaos_table.c.version + 1, **values)
                        )
            except IntegrityError:  # another writer inserted the row first: retry as an update
                if attempt == 2:
                    raise
                continue
            log.info("chaos %s set to %s by %s", target, new.as_dict(), by or "?")
            return new
        raise AssertionError("unreachable")

    def reset(self, target: str = "payment", *, by: str = "") -> ChaosSettings:
        calm = ChaosSettings()
        return self.set(
            target, latency_ms=calm.latency_ms, error_rate=calm.error_rate, outage=calm.outage, by=by
        )


class Configurable(Protocol):
    def configure(self, *, latency_ms: float = ..., error_rate: float = ..., outage: bool = ...) -> Any: ...


def _base_latency(gateway: Any) -> float:
    """The gateway's own latency before any chaos (``settings()["latency_ms"]``), else 0."""
    getter = getattr(gateway, "settings", None)
    try:
        value = getter()["latency_ms"] if callable(getter) else 0
        return float(value) if value else 0
    except Exception:
        return 0


class ChaosPoller:
    """Applies the stored chaos settings of one target to a gateway whenever they change.

    ``latency_ms`` is *added* to the gateway's own latency (read once, at construction), so
    a reset brings the gateway back to its normal behaviour rather than to zero latency.

    ``poll()`` is the scheduled job (every ``chaos_poll_s``). A store that cannot be read
    leaves the gateway as it is and is reported by ``status()``.
    """

    def __init__(
        self,
        store: ChaosStore,
        gateway: Configurable,
        target: str = "payment",
        *,
        on_change: Callable[[ChaosSettings], None] | None = None,
    ) -> None:
        self.store = store
        self.gateway = gateway
        self.target = check_target(target)
        self.base_latency_ms = _base_latency(gateway)
        self.on_change = on_change
        self._applied: ChaosSettings | None = None
        self._version = -1
        self._error: str | None = None
        self._lock = threading.Lock()

    def poll(self) -> bool:
        """Read the store; configure the gateway if the settings changed. Returns True on a change."""
        with self._lock:
            try:
                settings, version = self.store.read(self.target)
            except Exception as exc:
                if self._error is None:
                    log.warning("chaos store unreadable, keeping gateway settings: %s", exc)
                self._error = f"{type(exc).__name__}: {exc}"
                return False
            self._error = None
            if settings == self._applied:
                self._version = version
                return False
            self.gateway.configure(
                latency_ms=self.base_latency_ms + settings.latency_ms,
                error_rate=settings.error_rate,
                outage=settings.outage,
            )
            first = self._applied is None
            self._applied, self._version = settings, version
        if not (first and settings.is_calm):
            log.info("payment gateway chaos now %s (version %d)", settings.as_dict(), version)
        if self.on_change is not None:
            self.on_change(settings)
        return True

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": "error" if self._error else "ok",
            "target": self.target,
            "version": self._version,
            "settings": self._applied.as_dict() if self._applied else None,
            "base_latency_ms": self.base_latency_ms,
        }
        if self._error:
            out["error"] = self._error
        return out
