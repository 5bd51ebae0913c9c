from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher

from accounts.passwords import Hasher
from accounts.service import AccountService
from accounts.store import UserStore
from accounts.throttle import SignInThrottle


class FakeClock:
    def __init__(self) -> None:
        self.at = datetime(2026, 11, 11, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at

    def advance(self, **kw: float) -> None:
        self.at += timedelta(**kw)


class FakeTime:
    """Stands in for the ``time`` module limits' memory storage reads (no sleeping in tests)."""

    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def time(self) -> float:
        return self.t


def fast_hasher() -> Hasher:
    return Hasher(PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))


@pytest.fixture
def fake_time(monkeypatch):
    import limits.storage.memory as memory

    ft = FakeTime()
    monkeypatch.setattr(memory, "time", ft)
    return ft


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def service(tmp_path, clock, fake_time):
    svc = AccountService(
        UserStore(f"sqlite:///{tmp_path / 'control.db'}"),
        clock=clock,
        throttle=SignInThrottle(wall=fake_time.time),
        hasher=fast_hasher(),
        session_idle=timedelta(minutes=60),
    )
    yield svc
    svc.close()
