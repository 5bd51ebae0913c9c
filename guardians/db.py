"""SQLAlchemy engine for the control DB (SQLite by default, PostgreSQL by URL): the one opener and UTC
helper of common/sql.py, under the names guardians' stores use."""

from __future__ import annotations

from sqlalchemy import Engine

from common.sql import DatabaseUrlError, as_utc, open_engine

ControlDBError = DatabaseUrlError


def make_engine(url: str) -> Engine:
    return open_engine(url, what="control DB", field="control_db")


__all__ = ["ControlDBError", "as_utc", "make_engine"]
