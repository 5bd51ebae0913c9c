"""The users tables on PostgreSQL (skips without a server unless TRADEGUARD_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from accounts.errors import AccountError, BadCredentials
from accounts.service import AccountService
from accounts.store import UserStore, metadata
from tests.services import need_postgres
from tests.unit.accounts.conftest import fast_hasher

pytestmark = pytest.mark.integration


@pytest.fixture
def service():
    url = need_postgres()
    schema = f"acct_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url)
    with admin.begin() as c:
        c.execute(sa.text(f"CREATE SCHEMA {schema}"))
    engine = sa.create_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    svc = AccountService(UserStore(engine), hasher=fast_hasher())
    yield svc
    engine.dispose()
    with admin.begin() as c:
        c.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def test_users_on_postgresql(service):
    assert {"users", "user_shops", "user_audit"} <= set(metadata.tables)
    service.add_user("root", "admin", "root-passw0rd", by="it")
    service.add_user("bob", "merchant", "bob-passw0rd", shops=["s1", "s2"], by="it")
    with pytest.raises(AccountError, match="user bob already exists"):
        service.add_user("bob", "sre", "bob-passw0rd", by="it")
    who = service.authenticate("bob", "bob-passw0rd", "10.1.1.1")
    assert who.shops == ("s1", "s2") and service.get_user("bob").last_login_at is not None
    service.disable("bob", by="it")
    assert [u.name for u in service.list_users() if u.disabled] == ["bob"]
    with pytest.raises(BadCredentials):
        service.authenticate("root", "wrong-passw0rd", None)
    assert service.get_user("root").created_at.tzinfo is not None
