"""The service-level unit tests, re-run on the SQLAlchemy adapters (SQLite file and PostgreSQL).

The ``env`` fixture of this directory replaces the in-memory fakes with a real trading DB.
"""

from tests.unit.domain.test_payment_cancel import *  # noqa: F403
from tests.unit.domain.test_place_order import *  # noqa: F403
from tests.unit.domain.test_refunds import *  # noqa: F403
