import uuid

import pytest

from tests.services import need_postgres


@pytest.fixture(params=["sqlite", "postgresql"])
def control_db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/control.db"
    return need_postgres()


@pytest.fixture
def app_name():
    return f"test-{uuid.uuid4().hex[:10]}"
