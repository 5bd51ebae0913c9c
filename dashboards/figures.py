"""Plotly figures for the console (and exports): data in, figure out, no Streamlit.

Made for a wall screen: dark template, large type, a title and units on every
axis, the legend in its own row above the plot, the same colour for the same
thing everywhere (a block reason is always the same colour).
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboards.frames import REFUSED_PREFIX
from dashboards.impact import ImpactResult
from dashboards.queries import REASONS

TEMPLATE = "plotly_dark"
BACKGROUND = "rgba(0,0,0,0)"  # transparent: charts sit flush on the console's dark theme
FONT_SIZE = 15
HEIGHT = 330

COLORS: dict[str, str] = {
    "pass": "#2ecc71",
    "success": "#2ecc71",
    "error": "#e74c3c",
    "placed": "#5dade2",
    "paid": "#2ecc71",
    "p50": "#5dade2",
    "p99": "#f39c12",
    "rt": "#f39c12",
    "gmv": "#af7ac5",
    "shipped": "#5dade2",
    "delivered": "#f39c12",
    "received": "#2ecc71",
    "flow": "#f1c40f",
    "param": "#bb8fce",
    "system": "#48c9b0",
    "breaker": "#e67e22",
    "offered": "#bdc3c7",
    "refused": "#e59866",
    "guard_passed": "#95a5a6",
    "would_pass": "#2ecc71",
    "would_block": "#e74c3c",
    "blocked_now": "#f1c40f",
}
REASON_LABELS: dict[str, str] = {
    "flow": "flow",
    "param": "hot param",
    "system": "system",
    "breaker": "breaker",
}
TIME_AXIS = "time (UTC)"


LEGEND_ROW_PX = 460  # what one legend row holds in a half-width chart (the narrowest place they are drawn)


def _legend_rows(fig: go.Figure) -> int:
    """Rows a horizontal legend wraps into (estimated from its entries' text): each extra row gets
    room under the title, so a long legend never covers the title."""
    if fig.layout.showlegend is False:
        return 1
    widths = [
        len(str(t.name)) * FONT_SIZE * 0.55 + 40
        for t in fig.data
        if t.name and t.showlegend is not False
    ]
    rows, used = 1, 0.0
    for w in widths:
        if used and used + w > LEGEND_ROW_PX:
            rows, used = rows + 1, 0.0
        used += w
    return rows


def layout(fig: go.Figure, title: str, y_title: str, *, height: int = HEIGHT) -> go.Figure:
    """The shared wall-screen layout: title top left, legend in rows under it, units on the axes."""
    extra = 22 * (_legend_rows(fig) - 1)
    fig.update_layout(
        template=TEMPLATE,
        paper_bgcolor=BACKGROUND,
        plot_bgcolor=BACKGROUND,
        height=height + extra,
        font={"size": FONT_SIZE},
        title={
            "text": f"<b>{title}</b>",
            "x": 0.01,
            "xanchor": "left",
            "y": 0.97,
            "yanchor": "top",
            "font": {"size": FONT_SIZE + 3},
        },
        legend={
            "orientation": "h",
            "x": 0.0,
            "xanchor": "left",
            "y": 1.0,
            "yanchor": "bottom",
            "bgcolor": "rgba(0,0,0,0)",
            "font": {"size": FONT_SIZE - 1},
            "traceorder": "normal",  # stacked bars: legend in stacking order, not reversed
        },
        margin={"l": 70, "r": 20, "t": 84 + extra, "b": 56},
        hovermode="x unified",
        uirevision="keep",  # live refreshes keep zoom and legend toggles
    )
    fig.update_xaxes(
        title_text=TIME_AXIS,
        showgrid=False,
        title_standoff=6,
        ticklabelstandoff=6,  # the first time label clears the lowest value label
        hoverformat="%H:%M:%S",
        # seconds when the axis spans seconds, minutes otherwise, the date beyond a day
        tickformatstops=[
            {"dtickrange": [None, 59_000], "value": "%H:%M:%S"},
            {"dtickrange": [59_000, 86_400_000], "value": "%H:%M"},
            {"dtickrange": [86_400_000, None], "value": "%b %d"},
        ],
    )
    fig.update_yaxes(
        title_text=y_title, rangemode="tozero", gridcolor="#2a2f3a", title_standoff=8, ticklabelstandoff=8
    )
    return fig


def empty_figure(title: str, y_title: str, message: str = "No data yet") -> go.Figure:
    fig = go.Figure()
    layout(fig, title, y_title)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.add_annotation(
        text=message,
        x=0.5,
        y=0.5,
        xref="paper",
        yref="paper",
        showarrow=False,
        font={"size": FONT_SIZE + 5, "color": "#95a5a6"},
    )
    return fig


def _nonzero(data: pd.DataFrame | pd.Series) -> bool:
    return not data.empty and bool((data.fillna(0).to_numpy() != 0).any())


def _mode(values: pd.Series) -> str:
    """``lines+markers`` when a value has no neighbour (a line alone would not draw it: a 24 h chart
    with one busy bucket would look empty), ``lines`` otherwise."""
    present = values.notna().to_numpy()
    if not present.any():
        return "lines"
    for i, here in enumerate(present):
        if here and (i == 0 or not present[i - 1]) and (i == len(present) - 1 or not present[i + 1]):
            return "lines+markers"
    return "lines"


def _x(index: pd.Index) -> list:
    return list(pd.DatetimeIndex(index).tz_convert("UTC").tz_localize(None)) if len(index) else []


ORDER_SERIES: dict[str, str] = {
    "placed": "orders placed (per shop)",
    "paid": "orders paid (per shop)",
    "guard_passed": "order.place calls the guard passed",
}
# The shop's refusal reasons (the ``refusals`` measurement's ``reason``: a DomainError kind).
REFUSAL_LABELS: dict[str, str] = {
    "out_of_stock": "out of stock",
    "limit": "purchase limit",
    "conflict": "state conflict",
    "idempotency_conflict": "idempotency key reused",
    "invalid": "invalid request",
    "unknown_sku": "unknown SKU",
}
REFUSAL_COLORS: tuple[str, ...] = ("#e59866", "#c0392b", "#8e44ad", "#7f8c8d", "#d35400", "#16a085")


def refusal_label(reason: str) -> str:
    return REFUSAL_LABELS.get(reason, reason.replace("_", " "))


def _refusal_color(reason: str) -> str:
    known = list(REFUSAL_LABELS)
    i = known.index(reason) if reason in known else len(known) + sum(map(ord, reason))
    return REFUSAL_COLORS[i % len(REFUSAL_COLORS)]


def orders_figure(rates: pd.DataFrame) -> go.Figure:
    """``rates`` columns placed, paid and optionally guard_passed and ``refused:<reason>`` (per second).

    ``placed``/``paid`` count per shop (an order split over two shops counts two); ``refused:<reason>``:
    order.place requests the shop refused (the ``refusals`` measurement), one dashed series per reason;
    ``guard_passed``: every call the guard let through, dotted, so "calls passed" is never read as
    "orders placed"."""
    title, unit = "Orders per second", "orders / s"
    if not _nonzero(rates):
        return empty_figure(title, unit, "No orders in this range")
    fig = go.Figure()
    for col, name in ORDER_SERIES.items():
        if col not in rates or (col in ("refused", "guard_passed") and not _nonzero(rates[col])):
            continue
        dotted = col == "guard_passed"
        fig.add_trace(
            go.Scatter(
                x=_x(rates.index),
                y=rates[col].round(2).tolist(),
                name=name,
                mode="lines",
                line={
                    "color": COLORS[col],
                    "width": 2 if dotted else 3,
                    "dash": "dot" if dotted else "solid",
                },
            )
        )
    for col in rates.columns:
        if not str(col).startswith(REFUSED_PREFIX) or not _nonzero(rates[col]):
            continue
        reason = str(col)[len(REFUSED_PREFIX):]
        fig.add_trace(
            go.Scatter(
                x=_x(rates.index),
                y=rates[col].round(2).tolist(),
                name=f"refused by the shop: {refusal_label(reason)}",
                mode=_mode(rates[col].where(rates[col] > 0)),
                line={"color": _refusal_color(reason), "width": 2, "dash": "dash"},
            )
        )
    return layout(fig, title, unit)


def payment_success_figure(percent: pd.Series, *, objective: float = 95.0) -> go.Figure:
    """Payment success rate in % per bucket (missing where there were no charges)."""
    title, unit = "Payment success rate", "success %"
    if percent.dropna().empty:
        return empty_figure(title, unit, "No payments yet")
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=_x(percent.index),
            y=percent.round(2).tolist(),
            name="success rate",
            mode=_mode(percent),
            connectgaps=False,
            line={"color": COLORS["success"], "width": 3},
        )
    )
    fig.add_hline(
        y=objective,
        line={"color": COLORS["error"], "dash": "dash", "width": 2},
        annotation_text=f"objective {objective:g} %",
        annotation_position="bottom right",
        annotation_font={"color": COLORS["error"]},
    )
    layout(fig, title, unit)
    low = float(percent.min())
    fig.update_yaxes(range=[max(0.0, min(low, objective) - 5.0), 101], rangemode="normal")
    return fig


def latency_figure(
    rt: pd.DataFrame, resource: str = "order.place", labels: dict[str, str] | None = None
) -> go.Figure:
    """``rt`` columns p50, p99 in milliseconds (missing where the resource was idle); ``labels``
    say what each column is (wide buckets read mean / max instead of percentiles)."""
    title, unit = f"Response time of {resource}", "ms"
    if rt.dropna(how="all").empty:
        return empty_figure(title, unit)
    fig = go.Figure()
    labels = {"p50": "p50 (of per-second means)", "p99": "p99 (of per-second maxima)", **(labels or {})}
    for col in ("p50", "p99"):
        if col in rt:
            fig.add_trace(
                go.Scatter(
                    x=_x(rt.index),
                    y=rt[col].round(1).tolist(),
                    name=labels[col],
                    mode=_mode(rt[col]),
                    line={"color": COLORS[col], "width": 3},
                )
            )
    return layout(fig, title, unit)


def blocked_figure(per_reason: pd.DataFrame, title: str = "Blocked per second, by reason") -> go.Figure:
    """``per_reason`` columns flow, param, system, breaker (blocked calls per second), stacked."""
    unit = "blocked calls / s"
    if not _nonzero(per_reason):
        return empty_figure(title, unit, "Nothing blocked in this range")
    fig = go.Figure()
    for reason in REASONS:
        if reason in per_reason:
            fig.add_trace(
                go.Bar(
                    x=_x(per_reason.index),
                    y=per_reason[reason].round(2).tolist(),
                    name=REASON_LABELS[reason],
                    marker={"color": COLORS[reason], "line": {"width": 0}},
                )
            )
    fig.update_layout(barmode="stack", bargap=0.05)
    return layout(fig, title, unit)


def gmv_figure(gmv: pd.Series, *, currency: str = "¥") -> go.Figure:
    """GMV per minute in currency units (not cents)."""
    title, unit = "GMV per minute", f"{currency} / min"
    if not _nonzero(gmv):
        return empty_figure(title, unit, "No sales in this range")
    fig = go.Figure(
        go.Bar(
            x=_x(gmv.index),
            y=gmv.round(2).tolist(),
            name="GMV",
            marker={"color": COLORS["gmv"], "line": {"width": 0}},
        )
    )
    fig.update_layout(showlegend=False, bargap=0.1)
    return layout(fig, title, unit)


def deliveries_figure(per_minute: pd.DataFrame) -> go.Figure:
    """Fulfilment: sub-orders shipped, delivered and received per minute (columns of those names)."""
    title, unit = "Fulfilment per minute", "sub-orders / min"
    if not _nonzero(per_minute):
        return empty_figure(title, unit, "No shipments or deliveries in this range")
    fig = go.Figure()
    for col in ("shipped", "delivered", "received"):
        if col not in per_minute:
            continue
        fig.add_trace(
            go.Scatter(
                x=_x(per_minute.index),
                y=per_minute[col].round(2).tolist(),
                name=col,
                mode=_mode(per_minute[col]),
                line={"color": COLORS[col], "width": 3},
            )
        )
    return layout(fig, title, unit)


def resource_figure(
    rates: pd.DataFrame,
    rt_ms: pd.Series | None,
    resource: str,
    refused: pd.DataFrame | pd.Series | None = None,
) -> go.Figure:
    """One resource: passed / blocked (per reason) / errors per second stacked, mean RT on a right axis;
    ``refused``: requests the shop refused per second, one column per reason (the ``refusals``
    measurement), each as a line: calls the guard passed that the business then refused."""
    title, unit = f"{resource}: calls per second", "calls / s"
    if rates.empty:
        return empty_figure(title, unit)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    x = _x(rates.index)
    if "pass" in rates:
        fig.add_trace(
            go.Bar(
                x=x,
                y=rates["pass"].round(2).tolist(),
                name="passed by the guard",
                marker={"color": COLORS["pass"], "line": {"width": 0}},
            ),
            secondary_y=False,
        )
    for reason in REASONS:
        col = f"block_{reason}"
        if col in rates and float(rates[col].sum()) > 0:
            fig.add_trace(
                go.Bar(
                    x=x,
                    y=rates[col].round(2).tolist(),
                    name=f"blocked: {REASON_LABELS[reason]}",
                    marker={"color": COLORS[reason], "line": {"width": 0}},
                ),
                secondary_y=False,
            )
    if "error" in rates and float(rates["error"].sum()) > 0:
        fig.add_trace(
            go.Scatter(
                x=x,
                y=rates["error"].round(2).tolist(),
                name="errors",
                mode="lines",
                line={"color": COLORS["error"], "width": 2},
            ),
            secondary_y=False,
        )
    if isinstance(refused, pd.Series):
        refused = refused.to_frame("refused")
    for reason in refused.columns if refused is not None else ():
        series = refused[reason]
        if not _nonzero(series):
            continue
        fig.add_trace(
            go.Scatter(
                x=_x(series.index),
                y=series.round(2).tolist(),
                name=f"of which refused by the shop: {refusal_label(str(reason))}",
                mode=_mode(series.where(series > 0)),
                line={"color": _refusal_color(str(reason)), "width": 2, "dash": "dash"},
            ),
            secondary_y=False,
        )
    if rt_ms is not None and not rt_ms.dropna().empty:
        fig.add_trace(
            go.Scatter(
                x=_x(rt_ms.index),
                y=rt_ms.round(1).tolist(),
                name="mean RT (ms, right)",
                mode=_mode(rt_ms),
                line={"color": COLORS["rt"], "width": 2, "dash": "dot"},
            ),
            secondary_y=True,
        )
    fig.update_layout(barmode="stack", bargap=0.05)
    layout(fig, title, unit, height=380)
    fig.update_yaxes(
        title_text="mean RT (ms)",
        secondary_y=True,
        showgrid=False,
        rangemode="tozero",
        tickmode="auto",
        nticks=5,
        tickformat=".3~g",
    )
    return fig


def impact_figure(result: ImpactResult, title: str = "Impact preview") -> go.Figure:
    """Per second: offered load, what the proposal would pass and block, and what was blocked then."""
    unit = "calls / s"
    if not result.has_traffic:
        return empty_figure(title, unit, "No recorded traffic for this resource in the window")
    x = [pd.Timestamp(s.second, unit="s") for s in result.seconds]
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=x,
            y=[s.would_pass for s in result.seconds],
            name="would pass",
            marker={"color": COLORS["would_pass"], "line": {"width": 0}},
        )
    )
    fig.add_trace(
        go.Bar(
            x=x,
            y=[s.would_block for s in result.seconds],
            name="would block",
            marker={"color": COLORS["would_block"], "line": {"width": 0}},
        )
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=[s.blocked_now for s in result.seconds],
            name="blocked by rules in force",
            mode="lines",
            line={"color": COLORS["blocked_now"], "width": 2, "dash": "dot"},
        )
    )
    fig.update_layout(barmode="stack", bargap=0.0)
    return layout(fig, title, unit)


# How an alert rule's value is drawn, by its unit (``alerts.format.unit_of``): scale, axis title, and
# the threshold's text; a ratio is drawn in percent as the page writes it (95.0 %, not 0.95).
_ALERT_UNITS: dict[str, tuple[float, str, str]] = {
    "%": (100.0, "%", "{:.1f} %"),
    "ms": (1.0, "ms", "{:,.0f} ms"),
    "s": (1.0, "seconds", "{:,.0f} s"),
    "points": (1.0, "points", "{:+,.0f} points"),
    "breaker": (1.0, "breaker state", "{:g}"),
}
_BREAKER_TICKS = {0: "closed", 1: "open", 2: "half-open"}


def alert_metric_figure(
    points: list[dict], threshold: float | None, op: str | None, title: str, unit: str = ""
) -> go.Figure:
    """The value behind an alert over time (``points``: ``{"time": ISO 8601, "value": float}``) and
    its threshold as a dashed line, in the rule's ``unit`` (a ratio in %, breaker states named)."""
    scale, axis, fmt = _ALERT_UNITS.get(unit, (1.0, "rule value", "{:g}"))
    values = [p for p in points if p.get("value") is not None]
    if not values:
        return empty_figure(title, axis, "No metric data for this alert in the window")
    x = [pd.Timestamp(p["time"]).tz_convert("UTC").tz_localize(None) for p in values]
    fig = go.Figure(
        go.Scatter(
            x=x,
            y=[round(float(p["value"]) * scale, 3) for p in values],
            name="value",
            mode="lines+markers",
            line={"color": COLORS["p50"], "width": 3},
            marker={"size": 5},
        )
    )
    layout(fig, title, axis)
    if unit == "breaker":
        fig.update_yaxes(
            tickvals=list(_BREAKER_TICKS), ticktext=list(_BREAKER_TICKS.values()), range=[-0.2, 2.2]
        )
    if threshold is not None:
        shown = fmt.format(threshold * scale)
        if unit == "breaker" and float(threshold).is_integer():
            shown = _BREAKER_TICKS.get(int(threshold), shown)
        fig.add_hline(
            y=threshold * scale,
            line={"color": COLORS["error"], "dash": "dash", "width": 2},
            annotation_text=f"fires when {op or ''} {shown}",
            annotation_position="top right",
            annotation_font={"color": COLORS["error"]},
        )
    fig.update_layout(showlegend=False)
    return fig


def suggest_figure(evidence: dict, proposal_qps: float | None = None,
                   title: str = "Throughput vs response time (per node)") -> go.Figure:
    """The evidence of a threshold suggestion (``dashboards.suggest.Evidence.to_dict()``): every recorded
    point, the per-bin medians, the knee and the proposed QPS threshold."""
    pts = evidence.get("points") or []
    if not pts:
        return empty_figure(title, "response time (ms)", "No recorded traffic with a response time")
    fig = go.Figure()
    fig.add_trace(go.Scattergl(
        x=[p["qps"] for p in pts], y=[p["rt_ms"] for p in pts], mode="markers", name="recorded second",
        marker={"size": 5, "color": COLORS["offered"], "opacity": 0.5},
    ))
    bins = evidence.get("bins") or []
    if bins:
        fig.add_trace(go.Scatter(
            x=[b["qps"] for b in bins], y=[b["rt_ms"] for b in bins], mode="lines+markers",
            name="median per bin", line={"color": COLORS["rt"], "width": 3},
        ))
    knee = evidence.get("knee")
    if knee:
        fig.add_vline(x=knee["qps"], line={"color": COLORS["error"], "dash": "dash", "width": 2},
                      annotation_text=f"knee {knee['qps']:.0f}/s", annotation_position="top left")
    if proposal_qps is not None:
        fig.add_vline(x=proposal_qps, line={"color": COLORS["pass"], "dash": "dot", "width": 2},
                      annotation_text=f"proposed {proposal_qps:.0f}/s", annotation_position="bottom right")
    layout(fig, title, "response time (ms)")
    fig.update_layout(hovermode="closest")
    fig.update_xaxes(title_text="throughput (calls/s per node)")
    return fig
