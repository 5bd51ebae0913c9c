"""Caller origins at the node's door: API keys (hashed in the control DB), a trusted-proxy header.

``OriginResolver(keys, header, trusted)(scope)`` answers the origin of a request:

1. the owner origin of the ``X-Api-Key`` the caller presents (an unknown or revoked key: ``default``);
2. else the ``TRADEGUARD_ORIGIN_HEADER`` header (``X-Caller``), believed only when the peer is in
   ``TRADEGUARD_TRUSTED_PROXIES`` — a header anyone can set must never lift a deny-list;
3. else ``default``.

Keys are stored as SHA-256 digests (a key is 32 random bytes, so a plain digest is enough; the key
itself is printed once by ``tradeguard apikeys add`` and never stored or logged). The resolver
caches the key table in memory and re-reads it every ``refresh_s`` (a revoke applies within it).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, MetaData, String, Table, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from common.sql import create_tables, open_engine
from guardians.context import DEFAULT_ORIGIN
from guardians.http import TrustedProxies, header, peer_address

API_KEY_HEADER = "X-Api-Key"
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

metadata = MetaData()
api_keys_table = Table(
    "api_keys",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("origin", String(64), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)


class ApiKeyError(ValueError):
    """A refused API-key command (the message names the field and what is wrong)."""


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    name: str
    origin: str
    created_at: datetime
    revoked_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "origin": self.origin,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


class ApiKeyStore:
    """API keys of callers in the control DB: name, origin, SHA-256 of the key."""

    def __init__(self, control_db_url: str, *, engine: Engine | None = None) -> None:
        if engine is None:
            engine = open_engine(control_db_url, what="control DB", field="control_db")
            self._owns_engine = True
        else:
            self._owns_engine = False
        self.engine = engine
        create_tables(metadata, engine)

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    def add(self, name: str, origin: str, *, now: datetime | None = None) -> str:
        """Create a key for ``name`` with ``origin``; returns the key (shown once, stored hashed)."""
        if not NAME_RE.match(name or ""):
            raise ApiKeyError(f"name: must be 1-64 letters, digits, '_', '-', '.', got {name!r}")
        if not NAME_RE.match(origin or ""):
            raise ApiKeyError(f"origin: must be 1-64 letters, digits, '_', '-', '.', got {origin!r}")
        key = "tg_" + secrets.token_urlsafe(32)
        row = {"name": name, "origin": origin, "key_hash": digest(key),
               "created_at": now or datetime.now(UTC), "revoked_at": None}
        try:
            with self.engine.begin() as conn:
                conn.execute(api_keys_table.insert().values(**row))
        except IntegrityError:
            raise ApiKeyError(
                f"name: an API key named {name!r} exists (revoke it or choose another name)"
            ) from None
        return key

    def revoke(self, name: str, *, now: datetime | None = None) -> bool:
        with self.engine.begin() as conn:
            res = conn.execute(
                update(api_keys_table)
                .where(api_keys_table.c.name == name, api_keys_table.c.revoked_at.is_(None))
                .values(revoked_at=now or datetime.now(UTC))
            )
        return bool(res.rowcount)

    def list(self) -> list[ApiKey]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_keys_table).order_by(api_keys_table.c.name)).mappings().all()
        return [ApiKey(r["name"], r["origin"], r["created_at"], r["revoked_at"]) for r in rows]

    def origins_by_hash(self) -> dict[str, str]:
        """Live keys: SHA-256 → origin."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(api_keys_table.c.key_hash, api_keys_table.c.origin).where(
                    api_keys_table.c.revoked_at.is_(None)
                )
            ).all()
        return {h: o for h, o in rows}


class OriginResolver:
    """``resolver(scope) -> origin``: API key owner, else the trusted-proxy header, else ``default``."""

    def __init__(
        self,
        keys: Callable[[], dict[str, str]] | None = None,
        *,
        header_name: str = "X-Caller",
        trusted: TrustedProxies | str | None = None,
        refresh_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = keys
        self.header_name = header_name
        self.trusted = trusted if isinstance(trusted, TrustedProxies) else TrustedProxies(trusted)
        self.refresh_s = refresh_s
        self._clock = clock
        self._keys: dict[str, str] = {}
        self._next = 0.0
        self._lock = threading.Lock()

    def _key_origins(self) -> dict[str, str]:
        if self._load is None:
            return {}
        now = self._clock()
        if now >= self._next:
            with self._lock:
                if now >= self._next:
                    self._next = now + self.refresh_s
                    try:
                        self._keys = self._load()
                    except Exception:  # keep the last known keys; the DB may be back next time
                        import logging

                        logging.getLogger(__name__).exception("API keys unavailable; keeping the last ones")
        return self._keys

    def __call__(self, scope: Any) -> str:
        key = header(scope, API_KEY_HEADER)
        if key:
            return self._key_origins().get(digest(key.strip()), DEFAULT_ORIGIN)
        if self.trusted and peer_address(scope) in self.trusted:
            named = header(scope, self.header_name)
            if named and NAME_RE.match(named.strip()):
                return named.strip()
        return DEFAULT_ORIGIN
