"""Skip-or-fail for tests that need a real server.

A test that needs PostgreSQL, Redis, InfluxDB, chromium… calls ``need(...)``: it
skips with a clear reason when the server is absent, and fails instead when
``TRADEGUARD_REQUIRE_SERVICES=1`` (CI sets it), so a CI run can never go green by
skipping what it was meant to prove.
"""

from __future__ import annotations

import os
import shutil
import socket

import pytest

POSTGRES_URL = os.environ.get("TRADEGUARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TRADEGUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def services_required() -> bool:
    return os.environ.get("TRADEGUARD_REQUIRE_SERVICES", "") not in ("", "0", "false", "no")


def need(available: bool, reason: str) -> None:
    """Skip (or fail, when services are required) unless ``available``."""
    if available:
        return
    if services_required():
        pytest.fail(f"required service missing: {reason} (TRADEGUARD_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def need_postgres() -> str:
    need(port_open("127.0.0.1", 5432), "PostgreSQL is not listening on 127.0.0.1:5432")
    return POSTGRES_URL


def need_redis() -> str:
    need(port_open("127.0.0.1", 6379), "Redis is not listening on 127.0.0.1:6379")
    return REDIS_URL


def need_binary(name: str, package: str | None = None) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
    need(path is not None, f"`{name}` is not installed (Debian package `{package or name}`)")
    return path  # type: ignore[return-value]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
