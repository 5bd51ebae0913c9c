"""One duration grammar for alert documents and store URL options."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from collectors.errors import ConfigError
from collectors.stores.common import parse_duration as option_duration
from common.durations import DURATION_PATTERN, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("7d", 604800),
        ("2w", 1209600),
        ("500ms", 0.5),
        ("1.5h", 5400),
        ("90", 90),
        (" 1h 30m ", 5400),
        (90, 90),
        (0.25, 0.25),
    ],
)
def test_the_grammar_reads_both_former_dialects(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)
    if isinstance(text, str):
        assert re.match(DURATION_PATTERN, text), "the JSON Schema pattern must accept what the parser does"


@pytest.mark.parametrize("text", ["soon", "5x", "1h-30m", "", "-5s", True, None, -1, "m5"])
def test_what_is_not_a_duration_is_refused_with_examples(text):
    with pytest.raises(ValueError, match=r"30s|≥ 0"):
        parse_duration(text)
    if isinstance(text, str):
        assert not re.match(DURATION_PATTERN, text)


@pytest.mark.parametrize("seconds", [0, 0.5, 1, 59, 60, 90, 3600, 5400, 86400, 90061, 604800])
def test_format_reads_back_as_the_same_duration(seconds):
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value


def test_format_prefers_a_single_whole_unit():
    assert format_duration(timedelta(minutes=5)) == "5m"
    assert format_duration(timedelta(weeks=1)) == "1w"
    assert format_duration(timedelta(hours=1, minutes=30)) == "90m"
    assert format_duration(timedelta(seconds=90061)) == "90061s"
    assert format_duration(timedelta(milliseconds=500)) == "500ms"


def test_store_options_use_the_same_grammar_and_must_be_positive():
    assert option_duration("1h30m", name="retention") == timedelta(minutes=90)
    assert option_duration("90", name="timeout") == timedelta(seconds=90)
    for bad in ("0s", "soon"):
        with pytest.raises(ConfigError, match="retention="):
            option_duration(bad, name="retention")
