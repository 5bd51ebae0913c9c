"""The engine's two paths agree: ``guard()`` (the inlined hot path) and ``entry()`` (the general
chain ``_enter``/``_pass``/``_exit`` that the HTTP middleware also runs).

A differential, property-based test: the same random rule sets, calls (succeeding, raising,
slow, nested), parameter values and clock steps are driven through two engines on two fake
clocks, one through ``guard()``, one through ``with engine.entry(...)``. After every step both
engines must have taken the same decisions (passed, or blocked by which rule kind, answered by
which fallback) and hold the same statistics (``stats()``, the completed seconds, breaker
states) at the same clock time (queueing waits included).

Only what both paths support is generated: outbound entries (no system rules: they guard
inbound traffic only, which ``guard()`` is not). Origin-aware rules (``limit_app``, ``chain`` by
entrance, authority) read the caller from ``guardians.context``, which a step sets for the calls
that follow, on both paths alike. A degrade rule's fallback answers a blocked ``guard()``; on
the entry path the driver resolves the same fallback from the rule set, as a caller of ``entry()`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from common.clock import FakeClock
from guardians import Blocked, Engine, parse_document
from guardians.context import caller_context
from guardians.system.probe import FixedProbe

from .helpers import T0

RESOURCES = ("r", "s")
NAMED = "named_fallback"


class Boom(RuntimeError):
    """The guarded call's own failure."""


# ----------------------------------------------------------------- rule sets
_res = st.sampled_from(RESOURCES)


def _flow() -> st.SearchStrategy[dict[str, Any]]:
    qps = st.sampled_from([0.5, 1, 2, 2.5, 3, 5])
    return st.one_of(
        st.fixed_dictionaries({"resource": _res, "threshold": qps}),
        st.fixed_dictionaries(
            {"resource": _res, "grade": st.just("concurrency"), "threshold": st.sampled_from([1, 2])}
        ),
        st.fixed_dictionaries(
            {
                "resource": st.just("r"),
                "strategy": st.just("relate"),
                "ref_resource": st.just("s"),
                "threshold": qps,
            }
        ),
        st.fixed_dictionaries(
            {
                "resource": _res,
                "behavior": st.just("warm_up"),
                "threshold": st.sampled_from([2, 4, 6]),
                "warm_up_s": st.sampled_from([1, 2]),
            }
        ),
        st.fixed_dictionaries(
            {
                "resource": _res,
                "behavior": st.sampled_from(["queue", "warm_up_queue"]),
                "threshold": st.sampled_from([2, 4, 10]),
                "max_queue_ms": st.sampled_from([0, 200, 600]),
            }
        ),
        st.fixed_dictionaries(
            {
                "resource": _res,
                "grade": st.just("concurrency"),
                "behavior": st.just("adaptive"),
                "algorithm": st.sampled_from(["gradient2", "vegas"]),
                "threshold": st.sampled_from([1, 2, 4]),
            }
        ),
    )


ORIGINS = ("default", "batch", "bot")
ENTRANCE = "POST /x"


def _door_flow() -> st.SearchStrategy[dict[str, Any]]:
    """Rules that read the caller (origin, entrance) from ``guardians.context``: both paths see it."""
    qps = st.sampled_from([1, 2, 3])
    return st.one_of(
        st.fixed_dictionaries(
            {"resource": _res, "threshold": qps, "limit_app": st.sampled_from(["batch", "other", "default"])}
        ),
        st.fixed_dictionaries(
            {
                "resource": _res,
                "threshold": qps,
                "strategy": st.just("chain"),
                "ref_resource": st.just(ENTRANCE),
            }
        ),
    )


def _authority() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "resource": _res,
            "strategy": st.sampled_from(["allow", "deny"]),
            "origins": st.lists(st.sampled_from(ORIGINS), min_size=1, max_size=2),
        }
    )


def _breaker() -> st.SearchStrategy[dict[str, Any]]:
    common = {
        "resource": _res,
        "stat_interval_ms": st.sampled_from([500, 1000, 2000]),
        "min_requests": st.integers(1, 4),
        "recovery_s": st.sampled_from([0.5, 1, 2.5]),
        "probes": st.integers(1, 2),
    }
    return st.one_of(
        st.fixed_dictionaries(
            {**common, "strategy": st.just("error_ratio"), "threshold": st.sampled_from([0, 0.3, 0.5])}
        ),
        st.fixed_dictionaries(
            {
                **common,
                "strategy": st.just("slow_ratio"),
                "threshold": st.sampled_from([0.2, 0.5]),
                "max_rt_ms": st.sampled_from([50, 200]),
            }
        ),
        st.fixed_dictionaries({**common, "strategy": st.just("error_count"), "threshold": st.integers(1, 3)}),
    )


def _param() -> st.SearchStrategy[dict[str, Any]]:
    common = {"resource": _res, "param": st.just("sku"), "threshold": st.integers(0, 3)}
    return st.one_of(
        st.fixed_dictionaries(
            {**common, "duration_s": st.integers(1, 2), "burst": st.integers(0, 2)}
        ),
        # values in flight: the exit gives back what the pass took (nested calls hold several)
        st.fixed_dictionaries({**common, "grade": st.just("concurrency")}),
        # paced per value: a queued call waits its value's turn on the fake clock
        st.fixed_dictionaries(
            {**common, "behavior": st.just("queue"), "max_queue_ms": st.sampled_from([0, 300, 1000])}
        ),
    )


def _degrade() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"resource": _res, "fallback": st.sampled_from(["default", NAMED, "unregistered"])}
    )


rule_docs = st.fixed_dictionaries(
    {
        "flow": st.lists(st.one_of(_flow(), _flow(), _door_flow()), max_size=3),
        "breaker": st.lists(_breaker(), max_size=2),
        "param": st.lists(_param(), max_size=1),
        "degrade": st.lists(_degrade(), max_size=1),
        "authority": st.lists(_authority(), max_size=1),
    }
)

# --------------------------------------------------------------------- steps
_args = st.sampled_from([None, {"sku": "a"}, {"sku": "b"}, {"other": "x"}])
_outcome = st.sampled_from(["ok", "ok", "error", "slow"])
_rt = {"ok": 0.004, "error": 0.006, "slow": 0.3}
_call = st.tuples(st.just("call"), _res, _outcome, _args)
steps = st.lists(
    st.one_of(
        _call,
        _call,
        _call,
        st.tuples(st.just("nested"), _call, _call),  # a call that makes another guarded call inside
        st.tuples(st.just("advance"), st.sampled_from([0.001, 0.1, 0.25, 0.5, 0.75, 1.0, 3.0])),
        st.tuples(st.just("apply"), st.integers(0, 1)),
        st.tuples(st.just("as"), st.sampled_from(ORIGINS), st.sampled_from([None, ENTRANCE])),
    ),
    min_size=1,
    max_size=40,
)

# ------------------------------------------------------------------- drivers
Outcome = tuple[Any, ...]
Path = Callable[[Engine, FakeClock, str, Any, Callable[[], Any]], Outcome]


def _fallback(exc: BaseException) -> Outcome:
    return ("fallback:default", getattr(exc, "kind", "?"))


def _named(exc: BaseException) -> Outcome:
    return ("fallback:named", getattr(exc, "kind", "?"))


def via_guard(eng: Engine, clock: FakeClock, resource: str, args: Any, work: Callable[[], Any]) -> Outcome:
    try:
        got = eng.guard(resource, work, args=args, fallback=_fallback)
    except Blocked as exc:
        return ("blocked", exc.kind)
    except Boom:
        return ("error",)
    return ("ok", got[1]) if got[0] == "value" else got  # else a fallback answered


def via_entry(eng: Engine, clock: FakeClock, resource: str, args: Any, work: Callable[[], Any]) -> Outcome:
    entered = False
    try:
        with eng.entry(resource, args=args):
            entered = True
            got = work()
    except Blocked as exc:
        if entered:
            raise  # the work's own Blocked: never happens here (inner calls catch theirs)
        # what guard() does with a degrade rule, resolved by the caller of entry()
        rule = next((d for d in eng.ruleset.degrade if d.resource == resource), None)
        if rule is not None and rule.fallback == "default":
            return _fallback(exc)
        if rule is not None and rule.fallback == NAMED:
            return _named(exc)
        return ("blocked", exc.kind)
    except Boom:
        return ("error",)
    return ("ok", got[1])


def _work(clock: FakeClock, outcome: str, inner: Callable[[], Outcome] | None = None) -> Callable[[], Any]:
    def work() -> Any:
        nested = inner() if inner is not None else None
        clock.advance(_rt[outcome])
        if outcome == "error":
            raise Boom("downstream failed")
        return ("value", nested)

    return work


def _observe(eng: Engine, clock: FakeClock) -> dict[str, Any]:
    return {
        "time": clock.time(),
        "stats": eng.stats(),
        "breakers": eng.breaker_states(),
        "seconds": eng.metrics_since(0),
    }


def drive(path: Path, docs: list[dict[str, Any]], plan: list[tuple[Any, ...]]) -> list[Any]:
    """Run ``plan`` on a fresh engine through ``path``; returns the decisions and observations."""
    clock = FakeClock(T0)
    eng = Engine(clock, probe=FixedProbe())
    eng.register_fallback(NAMED, _named)
    rulesets = [parse_document(d) for d in docs]
    eng.apply(rulesets[0])
    log: list[Any] = []
    who: list[Any] = ["default", None]  # the caller (origin, entrance) of the calls that follow

    def call(step: tuple[Any, ...], inner: Callable[[], Outcome] | None = None) -> Outcome:
        _, resource, outcome, args = step
        with caller_context(who[0], who[1]):
            return path(eng, clock, resource, args, _work(clock, outcome, inner))

    for step in plan:
        kind = step[0]
        if kind == "call":
            log.append(call(step))
        elif kind == "nested":
            inner_log: list[Outcome] = []

            def inner(s: tuple[Any, ...] = step[2], out: list[Outcome] = inner_log) -> Outcome:
                out.append(call(s))
                return out[-1]

            log.append((call(step[1], inner), tuple(inner_log)))
        elif kind == "advance":
            clock.advance(step[1])
            log.append(("advance",))
        elif kind == "as":
            who[:] = [step[1], step[2]]
            log.append(("as",))
        else:
            eng.apply(rulesets[step[1]])
            log.append(("apply",))
        log.append(_observe(eng, clock))
    return log


def _assert_same(docs: list[dict[str, Any]], plan: list[tuple[Any, ...]]) -> None:
    by_guard = drive(via_guard, docs, plan)
    by_entry = drive(via_entry, docs, plan)
    for i, (g, e) in enumerate(zip(by_guard, by_entry, strict=True)):
        assert g == e, f"step {i // 2} {plan[i // 2]!r}: guard() gave {g!r}, entry() gave {e!r}"


# -------------------------------------------------------------------- tests
_QUEUE_THEN_OPEN_BREAKER = (
    [
        {
            "flow": [{"resource": "r", "behavior": "queue", "threshold": 2, "max_queue_ms": 600}],
            "breaker": [
                {
                    "resource": "r",
                    "strategy": "error_count",
                    "threshold": 1,
                    "min_requests": 1,
                    "recovery_s": 0.5,
                }
            ],
        }
    ]
    * 2,
    # the error opens the breaker; the next call queues 0.5 s, past the breaker's recovery
    [("call", "r", "error", None), ("call", "r", "ok", None), ("call", "r", "ok", None)],
)
_WARM_UP = {"resource": "r", "behavior": "warm_up", "threshold": 6, "warm_up_s": 1}
_WARM_UP_THEN_QPS = (
    [{"flow": [_WARM_UP, {"resource": "r", "threshold": 1}]}, {"flow": [_WARM_UP]}],
    # calls the QPS rule blocks must not count as admitted by the warm-up (whose rule, unchanged,
    # keeps its state when the QPS rule goes): else the warm-up admits another number of calls later
    [("call", "r", "ok", None)] * 4 + [("advance", 1.0), ("apply", 1)] + [("call", "r", "ok", None)] * 4,
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(docs=st.lists(rule_docs, min_size=2, max_size=2), plan=steps)
@example(docs=_QUEUE_THEN_OPEN_BREAKER[0], plan=_QUEUE_THEN_OPEN_BREAKER[1])
@example(docs=_WARM_UP_THEN_QPS[0], plan=_WARM_UP_THEN_QPS[1])
def test_guard_and_entry_take_the_same_decisions_and_keep_the_same_statistics(
    docs: list[dict[str, Any]], plan: list[tuple[Any, ...]]
) -> None:
    _assert_same(docs, plan)


def test_the_differential_driver_sees_a_difference():
    """The comparison is not vacuous: a path that skips the checks disagrees with guard()."""

    def unguarded(eng: Engine, clock: FakeClock, resource: str, args: Any, work: Callable[[], Any]) -> Any:
        try:
            return ("ok", work())
        except Boom:
            return ("error",)

    docs, plan = _WARM_UP_THEN_QPS
    assert drive(via_guard, docs, plan) != drive(unguarded, docs, plan)
