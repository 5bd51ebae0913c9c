"""The CLI's logging setup masks the settings' secrets in every record of the process."""

import logging

import pytest

from tradeguard.cli import secrets_from_env, setup_logging

CANARY = "canary-7f3a9c"
ENV = {
    "TRADEGUARD_METRICS_TOKEN": f"{CANARY}-token",
    "TRADEGUARD_METRICS_PASSWORD": f"{CANARY}-influxpw",
    "TRADEGUARD_OPS_TOKEN": f"{CANARY}-ops",
    "TRADEGUARD_REDIS_URL": f"redis://:{CANARY}-redis@127.0.0.1:6379/0",
    "TRADEGUARD_CONTROL_DB": f"postgresql://tg:{CANARY}%2Fpg@db:5432/control",
    "TRADEGUARD_ALERT_WEBHOOK_URL": f"https://hooks.example.com/x?token={CANARY}-hook",
    "TRADEGUARD_BOOTSTRAP_ADMIN": f"root:{CANARY}-admin",
    "TRADEGUARD_APP": "shop",
    "OTHER_TOKEN": "not-ours-1234",
}


@pytest.fixture
def our_handler():
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in before:
            root.removeHandler(h)
    root.setLevel(level)


def test_secrets_from_env_finds_tokens_passwords_and_url_credentials():
    found = secrets_from_env(ENV)
    assert {
        f"{CANARY}-token", f"{CANARY}-influxpw", f"{CANARY}-ops", f"{CANARY}-redis",
        f"{CANARY}%2Fpg", f"{CANARY}/pg", f"{CANARY}-hook", f"{CANARY}-admin",
    } <= found
    assert "shop" not in found and "not-ours-1234" not in found  # only TRADEGUARD_* secrets
    assert not any("127.0.0.1" in s or s.startswith("redis") for s in found)  # values, not whole URLs


def test_every_record_on_stderr_is_masked(our_handler, capsys):
    setup_logging("DEBUG", environ=ENV)
    log = logging.getLogger("some.library")
    log.warning("auth with %s and %s failed", ENV["TRADEGUARD_METRICS_TOKEN"], f"{CANARY}/pg")
    log.info("connecting to %s", ENV["TRADEGUARD_REDIS_URL"])
    try:
        raise ConnectionError(f"ops token {CANARY}-ops refused by the node")
    except ConnectionError:
        log.exception("call failed")
    err = capsys.readouterr().err
    assert "auth with *** and *** failed" in err
    assert "connecting to redis://:***@127.0.0.1:6379/0" in err
    assert "ConnectionError: ops token *** refused by the node" in err  # the traceback too
    assert CANARY not in err


def test_setting_up_again_replaces_only_our_handler(our_handler):
    root = logging.getLogger()
    setup_logging("INFO", environ={})
    setup_logging("INFO", environ=ENV)
    ours = [h for h in root.handlers if getattr(h, "_tradeguard", False)]
    assert len(ours) == 1 and ours[0].filters
