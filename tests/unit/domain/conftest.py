from __future__ import annotations

import pytest

from tests.unit.domain.helpers import Env


@pytest.fixture
def env() -> Env:
    return Env()
