"""Accounts for console tests: a real ``AccountService`` (SQLite control DB, fast argon2) and sign-in
through the login page of the entry script."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from argon2 import PasswordHasher
from streamlit.testing.v1 import AppTest

from accounts.passwords import Hasher
from accounts.service import AccountService
from accounts.store import UserStore
from accounts.throttle import SignInThrottle

ENTRY = Path(__file__).resolve().parents[3] / "tradeguard" / "console_main.py"
PASSWORD = "correct horse battery staple"  # test-only: every test user gets it

USERS = {  # name → (role, shops)
    "ada": ("admin", ()),
    "sam": ("sre", ()),
    "olivia": ("oncall", ()),
    "mia": ("merchant", ("shop-a",)),
}


def account_service(tmp_path: Path, clock, *, idle_min: float = 60, **throttle) -> AccountService:
    svc = AccountService(
        UserStore(f"sqlite:///{tmp_path / 'users.db'}"),
        clock=clock,
        throttle=SignInThrottle(**throttle),
        hasher=Hasher(PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)),
        session_idle=timedelta(minutes=idle_min),
    )
    for name, (role, shops) in USERS.items():
        svc.add_user(name, role, PASSWORD, shops=shops, by="test")
    return svc


def open_console(monkeypatch, services) -> AppTest:
    """The entry script of ``tradeguard console`` on ``services`` (the composition root replaced)."""
    import streamlit as st

    monkeypatch.setattr("console.runtime._installed", None)
    monkeypatch.setattr("tradeguard.bootstrap.build_console_services", lambda settings: services)
    st.cache_resource.clear()
    at = AppTest.from_file(str(ENTRY), default_timeout=30)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def sign_in(at: AppTest, name: str, password: str = PASSWORD) -> AppTest:
    at.text_input(key="login_name").set_value(name)
    at.text_input(key="login_password").set_value(password)
    at.button(key="FormSubmitter:login_form-Sign in").click().run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)
