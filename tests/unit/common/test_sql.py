"""Schema creation when another process creates the same tables at the same moment (SQLite)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import event

from common.sql import create_tables


def test_a_table_made_by_another_process_between_check_and_create_is_taken_as_made(tmp_path):
    url = f"sqlite:///{tmp_path / 'control.db'}"
    metadata = sa.MetaData()
    sa.Table("rules", metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Index("ix_rules_id", "id"))
    sa.Table("canaries", metadata, sa.Column("id", sa.Integer, primary_key=True))
    other = sa.create_engine(url)
    mine = sa.create_engine(url)
    raced = []

    @event.listens_for(mine, "before_cursor_execute")
    def race(conn, cursor, statement, params, context, executemany):
        # the other process wins every CREATE once: it makes the object just before this one does
        if statement.lstrip().startswith("CREATE") and statement not in raced:
            raced.append(statement)
            with other.begin() as c:
                c.exec_driver_sql(statement)

    create_tables(metadata, mine)
    assert len(raced) == 2  # each table lost once to the other process, found on the next check
    assert set(sa.inspect(mine).get_table_names()) == {"rules", "canaries"}
    create_tables(metadata, mine)  # and again: nothing to do


def test_another_operational_error_is_not_swallowed(tmp_path):
    import pytest

    metadata = sa.MetaData()
    sa.Table("t", metadata, sa.Column("id", sa.Integer, primary_key=True))
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.db'}")

    @event.listens_for(engine, "before_cursor_execute")
    def broken(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().startswith("CREATE"):
            raise sa.exc.OperationalError(statement, params, Exception("disk I/O error"))

    with pytest.raises(sa.exc.OperationalError, match="disk I/O error"):
        create_tables(metadata, engine)
