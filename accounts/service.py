"""``AccountService``: users, sign-in (throttled, constant-ish time) and sessions.

Server-side sessions (``open_session`` / ``resume_token`` / ``sign_out``) live in the control DB
(``user_sessions``) under the SHA-256 of an opaque token that only the browser holds (the console
keeps it in an HttpOnly cookie). A session ends after ``session_idle`` without activity, at
``session_max_age`` after sign-in whatever the activity, at sign-out, and when its account is
disabled or removed, its password changed, or its role or shops differ from those it was opened
with: each of these is checked on every resume, not only when the change is made.

Every change of an account is audited in ``user_audit`` with who made it — never a password or a
hash. ``by`` is either a signed-in ``Principal`` (then it must hold ``users.manage``) or the name
of a trusted operator (the CLI passes the OS user: whoever can run it can open the control DB).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import timedelta

from accounts.errors import AccountDisabled, AccountError, BadCredentials, UnknownUser
from accounts.passwords import Hasher, check_strength
from accounts.session import (
    ServerSession,
    Session,
    SessionExpired,
    SessionRevoked,
    SessionTooOld,
    UnknownSession,
    hash_token,
    new_token,
)
from accounts.store import UserRecord, UserStore
from accounts.throttle import SignInThrottle
from common.clock import Clock, SystemClock
from common.identity import ROLES, Principal, require

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
SHOP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
BOOTSTRAP_ENV = "TRADEGUARD_BOOTSTRAP_ADMIN"



def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise AccountError(
            f"name {name!r} is not allowed: 1-64 characters, letters, digits and . _ @ -, "
            "starting with a letter or digit", field="name")
    return name


def check_role_and_shops(role: str, shops: Iterable[str]) -> tuple[str, ...]:
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}, got {role!r}", field="role")
    shops = tuple(dict.fromkeys(s.strip() for s in shops))
    for shop in shops:
        if not SHOP_RE.match(shop):
            raise AccountError(f"shop id {shop!r} is not valid: letters, digits and . _ -", field="shop")
    if role == "merchant" and not shops:
        raise AccountError("a merchant must be bound to at least one shop (--shop ID)", field="shop")
    if role != "merchant" and shops:
        raise AccountError(f"only a merchant is bound to shops; role {role} sees every shop it may",
                           field="shop")
    return shops


class AccountService:
    def __init__(
        self,
        store: UserStore,
        *,
        clock: Clock | None = None,
        throttle: SignInThrottle | None = None,
        hasher: Hasher | None = None,
        session_idle: timedelta = timedelta(minutes=60),
        session_max_age: timedelta = timedelta(hours=12),
    ) -> None:
        if session_max_age.total_seconds() <= 0 or session_idle.total_seconds() <= 0:
            raise ValueError("session_idle and session_max_age must be > 0")
        self.store = store
        self.clock = clock or SystemClock()
        self.throttle = throttle or SignInThrottle()
        self.hasher = hasher or Hasher()
        self.session_idle = session_idle
        self.session_max_age = session_max_age
        # last-seen is written at most this often per session (a page run each few seconds would
        # otherwise write the control DB on every run); a session may so expire early (never late) by
        # at most this much
        self.touch_every = min(timedelta(seconds=60), session_idle / 10)

    def close(self) -> None:
        self.store.close()

    # ------------------------------------------------------------------ who may manage users
    @staticmethod
    def _actor(by: Principal | str) -> str:
        if isinstance(by, Principal):
            require(by, "users.manage")
            return by.name
        if not by:
            raise AccountError("who makes the change must be named", field="by")
        return by

    # ------------------------------------------------------------------ users
    def add_user(self, name: str, role: str, password: str, *, shops: Iterable[str] = (),
                 by: Principal | str) -> UserRecord:
        actor = self._actor(by)
        check_name(name)
        bound = check_role_and_shops(role, shops)
        check_strength(password)
        record = self.store.add(name, role, self.hasher.hash(password), bound, now=self.clock.now(), by=actor)
        log.info("user %s added as %s by %s", name, role, actor)
        return record

    def set_password(self, name: str, password: str, *, by: Principal | str) -> None:
        actor = self._actor(by)
        check_strength(password)
        now = self.clock.now()
        self.store.set_password_hash(name, self.hasher.hash(password), now=now, by=actor)
        ended = self.store.revoke_user_sessions(name, "password changed", now)
        log.info("password of user %s changed by %s (%d console sessions ended)", name, actor, ended)

    def disable(self, name: str, *, by: Principal | str) -> None:
        actor = self._actor(by)
        user = self.get_user(name)
        last_admin = user.role == "admin" and self.store.count(role="admin", enabled_only=True) <= 1
        if last_admin and not user.disabled:
            raise AccountError(f"user {name} is the last enabled admin; add or enable another admin first",
                               field="name")
        now = self.clock.now()
        self.store.set_disabled(name, True, now=now, by=actor)
        ended = self.store.revoke_user_sessions(name, "user disabled", now)
        log.info("user %s disabled by %s (%d console sessions ended)", name, actor, ended)

    def enable(self, name: str, *, by: Principal | str) -> None:
        actor = self._actor(by)
        self.store.set_disabled(name, False, now=self.clock.now(), by=actor)
        log.info("user %s enabled by %s", name, actor)

    def get_user(self, name: str) -> UserRecord:
        user = self.store.get(name)
        if user is None:
            raise UnknownUser(f"no user named {name}", field="name")
        return user

    def list_users(self) -> list[UserRecord]:
        return self.store.list()

    def has_admin(self) -> bool:
        return self.store.count(role="admin") > 0

    # ------------------------------------------------------------------ sign-in
    def authenticate(self, name: str, password: str, client_addr: str | None) -> Principal:
        """The principal of a good name and password; raises a ``SignInError`` otherwise.

        Refused before any check while the user or the address is throttled; an unknown user costs
        the same hash verification as a known one; a disabled user is told so only after a
        correct password.
        """
        name = (name or "").strip()
        self.throttle.check(name, client_addr)
        found = self.store.credentials(name) if name else None
        if found is None:
            self.hasher.verify_dummy(password or "")
            ok = False
        else:
            ok = self.hasher.verify(found[1], password or "")
        if not ok:
            self.throttle.failed(name, client_addr)
            log.info("failed sign-in for %r from %s", name[:64], client_addr)
            raise BadCredentials()
        user, stored = found  # type: ignore[misc]
        if user.disabled:
            log.info("sign-in of disabled user %s refused (from %s)", user.name, client_addr)
            raise AccountDisabled(user.name)
        self.throttle.succeeded(name)
        now = self.clock.now()
        if self.hasher.needs_rehash(stored):
            self.store.set_password_hash(user.name, self.hasher.hash(password), now=now, by=user.name,
                                         audit=False)
        self.store.record_login(user.name, now)
        log.info("user %s (%s) signed in from %s", user.name, user.role, client_addr)
        return Principal(user.name, user.role, user.shops)

    # ------------------------------------------------------------------ sessions
    def start_session(self, principal: Principal) -> Session:
        return Session(principal, self.session_idle, self.clock.now())

    def resume(self, session: Session) -> Principal:
        """Touch the session now and read the account again: a user disabled, removed or given
        another role since sign-in does not keep the old rights. Raises ``SessionExpired``."""
        now = self.clock.now()
        session.touch(now)
        user = self.store.get(session.principal.name)
        if user is None or user.disabled:
            session.last_seen = now - session.idle  # expired from now on
            raise SessionExpired(session.idle)
        principal = Principal(user.name, user.role, user.shops)
        session.principal = principal
        return principal

    # ------------------------------------------------------------------ server-side sessions
    def open_session(self, principal: Principal, client_addr: str | None = None) -> str:
        """A new server-side session of ``principal`` (just authenticated); returns its token, the
        only copy: the DB keeps its hash. Hand it to the browser and forget it."""
        token = new_token()
        now = self.clock.now()
        self.store.add_session(ServerSession(
            token_hash=hash_token(token), user=principal.name, role=principal.role,
            shops=tuple(principal.shops), created_at=now, last_seen_at=now,
            expires_at=now + self.session_max_age, client_addr=client_addr,
        ))
        self.store.purge_sessions(now - timedelta(days=7))  # rows of sessions ended a week ago
        return token

    def resume_token(self, token: str) -> Principal:
        """The principal of a live session token, its last-seen moved to now (idle timeout).

        Raises a ``SessionEnded``: ``UnknownSession``, ``SessionRevoked`` (signed out; the account
        disabled, removed, its password changed since; its role or shops changed: revoked now),
        ``SessionTooOld`` (past the absolute expiry) or ``SessionExpired`` (idle too long)."""
        if not token:
            raise UnknownSession()
        key = hash_token(token)
        found = self.store.session(key)
        if found is None:
            raise UnknownSession()
        if found.revoked_at is not None:
            raise SessionRevoked(found.revoked_reason or "signed out")
        now = self.clock.now()
        if now >= found.expires_at:
            raise SessionTooOld(self.session_max_age)
        if now - found.last_seen_at >= self.session_idle:
            raise SessionExpired(self.session_idle)
        user = self.store.get(found.user)
        reason = None
        if user is None:
            reason = "user removed"
        elif user.disabled:
            reason = "user disabled"
        elif (user.role, tuple(user.shops)) != (found.role, tuple(found.shops)):
            reason = "role changed"
        if reason is not None:
            self.store.revoke_session(key, reason, now)
            log.info("console session of %s ended: %s", found.user, reason)
            raise SessionRevoked(reason)
        if now - found.last_seen_at >= self.touch_every:
            self.store.touch_session(key, now)
        return Principal(user.name, user.role, user.shops)  # type: ignore[union-attr]

    def sign_out(self, token: str | None) -> bool:
        """Revoke the session of ``token``; True when it was live. Unknown tokens are ignored."""
        if not token:
            return False
        return self.store.revoke_session(hash_token(token), "signed out", self.clock.now())

    def purge_sessions(self, keep: timedelta = timedelta(days=7)) -> int:
        """Delete the rows of sessions that ended more than ``keep`` ago."""
        return self.store.purge_sessions(self.clock.now() - keep)

    # ------------------------------------------------------------------ first admin
    def ensure_bootstrap_admin(self, spec: str | None) -> str | None:
        """Create the first admin from ``NAME:PASSWORD`` when no admin exists; returns the name created.

        With an admin already there, the value is ignored with a warning. Never logs the password.
        """
        if not spec:
            return None
        if self.has_admin():
            log.warning("%s is set but an admin already exists: ignored (unset it)", BOOTSTRAP_ENV)
            return None
        name, sep, password = spec.partition(":")
        if not sep or not name or not password:
            raise AccountError(f"{BOOTSTRAP_ENV} must be NAME:PASSWORD", field=BOOTSTRAP_ENV)
        try:
            self.add_user(name.strip(), "admin", password, by=BOOTSTRAP_ENV)
        except AccountError as exc:
            raise AccountError(f"{BOOTSTRAP_ENV}: {exc}", field=BOOTSTRAP_ENV) from exc
        log.warning("created the first admin %s from %s; change the password "
                    "(tradeguard users passwd %s) and unset the variable", name, BOOTSTRAP_ENV, name)
        return name
