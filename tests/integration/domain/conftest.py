from __future__ import annotations

import pytest

from tests.integration.domain.sql_env import SqlEnv, clean_pg, drop_pg_schema, pg_db, sqlite_db
from tests.services import need_postgres


@pytest.fixture(scope="session")
def pg_trading_db():
    db = pg_db(need_postgres())
    yield db
    drop_pg_schema(db)


@pytest.fixture(params=["sqlite", "postgres"])
def sql_db(request, tmp_path):
    if request.param == "sqlite":
        db = sqlite_db(tmp_path)
        yield db
        db.dispose()
    else:
        db = request.getfixturevalue("pg_trading_db")
        clean_pg(db)
        yield db


@pytest.fixture
def env(sql_db):
    return SqlEnv(sql_db)
