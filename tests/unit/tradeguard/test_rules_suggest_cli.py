"""``tradeguard rules suggest`` against an embedded metric store seeded with a known knee."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from collectors.query import Point
from collectors.registry import open_store
from tradeguard.cli import main
from tradeguard.settings import load_settings


@pytest.fixture
def var(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADEGUARD_VAR_DIR", str(tmp_path / "var"))
    for name in ("TRADEGUARD_CONTROL_DB", "TRADEGUARD_METRICS_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _seed(resource: str, qps_of, knee: float = 150.0, n: int = 900) -> None:
    s = load_settings()
    s.ensure_var_dir()
    store = open_store(s.metrics_url)
    rnd = random.Random(3)
    now = datetime.now(UTC).replace(microsecond=0)
    pts = []
    for i in range(n):
        q = float(int(qps_of(rnd)))
        rt = (20.0 + 0.8 * max(0.0, q - knee)) * rnd.uniform(0.92, 1.08)
        pts.append(Point("resource_stats", {"app": s.app, "instance": "n1", "resource": resource},
                         {"pass": q, "block_flow": 0.0, "block_breaker": 0.0, "block_system": 0.0,
                          "block_param": 0.0, "success": q, "error": 0.0, "rt_avg_ms": rt,
                          "rt_max_ms": rt * 2,
                          "concurrency": q * rt / 1000},
                         now - timedelta(seconds=n - i)))
    store.write(pts)
    store.close()


def run(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_suggest_json_finds_the_knee(var, capsys):
    _seed("order.place", lambda r: r.uniform(15, 240))
    code, out = run(capsys, "rules", "suggest", "order.place", "--range", "1h", "--json")
    assert code == 0
    body = json.loads(out)
    assert body["suggestion"] is not None, body["reason"]
    assert abs(body["suggestion"]["knee_qps"] - 150) <= 15
    assert body["qps"]["threshold"] == int(body["suggestion"]["knee_qps"] * 0.8)
    assert body["concurrency"]["threshold"] >= 1
    assert body["evidence"]["knee"]["qps"] and body["evidence"]["points"]
    assert body["impact"]["offered"] > 0 and body["impact"]["would_block"] > 0


def test_suggest_flat_traffic_says_so(var, capsys):
    _seed("order.get", lambda r: r.uniform(48, 52))
    code, out = run(capsys, "rules", "suggest", "order.get", "--range", "1h", "--json")
    body = json.loads(out)
    assert code == 0 and body["suggestion"] is None and body["qps"] is None
    assert "not enough evidence" in body["reason"]


def test_suggest_bad_range(var, capsys):
    assert main(["rules", "suggest", "order.place", "--range", "8d"]) == 2
