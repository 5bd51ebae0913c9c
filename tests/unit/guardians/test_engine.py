import logging

import pytest

from guardians import Blocked, Engine, FlowBlocked, parse_document

from .helpers import attempt, engine


class Boom:
    """A checker with a bug."""

    has_exit = True

    def check(self, node, t, args, origin):
        raise ZeroDivisionError("bug in a checker")

    def on_exit(self, node, t, rt, error):
        raise KeyError("bug in an exit hook")


def test_a_bug_in_a_checker_never_breaks_the_call(caplog):
    eng, _clock = engine({"flow": [{"resource": "r", "threshold": 100}]})
    slot = eng._slots["r"]
    from guardians.engine import _Slot

    eng._slots["r"] = buggy = _Slot("r", slot.node, [Boom(), *slot.checkers], None, None)
    buggy.install({})  # the chain calls read from the node
    with caplog.at_level(logging.ERROR):
        assert eng.guard("r", lambda: 42) == 42
        with eng.entry("r"):
            pass
    assert eng.checker_errors >= 4
    assert eng.stats()["checker_errors"] == eng.checker_errors
    assert "failed" in caplog.text


def test_apply_swaps_the_whole_rule_set_and_reports_change():
    eng, _clock = engine()
    doc = {"flow": [{"resource": "r", "threshold": 1}]}
    assert eng.apply(parse_document(doc)) is True
    assert eng.apply(parse_document(doc)) is False
    assert attempt(eng, "r", 2) == (1, 1)
    eng.apply(parse_document({"flow": [{"resource": "r", "threshold": 10}]}))
    assert attempt(eng, "r", 3) == (3, 0)  # same second: the new rule is in force at once
    eng.apply(parse_document({}))
    assert attempt(eng, "r", 50) == (50, 0)


def test_unchanged_rules_keep_their_state_across_apply():
    doc = {"breaker": [{"resource": "p", "strategy": "error_count", "threshold": 1, "min_requests": 1}]}
    eng, _clock = engine(doc)
    with pytest.raises(RuntimeError):
        eng.guard("p", lambda: (_ for _ in ()).throw(RuntimeError("x")))
    assert eng.breaker_states() == {"p": "open"}
    eng.apply(parse_document({**doc, "flow": [{"resource": "other", "threshold": 5}]}))
    assert eng.breaker_states() == {"p": "open"}


@pytest.mark.parametrize("path", ["guard", "entry"])
def test_rules_applied_during_a_call_are_in_force_at_its_exit(path):
    """A call admitted by the old rules exits under the new ones: the new breaker learns from its
    error (and then refuses the next call), and the call's concurrency is given back."""
    eng, _clock = engine({"flow": [{"resource": "r", "threshold": 100}]})
    new = parse_document({
        "flow": [{"resource": "r", "threshold": 5}],
        "breaker": [{"resource": "r", "strategy": "error_count", "threshold": 1, "min_requests": 1}],
    })

    def work() -> None:
        eng.apply(new)
        raise RuntimeError("downstream failed")

    with pytest.raises(RuntimeError):
        if path == "guard":
            eng.guard("r", work)
        else:
            with eng.entry("r"):
                work()
    assert eng.breaker_states() == {"r": "open"}
    assert eng.stats()["resources"]["r"]["concurrency"] == 0
    with pytest.raises(Blocked) as blocked:
        eng.guard("r", lambda: None)
    assert blocked.value.kind == "breaker"


def test_nodes_are_created_in_document_order():
    names = [f"r{i}" for i in (3, 1, 2)]
    eng, _clock = engine({"flow": [{"resource": n, "threshold": 5} for n in names],
                          "breaker": [{"resource": "b", "strategy": "error_count", "threshold": 1}],
                          "param": [{"resource": "r1", "param": "sku", "threshold": 1}]})
    assert list(eng._nodes) == [*names, "b"]
    assert eng.ruleset.resources() == [*names, "b"]


def test_guard_satisfies_the_domain_guard_port_structurally():
    from domain.ports import Guard  # the test may import domain; guardians may not

    assert isinstance(Engine(), Guard)


def test_degrade_default_uses_the_call_site_fallback():
    eng, _clock = engine(
        {"flow": [{"resource": "r", "threshold": 1}], "degrade": [{"resource": "r", "fallback": "default"}]}
    )
    assert eng.guard("r", lambda: "real", fallback=lambda e: "fallback") == "real"
    assert eng.guard("r", lambda: "real", fallback=lambda e: f"fallback:{e.kind}") == "fallback:flow"
    with pytest.raises(FlowBlocked):  # no call-site fallback: the Blocked propagates
        eng.guard("r", lambda: "real")


def test_degrade_named_fallback_registered_in_code():
    eng, _clock = engine(
        {"flow": [{"resource": "r", "threshold": 1}], "degrade": [{"resource": "r", "fallback": "sold_out"}]}
    )
    eng.register_fallback("sold_out", lambda exc: {"status": "sold_out", "rule": exc.rule.name})
    eng.guard("r", lambda: None)
    assert eng.guard("r", lambda: None)["status"] == "sold_out"


def test_no_degrade_rule_means_blocked_propagates_even_with_call_site_fallback():
    eng, _clock = engine({"flow": [{"resource": "r", "threshold": 1}]})
    eng.guard("r", lambda: None)
    with pytest.raises(Blocked):
        eng.guard("r", lambda: None, fallback=lambda e: "x")


def test_register_fallback_rejects_reserved_name():
    with pytest.raises(ValueError):
        Engine().register_fallback("default", lambda e: None)


def test_resources_beyond_the_cap_pass_unguarded():
    eng = Engine(max_resources=2)
    for name in ("a", "b", "c", "d"):
        assert eng.guard(name, lambda: 1) == 1
    assert eng.resources() == ["a", "b"]


def test_blocked_is_picklable():
    import pickle

    eng, _clock = engine({"flow": [{"resource": "r", "threshold": 1}]})
    eng.guard("r", lambda: None)
    try:
        eng.guard("r", lambda: None)
    except FlowBlocked as exc:
        again = pickle.loads(pickle.dumps(exc))
        assert isinstance(again, FlowBlocked) and again.rule == exc.rule


def test_counts_stay_exact_under_threads():
    import threading

    eng, clock = engine({"flow": [{"resource": "r", "threshold": 1000}]})
    results = []

    def worker():
        results.append(attempt(eng, "r", 500))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    passed = sum(p for p, _ in results)
    blocked = sum(b for _, b in results)
    # a resource with rules checks and counts under one lock: exactly the threshold passes
    assert (passed, blocked) == (1000, 1000)
    clock.advance(1)
    (s,) = eng.metrics_since(0)
    assert (s.passed, s.block_flow, s.success, s.concurrency) == (passed, blocked, passed, 0)


def test_a_resource_named_by_any_equal_string_object_finds_its_own_node():
    """Compiled, the engine finds a node by the caller's string object first (an identity cache in
    slots chosen by the object's address): equal strings made apart, several objects for one resource
    alternating, and resources whose strings share a slot all find their own node (interpreted, the
    same calls take the dict)."""
    from common.clock import FakeClock
    from guardians.engine import _CACHE_SLOTS

    def slot(s: str) -> int:
        return ((id(s) >> 6) ^ (id(s) >> 22)) & (_CACHE_SLOTS - 1)

    made: list[str] = []  # (kept alive: their addresses stay theirs)
    by_slot: dict[int, list[str]] = {}
    for i in range(200_000):
        made.append(f"r.{i}")
        same = by_slot.setdefault(slot(made[-1]), [])
        same.append(made[-1])
        if len(same) == 3:
            break
    assert len(same) == 3, "no three strings sharing a slot"
    names = [*same, "order.place", "GET /orders/{order_id}"]
    engine = Engine(FakeClock())
    engine.apply(parse_document({"flow": [{"resource": n, "threshold": 1000} for n in names[:4]]}))
    for _ in range(3):
        for n in names:
            engine.guard(n, lambda: None)
            engine.guard("".join(n), lambda: None)  # an equal string, another object
    stats = engine.stats()["resources"]
    assert {n: stats[n]["pass_qps"] for n in names} == dict.fromkeys(names, 6)
    assert len(stats) == len(names)
