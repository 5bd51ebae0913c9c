"""Two real ``tradeguard worker`` processes on one PostgreSQL control DB (a fresh database per test).

- started at the same instant, exactly one leads;
- a firing alert notifies a loopback webhook; SIGKILL the leader: the standby leads within 15 s,
  and the receiver got every notification that was due, each once by its Idempotency-Key (receivers
  deduplicate by it; tradeguard's delivery log holds exactly one success per notification).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa

from alerts.store import AlertStore
from collectors.points import make_point
from collectors.registry import open_store
from tests.services import need_postgres
from tradeguard.bootstrap import worker_status
from tradeguard.settings import load_settings

pytestmark = pytest.mark.integration

RULES = """
rules:
  - name: ErrorsHigh
    query: {measurement: resource_stats, field: error, aggregate: sum, window: 1m, group_by: [instance]}
    op: ">"
    threshold: 10
    for: 0s
    severity: critical
route: {receiver: pager, group_by: [alertname], group_wait: 0s, group_interval: 1s, repeat_interval: 4s}
channels:
  - {name: hook, kind: webhook, url: "${HA_HOOK_URL}"}
escalation_policies:
  - name: pager
    steps: [{channels: [hook]}]
"""


class Receiver:
    def __init__(self) -> None:
        self.keys: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.keys.append(self.headers.get("Idempotency-Key", ""))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def cluster(tmp_path):
    base = need_postgres()
    name = f"tg_ha_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    control = base.rsplit("/", 1)[0] + f"/{name}"
    rx = Receiver()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TRADEGUARD_") or k == "TRADEGUARD_REQUIRE_SERVICES"
    }
    env.update(
        PYTHONUNBUFFERED="1",
        PYTHONFAULTHANDLER="1",
        PYTHONPATH=str(Path(__file__).resolve().parents[3]),
        TRADEGUARD_VAR_DIR=str(tmp_path / "var"),
        TRADEGUARD_CONTROL_DB=control,
        TRADEGUARD_ALERT_INTERVAL_S="1",
        HA_HOOK_URL=rx.url,
    )
    procs: list[subprocess.Popen] = []

    def start(n: int) -> list[subprocess.Popen]:
        started = [
            subprocess.Popen(
                [sys.executable, "-m", "tradeguard.cli", "worker", "--deliver-interval", "1"],
                cwd=tmp_path,
                env={**env, "TRADEGUARD_INSTANCE": f"w{i}"},
                stdout=open(tmp_path / f"w{i}.log", "w"),  # noqa: SIM115
                stderr=subprocess.STDOUT,
            )
            for i in range(n)
        ]
        procs.extend(started)
        return started

    def cli_status() -> dict:
        out = subprocess.run(
            [sys.executable, "-m", "tradeguard.cli", "worker", "status", "--json"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    settings = load_settings(var_dir=tmp_path / "var", control_db=control)

    def status() -> dict:
        return worker_status(settings)

    def logs() -> str:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: every thread's stack into its log
        time.sleep(1)
        return "\n".join(f.read_text()[-6000:] for f in sorted(tmp_path.glob("w*.log")))

    yield type(
        "Cluster",
        (),
        {
            "env": env,
            "control": control,
            "rx": rx,
            "start": staticmethod(start),
            "status": staticmethod(status),
            "cli_status": staticmethod(cli_status),
            "logs": staticmethod(logs),
            "tmp": tmp_path,
        },
    )
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(10)
    rx.close()
    with admin.connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def wait(predicate, timeout: float, every: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    return predicate()


def leaders(cluster) -> list[dict]:
    return [w for w in cluster.status()["workers"] if w["role"] == "leader"]


def test_two_workers_one_leader_and_takeover_after_sigkill(cluster):
    store = AlertStore(cluster.control)
    from alerts.service import AlertService

    AlertService(store).apply(RULES, by="test")
    metrics = open_store(f"sqlite:///{cluster.tmp}/var/metrics.db")
    now = datetime.now(UTC).replace(microsecond=0)
    metrics.write(
        [
            make_point(
                "resource_stats",
                {"app": "a", "instance": "n1", "resource": "r"},
                {"error": 50.0},
                now + timedelta(seconds=s),
            )
            for s in range(-60, 180)
        ]
    )
    metrics.close()
    procs = cluster.start(2)  # the same instant
    both = wait(
        lambda: len([w for w in cluster.status()["workers"] if w["role"] in ("leader", "standby")]) == 2, 30
    )
    assert both, f"{cluster.status()}\n{cluster.logs()}"
    report = cluster.cli_status()  # the CLI: instance, host, pid, role, last beat
    assert sorted(w["role"] for w in report["workers"]) == ["leader", "standby"], report
    assert {"instance", "host", "pid", "role", "last_beat"} <= set(report["workers"][0])
    [leader] = leaders(cluster)
    # the alert fires and the leader notifies (repeat every 4 s)
    assert wait(lambda: len(cluster.rx.keys) >= 2, 30), f"{cluster.rx.keys}\n{cluster.logs()}"
    victim = next(p for p in procs if p.pid == leader["pid"])
    survivor = next(p for p in procs if p.pid != leader["pid"])
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    # the standby takes the lease once it runs out (how fast: `tradeguard bench alerts`, takeover_s)
    new = wait(lambda: [w for w in leaders(cluster) if w["pid"] == survivor.pid], 20, every=0.2)
    assert new, f"the standby never led\n{cluster.logs()}"
    before = len(cluster.rx.keys)
    assert wait(lambda: len(cluster.rx.keys) >= before + 2, 20), "the new leader sends the repeats"
    survivor.send_signal(signal.SIGTERM)
    survivor.wait(20)
    notes = store.notifications(limit=1000)
    sent = {n["idempotency_key"] for n in notes if n["status"] == "sent"}
    received = set(cluster.rx.keys)
    assert all(received), "every post carries an Idempotency-Key"
    assert sent <= received, "every notification recorded as sent reached the receiver"
    # every notification that was due got out: none left pending but those queued in the last second
    cutoff = datetime.now(UTC) - timedelta(seconds=3)
    assert not [
        n
        for n in notes
        if n["status"] == "pending" and n["created_at"] < cutoff and n["idempotency_key"] not in received
    ]
    # exactly once in the delivery log
    for n in notes:
        oks = [d for d in store.deliveries(notification_id=n["id"]) if d["ok"]]
        assert len(oks) == (1 if n["status"] == "sent" else 0), n
    # a key received twice is a resend across the takeover, never a second notification
    dupes = {k for k in received if cluster.rx.keys.count(k) > 1}
    assert len(dupes) <= 1, dupes
    store.close()
