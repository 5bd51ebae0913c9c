"""The node's control API behind TRADEGUARD_OPS_TOKEN, through the real wired app; the users CLI;
the first admin from TRADEGUARD_BOOTSTRAP_ADMIN through the composition root."""

from __future__ import annotations

import io
import json
import logging
import os
import warnings

import pytest

from tradeguard import bootstrap
from tradeguard.bootstrap import build_node, seed_catalog
from tradeguard.cli import main
from tradeguard.settings import load_settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

TOKEN = "node-token-0123456789"
PROTECTED = [("GET", "/ops/stats", None), ("GET", "/ops/rules", None),
             ("PUT", "/ops/chaos/payment", {"error_rate": 0.25, "by": "test"}),
             ("POST", "/refunds/r_none/complete", None)]


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    for key in list(os.environ):
        if key.startswith("TRADEGUARD_") and key != "TRADEGUARD_REQUIRE_SERVICES":
            monkeypatch.delenv(key)
    monkeypatch.setenv("TRADEGUARD_VAR_DIR", str(tmp_path / "var"))
    return tmp_path


def node_client(clean_env, **settings):
    s = load_settings(var_dir=clean_env / "var", **settings)
    seed_catalog(s)
    node = build_node(s, port=18300, collectors=False)
    return node, TestClient(node.app, raise_server_exceptions=False)


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_without_or_with_a_wrong_token_401_with_the_right_one_through(clean_env, method, path, body):
    node, client = node_client(clean_env, ops_token=TOKEN)
    try:
        for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"}):
            r = client.request(method, path, json=body, headers=headers)
            assert r.status_code == 401, (headers, r.text)
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert r.headers["content-type"].startswith("application/problem+json")
            assert TOKEN not in r.text
        ok = client.request(method, path, json=body, headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == (404 if path.startswith("/refunds") else 200), ok.text
        if method == "PUT":
            assert node.gateway.settings()["error_rate"] == 0.25
        template = "/refunds/{refund_id}/complete" if path.startswith("/refunds") else path
        doc = client.get("/openapi.json").json()["paths"][template][method.lower()]["responses"]
        assert {"401", "403"} <= set(doc)
    finally:
        node.stop()


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_with_no_token_configured_the_routes_answer_403_saying_how_to_enable(clean_env, method, path, body):
    node, client = node_client(clean_env)
    try:
        r = client.request(method, path, json=body, headers={"Authorization": "Bearer anything"})
        assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
        assert "set TRADEGUARD_OPS_TOKEN" in r.json()["detail"]
        assert node.gateway.settings()["error_rate"] == 0.0
    finally:
        node.stop()


def test_health_and_the_chaos_reading_stay_open(clean_env):
    node, client = node_client(clean_env, ops_token=TOKEN)
    try:
        assert client.get("/ops/health").status_code == 200
        assert client.get("/ops/chaos/payment").status_code == 200
    finally:
        node.stop()


def test_a_refund_is_completed_only_with_the_token(clean_env):
    from tests.unit.tradeguard.test_bootstrap import order_body

    node, client = node_client(clean_env, ops_token=TOKEN)
    try:
        order = client.post("/orders", json=order_body(key="r1")).json()["id"]
        assert client.post(f"/orders/{order}/pay").json()["status"] == "paid"
        refund = client.post(f"/orders/{order}/refunds", json={"lines": [{"sku": "ELEC-001", "qty": 1}]})
        rid = refund.json()["id"]
        assert client.post(f"/refunds/{rid}/complete").status_code == 401
        assert client.get(f"/refunds/{rid}").json()["status"] != "completed"
        done = client.post(f"/refunds/{rid}/complete", headers={"Authorization": f"Bearer {TOKEN}"})
        assert done.status_code == 200 and done.json()["status"] == "completed"
    finally:
        node.stop()


def test_the_ops_token_is_masked_in_settings(clean_env):
    s = load_settings(ops_token=TOKEN)
    assert TOKEN not in json.dumps(s.describe()) and s.ops_token_value() == TOKEN
    assert load_settings(ops_token="  ").ops_token_value() is None


# --------------------------------------------------------------------------- users CLI
def run_cli(monkeypatch, capsys, *argv, stdin=""):
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(["users", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_users_add_list_disable_through_the_cli(clean_env, monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "add", "root", "--role", "admin", "--password-stdin",
                           stdin="root-passw0rd\n")
    assert code == 0 and "user root added (admin)" in out
    code, out, _ = run_cli(monkeypatch, capsys, "add", "bob", "--role", "merchant", "--shop",
                           "acme-electronics", "--shop", "home-goods", "--password-stdin",
                           stdin="bob-passw0rd\n")
    assert code == 0
    code, _, err = run_cli(monkeypatch, capsys, "add", "eve", "--role", "sre", "--password-stdin",
                           stdin="short\n")
    assert code == 2 and "password is too short: at least 8 characters" in err and "short\n" not in err
    code, _, err = run_cli(monkeypatch, capsys, "add", "mia", "--role", "merchant", "--password-stdin",
                           stdin="mia-passw0rd\n")
    assert code == 2 and "a merchant must be bound to at least one shop" in err
    assert run_cli(monkeypatch, capsys, "disable", "bob")[0] == 0
    code, out, _ = run_cli(monkeypatch, capsys, "list", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert set(rows) == {"root", "bob"}
    assert rows["bob"]["shops"] == ["acme-electronics", "home-goods"] and rows["bob"]["disabled"] is True
    assert "passw0rd" not in out and "argon2" not in out
    code, out, _ = run_cli(monkeypatch, capsys, "list")
    assert out.splitlines()[0].split() == ["NAME", "ROLE", "SHOPS", "DISABLED", "CREATED_AT", "LAST_LOGIN_AT"]
    assert any(line.split()[:4] == ["bob", "merchant", "acme-electronics,home-goods", "yes"]
               for line in out.splitlines())
    assert run_cli(monkeypatch, capsys, "enable", "bob")[0] == 0
    service = bootstrap.build_account_service(load_settings())
    try:
        assert service.authenticate("bob", "bob-passw0rd", None).shops == ("acme-electronics", "home-goods")
        assert service.store.audit("bob")[0]["actor"].startswith("cli")
    finally:
        service.close()


def test_users_passwd_asks_twice_at_a_prompt(clean_env, monkeypatch, capsys):
    run_cli(monkeypatch, capsys, "add", "root", "--role", "admin", "--password-stdin",
            stdin="root-passw0rd\n")
    answers = iter(["new-passw0rd", "typo-passw0rd"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    monkeypatch.setattr("sys.stdin.isatty", lambda: True, raising=False)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Tty())
    code = main(["users", "passwd", "root"])
    assert code == 2 and "the two passwords differ" in capsys.readouterr().err
    answers = iter(["new-passw0rd", "new-passw0rd"])
    assert main(["users", "passwd", "root"]) == 0
    service = bootstrap.build_account_service(load_settings())
    try:
        assert service.authenticate("root", "new-passw0rd", None).role == "admin"
    finally:
        service.close()


def test_the_bootstrap_admin_is_applied_once_by_the_users_command(clean_env, monkeypatch, capsys, caplog):
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("TRADEGUARD_BOOTSTRAP_ADMIN", "boss:boot-passw0rd")
    code, out, _ = run_cli(monkeypatch, capsys, "list", "--json")
    assert code == 0 and [r["name"] for r in json.loads(out)] == ["boss"]
    assert bootstrap.apply_bootstrap_admin(load_settings()) is None  # an admin exists: ignored
    assert "TRADEGUARD_BOOTSTRAP_ADMIN is set but an admin already exists" in caplog.text
    assert "boot-passw0rd" not in caplog.text
    monkeypatch.setenv("TRADEGUARD_BOOTSTRAP_ADMIN", "malformed")
    assert bootstrap.apply_bootstrap_admin(load_settings(var_dir=clean_env / "other")) is None
    assert "TRADEGUARD_BOOTSTRAP_ADMIN must be NAME:PASSWORD" in caplog.text
