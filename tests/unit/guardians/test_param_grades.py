"""Param rules grown up: concurrency grade (values in flight), queue behaviour (pace per value) and
Sentinel's gateway value matching (exact / prefix / regex) for header: and query: params."""

from __future__ import annotations

import threading
import time

import pytest

from guardians import Blocked, Engine, ParamBlocked, parse_document
from guardians.errors import RuleValidationError as InvalidRules

from .helpers import engine

SKU_IN_FLIGHT = {"name": "sku-in-flight", "resource": "order.place", "param": "sku",
                 "grade": "concurrency", "threshold": 4}


def _in_flight(eng: Engine, resource: str = "order.place") -> dict[str, int]:
    slot = eng._slots[resource]
    return {k: v for c in slot.holds for k, v in c.counts.items()}


def test_the_contract_example_validates_and_round_trips():
    rs = parse_document({"param": [SKU_IN_FLIGHT]})
    rule = rs.param[0]
    assert (rule.grade, rule.threshold, rule.name) == ("concurrency", 4, "sku-in-flight")
    assert parse_document(rs.to_document()) == rs


@pytest.mark.parametrize("bad, field", [
    ({"grade": "concurrency", "burst": 2}, "burst"),
    ({"grade": "concurrency", "duration_s": 5}, "duration_s"),
    ({"grade": "concurrency", "cluster": True}, "cluster"),
    ({"grade": "concurrency", "behavior": "queue"}, "behavior"),
    ({"behavior": "queue", "cluster": True}, "cluster"),
    ({"max_queue_ms": 100}, "max_queue_ms"),
    ({"match_strategy": "prefix", "pattern": "x"}, "match_strategy"),  # param sku: not header/query
])
def test_invalid_combinations_are_refused_naming_the_field(bad, field):
    with pytest.raises(InvalidRules) as info:
        parse_document({"param": [{"resource": "r", "param": "sku", "threshold": 3, **bad}]})
    assert f"param[0].{field}" in str(info.value)


def test_match_needs_a_pattern_and_a_valid_regex():
    with pytest.raises(InvalidRules, match=r"param\[0\]\.pattern: is required"):
        parse_document({"param": [{"resource": "r", "param": "header:X", "threshold": 1,
                                   "match_strategy": "exact"}]})
    with pytest.raises(InvalidRules, match=r"param\[0\]\.pattern: must be a valid regular expression"):
        parse_document({"param": [{"resource": "r", "param": "query:q", "threshold": 1,
                                   "match_strategy": "regex", "pattern": "(unclosed"}]})


def test_concurrency_grade_holds_n_in_flight_per_value_and_exits_give_back_what_they_took():
    eng, _clock = engine({"param": [SKU_IN_FLIGHT]})
    seen: list[str] = []

    def nest(depth: int) -> None:
        if depth == 0:
            # 4 calls of FLASH in flight: a 5th is refused, another SKU passes
            with pytest.raises(ParamBlocked) as info:
                eng.guard("order.place", lambda: None, args={"sku": ("FLASH",)})
            seen.append(info.value.detail)
            eng.guard("order.place", lambda: None, args={"sku": ("OTHER",)})
            return
        eng.guard("order.place", lambda: nest(depth - 1), args={"sku": ("FLASH",)})

    nest(4)
    assert "FLASH" in seen[0] and "in flight" in seen[0]
    assert _in_flight(eng) == {}  # every exit gave its value back
    # an exception in the call still gives the value back; so does an entry() section
    for _ in range(6):
        with pytest.raises(RuntimeError):
            eng.guard("order.place", lambda: (_ for _ in ()).throw(RuntimeError("x")), args={"sku": "FLASH"})
        with pytest.raises(KeyError), eng.entry("order.place", args={"sku": ["FLASH", "B"]}):
            raise KeyError("boom")
    assert _in_flight(eng) == {}
    assert eng.stats()["resources"]["order.place"]["concurrency"] == 0


def test_every_value_of_a_multi_valued_argument_is_held():
    eng, _ = engine({"param": [{**SKU_IN_FLIGHT, "threshold": 1}]})
    with eng.entry("order.place", args={"sku": ("A", "B")}):
        assert _in_flight(eng) == {"A": 1, "B": 1}
        with pytest.raises(ParamBlocked):
            eng.guard("order.place", lambda: None, args={"sku": ("C", "B")})
        assert _in_flight(eng) == {"A": 1, "B": 1}  # the refused call took nothing (C not held)
    assert _in_flight(eng) == {}


def test_an_exit_after_a_rule_edit_gives_back_to_the_same_counts():
    eng, _ = engine({"param": [SKU_IN_FLIGHT]})
    entry = eng.entry("order.place", args={"sku": "FLASH"})
    entry.__enter__()
    eng.apply(parse_document({"param": [{**SKU_IN_FLIGHT, "threshold": 1}]}))
    with pytest.raises(ParamBlocked):  # the call in flight still counts under the edited rule
        eng.guard("order.place", lambda: None, args={"sku": "FLASH"})
    entry.__exit__(None, None, None)
    assert _in_flight(eng) == {}
    eng.guard("order.place", lambda: None, args={"sku": "FLASH"})


def test_concurrency_grade_is_exact_under_threads():
    eng = Engine()
    eng.apply(parse_document({"param": [{**SKU_IN_FLIGHT, "threshold": 3}]}))
    lock = threading.Lock()
    state = {"now": 0, "max": 0, "blocked": 0}

    def work() -> None:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.001)
        with lock:
            state["now"] -= 1

    def run() -> None:
        for i in range(60):
            try:
                if i % 5 == 0:
                    with eng.entry("order.place", args={"sku": "HOT"}):
                        work()
                else:
                    eng.guard("order.place", work, args={"sku": ("HOT",)})
            except Blocked:
                with lock:
                    state["blocked"] += 1

    threads = [threading.Thread(target=run) for _ in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert state["max"] == 3 and state["blocked"] > 0
    assert _in_flight(eng) == {}


def test_queue_behavior_paces_each_value_and_blocks_a_wait_over_max_queue_ms():
    eng, clock = engine({"param": [{"resource": "r", "param": "sku", "threshold": 10, "behavior": "queue",
                                    "max_queue_ms": 250}]})
    t0 = clock.time()
    times = []
    for _ in range(3):
        eng.guard("r", lambda: times.append(round(clock.time() - t0, 3)), args={"sku": "A"})
    assert times == [0.0, 0.1, 0.2]  # one every 100 ms (the fake clock's sleep advances it)
    # another value has its own pace
    before = clock.time()
    eng.guard("r", lambda: None, args={"sku": "C"})
    assert clock.time() == before


def test_queue_blocks_when_the_wait_would_exceed_max_queue_ms():
    eng, clock = engine({"param": [{"resource": "r", "param": "sku", "threshold": 2, "behavior": "queue",
                                    "max_queue_ms": 600}]})
    chk = eng._slots["r"].checkers[0]
    t = clock.time()
    assert chk.check(None, t, {"sku": "A"}, None) == 0.0
    assert chk.check(None, t, {"sku": "A"}, None) == pytest.approx(0.5)
    with pytest.raises(ParamBlocked) as info:
        chk.check(None, t, {"sku": "A"}, None)  # its turn would be in 1.0 s > 600 ms
    assert info.value.retry_after_s == pytest.approx(1.0)
    assert chk.check(None, t, {"sku": "B"}, None) == 0.0


@pytest.mark.parametrize("strategy, pattern, limited, free", [
    ("exact", "bot-1", "bot-1", "bot-10"),
    ("prefix", "bot-", "bot-77", "human-1"),
    ("regex", r"bot-\d+", "bot-42", "bot-42x"),
])
def test_only_matching_header_values_are_limited(strategy, pattern, limited, free):
    eng, _ = engine({"param": [{"resource": "GET /x", "param": "header:X-Device-Id", "threshold": 1,
                                "duration_s": 60, "match_strategy": strategy, "pattern": pattern}]})
    args_l, args_f = {"header:X-Device-Id": limited}, {"header:X-Device-Id": free}
    eng.guard("GET /x", lambda: None, args=args_l)
    with pytest.raises(ParamBlocked):
        eng.guard("GET /x", lambda: None, args=args_l)
    for _ in range(5):
        eng.guard("GET /x", lambda: None, args=args_f)
