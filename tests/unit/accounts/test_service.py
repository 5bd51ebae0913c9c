"""Accounts: add / passwd / disable, the throttled sign-in, sessions on a fake clock, the first admin."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import sqlalchemy as sa

from accounts.errors import AccountDisabled, AccountError, BadCredentials, TooManyAttempts, UnknownUser
from accounts.session import SessionExpired
from accounts.store import users_t
from common.identity import Principal

PW = "s3cret-passw0rd"


def test_add_and_sign_in_returns_the_principal_and_records_the_login(service, clock):
    service.add_user("bob", "merchant", PW, shops=["shop-a", "shop-b"], by="cli:root")
    clock.advance(minutes=5)
    who = service.authenticate("bob", PW, "10.0.0.1")
    assert who == Principal("bob", "merchant", ("shop-a", "shop-b"))
    assert service.get_user("bob").last_login_at == clock.now()


def test_the_hash_is_argon2id_and_no_password_or_hash_is_in_the_audit_or_the_log(service, caplog):
    caplog.set_level(logging.DEBUG)
    service.add_user("bob", "sre", PW, by="cli:root")
    service.set_password("bob", "another-passw0rd", by="cli:root")
    with pytest.raises(BadCredentials):
        service.authenticate("bob", PW, "10.0.0.1")
    with service.store.engine.connect() as c:
        stored = c.execute(sa.select(users_t.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$")
    audit = repr(service.store.audit())
    for secret in (PW, "another-passw0rd", stored):
        assert secret not in audit and secret not in caplog.text
    assert [a["action"] for a in service.store.audit("bob")] == ["passwd", "add"]


def test_wrong_password_and_unknown_user_get_the_same_answer(service):
    service.add_user("bob", "sre", PW, by="cli")
    with pytest.raises(BadCredentials) as wrong:
        service.authenticate("bob", "not-it-at-all", "10.0.0.1")
    with pytest.raises(BadCredentials) as unknown:
        service.authenticate("nobody", PW, "10.0.0.2")
    assert str(wrong.value) == str(unknown.value) == "wrong username or password"
    assert PW not in str(unknown.value)


def test_the_unknown_user_path_verifies_against_a_dummy_hash(service, monkeypatch):
    calls = []
    real = service.hasher.verify
    monkeypatch.setattr(service.hasher, "verify", lambda h, p: calls.append(h) or real(h, p))
    with pytest.raises(BadCredentials):
        service.authenticate("nobody", PW, None)
    assert len(calls) == 1 and calls[0].startswith("$argon2id$")


def test_five_failures_throttle_the_user_then_the_window_moves_on(service, fake_time):
    service.add_user("bob", "sre", PW, by="cli")
    for i in range(5):
        fake_time.t += 1
        with pytest.raises(BadCredentials):
            service.authenticate("bob", f"wrong-{i}-password", f"10.0.0.{i}")  # 5 different addresses
    fake_time.t += 17  # the first failure was 21 s ago: it leaves the 60 s window in 39 s
    with pytest.raises(TooManyAttempts) as info:
        service.authenticate("bob", PW, "10.9.9.9")  # even the right password is refused now
    assert str(info.value) == "too many failed sign-ins for bob; try again in 39 s"
    assert info.value.retry_after_s == 39
    fake_time.t += 40
    assert service.authenticate("bob", PW, "10.9.9.9").name == "bob"


def test_five_failures_from_one_address_throttle_that_address_for_every_name(service, fake_time):
    service.add_user("bob", "sre", PW, by="cli")
    for i in range(5):
        with pytest.raises(BadCredentials):
            service.authenticate(f"guess{i}", PW, "203.0.113.7")
    with pytest.raises(TooManyAttempts) as info:
        service.authenticate("bob", PW, "203.0.113.7")
    assert str(info.value) == "too many failed sign-ins from 203.0.113.7; try again in 60 s"
    assert service.authenticate("bob", PW, "198.51.100.1").name == "bob"  # another address is fine


def test_a_good_sign_in_forgets_the_user_s_failures(service, fake_time):
    service.add_user("bob", "sre", PW, by="cli")
    for _ in range(4):
        with pytest.raises(BadCredentials):
            service.authenticate("bob", "wrong-password", None)
    service.authenticate("bob", PW, None)
    for _ in range(4):
        with pytest.raises(BadCredentials):
            service.authenticate("bob", "wrong-password", None)
    assert service.authenticate("bob", PW, None).name == "bob"


def test_a_disabled_user_cannot_sign_in_and_is_told_only_with_the_right_password(service):
    service.add_user("root", "admin", PW, by="cli")
    service.add_user("bob", "oncall", PW, by="cli")
    service.disable("bob", by="cli")
    with pytest.raises(BadCredentials):
        service.authenticate("bob", "wrong-password", None)
    with pytest.raises(AccountDisabled, match="the account bob is disabled; ask an admin to enable it"):
        service.authenticate("bob", PW, None)
    assert service.get_user("bob").last_login_at is None
    service.enable("bob", by="cli")
    assert service.authenticate("bob", PW, None).role == "oncall"


def test_the_last_enabled_admin_cannot_be_disabled(service):
    service.add_user("root", "admin", PW, by="cli")
    with pytest.raises(AccountError, match="root is the last enabled admin"):
        service.disable("root", by="cli")
    service.add_user("root2", "admin", PW, by="cli")
    service.disable("root", by="cli")
    assert service.get_user("root").disabled


@pytest.mark.parametrize(
    ("name", "role", "password", "shops", "field", "message"),
    [
        ("bob", "sre", "short", (), "password", "password is too short: at least 8 characters"),
        ("bob", "root", PW, (), "role", "role must be one of admin, sre, oncall, merchant, got 'root'"),
        ("bob", "merchant", PW, (), "shop", "a merchant must be bound to at least one shop"),
        ("bob", "sre", PW, ("shop-a",), "shop", "only a merchant is bound to shops"),
        ("bad name", "sre", PW, (), "name", "name 'bad name' is not allowed"),
    ],
)
def test_bad_accounts_name_the_field(service, name, role, password, shops, field, message):
    with pytest.raises(AccountError) as info:
        service.add_user(name, role, password, shops=shops, by="cli")
    assert message in str(info.value) and info.value.field == field
    assert "short" not in str(info.value) or password != str(info.value)


def test_duplicate_and_unknown_users(service):
    service.add_user("bob", "sre", PW, by="cli")
    with pytest.raises(AccountError, match="user bob already exists"):
        service.add_user("bob", "oncall", PW, by="cli")
    with pytest.raises(UnknownUser, match="no user named eve"):
        service.set_password("eve", PW, by="cli")


def test_a_session_expires_after_the_idle_time_on_the_fake_clock(service, clock):
    service.add_user("bob", "sre", PW, by="cli")
    session = service.start_session(service.authenticate("bob", PW, None))
    clock.advance(minutes=59)
    assert not session.expired(clock.now())
    assert service.resume(session).name == "bob"  # activity: the idle time starts again
    clock.advance(minutes=59)
    session.touch(clock.now())
    clock.advance(minutes=60)
    assert session.expired(clock.now())
    with pytest.raises(SessionExpired, match="your session expired after 60 idle minutes; sign in again"):
        session.touch(clock.now())
    with pytest.raises(SessionExpired):
        service.resume(session)


def test_a_user_disabled_after_sign_in_loses_the_session(service, clock):
    service.add_user("root", "admin", PW, by="cli")
    service.add_user("bob", "sre", PW, by="cli")
    session = service.start_session(service.authenticate("bob", PW, None))
    service.disable("bob", by="cli")
    clock.advance(minutes=1)
    with pytest.raises(SessionExpired):
        service.resume(session)
    assert session.expired(clock.now())


def test_the_bootstrap_admin_is_read_once_when_no_admin_exists(service, caplog):
    caplog.set_level(logging.INFO)
    assert service.ensure_bootstrap_admin("root:first-passw0rd") == "root"
    assert service.get_user("root").role == "admin"
    assert service.authenticate("root", "first-passw0rd", None).role == "admin"
    service.set_password("root", "changed-passw0rd", by="cli")
    assert service.ensure_bootstrap_admin("root:first-passw0rd") is None  # an admin exists: ignored
    assert "TRADEGUARD_BOOTSTRAP_ADMIN is set but an admin already exists: ignored" in caplog.text
    with pytest.raises(BadCredentials):
        service.authenticate("root", "first-passw0rd", None)
    assert "first-passw0rd" not in caplog.text


@pytest.mark.parametrize("spec", ["rootonly", ":password1", "root:pw1"])
def test_a_bad_bootstrap_admin_names_the_variable_not_the_value(service, spec):
    with pytest.raises(AccountError, match="TRADEGUARD_BOOTSTRAP_ADMIN") as info:
        service.ensure_bootstrap_admin(spec)
    assert spec.partition(":")[2] not in str(info.value) or not spec.partition(":")[2]
    assert not service.has_admin()


def test_session_idle_must_be_positive():
    from datetime import UTC, datetime

    from accounts.session import Session

    with pytest.raises(ValueError, match="idle must be > 0"):
        Session(Principal("a", "sre"), timedelta(0), datetime.now(UTC))
