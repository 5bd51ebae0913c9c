"""``tradeguard bench surge --quick`` end to end, very short: real node processes, real HTTP.

One run (it was two of ~30 s each): two guarded nodes under cluster rules on Redis, which also
covers everything a one-node run reports; without Redis (and outside CI) one node.
Asserts the result's structure and that no unit was oversold — never speed (this is a
shared two-core machine; the numbers are the benchmark's business, not the test's).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.services import need

pytestmark = pytest.mark.e2e


def _redis_up(url: str = "redis://127.0.0.1:6379/0") -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:
        return False


def test_surge_bench_quick_runs_end_to_end_on_two_nodes_under_cluster_rules() -> None:
    redis_up = _redis_up()
    if os.environ.get("TRADEGUARD_REQUIRE_SERVICES") == "1":  # in CI the two-node run is the test
        need(redis_up, "no Redis at 127.0.0.1:6379: the two-node surge needs it for its cluster rules")
    nodes = 2 if redis_up else 1
    argv = [
        sys.executable, "-m", "tradeguard.cli", "bench", "surge", "--json", "--quick", "--nodes", str(nodes),
        "--surge-s", "3", "--recovery-s", "3", "--multiplier", "3", "--max-steps", "1",
        "--start-rate", "6", "--timeout-s", "2",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=200)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])

    assert result["nodes"] == nodes
    assert result["oversold"] == 0 and result["stock"]["consistent"], result["stock"]
    assert result["capacity_rps"] > 0
    for key in ("goodput_ratio", "p99_ms", "timeouts"):
        assert key in result["unguarded"]
    for key in ("goodput_ratio", "p99_ms", "p99_ratio", "rejected", "timeouts", "place_p99_ms"):
        assert key in result["guarded"]
    assert isinstance(result["guarded"]["rejected"], int)
    assert isinstance(result["recovery_s"], int | float) and result["recovery_s"] >= 0
    bound = result["bound"]
    assert bound["max_payments_per_s"] == pytest.approx(
        bound["gateway_slots"] * 1000 / bound["gateway_latency_ms"]
    )
    assert "loadgen_behind_ms" in result
    # how the nodes served: uvicorn's parser and loop, and the GIL switch interval they were given
    assert result["server"]["http"] in ("httptools", "h11") and result["server"]["switch_interval_ms"] == 0.5
    # every order the generator sent is accounted for in exactly one outcome
    for phase in (result["unguarded"], result["guarded"], result["recovery"]):
        outcomes = sum(phase[k] for k in ("ok", "queued", "rejected", "timeouts", "refused", "errors"))
        assert outcomes == phase["orders"]
    # the guarded node(s) ran the demo rules from the rule store
    assert result["rules"]["version"] is not None
    if nodes == 2:
        # the guarded nodes shared their cluster rules through Redis, and saw each other
        assert result["cluster"]["mode"] == "cluster", result["cluster"]
        assert result["cluster"]["live_nodes"] == 2
