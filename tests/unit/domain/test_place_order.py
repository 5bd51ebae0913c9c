from __future__ import annotations

import pytest

from domain import errors
from tests.unit.domain.helpers import order_cmd


def test_fixed_price_order_is_split_by_shop_with_amounts(env):
    view = env.service.place_order(order_cmd([("A1", 2), ("B1", 1)]))
    assert view.status == "pending_payment"
    assert [s.shop_id for s in view.sub_orders] == ["s1", "s2"]
    s1, s2 = view.sub_orders
    assert (s1.gross_cents, s1.discount_cents, s1.amount_cents) == (2000, 200, 1800)  # 10% off A1
    assert (s2.gross_cents, s2.discount_cents, s2.amount_cents) == (3000, 0, 3000)
    assert view.amount_cents == 4800
    assert env.stock("A1") == (10, 2) and env.stock("B1") == (3, 1)
    assert view.expires_at == env.clock.now() + env.service.payment_timeout


def test_amount_off_is_per_unit(env):
    view = env.service.place_order(order_cmd([("A3", 3)]))
    line = view.sub_orders[0].lines[0]
    assert (line.unit_price_cents, line.discount_cents, line.amount_cents) == (500, 300, 1200)


def test_spend_save_highest_tier_allocated_over_lines(env):
    # A1×2 → 1800 after 10%; A2×2 → 5000; A3×4 → 1600 after 100/unit: shop subtotal 8400 ≥ 5000 → save 500
    view = env.service.place_order(order_cmd([("A1", 2), ("A2", 2), ("A3", 4)]))
    sub = view.sub_orders[0]
    assert sub.amount_cents == 8400 - 500
    assert sum(li.amount_cents for li in sub.lines) == sub.amount_cents
    assert sub.gross_cents - sub.discount_cents == sub.amount_cents


def test_spend_save_second_tier(env):
    # A3×30 = 15000 - 3000 (amount off) = 12000 ≥ 10000 → save 1500 (not 500)
    view = env.service.place_order(order_cmd([("A3", 30)]))
    assert view.amount_cents == 12000 - 1500


def test_spend_save_not_met_gives_no_shop_discount(env):
    view = env.service.place_order(order_cmd([("A1", 1)]))
    assert view.amount_cents == 900


def test_flash_sale_price_pool_and_no_stacking(env):
    view = env.service.place_order(order_cmd([("B2", 1)], tx_type="flash_sale"))
    line = view.sub_orders[0].lines[0]
    assert (line.list_price_cents, line.unit_price_cents, line.amount_cents) == (4000, 1999, 1999)
    assert line.discount_cents == 2001
    assert env.stock("B2", "flash") == (3, 1) and env.stock("B2") == (0, 0)
    assert view.expires_at == env.clock.now() + env.service.registry.get("flash_sale").timeout.cap


def test_flash_sale_strict_per_buyer_limit(env):
    with pytest.raises(errors.PurchaseLimitExceeded) as exc:
        env.service.place_order(order_cmd([("B2", 2)], tx_type="flash_sale"))
    assert exc.value.rule == "flash_sale.per_buyer" and exc.value.field == "lines[0].qty"
    env.service.place_order(order_cmd([("B2", 1)], tx_type="flash_sale"))
    with pytest.raises(errors.PurchaseLimitExceeded):
        env.service.place_order(order_cmd([("B2", 1)], tx_type="flash_sale", key="k2"))
    env.service.place_order(order_cmd([("B2", 1)], tx_type="flash_sale", buyer="u2"))


def test_flash_sale_limited_stock_runs_out(env):
    for i in range(3):
        env.service.place_order(order_cmd([("B2", 1)], tx_type="flash_sale", buyer=f"b{i}"))
    with pytest.raises(errors.OutOfStock) as exc:
        env.service.place_order(order_cmd([("B2", 1)], tx_type="flash_sale", buyer="b9"))
    assert exc.value.extra["available"] == 0 and exc.value.extra["pool"] == "flash"
    # the failed attempt did not consume b9's flash limit
    assert env.limit_used("b9", "B2", "flash:p-flash") == 0


def test_flash_sale_refuses_sku_not_on_sale(env):
    with pytest.raises(errors.InvalidRequest) as exc:
        env.service.place_order(order_cmd([("A1", 1)], tx_type="flash_sale"))
    assert exc.value.rule == "flash_sale.sku_on_sale"


def test_fixed_price_cannot_take_flash_stock(env):
    with pytest.raises(errors.OutOfStock):
        env.service.place_order(order_cmd([("B2", 1)]))


def test_product_purchase_limit_per_day(env):
    env.service.place_order(order_cmd([("A2", 2)]))
    with pytest.raises(errors.PurchaseLimitExceeded) as exc:
        env.service.place_order(order_cmd([("A2", 1)], key="k2"))
    assert exc.value.rule == "purchase_limit.day"
    assert exc.value.extra == {"sku": "A2", "limit": 2, "used": 2, "remaining": 0}
    env.service.place_order(order_cmd([("A2", 1)], buyer="u2", key="k2"))  # other buyer
    env.clock.advance(days=1)
    env.service.place_order(order_cmd([("A2", 1)], key="k3"))  # next period


def test_duplicate_sku_lines_are_merged(env):
    view = env.service.place_order(order_cmd([("A3", 1), ("A3", 2)]))
    assert [li.qty for li in view.sub_orders[0].lines] == [3]


def test_unknown_sku_writes_nothing(env):
    with pytest.raises(errors.UnknownSku) as exc:
        env.service.place_order(order_cmd([("A1", 1), ("NOPE", 1)]))
    assert exc.value.field == "lines[1].sku" and exc.value.kind == "not_found"
    assert env.order_count() == 0 and env.stock("A1") == (10, 0) and env.publisher.events == []


def test_out_of_stock_on_a_later_line_rolls_back_earlier_reservations(env):
    with pytest.raises(errors.OutOfStock) as exc:
        env.service.place_order(order_cmd([("A1", 1), ("B1", 4)]))
    assert exc.value.extra["available"] == 3 and exc.value.field == "lines[1].qty"
    assert env.stock("A1") == (10, 0) and env.order_count() == 0 and env.publisher.events == []


@pytest.mark.parametrize(("field", "value"), [("qty", 0), ("qty", -1), ("qty", 1000), ("qty", True)])
def test_bad_quantity_is_invalid(env, field, value):
    with pytest.raises(errors.InvalidRequest) as exc:
        env.service.place_order(order_cmd([("A1", value)]))
    assert exc.value.field == "lines[0].qty"


def test_bad_channel_tx_type_address(env):
    with pytest.raises(errors.InvalidRequest) as exc:
        env.service.place_order(order_cmd([("A1", 1)], channel="fax"))
    assert exc.value.field == "channel" and "mini_program" in exc.value.message
    with pytest.raises(errors.InvalidRequest) as exc:
        env.service.place_order(order_cmd([("A1", 1)], tx_type="barter"))
    assert exc.value.field == "tx_type" and exc.value.extra["allowed"] == [
        "auction", "cod", "fixed_price", "flash_sale", "presale"]
    from tests.unit.domain.helpers import ADDRESS
    with pytest.raises(errors.InvalidRequest) as exc:
        env.service.place_order(order_cmd([("A1", 1)], address={**ADDRESS, "city": " "}))
    assert exc.value.field == "address.city"


def test_idempotency_same_body_returns_same_order(env):
    first = env.service.place_order(order_cmd([("A1", 1)]))
    again = env.service.place_order(order_cmd([("A1", 1)]))
    assert again.id == first.id and again.replayed and not first.replayed
    assert env.stock("A1") == (10, 1)
    assert env.event_names().count("OrderPlaced") == 1


def test_idempotency_other_body_conflicts(env):
    first = env.service.place_order(order_cmd([("A1", 1)]))
    with pytest.raises(errors.IdempotencyConflict) as exc:
        env.service.place_order(order_cmd([("A1", 2)]))
    assert exc.value.extra["order_id"] == first.id and exc.value.field == "idempotency_key"
    # key is scoped per buyer
    other = env.service.place_order(order_cmd([("A1", 2)], buyer="u2"))
    assert other.id != first.id


def test_events_carry_ids_shop_tx_channel_amounts_time(env):
    view = env.service.place_order(order_cmd([("A1", 2), ("B1", 1)], channel="web"))
    placed = [e for e in env.publisher.events if e.name == "OrderPlaced"]
    assert {e.shop_id for e in placed} == {"s1", "s2"}
    assert {e.sub_order_id for e in placed} == {s.id for s in view.sub_orders}
    assert all(e.order_id == view.id and e.channel == "web" and e.tx_type == "fixed_price" for e in placed)
    assert sum(e.amount_cents for e in placed) == view.amount_cents
    assert all(e.occurred_at == env.clock.now() for e in env.publisher.events)

