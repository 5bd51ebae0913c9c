import logging

import pytest

from common.redact import (
    RedactingFilter,
    UnresolvedReference,
    expand_env_refs,
    redact_text,
    redact_url,
    url_secrets,
)

CANARY = "canary-S3cr3t-7f1e"


@pytest.mark.parametrize(
    "url, shown",
    [
        (f"redis://:{CANARY}@localhost:6379/0", "redis://:***@localhost:6379/0"),
        (f"postgresql://app:{CANARY}@db:5432/trading", "postgresql://app:***@db:5432/trading"),
        (f"smtp://alerts:{CANARY}@127.0.0.1:2525", "smtp://alerts:***@127.0.0.1:2525"),
        (f"influxdb://127.0.0.1:8086/tg?token={CANARY}&org=o", "influxdb://127.0.0.1:8086/tg?token=***&org=o"),
        (f"https://hooks.example.com/services/{CANARY}", "https://hooks.example.com/***"),
        (f"http://127.0.0.1:9/hook?token={CANARY}", "http://127.0.0.1:9/***"),
        ("sqlite:///var/control.db", "sqlite:///var/control.db"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ],
)
def test_redact_url_hides_credentials(url, shown):
    assert redact_url(url) == shown
    assert CANARY not in redact_url(url)


def test_redact_text_masks_known_secrets_and_urls_in_free_text():
    text = f"POST https://h.example/x/{CANARY} failed; header was Bearer {CANARY}"
    out = redact_text(text, [CANARY])
    assert CANARY not in out
    assert "https://h.example/***" in out


def test_logging_filter_redacts_message_args_and_tracebacks(caplog):
    log = logging.getLogger("tg.test.redact")
    flt = RedactingFilter([CANARY])
    log.addFilter(flt)
    try:
        with caplog.at_level(logging.INFO, logger="tg.test.redact"):
            log.info("connecting to %s", f"redis://:{CANARY}@h:6379")
            try:
                raise ValueError(f"bad token {CANARY}")
            except ValueError:
                log.exception("failed")
    finally:
        log.removeFilter(flt)
    text = caplog.text
    assert CANARY not in text
    assert "redis://:***@h:6379" in text


def test_env_refs_resolve_at_use_and_name_a_missing_variable():
    assert expand_env_refs("Bearer ${TOK}", {"TOK": CANARY}) == f"Bearer {CANARY}"
    with pytest.raises(UnresolvedReference, match="TG_MISSING is not set"):
        expand_env_refs("${TG_MISSING}", {})


@pytest.mark.parametrize(
    "url, secrets",
    [
        (f"redis://:{CANARY}@localhost:6379/0", {CANARY}),
        ("redis://:p%40ss%2Fword@h:6379/0", {"p%40ss%2Fword", "p@ss/word"}),  # as written and decoded
        (f"redis://:{CANARY}/x@h:6379/0", {f"{CANARY}/x"}),  # a '/' in the password: urlsplit misreads it
        (f"redis://u:{CANARY}@[::1:6379/0", {CANARY}),  # unparsable (a broken IPv6 literal)
        (f"influxdb://h:8086/db?token={CANARY}&org=o", {CANARY}),
        (f"https://hooks.example.com/services/T0/{CANARY}xxxxxxxx", {f"{CANARY}xxxxxxxx"}),
        ("postgresql://app@db:5432/a_database_name_of_length", set()),  # only http(s) paths hold tokens
        ("sqlite:///var/control.db", set()),
        ("not a url", set()),
    ],
)
def test_url_secrets_are_the_parts_that_may_be_credentials(url, secrets):
    assert set(url_secrets(url)) == secrets
    assert CANARY not in redact_text(f"failed: {url.split('://')[-1]}", url_secrets(url))  # no scheme
