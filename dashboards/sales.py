"""A shop's sales figures, as pure functions of the recorded points (no store, no clock).

The journal relay writes exact ``orders`` points per (shop, channel, tx_type) and ``refunds`` points
per shop (collectors/SCHEMA.md). Every money figure is computed in integer cents (the points carry
currency units = cents / 100) and shown to the cent:

- gross sales = ``gmv`` + ``discount`` (list value of the placed sub-orders);
- discounts = ``discount``; refunds = ``refunds.amount`` (completed refunds, in the hour they completed);
- **net sales** = gross − discounts − refunds;
- **orders** = ``placed``; **average order value** = (gross − discounts) / orders;
- **units sold** = ``items``;
- **refund rate** = completed refunds / paid orders;
- **paid conversion** = paid / placed;
- **fulfilment** (the ``deliveries`` points): sub-orders shipped, delivered, received in the range
  (each counted in the second its step happened), deliveries failed, cash collected on delivery.

A change against the previous period is shown as a signed percentage; ``new`` when the previous
period had none of it (0 or no value) and this one has some, ``–`` when there is nothing to compare.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import plotly.graph_objects as go

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def cents(value: float | None) -> int:
    """Currency units (as the points store them) → integer cents."""
    return round((value or 0.0) * 100)


def money(amount_cents: int | None, currency: str) -> str:
    """``¥1,234.50``; a negative amount ``-¥3.00``; None ``–``."""
    if amount_cents is None:
        return "–"
    sign = "-" if amount_cents < 0 else ""
    whole, cent = divmod(abs(int(amount_cents)), 100)
    return f"{sign}{currency}{whole:,}.{cent:02d}"


def pct_change(current: float | None, previous: float | None) -> float | None:
    """% change of ``current`` over ``previous``; None when there is nothing to compare with."""
    if current is None or previous is None or previous == 0:
        return None
    return (current - previous) / abs(previous) * 100.0


def ratio(num: float, den: float) -> float | None:
    return num / den if den else None


NO_VALUE = "–"  # what a missing figure shows, everywhere on the page (never "None" or "nan")
NEW = "new"


def change_text(current: float | None, previous: float | None) -> str:
    """The "change %" cell: ``+49.0``; ``new`` when the previous period had none and this one has some;
    ``–`` when there is nothing to compare (no value now, or none in either period)."""
    change = pct_change(current, previous)
    if change is not None:
        return f"{change:+.1f}"
    if current and not previous:
        return NEW
    return NO_VALUE


@dataclass(frozen=True)
class Totals:
    """One period's sums for one shop (money in cents)."""

    placed: int = 0
    paid: int = 0
    cancelled: int = 0
    units: int = 0
    gmv_cents: int = 0  # what buyers pay for placed sub-orders (after discounts)
    discount_cents: int = 0
    refunds_completed: int = 0
    refunds_requested: int = 0
    refund_cents: int = 0

    @property
    def gross_cents(self) -> int:
        return self.gmv_cents + self.discount_cents

    @property
    def net_cents(self) -> int:
        return self.gross_cents - self.discount_cents - self.refund_cents

    @property
    def aov_cents(self) -> int | None:
        return round((self.gross_cents - self.discount_cents) / self.placed) if self.placed else None

    @property
    def refund_rate(self) -> float | None:
        return ratio(self.refunds_completed, self.paid)

    @property
    def paid_conversion(self) -> float | None:
        return ratio(self.paid, self.placed)


def _int(values: Mapping[str, float | None], name: str) -> int:
    return round(values.get(name) or 0)


def totals(order_rows: Iterable[Any], refund_rows: Iterable[Any]) -> Totals:
    """Sum ``orders`` rows (any grouping) and ``refunds`` rows (``Row.values`` mappings) into ``Totals``."""
    placed = paid = cancelled = units = gmv = discount = 0
    for r in order_rows:
        v = r.values
        placed += _int(v, "placed")
        paid += _int(v, "paid")
        cancelled += _int(v, "cancelled")
        units += _int(v, "items")
        gmv += cents(v.get("gmv"))
        discount += cents(v.get("discount"))
    completed = requested = refunded = 0
    for r in refund_rows:
        v = r.values
        completed += _int(v, "completed")
        requested += _int(v, "requested")
        refunded += cents(v.get("amount"))
    return Totals(placed, paid, cancelled, units, gmv, discount, completed, requested, refunded)


@dataclass(frozen=True)
class Kpi:
    label: str
    kind: str  # "money" (cents) | "count" | "ratio" (0..1)
    current: float | None
    previous: float | None

    @property
    def change_pct(self) -> float | None:
        return pct_change(self.current, self.previous)

    def text(self, value: float | None, currency: str) -> str:
        if value is None:
            return "–"
        if self.kind == "money":
            return money(int(value), currency)
        if self.kind == "ratio":
            return f"{100 * value:.1f} %"
        return f"{int(value):,}"

    def change_text(self) -> str:
        return change_text(self.current, self.previous)

    def delta_text(self) -> str | None:
        """The metric's delta: ``+49.0 % vs previous period``, ``new (none in the previous period)``,
        or None (no delta shown) when there is nothing to compare."""
        change = self.change_pct
        if change is not None:
            return f"{change:+.1f} % vs previous period"
        return "new (none in the previous period)" if self.change_text() == NEW else None


def kpis(current: Totals, previous: Totals) -> list[Kpi]:
    """The six headline figures, each with the previous period's value."""
    return [
        Kpi("Net sales", "money", current.net_cents, previous.net_cents),
        Kpi("Orders", "count", current.placed, previous.placed),
        Kpi("Average order value", "money", current.aov_cents, previous.aov_cents),
        Kpi("Units sold", "count", current.units, previous.units),
        Kpi("Refund rate", "ratio", current.refund_rate, previous.refund_rate),
        Kpi("Paid conversion", "ratio", current.paid_conversion, previous.paid_conversion),
    ]


def kpi_frame(items: Sequence[Kpi], currency: str) -> pd.DataFrame:
    """The KPIs as a table (for the CSV download): shown values and the raw numbers."""
    return pd.DataFrame(
        [
            {
                "figure": k.label,
                "this period": k.text(k.current, currency),
                "previous period": k.text(k.previous, currency),
                "change %": k.change_text(),
            }
            for k in items
        ],
        columns=["figure", "this period", "previous period", "change %"],
    )


def breakdown(order_rows: Iterable[Any], tag: str, currency: str) -> pd.DataFrame:
    """Sales by ``tag`` (``channel`` or ``tx_type``) from ``orders`` rows grouped by that tag."""
    acc: dict[str, list[int]] = {}
    for r in order_rows:
        key = str(r.tags.get(tag, ""))
        a = acc.setdefault(key, [0, 0, 0, 0, 0])
        a[0] += _int(r.values, "placed")
        a[1] += _int(r.values, "paid")
        a[2] += _int(r.values, "items")
        a[3] += cents(r.values.get("gmv")) + cents(r.values.get("discount"))
        a[4] += cents(r.values.get("discount"))
    total = sum(a[3] - a[4] for a in acc.values())
    rows = [
        {
            tag: key,
            "orders": a[0],
            "paid": a[1],
            "units": a[2],
            "gross": money(a[3], currency),
            "discounts": money(a[4], currency),
            "sales after discounts": money(a[3] - a[4], currency),
            "share %": f"{100 * (a[3] - a[4]) / total:.1f}" if total else NO_VALUE,
        }
        for key, a in sorted(acc.items(), key=lambda kv: (-(kv[1][3] - kv[1][4]), kv[0]))
    ]
    columns = [tag, "orders", "paid", "units", "gross", "discounts", "sales after discounts", "share %"]
    return pd.DataFrame(rows, columns=columns)


@dataclass(frozen=True)
class Fulfilment:
    """One period's delivery figures for one shop (the ``deliveries`` points; money in cents)."""

    shipped: int = 0
    delivered: int = 0
    received: int = 0
    auto_received: int = 0
    failed: int = 0
    cod_collected: int = 0
    cod_cents: int = 0


def fulfilment(delivery_rows: Iterable[Any]) -> Fulfilment:
    """Sum ``deliveries`` rows (any grouping) into :class:`Fulfilment`."""
    counts = ("shipped", "delivered", "received", "auto_received", "failed", "cod_collected")
    acc = [0] * len(counts)
    cod = 0
    for r in delivery_rows:
        v = r.values
        for i, name in enumerate(counts):
            acc[i] += _int(v, name)
        cod += cents(v.get("cod_amount"))
    return Fulfilment(*acc, cod)


def fulfilment_by_tx_type(delivery_rows: Iterable[Any], currency: str) -> pd.DataFrame:
    """Shipped, delivered, received, failed and cash collected on delivery per transaction type."""
    groups: dict[str, list[Any]] = {}
    for r in delivery_rows:
        groups.setdefault(str(r.tags.get("tx_type", "")), []).append(r)
    rows = []
    for key, group in sorted(groups.items(), key=lambda kv: (-fulfilment(kv[1]).shipped, kv[0])):
        f = fulfilment(group)
        rows.append({"tx_type": key, "shipped": f.shipped, "delivered": f.delivered, "received": f.received,
                     "of which automatically": f.auto_received, "delivery failed": f.failed,
                     "cash collected": f.cod_collected,
                     "cash collected amount": money(f.cod_cents, currency)})
    columns = ["tx_type", "shipped", "delivered", "received", "of which automatically", "delivery failed",
               "cash collected", "cash collected amount"]
    return pd.DataFrame(rows, columns=columns)


def shipped_by_carrier(delivery_rows: Iterable[Any]) -> pd.DataFrame:
    """Sub-orders shipped per carrier (the carrier is named by the shipping step only)."""
    acc: dict[str, int] = {}
    for r in delivery_rows:
        shipped = _int(r.values, "shipped")
        if shipped:
            key = str(r.tags.get("carrier", ""))
            acc[key] = acc.get(key, 0) + shipped
    total = sum(acc.values())
    rows = [{"carrier": k, "shipped": n, "share %": f"{100 * n / total:.1f}"}
            for k, n in sorted(acc.items(), key=lambda kv: (-kv[1], kv[0]))]
    return pd.DataFrame(rows, columns=["carrier", "shipped", "share %"])


def top_products(items: Iterable[Mapping[str, Any]], currency: str) -> pd.DataFrame:
    """``SkuSalesModel.top`` rows as a table: sku, units, revenue, refunded units and amount."""
    rows = [
        {
            "sku": i["sku"],
            "units": int(i["units"]),
            "revenue": money(int(i["revenue_cents"]), currency),
            "refunded units": int(i["refunded_units"]),
            "refunded": money(int(i["refunded_cents"]), currency),
        }
        for i in items
    ]
    return pd.DataFrame(rows, columns=["sku", "units", "revenue", "refunded units", "refunded"])


def heatmap_matrix(hourly_rows: Iterable[Any], field: str = "placed") -> pd.DataFrame:
    """Orders per weekday (rows Mon..Sun) × hour of day (columns 0..23, UTC) from hourly buckets."""
    grid = [[0] * 24 for _ in WEEKDAYS]
    for r in hourly_rows:
        t: datetime = r.time
        grid[t.weekday()][t.hour] += _int(r.values, field)
    return pd.DataFrame(grid, index=list(WEEKDAYS), columns=list(range(24)))


def heatmap_figure(matrix: pd.DataFrame) -> go.Figure:
    fig = go.Figure(
        go.Heatmap(
            z=matrix.values,
            x=[f"{h:02d}" for h in matrix.columns],
            y=list(matrix.index),
            colorscale="Blues",
            hovertemplate="%{y} %{x}:00 UTC: %{z} orders<extra></extra>",
        )
    )
    fig.update_layout(
        template="plotly_dark",
        height=300,
        margin={"l": 40, "r": 10, "t": 30, "b": 30},
        title="Orders by hour of day (UTC) × weekday",
        yaxis={"autorange": "reversed"},
    )
    return fig
