"""Accounts: add / passwd / disable, the throttled sign-in, sessions on a fake clock, the first admin."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import sqlalchemy as sa

from accounts.errors import AccountDisabled, AccountError, BadCredentials, TooManyAttempts, UnknownUser
from accounts.service import AccountService
from accounts.session import SessionExpired
from accounts.store import UserStore, users_t
from accounts.throttle import SignInThrottle
from common.identity import Principal

from .conftest import fast_hasher

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
        ("bob", "sre", "s3cr3t7", (), "password", "password is too short: at least 8 characters"),
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
    assert password not in str(info.value)  # a refused password is never echoed


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
    password = spec.partition(":")[2]
    if password:  # "rootonly" holds none
        assert password not in str(info.value)
    assert not service.has_admin()


def test_session_idle_must_be_positive():
    from datetime import UTC, datetime

    from accounts.session import Session

    with pytest.raises(ValueError, match="idle must be > 0"):
        Session(Principal("a", "sre"), timedelta(0), datetime.now(UTC))


# ---------------------------------------------------------------------- server-side sessions
def _signed_in(service, name="bob", role="sre", shops=()):
    if service.store.get(name) is None:
        service.add_user(name, role, PW, shops=shops, by="cli")
    return service.open_session(service.authenticate(name, PW, "10.0.0.7"), "10.0.0.7")


def test_a_server_session_stores_only_the_hash_of_its_token(service):
    from accounts.session import hash_token
    from accounts.store import user_sessions_t

    token = _signed_in(service)
    assert len(token) >= 43  # 256 random bits, URL-safe
    with service.store.engine.connect() as c:
        rows = [dict(r) for r in c.execute(sa.select(user_sessions_t)).mappings()]
    assert len(rows) == 1
    assert rows[0]["token_hash"] == hash_token(token) != token
    assert token not in repr(rows)
    assert rows[0]["user_name"] == "bob" and rows[0]["client_addr"] == "10.0.0.7"
    assert service.resume_token(token) == Principal("bob", "sre")
    other = _signed_in(service)  # a second sign-in: another token, another row
    assert other != token and service.resume_token(other).name == "bob"


def test_an_unknown_or_tampered_token_is_refused(service):
    from accounts.session import UnknownSession

    token = _signed_in(service)
    for bad in ("", "x", token[:-1] + ("A" if token[-1] != "A" else "B"), token.upper()):
        with pytest.raises(UnknownSession):
            service.resume_token(bad)


def test_a_server_session_expires_after_the_idle_time_and_activity_moves_it(service, clock):
    token = _signed_in(service)
    clock.advance(minutes=59)
    assert service.resume_token(token).name == "bob"  # activity: the idle time starts again
    clock.advance(minutes=59)
    assert service.resume_token(token).name == "bob"
    clock.advance(minutes=60)
    with pytest.raises(SessionExpired, match="your session expired after 60 idle minutes; sign in again"):
        service.resume_token(token)
    with pytest.raises(SessionExpired):  # and stays expired
        service.resume_token(token)


def test_activity_is_written_at_most_once_a_minute_and_never_expires_late(service, clock):
    token = _signed_in(service)
    opened = service.store.sessions("bob")[0].last_seen_at
    clock.advance(seconds=30)
    service.resume_token(token)
    assert service.store.sessions("bob")[0].last_seen_at == opened  # not written yet
    clock.advance(seconds=31)
    service.resume_token(token)
    assert service.store.sessions("bob")[0].last_seen_at == clock.now()
    clock.advance(minutes=60)  # 60 min after the last write: expired even with an unwritten touch
    with pytest.raises(SessionExpired):
        service.resume_token(token)


def test_a_server_session_ends_at_its_maximum_age_whatever_the_activity(tmp_path, clock, fake_time):
    from accounts.session import SessionTooOld

    svc = AccountService(UserStore(f"sqlite:///{tmp_path / 'c.db'}"), clock=clock,
                         throttle=SignInThrottle(wall=fake_time.time), hasher=fast_hasher(),
                         session_idle=timedelta(minutes=60), session_max_age=timedelta(hours=2))
    token = _signed_in(svc)
    for _ in range(3):
        clock.advance(minutes=39)
        assert svc.resume_token(token).name == "bob"
    clock.advance(minutes=4)  # 2 h 1 min after sign-in, 4 min after the last activity
    with pytest.raises(SessionTooOld, match="maximum age of 2 hours; sign in again"):
        svc.resume_token(token)
    svc.close()


def test_sign_out_revokes_the_session_for_every_tab(service):
    from accounts.session import SessionRevoked

    token = _signed_in(service)
    keep = _signed_in(service)  # another browser of the same user
    assert service.sign_out(token) is True
    assert service.sign_out(token) is False  # already revoked
    with pytest.raises(SessionRevoked, match="you are signed out"):
        service.resume_token(token)
    assert service.resume_token(keep).name == "bob"
    assert service.sign_out(None) is False and service.sign_out("unknown") is False


@pytest.mark.parametrize("change, reason, message", [
    ("disable", "user disabled", "your account was disabled"),
    ("passwd", "password changed", "your password was changed"),
])
def test_disabling_a_user_or_changing_the_password_revokes_every_session(service, change, reason, message):
    from accounts.session import SessionRevoked

    service.add_user("root", "admin", PW, by="cli")
    tokens = [_signed_in(service), _signed_in(service)]
    admin = _signed_in(service, "root", "admin")
    if change == "disable":
        service.disable("bob", by="root")
    else:
        service.set_password("bob", "brand-new-passw0rd", by="root")
    for token in tokens:
        with pytest.raises(SessionRevoked, match=message) as info:
            service.resume_token(token)
        assert info.value.reason == reason
    assert service.resume_token(admin).name == "root"
    if change == "disable":
        service.enable("bob", by="root")  # enabling again does not revive the old sessions
        with pytest.raises(SessionRevoked):
            service.resume_token(tokens[0])


def test_a_user_disabled_or_given_another_role_behind_the_service_loses_the_session(service):
    """Changes made straight in the DB (another console, an old CLI) are caught on resume."""
    from accounts.session import SessionRevoked

    disabled = _signed_in(service, "bob", "sre")
    moved = _signed_in(service, "mia", "merchant", ("shop-a",))
    with service.store.engine.begin() as c:
        c.execute(users_t.update().where(users_t.c.name == "bob").values(disabled=True))
        c.execute(users_t.update().where(users_t.c.name == "mia").values(role="oncall"))
    with pytest.raises(SessionRevoked, match="your account was disabled"):
        service.resume_token(disabled)
    with pytest.raises(SessionRevoked, match="your role or shops changed") as info:
        service.resume_token(moved)
    assert info.value.reason == "role changed"
    with service.store.engine.begin() as c:  # the old role back: the session stays revoked
        c.execute(users_t.update().where(users_t.c.name == "mia").values(role="merchant"))
    with pytest.raises(SessionRevoked):
        service.resume_token(moved)
    assert [s.revoked_reason for s in service.store.sessions()] == ["role changed", "user disabled"]


def test_ended_sessions_are_purged_after_a_week(service, clock):
    old = _signed_in(service)
    service.sign_out(old)
    live = _signed_in(service)
    clock.advance(days=8)
    assert service.purge_sessions() == 2  # the revoked one and the one past its maximum age
    assert service.store.sessions() == []
    token = _signed_in(service)
    assert service.resume_token(token).name == "bob"
    assert live != token
