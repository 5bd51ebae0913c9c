from datetime import UTC, datetime, timedelta

import pytest

from common.clock import FakeClock
from guardians import Engine, RuleValidationError
from guardians.fleet import Fleet
from guardians.store import RuleStore, VersionNotFound
from guardians.watcher import RuleWatcher

pytestmark = pytest.mark.integration

DOC1 = {"flow": [{"resource": "order.place", "threshold": 100}]}
DOC2 = {
    "flow": [{"resource": "order.place", "threshold": 50}],
    "breaker": [{"resource": "payment.charge", "strategy": "error_ratio", "threshold": 0.5}],
}


def test_versions_history_and_rollback(control_db_url, app_name):
    store = RuleStore(control_db_url, clock=FakeClock())
    try:
        assert store.current(app_name) is None and store.current_version(app_name) == 0
        v1 = store.apply(app_name, DOC1, "alice", "initial limits")
        v2 = store.apply(app_name, DOC2, "bob", "flash sale")
        assert (v1, v2) == (1, 2)
        assert store.apply(app_name, DOC2, "bob", "again") == 2  # identical: no new version
        cur = store.current(app_name)
        assert cur.version == 2 and cur.created_by == "bob" and cur.why == "flash sale"
        assert cur.created_at.tzinfo is not None
        assert cur.ruleset.flow[0].threshold == 50
        assert cur.diff["flow"]["removed"][0]["threshold"] == 100
        assert cur.diff["breaker"]["added"][0]["resource"] == "payment.charge"
        v3 = store.rollback(app_name, 1, "carol", "sale over")
        assert v3 == 3
        restored = store.current(app_name)
        assert restored.document == store.version(app_name, 1).document
        assert restored.restored_from == 1 and restored.created_by == "carol"
        assert [h.version for h in store.history(app_name)] == [3, 2, 1]
        assert app_name in store.apps()
        with pytest.raises(VersionNotFound):
            store.version(app_name, 99)
    finally:
        store.close()


def test_invalid_document_is_never_stored(control_db_url, app_name):
    store = RuleStore(control_db_url)
    try:
        store.apply(app_name, DOC1, "alice", "ok")
        with pytest.raises(RuleValidationError) as info:
            store.apply(app_name, {"flow": [{"resource": "x", "threshold": 0}]}, "mallory", "bad")
        assert info.value.errors[0][0] == "flow[0].threshold"
        assert store.current_version(app_name) == 1
        with pytest.raises(ValueError):
            store.apply(app_name, DOC2, "", "no author")
    finally:
        store.close()


def test_diff_against_current(control_db_url, app_name):
    store = RuleStore(control_db_url)
    try:
        assert "flow" in store.diff(app_name, DOC1)
        store.apply(app_name, DOC1, "a", "b")
        assert store.diff(app_name, DOC1) == {}
        d = store.diff(app_name, DOC2)
        assert set(d) == {"flow", "breaker"}
    finally:
        store.close()


def test_watcher_applies_new_versions_and_keeps_last_good_rules(control_db_url, app_name):
    store = RuleStore(control_db_url)
    engine = Engine(FakeClock())
    watcher = RuleWatcher(store, engine, app_name, interval_s=0.05)
    try:
        assert watcher.poll_once() is False and watcher.version is None
        store.apply(app_name, DOC1, "a", "b")
        assert watcher.poll_once() is True
        assert engine.rule_version == 1 and engine.ruleset.flow[0].threshold == 100
        assert watcher.poll_once() is False

        class Broken:
            def current_version(self, app):
                raise ConnectionError("control DB down")

        watcher.store = Broken()
        watcher.poll_once()
        st = watcher.status()
        assert st["ok"] is False and st["keeping_last_good_rules"] and "control DB down" in st["last_error"]
        assert st["version"] == 1 and engine.ruleset.flow[0].threshold == 100
        watcher.store = store
        store.apply(app_name, DOC2, "a", "b")
        assert watcher.poll_once() is True and watcher.status()["ok"] is True
        assert engine.rule_version == 2
    finally:
        store.close()


def test_watcher_thread_picks_up_an_apply(control_db_url, app_name):
    import time

    store = RuleStore(control_db_url)
    engine = Engine()
    watcher = RuleWatcher(store, engine, app_name, interval_s=0.05)
    watcher.start()
    try:
        store.apply(app_name, DOC2, "a", "b")
        deadline = time.monotonic() + 10
        while engine.rule_version != 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert engine.rule_version == 1
        assert watcher.status()["running"] is True
    finally:
        watcher.stop()
        store.close()
    assert watcher.status()["running"] is False


def test_fleet_heartbeats_live_stale_gone(control_db_url, app_name):
    fleet = Fleet(control_db_url, live_s=5, gone_s=30)
    t0 = datetime(2026, 11, 11, 0, 0, tzinfo=UTC)
    a, b, c = f"{app_name}-a", f"{app_name}-b", f"{app_name}-c"
    try:
        fleet.beat(a, "127.0.0.1:8001", "0.1.0", 3, t0, at=t0)
        fleet.beat(b, "127.0.0.1:8002", "0.1.0", 2, None, at=t0 - timedelta(seconds=10))
        fleet.beat(c, "127.0.0.1:8003", "0.1.0", None, None, at=t0 - timedelta(seconds=60))
        fleet.beat(a, "127.0.0.1:8001", "0.1.0", 4, t0, at=t0 + timedelta(seconds=1))  # upsert
        nodes = {
            n.instance: n for n in fleet.nodes(t0 + timedelta(seconds=2)) if n.instance.startswith(app_name)
        }
        assert nodes[a].state == "live" and nodes[a].rule_version == 4 and nodes[a].started_at == t0
        assert nodes[b].state == "stale" and nodes[c].state == "gone"
        assert nodes[a].to_dict()["last_beat_at"].startswith("2026-11-11")
        fleet.forget(c)
        assert c not in {n.instance for n in fleet.nodes(t0)}
    finally:
        for i in (a, b, c):
            fleet.forget(i)
        fleet.close()
    with pytest.raises(ValueError):
        Fleet(control_db_url, live_s=10, gone_s=5)
