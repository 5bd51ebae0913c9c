"""``AccountService``: users, sign-in (throttled, constant-ish time) and sessions.

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
from accounts.session import Session, SessionExpired
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
    ) -> None:
        self.store = store
        self.clock = clock or SystemClock()
        self.throttle = throttle or SignInThrottle()
        self.hasher = hasher or Hasher()
        self.session_idle = session_idle

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
        self.store.set_password_hash(name, self.hasher.hash(password), now=self.clock.now(), by=actor)
        log.info("password of user %s changed by %s", name, actor)

    def disable(self, name: str, *, by: Principal | str) -> None:
        actor = self._actor(by)
        user = self.get_user(name)
        last_admin = user.role == "admin" and self.store.count(role="admin", enabled_only=True) <= 1
        if last_admin and not user.disabled:
            raise AccountError(f"user {name} is the last enabled admin; add or enable another admin first",
                               field="name")
        self.store.set_disabled(name, True, now=self.clock.now(), by=actor)
        log.info("user %s disabled by %s", name, actor)

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
