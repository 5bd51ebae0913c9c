"""Threshold suggestions on synthetic recorded traffic."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from collectors.query import Row
from dashboards.figures import suggest_figure
from dashboards.suggest import bucket_for, suggest_from_rows

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _rows(rt_of, qps_of, n: int = 1800, seed: int = 7, errors_of=None) -> list[Row]:
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        q = max(1.0, qps_of(i, rnd))
        rt = rt_of(q) * rnd.uniform(0.9, 1.1)
        err = errors_of(q) if errors_of else 0.0
        rows.append(Row(T0 + timedelta(seconds=i), {"instance": "n1"},
                        {"pass": q, "success": q * (1 - err), "error": q * err, "rt_avg_ms": rt,
                         "concurrency": q * rt / 1000}))
    return rows


def _knee_service(n_knee: float, slope: float):
    """A simulated service: flat 20 ms up to ``n_knee``/s, then queueing makes RT climb."""
    return lambda q: 20.0 + slope * max(0.0, q - n_knee)


@pytest.mark.parametrize(("n_knee", "slope"), [(200.0, 0.5), (80.0, 3.0), (500.0, 0.1)])
def test_knee_within_10_percent(n_knee: float, slope: float) -> None:
    rows = _rows(_knee_service(n_knee, slope), lambda i, r: r.uniform(0.1, 1.6) * n_knee)
    out = suggest_from_rows("order.place", rows)
    assert out.suggestion is not None, out.reason
    assert abs(out.suggestion.knee_qps - n_knee) <= 0.1 * n_knee
    assert out.suggestion.qps == int(out.suggestion.knee_qps * 0.8)
    # Little's law: concurrency = throughput × RT at the knee, less the margin
    assert out.suggestion.concurrency >= 1
    assert out.suggestion.concurrency == pytest.approx(0.8 * out.suggestion.knee_qps * 0.020, abs=1.01)
    d = out.to_dict()
    assert d["qps"]["threshold"] == out.suggestion.qps and d["evidence"]["knee"]["qps"]
    fig = suggest_figure(d["evidence"], d["qps"]["threshold"])
    assert len(fig.data) == 2


def test_flat_traffic_is_not_enough_evidence() -> None:
    rows = _rows(_knee_service(200, 0.5), lambda i, r: r.uniform(95, 105))
    out = suggest_from_rows("order.place", rows)
    assert out.suggestion is None
    assert "not enough evidence" in out.reason
    assert out.to_dict()["suggestion"] is None


def test_too_little_load() -> None:
    rows = _rows(_knee_service(200, 0.5), lambda i, r: r.uniform(10, 400), n=20)
    out = suggest_from_rows("order.place", rows)
    assert out.suggestion is None and "too little load" in out.reason


def test_no_knee_when_latency_never_rises() -> None:
    rows = _rows(lambda q: 20.0, lambda i, r: r.uniform(10, 400))
    out = suggest_from_rows("order.place", rows)
    assert out.suggestion is None and out.reason.startswith("no knee")


def test_steady_rise_is_no_knee() -> None:
    rows = _rows(lambda q: 5.0 + 0.2 * q, lambda i, r: r.uniform(10, 400))
    out = suggest_from_rows("order.place", rows)
    assert out.suggestion is None and "no knee" in out.reason


def test_errors_before_latency_knee() -> None:
    rows = _rows(_knee_service(300, 0.5), lambda i, r: r.uniform(20, 450),
                 errors_of=lambda q: 0.3 if q > 150 else 0.0)
    out = suggest_from_rows("payment.charge", rows)
    assert out.suggestion is not None and out.suggestion.method == "errors"
    assert abs(out.suggestion.knee_qps - 150) <= 20


def test_range_limits() -> None:
    assert bucket_for(3600) == 1
    assert bucket_for(7 * 86400) == 31
    with pytest.raises(ValueError, match="7 days"):
        bucket_for(8 * 86400)
