"""Three real ``tradeguard node`` processes share a global limit through their own Redis.

The test starts its own ``redis-server`` on a free port (so stopping it does not
disturb the machine's Redis), seeds one trading DB, applies a cluster rule through
the control DB, and drives every node at twice its share:

1. cluster mode: the three nodes together admit N per second within 5 %;
2. Redis stopped: no errors reach callers (only 200 and 429), each node falls back
   to N ÷ 3 live nodes and says so in ``/ops/health``;
3. Redis back: the nodes return to cluster mode and hold N again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.services import free_port, need, need_binary

N = 60  # the global limit, calls per second across all nodes
PER_NODE = 40  # offered per node per second (120 in all: twice the limit)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tradeguard.cli", *args]


def start_redis(port: int, tmp: Path) -> subprocess.Popen[bytes]:
    binary = need_binary("redis-server", "redis-server")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    import socket

    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail("redis-server did not start")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def health(url: str) -> dict:
    return httpx.get(f"{url}/ops/health", timeout=3).json()


def wait_for(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def drive(urls: list[str], seconds: int) -> tuple[int, Counter, list[int]]:
    """Open-loop load from the next whole second for ``seconds``: PER_NODE/s to each node.

    Returns (admitted, status counts, admitted per second) for requests sent in the interval.
    """
    start = int(time.time()) + 1
    statuses: Counter = Counter()
    per_second = [0] * seconds
    lock = threading.Lock()

    def one(url: str) -> None:
        with httpx.Client(timeout=5) as client:
            for i in range(seconds * PER_NODE):
                at = start + i / PER_NODE
                delay = at - time.time()
                if delay > 0:
                    time.sleep(delay)
                try:
                    code = client.get(f"{url}/shops").status_code
                except httpx.HTTPError as exc:
                    code = type(exc).__name__
                with lock:
                    statuses[code] += 1
                    if code == 200:
                        per_second[int(at - start)] += 1

    threads = [threading.Thread(target=one, args=(u,)) for u in urls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(per_second), statuses, per_second


@pytest.mark.timeout(120)
def test_three_nodes_hold_a_global_limit_and_survive_redis_going_away(tmp_path):
    need(os.path.exists("/usr/bin/redis-server"), "redis-server is not installed (/usr/bin/redis-server)")
    rport = free_port()
    redis = start_redis(rport, tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEGUARD_")}
    env.update(
        TRADEGUARD_VAR_DIR=str(tmp_path / "var"),
        TRADEGUARD_TRADING_DB=f"sqlite:///{tmp_path}/trading.db",
        TRADEGUARD_CONTROL_DB=f"sqlite:///{tmp_path}/control.db",
        TRADEGUARD_METRICS_URL=f"sqlite:///{tmp_path}/metrics.db",
        TRADEGUARD_REDIS_URL=f"redis://127.0.0.1:{rport}/0",
        TRADEGUARD_HEARTBEAT_S="1",
        PYTHONUNBUFFERED="1",
    )
    procs: list[subprocess.Popen] = []
    logs: list[Path] = []
    try:
        seeded = subprocess.run(
            cli("seed"), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert seeded.returncode == 0, seeded.stderr
        rules = tmp_path / "rules.json"
        rules.write_text(json.dumps({"flow": [{"resource": "GET /shops", "threshold": N, "cluster": True}]}))
        applied = subprocess.run(
            cli("rules", "apply", "-f", str(rules), "--by", "test", "--why", "cluster limit"),
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert applied.returncode == 0, applied.stderr
        urls = []
        for _ in range(3):
            port = free_port()
            log_path = tmp_path / f"node-{port}.log"
            with open(log_path, "w") as fh:
                procs.append(
                    subprocess.Popen(
                        cli("node", "--port", str(port)),
                        env=env,
                        cwd=tmp_path,
                        stdout=fh,
                        stderr=subprocess.STDOUT,
                    )
                )
            logs.append(log_path)
            urls.append(f"http://127.0.0.1:{port}")

        def all_ready() -> bool:
            for u in urls:
                h = health(u)
                c = h["stores"].get("cluster", {})
                if c.get("mode") != "cluster" or c.get("cluster_rules") != 1 or c.get("live_nodes") != 3:
                    return False
            return True

        wait_for(all_ready, 45, "three nodes in cluster mode with the rule and 3 live nodes")

        # 1. cluster mode: N per second across the nodes
        admitted, statuses, per_second = drive(urls, 4)
        print("cluster:", admitted, per_second, dict(statuses))
        assert set(statuses) <= {200, 429}, statuses
        assert abs(admitted - 4 * N) <= 0.05 * 4 * N, (admitted, per_second, statuses)

        # 2. Redis stopped: fallback to N / 3 per node, no errors to callers
        stop(redis, signal.SIGKILL)
        admitted, statuses, per_second = drive(urls, 3)
        print("fallback:", admitted, per_second, dict(statuses))
        assert set(statuses) <= {200, 429}, statuses
        modes = [health(u)["stores"]["cluster"] for u in urls]
        assert all(m["mode"] == "fallback" and m["status"] == "degraded" for m in modes), modes
        assert all(health(u)["status"] == "degraded" for u in urls)
        # each node admits its share N / 3 per second (the first second may still hold leased tokens)
        assert abs(sum(per_second[1:]) - 2 * N) <= 0.05 * 2 * N + 3, (per_second, statuses)

        # 3. Redis back on the same port: cluster mode again
        redis = start_redis(rport, tmp_path)
        wait_for(
            lambda: all(health(u)["stores"]["cluster"]["mode"] == "cluster" for u in urls), 15, "cluster"
        )
        admitted, statuses, per_second = drive(urls, 3)
        print("back:", admitted, per_second, dict(statuses))
        assert set(statuses) <= {200, 429}, statuses
        assert abs(admitted - 3 * N) <= 0.05 * 3 * N, (admitted, per_second, statuses)
    except BaseException:
        for lp in logs:
            sys.stderr.write(f"--- {lp.name}\n{lp.read_text()[-2000:]}\n")
        raise
    finally:
        for p in procs:
            stop(p)
        stop(redis)
