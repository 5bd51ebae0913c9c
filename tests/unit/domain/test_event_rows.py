"""Journal rows: ``event_row`` reads an event's fields directly, which holds only while every domain
event is flat (no nested dataclass, list or dict that ``asdict`` would have converted)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

from domain import events as ev
from domain.adapters.unit_of_work import event_row

FLAT = {"str", "str | None", "int", "int | None", "float", "float | None", "bool", "bool | None", "datetime",
        "datetime | None"}


def _event_types() -> list[type]:
    return [c for c in vars(ev).values()
            if isinstance(c, type) and issubclass(c, ev.DomainEvent) and c is not ev.DomainEvent]


def test_every_domain_event_has_only_flat_fields():
    nested = {f"{c.__name__}.{f.name}: {f.type}" for c in _event_types() for f in dataclasses.fields(c)
              if str(f.type) not in FLAT}
    assert not nested, "event_row (domain/adapters/unit_of_work.py) writes fields as they are; " \
                       f"serialize these like asdict would: {sorted(nested)}"


def test_event_row_payload_is_the_events_asdict():
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    e = ev.OrderPaid(occurred_at=at, order_id="o1", sub_order_id="so1", shop_id="s1", buyer_id="u1",
                     tx_type="presale", channel="app", amount_cents=500, payment_id="p1", stage="deposit")
    row = event_row(e)
    assert row["name"] == "OrderPaid" and row["order_id"] == "o1" and row["occurred_at"] == at
    assert json.loads(row["payload"]) == json.loads(json.dumps(dataclasses.asdict(e), default=str))
