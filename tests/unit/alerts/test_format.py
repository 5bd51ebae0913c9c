"""Alert summaries show values rounded with their rule's unit, as the console does (alerts.format)."""

from __future__ import annotations

from datetime import timedelta

from alerts.format import drop_written_units, unit_of, value_text
from alerts.model import AlertRule, MetricQuery, Ratio
from console.services import alert_actions


def rule(query: MetricQuery | None, summary: str, threshold: float, kind: str = "metric") -> AlertRule:
    return AlertRule(name="R", kind=kind, query=query, threshold=threshold, annotations={"summary": summary})


def test_a_ratio_summary_shows_a_percentage_not_the_raw_fraction():
    r = rule(
        MetricQuery(
            "payments", ratio=Ratio(("success",), ("success", "failure")), window=timedelta(minutes=1)
        ),
        "Payment success rate of {app} is {value} (below {threshold})",
        0.95,
    )
    out = r.render_annotations({"app": "shop"}, 0.39191919)
    assert out["summary"] == "Payment success rate of shop is 39.2 % (below 95.0 %)"


def test_a_unit_the_text_already_writes_is_not_said_twice():
    r = rule(
        MetricQuery("resource_stats", field="rt_avg_ms", aggregate="p99"),
        "order.place p99 on {instance} is {value} ms (above {threshold} ms)",
        500,
    )
    out = r.render_annotations({"instance": "n1"}, 812.4321)
    assert out["summary"] == "order.place p99 on n1 is 812 ms (above 500 ms)"
    lag = rule(MetricQuery("relay", field="relay_lag_s", aggregate="max"), "{value} s behind", 30)
    assert lag.render_annotations({}, 41.7)["summary"] == "42 s behind"
    beat = rule(None, "No heartbeat for {value} s", 30, kind="heartbeat")
    assert beat.render_annotations({}, None)["summary"] == "No heartbeat for no data"
    grow = rule(
        MetricQuery("collector", field="outbox_depth", function="delta"), "grew by {value} points", 50
    )
    assert grow.render_annotations({}, 1234.0)["summary"] == "grew by +1,234 points"


def test_breaker_states_by_name_and_unknown_units_rounded():
    brk = rule(MetricQuery("breaker_events", field="state", aggregate="last"), "{resource} is {value}", 1)
    assert (
        brk.render_annotations({"resource": "payment.charge"}, 2.0)["summary"]
        == "payment.charge is half-open"
    )
    plain = rule(MetricQuery("m", field="count"), "{value} > {threshold} and {missing}", 10)
    assert plain.render_annotations({}, 12345.678)["summary"] == "1.235e+04 > 10 and {missing}"


def test_only_a_unit_written_right_after_the_placeholder_is_dropped():
    assert drop_written_units("{value} s since", "s") == "{value} since"
    assert drop_written_units("{value} seconds", "s") == "{value} seconds"
    assert drop_written_units("{value} ms", "%") == "{value} ms"
    assert drop_written_units("{value} %", "%") == "{value}"


def test_the_console_uses_the_same_helper():
    assert alert_actions.value_text is value_text and alert_actions.unit_of is unit_of
    doc = {"query": {"measurement": "payments", "ratio": {"numerator": ["s"], "denominator": ["s", "f"]}}}
    assert unit_of(doc) == "%" and value_text(0.762, unit_of(doc)) == "76.2 %"
