"""Fulfilment, after-sale and address tests re-run on SQLite and PostgreSQL (the ``env`` fixture)."""

from tests.unit.domain.test_fulfilment import *  # noqa: F403
