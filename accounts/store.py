"""The users tables in the control DB (SQLAlchemy Core): ``sqlite:///…`` by default, PostgreSQL by URL.

- ``users``: one row per account: unique ``name``, argon2id ``password_hash``, ``role``
  (admin | sre | oncall | merchant), ``disabled``, ``created_at``, ``last_login_at``;
- ``user_shops``: the shops a merchant is bound to (one row per user and shop);
- ``user_audit``: who changed which account, when, and how (never a password or a hash);
- ``user_sessions``: the console's server-side sessions: the SHA-256 of each session token (never
  the token), the user and the role and shops it was opened with, created / last seen / absolute
  expiry, and when and why it was revoked.

Tables are created on first use, like ``alerts.store`` and ``guardians.store``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from accounts.errors import AccountError, UnknownUser
from accounts.session import ServerSession
from common.sql import DatabaseUrlError, UTCDateTime, create_tables, open_engine

metadata = sa.MetaData()

users_t = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_login_at", UTCDateTime, nullable=True),
)

user_shops_t = sa.Table(
    "user_shops",
    metadata,
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("shop_id", sa.String(100), primary_key=True),
)

user_audit_t = sa.Table(
    "user_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("target", sa.String(64), nullable=False, index=True),
    sa.Column("detail", sa.JSON, nullable=True),
)

user_sessions_t = sa.Table(
    "user_sessions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("user_name", sa.String(64), nullable=False, index=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("shops", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False, index=True),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.Column("revoked_reason", sa.String(40), nullable=True),
    sa.Column("client_addr", sa.String(100), nullable=True),
)


@dataclass(frozen=True)
class UserRecord:
    """An account as the rest of the product sees it: never with its hash."""

    name: str
    role: str
    shops: tuple[str, ...] = field(default=())
    disabled: bool = False
    created_at: datetime | None = None
    last_login_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "shops": list(self.shops),
            "disabled": self.disabled,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "last_login_at": self.last_login_at.isoformat() if self.last_login_at else None,
        }


def build_engine(url: str) -> Engine:
    """An engine for the control DB (common/sql.py); a bad URL is an ``AccountError`` naming it."""
    try:
        return open_engine(url, what="control DB", field="control_db")
    except DatabaseUrlError as exc:
        raise AccountError(str(exc), field=exc.field) from None


class UserStore:
    """Every read and write of the users tables. Creates them on first use."""

    def __init__(self, url_or_engine: str | Engine) -> None:
        self.engine = build_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
        create_tables(metadata, self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ reads
    def get(self, name: str) -> UserRecord | None:
        found = self.credentials(name)
        return found[0] if found else None

    def credentials(self, name: str) -> tuple[UserRecord, str] | None:
        """The account and its stored hash (for the sign-in check only), or None."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(users_t).where(users_t.c.name == name)).mappings().first()
            if row is None:
                return None
            shops = self._shops(c, [row["id"]]).get(row["id"], ())
        return _record(row, shops), str(row["password_hash"])

    def list(self) -> list[UserRecord]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(users_t).order_by(users_t.c.name)).mappings().all()
            shops = self._shops(c, [r["id"] for r in rows])
        return [_record(r, shops.get(r["id"], ())) for r in rows]

    def count(self, *, role: str | None = None, enabled_only: bool = False) -> int:
        q = sa.select(sa.func.count()).select_from(users_t)
        if role is not None:
            q = q.where(users_t.c.role == role)
        if enabled_only:
            q = q.where(users_t.c.disabled.is_(False))
        with self.engine.connect() as c:
            return int(c.execute(q).scalar() or 0)

    def audit(self, target: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        q = sa.select(user_audit_t).order_by(user_audit_t.c.id.desc()).limit(limit)
        if target is not None:
            q = q.where(user_audit_t.c.target == target)
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q).mappings().all()]

    # ------------------------------------------------------------------ writes
    def add(self, name: str, role: str, password_hash: str, shops: Iterable[str], *, now: datetime,
            by: str) -> UserRecord:
        shops = tuple(dict.fromkeys(shops))
        with self.engine.begin() as c:
            exists = c.execute(sa.select(users_t.c.id).where(users_t.c.name == name)).first()
            if exists is not None:
                raise AccountError(f"user {name} already exists", field="name")
            try:
                user_id = c.execute(users_t.insert().values(
                    name=name, password_hash=password_hash, role=role, disabled=False, created_at=now,
                )).inserted_primary_key[0]
            except sa.exc.IntegrityError as exc:  # a concurrent add of the same name
                raise AccountError(f"user {name} already exists", field="name") from exc
            for shop in shops:
                c.execute(user_shops_t.insert().values(user_id=user_id, shop_id=shop))
            self._audit(c, now, by, "add", name, {"role": role, "shops": list(shops)})
        return UserRecord(name=name, role=role, shops=shops, created_at=now)

    def set_password_hash(self, name: str, password_hash: str, *, now: datetime, by: str,
                          audit: bool = True) -> None:
        with self.engine.begin() as c:
            self._update(c, name, password_hash=password_hash)
            if audit:
                self._audit(c, now, by, "passwd", name, None)

    def set_disabled(self, name: str, disabled: bool, *, now: datetime, by: str) -> None:
        with self.engine.begin() as c:
            self._update(c, name, disabled=disabled)
            self._audit(c, now, by, "disable" if disabled else "enable", name, None)

    def record_login(self, name: str, now: datetime) -> None:
        with self.engine.begin() as c:
            self._update(c, name, last_login_at=now)

    # ------------------------------------------------------------------ sessions
    def add_session(self, s: ServerSession) -> None:
        with self.engine.begin() as c:
            c.execute(user_sessions_t.insert().values(
                token_hash=s.token_hash, user_name=s.user, role=s.role, shops=list(s.shops),
                created_at=s.created_at, last_seen_at=s.last_seen_at, expires_at=s.expires_at,
                client_addr=(s.client_addr or None) and s.client_addr[:100],
            ))

    def session(self, token_hash: str) -> ServerSession | None:
        with self.engine.connect() as c:
            row = c.execute(
                sa.select(user_sessions_t).where(user_sessions_t.c.token_hash == token_hash)
            ).mappings().first()
        return _session(row) if row is not None else None

    def sessions(self, user: str | None = None, *, live_at: datetime | None = None) -> list[ServerSession]:
        """Sessions (newest first), of ``user`` if given; with ``live_at``, only those neither revoked
        nor past their absolute expiry then (the idle time is the service's to judge)."""
        q = sa.select(user_sessions_t).order_by(user_sessions_t.c.id.desc())
        if user is not None:
            q = q.where(user_sessions_t.c.user_name == user)
        if live_at is not None:
            q = q.where(user_sessions_t.c.revoked_at.is_(None), user_sessions_t.c.expires_at > live_at)
        with self.engine.connect() as c:
            return [_session(r) for r in c.execute(q).mappings().all()]

    def touch_session(self, token_hash: str, now: datetime) -> None:
        with self.engine.begin() as c:
            c.execute(user_sessions_t.update()
                      .where(user_sessions_t.c.token_hash == token_hash,
                             user_sessions_t.c.last_seen_at < now)
                      .values(last_seen_at=now))

    def revoke_session(self, token_hash: str, reason: str, now: datetime) -> bool:
        """Revoke one session (a no-op on one already revoked); True when this call revoked it."""
        with self.engine.begin() as c:
            done = c.execute(user_sessions_t.update()
                             .where(user_sessions_t.c.token_hash == token_hash,
                                    user_sessions_t.c.revoked_at.is_(None))
                             .values(revoked_at=now, revoked_reason=reason[:40]))
        return bool(done.rowcount)

    def revoke_user_sessions(self, user: str, reason: str, now: datetime) -> int:
        """Revoke every live session of ``user``; returns how many."""
        with self.engine.begin() as c:
            done = c.execute(user_sessions_t.update()
                             .where(user_sessions_t.c.user_name == user,
                                    user_sessions_t.c.revoked_at.is_(None))
                             .values(revoked_at=now, revoked_reason=reason[:40]))
        return int(done.rowcount or 0)

    def purge_sessions(self, before: datetime) -> int:
        """Delete sessions that ended (expired or revoked) before ``before``; returns how many."""
        t = user_sessions_t
        with self.engine.begin() as c:
            done = c.execute(t.delete().where(sa.or_(t.c.expires_at < before, t.c.revoked_at < before)))
        return int(done.rowcount or 0)

    # ------------------------------------------------------------------ helpers
    def _update(self, c: Any, name: str, **values: Any) -> None:
        result = c.execute(users_t.update().where(users_t.c.name == name).values(**values))
        if result.rowcount == 0:
            raise UnknownUser(f"no user named {name}", field="name")

    @staticmethod
    def _audit(c: Any, now: datetime, by: str, action: str, target: str, detail: Any) -> None:
        c.execute(user_audit_t.insert().values(at=now, actor=by, action=action, target=target, detail=detail))

    @staticmethod
    def _shops(c: Any, user_ids: list[int]) -> dict[int, tuple[str, ...]]:
        if not user_ids:
            return {}
        rows = c.execute(
            sa.select(user_shops_t.c.user_id, user_shops_t.c.shop_id)
            .where(user_shops_t.c.user_id.in_(user_ids))
            .order_by(user_shops_t.c.shop_id)
        ).all()
        out: dict[int, list[str]] = {}
        for user_id, shop in rows:
            out.setdefault(user_id, []).append(shop)
        return {k: tuple(v) for k, v in out.items()}


def _record(row: Any, shops: tuple[str, ...]) -> UserRecord:
    return UserRecord(
        name=row["name"],
        role=row["role"],
        shops=tuple(shops),
        disabled=bool(row["disabled"]),
        created_at=row["created_at"],
        last_login_at=row["last_login_at"],
    )


def _session(row: Any) -> ServerSession:
    return ServerSession(
        token_hash=row["token_hash"],
        user=row["user_name"],
        role=row["role"],
        shops=tuple(row["shops"] or ()),
        created_at=row["created_at"],
        last_seen_at=row["last_seen_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        revoked_reason=row["revoked_reason"],
        client_addr=row["client_addr"],
    )
