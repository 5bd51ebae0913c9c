"""The worker leader lease, fenced writes and claimed deliveries (SQLite control DB, fake clock).

The subprocess test with two real workers on PostgreSQL and SIGKILL is
``tests/integration/alerts/test_worker_ha.py``."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest

from alerts.engine import AlertEngine
from alerts.service import AlertService
from alerts.store import AlertStore
from collectors.lease import Lease, LeaseLost, WorkerBeats
from tests.unit.alerts.fakes import FakeClock, FakeMetricStore
from tradeguard.bootstrap import Worker

DOC = """
rules:
  - name: ErrorsHigh
    query: {measurement: resource_stats, field: error, aggregate: sum, window: 1m, group_by: [instance]}
    op: ">"
    threshold: 10
    for: 0s
route: {receiver: pager, group_by: [alertname], group_wait: 0s, group_interval: 1m, repeat_interval: 1h}
channels:
  - {name: hook, kind: webhook, url: "http://127.0.0.1:9/hook"}
  - {name: mail, kind: webhook, url: "http://127.0.0.1:9/mail"}
  - {name: pagerlog, kind: log}
escalation_policies:
  - name: pager
    steps:
      - channels: [hook]
      - {wait: 10m, channels: [mail]}
      - {wait: 10m, channels: [pagerlog]}
"""


class Recording:
    def __init__(self) -> None:
        self.sent: list[tuple[dict, dict]] = []

    def send(self, payload, extra) -> None:
        self.sent.append((payload, dict(extra)))


@pytest.fixture
def env(tmp_path):
    clock = FakeClock()
    url = f"sqlite:///{tmp_path}/control.db"
    metrics = FakeMetricStore()
    hook, mail, plog = Recording(), Recording(), Recording()
    senders = {"hook": hook, "mail": mail, "pagerlog": plog}

    def worker(name: str) -> Worker:
        store = AlertStore(url)
        lease = Lease(store.engine, name="worker-leader", holder=name, ttl_s=10, clock=clock)
        engine = AlertEngine(store, metrics, clock=clock, senders=senders, lease=lease)
        return Worker(engine, leader=lease, beats=WorkerBeats(store.engine, clock=clock), instance=name)

    a, b = worker("a"), worker("b")
    service = AlertService(AlertStore(url), clock=clock)
    service.apply(DOC, by="test")
    yield SimpleNamespace(
        clock=clock, metrics=metrics, a=a, b=b, hook=hook, mail=mail, plog=plog, service=service
    )
    for w in (a, b):
        w.engine.store.close()
    service.store.close()


def failing(env) -> None:
    env.metrics.add(
        "resource_stats",
        {"app": "x", "instance": "n1", "resource": "r"},
        {"error": 50},
        env.clock.now() - timedelta(seconds=1),
    )


def test_one_leader_takes_over_after_the_ttl_and_is_fenced(env):
    assert env.a.tick() == "leader" and env.b.tick() == "standby"
    failing(env)
    env.a.evaluate()
    env.b.evaluate()  # a standby does nothing
    env.a.deliver()
    env.b.deliver()
    assert len(env.hook.sent) == 1
    # a stops renewing (paused or killed): after the TTL, b takes over with a higher token
    env.clock.advance(11)
    assert env.b.tick() == "leader"
    assert env.b.leader.token == env.a.leader.token + 1
    # a wakes up believing it leads (its own monotonic clock saw no time pass): its writes are fenced
    assert env.a.leading
    with pytest.raises(LeaseLost), env.a.engine.store.begin():
        pass
    failing(env)
    env.service.store.enqueue(
        channel="hook",
        reason="group",
        group_key="k",
        alert_ids=[1],
        payload={"alerts": []},
        extra=None,
        now=env.clock.now(),
    )
    assert env.a.engine.deliver()["sent"] == 0  # its claim is refused by the lease
    assert env.b.engine.deliver()["sent"] == 1
    beats = {
        w["holder"]: w["role"] for w in WorkerBeats(env.b.engine.store.engine, clock=env.clock).workers()
    }
    assert beats["b"] == "leader"


def test_two_workers_racing_for_a_free_lease_one_wins(env):
    roles = {"a": env.a.tick(), "b": env.b.tick()}
    assert sorted(roles.values()) == ["leader", "standby"]
    env.clock.advance(5)  # within the 10 s lease: the winner renews it, the other stays standby
    assert {"a": env.a.tick(), "b": env.b.tick()} == roles
    assert sum(1 for w in (env.a, env.b) if w.leader.token is not None) == 1


def test_a_renewal_beats_a_takeover_attempt_on_the_same_row(env):
    assert env.a.tick() == "leader"
    env.clock.advance(11)
    # b read the expired row, but a renews before b's compare-and-set: b must not win
    token = env.a.leader.token
    assert env.a.leader.acquire() == token
    assert env.b.leader.acquire() is None


def test_a_claim_left_by_a_dead_leader_is_sent_once_by_its_successor(env):
    store = env.a.engine.store
    assert env.a.tick() == "leader"
    nid = store.enqueue(
        channel="hook",
        reason="group",
        group_key="g",
        alert_ids=[1],
        payload={"alerts": []},
        extra=None,
        now=env.clock.now(),
    )
    # a claims it, then dies before recording (it may or may not have sent it)
    [claimed] = store.claim_due(
        env.clock.now(), holder="a", token=env.a.leader.token, fenced=env.a.leader.fenced()
    )
    env.clock.advance(11)
    assert env.b.tick() == "leader"
    assert env.b.engine.deliver()["sent"] == 1
    # a's late record is refused: the delivery log holds exactly one success
    assert not store.record_delivery(
        nid,
        "hook",
        at=env.clock.now(),
        ok=True,
        error=None,
        duration_ms=1,
        status="sent",
        attempts=1,
        next_attempt_at=env.clock.now(),
        holder="a",
        token=claimed["claim_token"],
    )
    assert [d["ok"] for d in store.deliveries(notification_id=nid)] == [True]
    [(_, extra)] = env.hook.sent
    assert extra["idempotency_key"] == claimed["idempotency_key"]


def test_manual_escalation(env):
    from alerts.errors import AlertConfigError, InvalidAction

    assert env.a.tick() == "leader"
    failing(env)
    env.a.evaluate()
    env.a.deliver()
    [alert] = env.service.list_alerts(("firing",))
    out = env.service.escalate(alert["id"], "bob")
    assert out["escalation_step"] == 1 and len(out["queued_notifications"]) == 1
    env.a.deliver()
    [(payload, _)] = env.mail.sent
    assert payload["receiver"] == "pager/step2"
    events = env.service.timeline(alert["id"])["events"]
    assert [(e["kind"], e["by"]) for e in events if e["kind"] == "escalated"] == [("escalated", "bob")]
    env.service.escalate(alert["id"], "bob")
    with pytest.raises(InvalidAction, match="last of policy"):
        env.service.escalate(alert["id"], "bob")
    with pytest.raises(AlertConfigError, match="1 to 3"):
        env.service.escalate(alert["id"], "bob", to_step=4)
    env.service.escalate(alert["id"], "carol", to_step=2)  # re-notify step 2
    env.a.deliver()
    assert len(env.mail.sent) == 2
    env.service.resolve(alert["id"], "bob")
    with pytest.raises(InvalidAction, match="only a firing alert"):
        env.service.escalate(alert["id"], "bob")
