"""The console wired by the composition root (``bootstrap.build_console_services``) from the
environment, on the real stores, SQLite in tmp_path: guardians' RuleStore and Fleet, alerts'
AlertStore, the embedded metric store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from common.identity import Principal
from console import runtime
from guardians.fleet import Fleet
from guardians.store import RuleStore
from tradeguard import bootstrap
from tradeguard.settings import load_settings

ROOT = Path(__file__).resolve().parents[3]
CONSOLE = ROOT / "console"
ENTRY = ROOT / "tradeguard" / "console_main.py"


@pytest.fixture
def env(tmp_path, monkeypatch):
    var = tmp_path / "var"
    monkeypatch.setenv("TRADEGUARD_VAR_DIR", str(var))
    monkeypatch.setenv("TRADEGUARD_APP", "shop")
    for name in ("TRADEGUARD_CONTROL_DB", "TRADEGUARD_METRICS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(runtime, "_installed", None)  # restored after the test
    st.cache_resource.clear()
    yield f"sqlite:///{var / 'control.db'}"
    st.cache_resource.clear()


@pytest.fixture
def wired(env):
    """A page file run on its own gets what the entry script would install."""
    services = bootstrap.build_console_services(load_settings())
    runtime.install(services)
    yield env
    services.close()


def _run(name: str, user: Principal = Principal("ann", "sre")) -> AppTest:
    at = AppTest.from_file(str(CONSOLE / "views" / f"{name}.py"), default_timeout=30)
    at.session_state[runtime.PRINCIPAL_KEY] = user  # what the sign-in gate sets
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_rules_apply_history_rollback_on_the_real_rule_store(wired):
    env = wired
    at = _run("rules")
    assert "No rules applied yet" in "".join(i.value for i in at.info)
    gen = at.session_state["rules_gen"]
    area = next(t for t in at.text_area if t.key.startswith(f"yaml_{gen}_"))
    area.set_value("flow:\n  - {resource: order.place, threshold: 100}\n")
    at.button(key="yaml_use").click().run()
    at.text_area(key="apply_why").set_value("baseline")
    at.button(key="FormSubmitter:apply_form-Apply as version 1").click().run()
    assert not at.exception
    store = RuleStore(env)
    try:
        current = store.current("shop")
        assert current.version == 1 and current.created_by == "ann"
        assert current.document["flow"][0]["threshold"] == 100
        # lower the threshold through the form
        gen = at.session_state["rules_gen"]
        threshold = next(w for w in at.number_input if w.key == f"fld_flow_0_{gen}_threshold")
        threshold.set_value(10)
        at.button(key=f"FormSubmitter:rule_form_flow_0_{gen}-Save to draft & validate").click().run()
        diff = "\n".join(c.value for c in at.code)
        assert "-  threshold: 100\n+  threshold: 10\n" in diff
        at.session_state[runtime.PRINCIPAL_KEY] = Principal("bob", "admin")
        at.text_area(key="apply_why").set_value("flash sale")
        at.button(key="FormSubmitter:apply_form-Apply as version 2").click().run()
        assert "Version 2 applied" in "".join(s.value for s in at.success)
        assert store.current("shop").document["flow"][0]["threshold"] == 10
        # history and rollback
        at.selectbox(key="history_pick").set_value(1).run()
        at.session_state[runtime.PRINCIPAL_KEY] = Principal("carol", "sre")
        at.text_input(key="rollback_why").set_value("sale over")
        at.button(key="FormSubmitter:rollback_form-Roll back to version 1").click().run()
        assert not at.exception
        v3 = store.current("shop")
        assert (v3.version, v3.restored_from, v3.document["flow"][0]["threshold"]) == (3, 1, 100)
        assert [v.created_by for v in store.history("shop")][:3] == ["carol", "bob", "ann"]
    finally:
        store.close()


def test_instances_from_real_heartbeats(wired):
    env = wired
    RuleStore(env).apply("shop", {"flow": [{"resource": "a", "threshold": 1}]}, "a", "b")
    RuleStore(env).apply("shop", {"flow": [{"resource": "a", "threshold": 2}]}, "a", "b")
    fleet = Fleet(env)
    now = datetime.now(UTC)
    fleet.beat("node-a", "http://127.0.0.1:1", "0.1.0", 2, now, at=now)
    fleet.beat("node-b", "http://127.0.0.1:2", "0.1.0", 1, now, at=now)
    fleet.close()
    at = _run("instances")
    assert "node-b (v1)" in "".join(e.value for e in at.error)
    assert {m.label: m.value for m in at.metric}["Live"] == "2"


def test_every_page_renders_on_empty_real_stores(env):
    accounts = bootstrap.build_account_service(load_settings())
    accounts.add_user("sam", "sre", "a long enough test password", by="test")
    accounts.close()
    at = AppTest.from_file(str(ENTRY), default_timeout=30)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert [t.label for t in at.text_input] == ["Username", "Password"]  # the login page only
    at.text_input(key="login_name").set_value("sam")
    at.text_input(key="login_password").set_value("a long enough test password")
    at.button(key="FormSubmitter:login_form-Sign in").click().run()
    assert not at.exception, [e.message for e in at.exception]
    for view in ("sales", "alerts_page", "resources", "rules", "instances", "chaos"):
        at.switch_page(f"../console/views/{view}.py").run()
        assert not at.exception, (view, [e.message for e in at.exception])
    assert "no live node" in "".join(w.value for w in at.warning).lower()


def test_instances_page_lists_the_workers_leader_first(wired):
    from alerts.store import build_engine
    from collectors.lease import Lease, WorkerBeats

    engine = build_engine(wired)
    a = Lease(engine, name="worker-leader", holder="wa-1")
    b = Lease(engine, name="worker-leader", holder="wb-1")
    assert a.acquire() is not None and b.acquire() is None
    beats = WorkerBeats(engine)
    beats.beat(holder="wb-1", instance="worker-b", role="standby", token=None, pid=222)
    beats.beat(holder="wa-1", instance="worker-a", role="leader", token=a.token, pid=111)
    engine.dispose()
    at = _run("instances")
    assert not at.exception, [e.message for e in at.exception]
    [table] = [df.value for df in at.dataframe if "role" in df.value.columns]
    assert list(table["instance"]) == ["worker-a", "worker-b"]
    assert list(table["role"]) == ["★ leader", "● standby"]
    assert list(table["pid"]) == [111, 222]


def test_instances_page_shows_a_canary_rollout_and_the_relay(wired):
    """Through the signed-in user's services (the page may not reach the stores themselves)."""
    store = RuleStore(wired)
    store.apply("shop", {"flow": [{"resource": "a", "threshold": 1}]}, "ann", "base")
    canary = store.start_canary("shop", {"flow": [{"resource": "a", "threshold": 2}]}, ["node-a", "node-b"],
                                "ann", "try 2", {"metric": "error_pct", "margin": 5, "auto": False})
    store.close()
    fleet = Fleet(wired)
    now = datetime.now(UTC)
    fleet.beat("node-a", "http://127.0.0.1:1", "0.1.0", 1, now, at=now, canary=canary.id)
    fleet.beat("node-b", "http://127.0.0.1:2", "0.1.0", 1, now, at=now)
    fleet.close()
    at = _run("instances")
    shown = "\n".join(w.value for w in at.warning)
    assert f"Canary rollout {canary.id} in progress" in shown, shown
    assert "running on node-a; waiting for node-b" in shown
    assert "Relay status unknown" not in "\n".join(c.value for c in at.caption)
    assert "No relay has run" in "\n".join(c.value for c in at.caption)  # wired: the relay's row is absent
