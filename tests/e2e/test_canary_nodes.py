"""Canary rollout on two real ``tradeguard node`` processes sharing a temp SQLite control DB.

Only the named node runs the canary document; the CLI's ``canary status`` rolls it back when the
canary's error % (seeded into the metric store) rises past the margin; promote moves both nodes
within 5 s. Every step leaves an audit row.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from collectors.query import Point
from collectors.registry import open_store
from tests.e2e.test_node_http import AUTH, cli, node_env, wait_healthy
from tests.services import free_port

pytestmark = pytest.mark.e2e

BASE = {"flow": [{"resource": "order.get", "threshold": 1000}]}
CANARY = {"flow": [{"resource": "order.get", "threshold": 7}]}


def run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(*args), env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def rules_of(url: str) -> dict:
    r = httpx.get(f"{url}/ops/rules", headers=AUTH, timeout=3)
    assert r.status_code == 200, r.text
    return r.json()


def threshold(view: dict) -> float:
    return view["rules"]["flow"][0]["threshold"]


def wait_for(pred, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("canary")
    env = node_env(tmp)
    assert run(env, tmp, "seed").returncode == 0
    base = tmp / "base.yaml"
    base.write_text(yaml.safe_dump(BASE))
    out = run(env, tmp, "rules", "apply", "-f", str(base), "--by", "e2e", "--why", "base")
    assert out.returncode == 0, out.stderr
    nodes, procs = {}, []
    try:
        for name in ("node-a", "node-b"):
            port = free_port()
            log_path = tmp / f"{name}.log"
            with open(log_path, "w") as fh:
                proc = subprocess.Popen(
                    cli("node", "--port", str(port)),
                    env={**env, "TRADEGUARD_INSTANCE": name},
                    cwd=tmp,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            procs.append(proc)
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, proc, log_path)
            nodes[name] = url
        yield tmp, env, nodes
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()


def seed_errors(env: dict[str, str], instance: str, error: float, success: float) -> None:
    store = open_store(env["TRADEGUARD_METRICS_URL"])
    now = datetime.now(UTC).replace(microsecond=0)
    store.write(
        [
            Point(
                "resource_stats",
                {"app": "tradeguard", "instance": instance, "resource": "order.get"},
                {
                    "pass": success + error,
                    "success": success,
                    "error": error,
                    "rt_avg_ms": 5.0,
                    "rt_max_ms": 9.0,
                    "block_flow": 0.0,
                    "block_breaker": 0.0,
                    "block_system": 0.0,
                    "block_param": 0.0,
                    "concurrency": 1.0,
                },
                now - timedelta(seconds=s),
            )
            for s in range(1, 6)
        ]
    )
    store.close()


def test_canary_on_one_node_auto_rollback_then_promote(fleet):
    tmp, env, nodes = fleet
    doc = tmp / "canary.yaml"
    doc.write_text(yaml.safe_dump(CANARY))
    assert wait_for(lambda: all(threshold(rules_of(u)) == 1000 for u in nodes.values()))

    # 1. canary on node-a only
    started = time.time()  # the comparison counts seconds from the canary's start on
    out = run(
        env,
        tmp,
        "rules",
        "canary",
        "start",
        "-f",
        str(doc),
        "--nodes",
        "node-a",
        "--by",
        "alice",
        "--why",
        "tighter order.get",
        "--margin",
        "5",
        "--min-calls",
        "10",
    )
    assert out.returncode == 0, out.stderr
    assert wait_for(lambda: threshold(rules_of(nodes["node-a"])) == 7)
    a, b = rules_of(nodes["node-a"]), rules_of(nodes["node-b"])
    assert a["canary"] is not None and b["canary"] is None
    assert threshold(b) == 1000
    # a second canary is refused while one runs
    again = run(
        env, tmp, "rules", "canary", "start", "-f", str(doc), "--nodes", "node-b", "--by", "x", "--why", "y"
    )
    assert again.returncode == 1 and "still running" in again.stderr
    # heartbeats report which node runs the canary
    from guardians.fleet import Fleet

    fl = Fleet(f"sqlite:///{tmp}/var/control.db")
    try:
        assert wait_for(
            lambda: {n.instance: n.canary for n in fl.nodes()} == {"node-a": a["canary"], "node-b": None}
        )
    finally:
        fl.close()

    # 2. the canary's error % rises past the margin: status rolls it back (the seeded seconds must
    # fall after the canary's start, or a fast run compares nothing)
    time.sleep(max(0.0, started + 6.5 - time.time()))
    seed_errors(env, "node-a", error=10, success=10)  # 50 %
    seed_errors(env, "node-b", error=0, success=20)  # 0 %
    out = run(env, tmp, "rules", "canary", "status", "--json")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["comparison"]["breached"] is True and status.get("auto_rolled_back") is True
    assert status["canary"]["state"] == "aborted"
    assert any(e["action"] == "auto_abort" and e["by"] == "canary-guard" for e in status["events"])
    assert wait_for(lambda: threshold(rules_of(nodes["node-a"])) == 1000)
    assert rules_of(nodes["node-a"])["canary"] is None

    # 3. a new canary (no auto), promoted by hand: every node within 5 s
    out = run(
        env,
        tmp,
        "rules",
        "canary",
        "start",
        "-f",
        str(doc),
        "--nodes",
        "node-b",
        "--by",
        "alice",
        "--why",
        "again",
        "--no-auto",
    )
    assert out.returncode == 0, out.stderr
    assert wait_for(lambda: threshold(rules_of(nodes["node-b"])) == 7)
    t0 = time.monotonic()
    out = run(env, tmp, "rules", "canary", "promote", "--by", "alice", "--why", "looks good", "--json")
    assert out.returncode == 0, out.stderr
    promoted = json.loads(out.stdout)["promoted_version"]
    assert wait_for(
        lambda: all(
            threshold(v := rules_of(u)) == 7 and v["version"] == promoted and v["canary"] is None
            for u in nodes.values()
        ),
        timeout=5.0,
    ), {n: rules_of(u) for n, u in nodes.items()}
    assert time.monotonic() - t0 < 5.0 + 2.0  # (the CLI's own start-up is included)
    hist = json.loads(run(env, tmp, "rules", "history", "--json").stdout)
    assert hist[0]["version"] == promoted and "canary" in hist[0]["why"] and hist[0]["created_by"] == "alice"
    # nothing to promote or abort any more
    out = run(env, tmp, "rules", "canary", "abort", "--by", "alice", "--why", "late")
    assert out.returncode == 1 and "no canary" in out.stderr
