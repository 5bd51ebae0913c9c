"""The one definition of a guardians rule document: pydantic models of every rule type.

Everything about a rule's fields derives from here:

- validation (``guardians.rules.parse_document`` and each ``parse_<type>``) parses through these
  models once per apply, and ``guardians._validate`` turns pydantic's errors into today's
  ``(path, message)`` pairs (``flow[0].threshold: must be a number > 0 …``);
- the console's rule forms (``console.rule_forms``) read fields, choices, bounds and defaults here;
- the reference tables of ``guardians/RULES.md`` are ``reference_markdown()`` (a unit test fails
  when they disagree; ``python -m guardians.reference --write`` regenerates them);
- ``tradeguard rules schema`` prints ``document_json_schema()`` for editors and CI.

A field's static bounds are pydantic ``Field`` bounds. What depends on another field (a field
required or forbidden with some strategy, a bound that holds for one metric, a default that
depends on the behavior) is declared once in each model's ``CONSTRAINTS`` / ``DEFAULTS``: the
model's validator enforces them, the JSON Schema carries them as ``if``/``then``, the reference
lists them. The engine never sees these models: they compile into the frozen dataclasses of
``guardians/<type>/rule.py``.
"""

from __future__ import annotations

import math
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from annotated_types import Ge, Gt, Le, MaxLen
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    WrapValidator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError, PydanticUndefined

MAX_RULES = 100_000
MAX_NUMBER = 1e12  # a larger number is a typo, not a limit
NAME_LEN = 200


# ------------------------------------------------------------------ field types
def _keep_int(v: Any, handler: Callable[[Any], Any]) -> Any:
    out = handler(v)  # validates (strict: no bool, no string, finite)
    return v if isinstance(v, int) and not isinstance(v, bool) else out  # 200 stays 200 in documents


def _whole(v: Any) -> Any:
    return int(v) if isinstance(v, float) and math.isfinite(v) and v.is_integer() else v


def _key(v: Any) -> Any:
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_LEN)]
Number = Annotated[float, WrapValidator(_keep_int), Field(allow_inf_nan=False)]
Integer = Annotated[int, BeforeValidator(_whole)]
ParamValue = Annotated[str, BeforeValidator(_key), StringConstraints(min_length=1, max_length=NAME_LEN)]
ExceptionLimit = Annotated[int, BeforeValidator(_whole), Field(ge=0, le=10_000_000)]

FlowGrade = Literal["qps", "concurrency"]
FlowStrategy = Literal["direct", "relate", "chain"]
FlowBehavior = Literal["reject", "warm_up", "queue", "warm_up_queue", "adaptive"]
FlowAlgorithm = Literal["gradient2", "vegas"]
BreakerStrategy = Literal["slow_ratio", "error_ratio", "error_count"]
SystemMetric = Literal["qps", "concurrency", "avg_rt", "cpu", "load"]
SystemStrategy = Literal["plain", "bbr"]
ParamGrade = Literal["qps", "concurrency"]
ParamBehavior = Literal["reject", "queue"]
MatchStrategy = Literal["exact", "prefix", "regex"]

WARM_UP = ("warm_up", "warm_up_queue")
PARAM_PATTERN = r"^((header|query|path|cookie|body):[^\s:][^\s]{0,199}|[A-Za-z_][A-Za-z0-9_.-]{0,63})$"
QUEUE = ("queue", "warm_up_queue")


# ------------------------------------------------------------------ cross-field declarations
Cond = Mapping[str, tuple[Any, ...]]  # field → the values for which the condition holds


def _val(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return str(v)


def _or(values: tuple[Any, ...]) -> str:
    vs = [_val(v) for v in values]
    return vs[0] if len(vs) == 1 else ", ".join(vs[:-1]) + " or " + vs[-1]


def cond_text(when: Cond) -> str:
    return " and ".join(f"{f} is {_or(vs)}" for f, vs in when.items())


def _holds(when: Cond, values: Mapping[str, Any]) -> bool:
    return all(values.get(f) in vs for f, vs in when.items())


@dataclass(frozen=True)
class Requires:
    """``field`` must be given when ``when`` holds."""

    field: str
    when: Cond
    why: str = ""

    def doc(self) -> str:
        return f"`{self.field}` is required when {cond_text(self.when)}" + (
            f" ({self.why})" if self.why else ""
        )

    def check(self, values: Mapping[str, Any], given: set[str]) -> str | None:
        if _holds(self.when, values) and self.field not in given:
            return f"is required when {cond_text(self.when)}" + (f" ({self.why})" if self.why else "")
        return None


@dataclass(frozen=True)
class OnlyWith:
    """``field`` may only be given when ``when`` holds."""

    field: str
    when: Cond

    def doc(self) -> str:
        return f"`{self.field}` is only allowed with {cond_text(self.when).replace(' is ', ' ')}"

    def check(self, values: Mapping[str, Any], given: set[str]) -> str | None:
        if self.field in given and not _holds(self.when, values):
            return f"only allowed with {cond_text(self.when).replace(' is ', ' ')}"
        return None


@dataclass(frozen=True)
class MustBe:
    """``field`` must be one of ``values`` when ``when`` holds."""

    field: str
    values: tuple[Any, ...]
    when: Cond
    why: str = ""

    def _text(self) -> str:
        vs = ", ".join(_val(v) for v in self.values)
        return f"must be {vs if len(self.values) == 1 else 'one of ' + vs} when {cond_text(self.when)}" + (
            f" ({self.why})" if self.why else ""
        )

    def doc(self) -> str:
        return f"`{self.field}` {self._text()}"

    def check(self, values: Mapping[str, Any], given: set[str]) -> str | None:
        if _holds(self.when, values) and values.get(self.field) not in self.values:
            return self._text()
        return None


@dataclass(frozen=True)
class Bounds:
    """``field`` obeys narrower bounds when ``when`` holds."""

    field: str
    when: Cond
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    integer: bool = False

    def allowed(self) -> str:
        return describe_number(integer=self.integer, gt=self.gt, ge=self.ge, le=self.le)

    def doc(self) -> str:
        return f"`{self.field}` must be {self.allowed()} when {cond_text(self.when)}"

    def check(self, values: Mapping[str, Any], given: set[str]) -> str | None:
        v = values.get(self.field)
        if not _holds(self.when, values) or v is None:
            return None
        bad = (
            (self.integer and not float(v).is_integer())
            or (self.gt is not None and not v > self.gt)
            or (self.ge is not None and not v >= self.ge)
            or (self.le is not None and not v <= self.le)
        )
        return f"must be {self.allowed()} when {cond_text(self.when)}, got {_fmt(v)}" if bad else None


@dataclass(frozen=True)
class Check:
    """A relation between fields that the JSON Schema cannot say (documented, enforced here)."""

    field: str
    text: str
    fails: Callable[[Mapping[str, Any]], bool]

    def doc(self) -> str:
        return f"`{self.field}` {self.text}"

    def check(self, values: Mapping[str, Any], given: set[str]) -> str | None:
        return self.text if self.fails(values) else None


Constraint = Requires | OnlyWith | MustBe | Bounds | Check


@dataclass(frozen=True)
class Default:
    """``field``, when not given, is ``value`` if ``when`` holds (the first matching one wins)."""

    field: str
    value: Any
    when: Cond


def _fmt(v: Any) -> str:
    return f"'{v}'" if isinstance(v, str) else repr(v)


def _num(v: float) -> str:
    return _val(v) if abs(v) < 1e9 else f"{v:g}"


def describe_number(*, integer: bool, gt: Any = None, ge: Any = None, le: Any = None) -> str:
    rng = [f"{op} {_num(b)}" for op, b in ((">", gt), (">=", ge), ("<=", le)) if b is not None]
    return f"{'an integer' if integer else 'a number'}{' ' + ' and '.join(rng) if rng else ''}"


def _bad_regex(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return True
    return False


# ------------------------------------------------------------------ models
class RuleModel(BaseModel):
    """Common behaviour: unknown fields are errors, ``null`` means "not given", and the
    declared cross-field constraints and conditional defaults apply."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=False)

    kind: ClassVar[str]
    title_text: ClassVar[str]
    CONSTRAINTS: ClassVar[tuple[Constraint, ...]] = ()
    DEFAULTS: ClassVar[tuple[Default, ...]] = ()
    _given: frozenset[str] = PrivateAttr(default=frozenset())

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_absent(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {k: v for k, v in data.items() if v is not None}
        return data

    @model_validator(mode="after")
    def _cross_field(self) -> RuleModel:
        given = {f for f in self.model_fields_set if getattr(self, f) is not None}
        for d in self.DEFAULTS:
            if d.field not in given and getattr(self, d.field) is None and _holds(d.when, self.values()):
                setattr(self, d.field, d.value)
        values = self.values()
        errors = []
        for c in self.CONSTRAINTS:
            message = c.check(values, given)
            if message is not None:
                errors.append((c.field, message))
        if errors:
            raise PydanticCustomError(
                "rule_conflicts", "{count} conflicting field(s)", {"count": len(errors), "errors": errors}
            )
        self._given = frozenset(given)
        return self

    def values(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def given(self) -> frozenset[str]:
        """The fields the document set (not defaults)."""
        return self._given


NAME_DESCRIPTION = (
    "used in logs, `Blocked` errors and the problem+json body; derived from the rule when not given"
)


class FlowRuleModel(RuleModel):
    kind: ClassVar[str] = "flow"
    title_text: ClassVar[str] = "a threshold on a resource's QPS or concurrency"
    resource: Text = Field(description="the guarded resource, e.g. `order.place` or `POST /orders`")
    threshold: Number = Field(
        gt=0,
        le=MAX_NUMBER,
        description="the limit: calls per second (qps) or calls in flight "
        "(concurrency); for `adaptive`, the maximum limit",
    )
    grade: FlowGrade = Field(
        "qps",
        description="what `threshold` limits: calls passed in the sliding last second, or calls in flight",
    )
    behavior: FlowBehavior = Field("reject", description="what happens at the threshold")
    strategy: FlowStrategy = Field(
        "direct",
        description="whose traffic is measured: this resource's (`direct`), another resource's "
        "(`relate`), or only the calls entered from the entrance `ref_resource` (`chain`, e.g. `order.place` "
        "called from `POST /orders`)",
    )
    ref_resource: Text | None = Field(
        None,
        description="`relate`: block this resource when *that* resource's traffic reaches the threshold "
        "(e.g. reads give way to writes); `chain`: the entrance (the HTTP route resource) whose calls "
        "this rule limits and counts",
    )
    limit_app: Text | None = Field(
        None,
        description="the caller origin this rule limits (Sentinel's limitApp): a named origin counts and "
        "limits only that origin's calls; `other` the calls of origins no other flow rule on the resource "
        "names; `default` (or absent) every caller",
    )
    origin: Text | None = Field(
        None,
        description="the earlier spelling of `limit_app` (`strategy: chain, origin: X`): accepted and "
        "stored as `limit_app: X`",
    )
    warm_up_s: Number | None = Field(
        None,
        gt=0,
        le=3600,
        description="warm-up behaviors: after idling, the limit starts at threshold / `cold_factor` and "
        "ramps up to the threshold over about this many seconds of traffic (Sentinel's warm-up token bucket)",
    )
    cold_factor: Number = Field(
        3, gt=1, le=100, description="warm-up behaviors: the cold start admits threshold / this"
    )
    max_queue_ms: Integer | None = Field(
        None,
        ge=0,
        le=60_000,
        description="queue behaviors: calls pass evenly spaced at 1/threshold s and wait their turn up to "
        "this long (ms); a call that would wait longer is blocked",
    )
    algorithm: FlowAlgorithm | None = Field(
        None,
        description="`adaptive`: the adaptive concurrency limit (Netflix concurrency-limits) follows "
        "measured latency — it shrinks as latency grows and recovers when it falls",
    )
    min_limit: Integer | None = Field(
        None, ge=1, le=MAX_NUMBER, description="`adaptive`: the limit never drops below this"
    )
    cluster: bool = Field(
        False,
        description="cluster mode: the threshold holds across **all** nodes (calls per epoch second, shared "
        "through Redis; see [Cluster mode](#cluster-mode)); without `TRADEGUARD_REDIS_URL` it holds per node",
    )
    name: Text | None = Field(None, description=NAME_DESCRIPTION + ", e.g. `flow:order.place:qps:warm_up`")

    DEFAULTS: ClassVar[tuple[Default, ...]] = (
        Default("warm_up_s", 10, {"behavior": WARM_UP}),
        Default("max_queue_ms", 500, {"behavior": QUEUE}),
        Default("algorithm", "gradient2", {"behavior": ("adaptive",)}),
        Default("min_limit", 1, {"behavior": ("adaptive",)}),
    )
    CONSTRAINTS: ClassVar[tuple[Constraint, ...]] = (
        Requires("ref_resource", {"strategy": ("relate",)}, "the resource whose traffic is measured"),
        Check(
            "ref_resource",
            "is required when strategy is chain (the entrance whose calls are limited)",
            lambda v: v.get("strategy") == "chain" and not v.get("ref_resource") and not v.get("origin"),
        ),
        OnlyWith("ref_resource", {"strategy": ("relate", "chain")}),
        OnlyWith("origin", {"strategy": ("chain",)}),
        Check(
            "origin",
            "is the earlier spelling of limit_app: give one of them, without ref_resource",
            lambda v: v.get("origin") is not None
            and (v.get("limit_app") is not None or v.get("ref_resource") is not None),
        ),
        Check(
            "limit_app",
            "must limit grade qps with behavior reject (an origin's calls are counted per second)",
            lambda v: v.get("limit_app") not in (None, "default")
            and (v.get("grade") != "qps" or v.get("behavior") != "reject" or v.get("cluster")),
        ),
        Check(
            "ref_resource",
            "must name a different resource than resource",
            lambda v: v.get("ref_resource") is not None and v["ref_resource"] == v.get("resource"),
        ),
        OnlyWith("warm_up_s", {"behavior": WARM_UP}),
        OnlyWith("cold_factor", {"behavior": WARM_UP}),
        OnlyWith("max_queue_ms", {"behavior": QUEUE}),
        OnlyWith("algorithm", {"behavior": ("adaptive",)}),
        OnlyWith("min_limit", {"behavior": ("adaptive",)}),
        MustBe("grade", ("concurrency",), {"behavior": ("adaptive",)}, "threshold is the maximum limit"),
        Check(
            "min_limit",
            "must be <= threshold",
            lambda v: v.get("min_limit") is not None and v["min_limit"] > v["threshold"],
        ),
        MustBe(
            "behavior",
            ("reject",),
            {"strategy": ("relate",)},
            "the referenced resource's traffic is compared with the threshold",
        ),
        MustBe("grade", ("qps",), {"strategy": ("chain",)}, "it counts the calls of its entrance"),
        MustBe("behavior", ("reject",), {"strategy": ("chain",)}, "it counts the calls of its entrance"),
        MustBe("behavior", ("reject", "adaptive"), {"grade": ("concurrency",)}),
        MustBe("grade", ("qps",), {"cluster": (True,)}, "nodes share a calls-per-second budget"),
        MustBe("behavior", ("reject",), {"cluster": (True,)}, "the shared counter admits or blocks"),
        MustBe("strategy", ("direct",), {"cluster": (True,)}),
    )


class BreakerRuleModel(RuleModel):
    kind: ClassVar[str] = "breaker"
    title_text: ClassVar[str] = "open a resource's circuit when it is slow or failing"
    resource: Text = Field(description="the guarded resource, e.g. `payment.charge`")
    strategy: BreakerStrategy = Field(description="what trips the breaker")
    threshold: Number = Field(
        ge=0,
        le=MAX_NUMBER,
        description="trips when the ratio of bad calls is *above* it (`*_ratio`), or the error count "
        "*reaches* it (`error_count`)",
    )
    max_rt_ms: Number | None = Field(
        None, gt=0, le=3_600_000, description="`slow_ratio`: a call slower than this (ms) is slow"
    )
    stat_interval_ms: Integer = Field(
        1000,
        ge=500,
        le=60_000,
        description="the statistics window (ms): it slides in 500 ms steps over the resource's own "
        "per-half-second records (the last minute is kept); counting restarts when the circuit closes",
    )
    min_requests: Integer = Field(
        5, ge=1, le=1_000_000, description="no trip before this many calls in the window"
    )
    recovery_s: Number = Field(
        10.0, gt=0, le=86_400, description="how long the circuit stays open (s) before half-open probes"
    )
    probes: Integer = Field(
        1,
        ge=1,
        le=1000,
        description="half-open: this many trial calls pass; all succeeding closes the circuit, any "
        "failing (or slow) re-opens it",
    )
    shared: bool = Field(
        False,
        description="cluster mode: the circuit's state is shared by all nodes through pybreaker's Redis "
        "storage (a circuit one node opens opens everywhere within about a second; see "
        "[Cluster mode](#cluster-mode)); without `TRADEGUARD_REDIS_URL` the breaker is per node",
    )
    name: Text | None = Field(
        None, description=NAME_DESCRIPTION + ", e.g. `breaker:payment.charge:error_ratio`"
    )

    CONSTRAINTS: ClassVar[tuple[Constraint, ...]] = (
        Bounds("threshold", {"strategy": ("slow_ratio", "error_ratio")}, ge=0, le=1),
        Bounds("threshold", {"strategy": ("error_count",)}, ge=1, integer=True),
        Requires("max_rt_ms", {"strategy": ("slow_ratio",)}, "calls slower than this are slow"),
        OnlyWith("max_rt_ms", {"strategy": ("slow_ratio",)}),
    )


class SystemRuleModel(RuleModel):
    kind: ClassVar[str] = "system"
    title_text: ClassVar[str] = "adaptive protection of the whole node (inbound HTTP requests)"
    metric: SystemMetric = Field(
        description="node-wide inbound QPS, requests in flight, average response time (ms, last second), "
        "CPU usage (0…1), 1-minute load average"
    )
    threshold: Number = Field(gt=0, le=MAX_NUMBER, description="the limit of the metric")
    strategy: SystemStrategy | None = Field(
        None,
        description="`bbr` (`load`, `cpu` only): Sentinel's BBR rule — block only when the metric is over "
        "the threshold **and** the requests in flight exceed max success QPS × min RT of the last minute "
        "(what the node has shown it can complete)",
    )
    name: Text | None = Field(None, description=NAME_DESCRIPTION + ", e.g. `system:load`")

    DEFAULTS: ClassVar[tuple[Default, ...]] = (
        Default("strategy", "bbr", {"metric": ("load",)}),
        Default("strategy", "plain", {}),
    )
    CONSTRAINTS: ClassVar[tuple[Constraint, ...]] = (
        Bounds("threshold", {"metric": ("cpu",)}, gt=0, le=1),
        MustBe(
            "strategy", ("plain",), {"metric": ("qps", "concurrency", "avg_rt")}, "bbr is for load or cpu"
        ),
    )


class ParamRuleModel(RuleModel):
    kind: ClassVar[str] = "param"
    title_text: ClassVar[str] = "hot parameters: per-value limits on one argument"
    resource: Text = Field(description="the guarded resource, e.g. `order.place`")
    param: Annotated[str, StringConstraints(strip_whitespace=True, pattern=PARAM_PATTERN)] = Field(
        description="where the limited value comes from. Core resources: the call argument "
        "(`guard(..., args=...)`): `sku` (every line of an order), `buyer`, `shop`, `order`. HTTP route "
        "resources (Sentinel's gateway rules): `client_ip` (X-Forwarded-For only from "
        "`TRADEGUARD_TRUSTED_PROXIES`), `header:NAME`, `query:NAME`, `path:NAME`, `cookie:NAME`, "
        "`body:FIELD` (a top-level field of a JSON body)"
    )
    threshold: Integer = Field(
        ge=0, le=10_000_000, description="calls per value per `duration_s` (0: every value blocked)"
    )
    duration_s: Integer = Field(
        1,
        ge=1,
        le=86_400,
        description="the window, s (fixed windows as in the `limits` library: a value's window starts "
        "with its first call after the last one ended)",
    )
    burst: Integer = Field(
        0,
        ge=0,
        le=10_000_000,
        description="a pool of extra calls a value may take above its threshold, refilled every 10 "
        "windows: a short spike passes, a sustained one is held to the threshold",
    )
    exceptions: dict[ParamValue, ExceptionLimit] | None = Field(
        None,
        description="per-value thresholds, e.g. `{FLASH-001: 200, banned-buyer: 0}`",
    )
    grade: ParamGrade = Field(
        "qps",
        description="what `threshold` limits per value: calls per `duration_s` (`qps`), or calls of that "
        "value in flight (`concurrency`: the exit gives back the value it counted, also after an error)",
    )
    behavior: ParamBehavior = Field(
        "reject",
        description="`qps` grade: `reject` refuses the calls over the threshold; `queue` paces each value "
        "(calls of one value pass evenly spaced at `duration_s` / threshold and wait their turn up to "
        "`max_queue_ms`; Sentinel's CONTROL_BEHAVIOR_RATE_LIMITER for hot params)",
    )
    max_queue_ms: Integer | None = Field(
        None,
        ge=0,
        le=60_000,
        description="`queue`: the longest a call waits for its value's turn (ms); a longer wait is blocked",
    )
    match_strategy: MatchStrategy | None = Field(
        None,
        description="`header:`/`query:` params (Sentinel's gateway param matching): only values that "
        "match `pattern` are limited — `exact` (equal), `prefix` (starts with) or `regex` (a full match); "
        "other values pass uncounted",
    )
    pattern: Annotated[str, StringConstraints(min_length=1, max_length=NAME_LEN)] | None = Field(
        None, description="the value, prefix or regular expression `match_strategy` compares with"
    )
    cluster: bool = Field(
        False,
        description="cluster mode: each value's threshold holds across **all** nodes (one flash-sale SKU "
        "at N/s fleet-wide): each node leases a few tokens per value and second from Redis (as cluster "
        "flow rules); without `TRADEGUARD_REDIS_URL`, or while Redis is unreachable, it holds its share "
        "per node",
    )
    name: Text | None = Field(None, description=NAME_DESCRIPTION + ", e.g. `param:order.place:sku`")

    DEFAULTS: ClassVar[tuple[Default, ...]] = (
        Default("max_queue_ms", 500, {"behavior": ("queue",)}),
    )
    CONSTRAINTS: ClassVar[tuple[Constraint, ...]] = (
        Check("cluster", "needs duration_s 1 and no burst", lambda v: bool(v.get("cluster"))
              and (v.get("duration_s") != 1 or bool(v.get("burst")))),
        MustBe("behavior", ("reject",), {"grade": ("concurrency",)}, "a value over its limit is refused"),
        MustBe("cluster", (False,), {"grade": ("concurrency",)}, "calls in flight are counted per node"),
        MustBe("cluster", (False,), {"behavior": ("queue",)}, "a value is paced per node"),
        Check("burst", "is only allowed with grade qps and behavior reject",
              lambda v: bool(v.get("burst")) and (v.get("grade") != "qps" or v.get("behavior") != "reject")),
        Check("duration_s", "must be 1 with grade concurrency (calls in flight have no window)",
              lambda v: v.get("grade") == "concurrency" and v.get("duration_s") != 1),
        OnlyWith("max_queue_ms", {"behavior": ("queue",)}),
        Check("pattern", "is required with match_strategy", lambda v: bool(v.get("match_strategy"))
              and v.get("pattern") is None),
        Check("match_strategy", "is required with pattern (exact, prefix or regex)",
              lambda v: v.get("pattern") is not None and not v.get("match_strategy")),
        Check("match_strategy", "is only allowed with a header: or query: param (Sentinel's gateway "
              "param matching)", lambda v: bool(v.get("match_strategy"))
              and not str(v.get("param") or "").startswith(("header:", "query:"))),
        Check("pattern", "must be a valid regular expression", lambda v: v.get("match_strategy") == "regex"
              and v.get("pattern") is not None and _bad_regex(v["pattern"])),
    )


AuthorityStrategy = Literal["allow", "deny"]


class AuthorityRuleModel(RuleModel):
    kind: ClassVar[str] = "authority"
    title_text: ClassVar[str] = "allow-list or deny-list of caller origins per resource"
    resource: Text = Field(description="the guarded resource, e.g. `POST /orders`")
    strategy: AuthorityStrategy = Field(
        description="`deny`: calls from these origins are refused; `allow`: only these origins pass "
        "(Sentinel's black/white list)"
    )
    origins: list[Text] = Field(
        min_length=1, max_length=1000, description="caller origins, e.g. `[bot, scraper]`"
    )
    name: Text | None = Field(None, description=NAME_DESCRIPTION + ", e.g. `authority:POST /orders:deny`")


FALLBACK_PATTERN = r"^[A-Za-z0-9_.-]+$"


class DegradeRuleModel(RuleModel):
    kind: ClassVar[str] = "degrade"
    title_text: ClassVar[str] = "a named fallback instead of a failure"
    resource: Text = Field(description="the guarded resource, e.g. `payment.charge`")
    fallback: Annotated[str, StringConstraints(max_length=NAME_LEN, pattern=FALLBACK_PATTERN)] = Field(
        "default",
        description="a fallback name of letters, digits, `_ - .` registered in code with "
        "`engine.register_fallback(name, fn)`; `default` means the fallback the call site passes to "
        "`guard(..., fallback=)`",
    )
    name: Text | None = Field(None, description=NAME_DESCRIPTION + ", e.g. `degrade:payment.charge:default`")


MODELS: dict[str, type[RuleModel]] = {
    "flow": FlowRuleModel,
    "breaker": BreakerRuleModel,
    "system": SystemRuleModel,
    "param": ParamRuleModel,
    "degrade": DegradeRuleModel,
    "authority": AuthorityRuleModel,
}
RULE_TYPES: tuple[str, ...] = tuple(MODELS)


class RuleDocument(BaseModel):
    """A guardians rule document: rule type → list of rules, applied whole or not at all."""

    model_config = ConfigDict(extra="forbid", strict=True, title="guardians rule document")

    flow: list[FlowRuleModel] | None = Field(None, description=f"flow rules: {FlowRuleModel.title_text}")
    breaker: list[BreakerRuleModel] | None = Field(
        None, description=f"breaker rules: {BreakerRuleModel.title_text}"
    )
    system: list[SystemRuleModel] | None = Field(
        None, description=f"system rules: {SystemRuleModel.title_text}"
    )
    param: list[ParamRuleModel] | None = Field(None, description=f"param rules: {ParamRuleModel.title_text}")
    degrade: list[DegradeRuleModel] | None = Field(
        None, description=f"degrade rules: {DegradeRuleModel.title_text}"
    )
    authority: list[AuthorityRuleModel] | None = Field(
        None, description=f"authority rules: {AuthorityRuleModel.title_text}"
    )


# ------------------------------------------------------------------ field introspection
@dataclass(frozen=True)
class FieldFacts:
    """What a field accepts, read from its model: the form, the errors and the reference use it."""

    name: str
    type: str  # text | number | int | bool | select | mapping
    description: str
    required: bool
    default: Any  # None when there is no static default
    options: tuple[str, ...] = ()
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    max_length: int | None = None
    pattern: str | None = None
    value: FieldFacts | None = None  # mapping fields: what each value accepts


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _facts(name: str, tp: Any, metadata: list[Any], info: FieldInfo | None) -> FieldFacts:
    tp = _strip_optional(tp)
    meta = list(metadata)
    while typing.get_origin(tp) is Annotated:
        args = typing.get_args(tp)
        tp = args[0]
        for m in args[1:]:
            meta.extend(m.metadata if isinstance(m, FieldInfo) else [m])
    bounds: dict[str, Any] = {}
    for m in meta:
        if isinstance(m, Gt):
            bounds["gt"] = m.gt
        elif isinstance(m, Ge):
            bounds["ge"] = m.ge
        elif isinstance(m, Le):
            bounds["le"] = m.le
        elif isinstance(m, MaxLen):
            bounds["max_length"] = m.max_length
        elif isinstance(m, StringConstraints):
            if m.max_length is not None:
                bounds["max_length"] = m.max_length
            if m.pattern is not None:
                bounds["pattern"] = str(m.pattern)
        elif hasattr(m, "max_length") and getattr(m, "max_length", None) is not None:
            bounds["max_length"] = m.max_length
    description = (info.description if info else "") or ""
    required = bool(info.is_required()) if info else True
    default = None if info is None or info.default is PydanticUndefined else info.default
    origin = typing.get_origin(tp)
    if origin is Literal:
        return FieldFacts(name, "select", description, required, default, tuple(typing.get_args(tp)))
    if origin is dict:
        _, vt = typing.get_args(tp)
        return FieldFacts(
            name, "mapping", description, required, default, value=_facts("value", vt, [], None)
        )
    kind = {bool: "bool", int: "int", float: "number", str: "text"}.get(tp, "text")
    return FieldFacts(name, kind, description, required, default, **bounds)


def fields_of(model: type[BaseModel]) -> tuple[FieldFacts, ...]:
    """The fields of a rule model, in the model's (the form's) order."""
    return tuple(_facts(n, f.annotation, list(f.metadata), f) for n, f in model.model_fields.items())


def field_of(model: type[BaseModel], name: str) -> FieldFacts:
    f = model.model_fields[name]
    return _facts(name, f.annotation, list(f.metadata), f)


def allowed_text(f: FieldFacts) -> str:
    """What the field accepts, as the error messages say it: "a number > 0 and <= 3600"."""
    if f.type in ("number", "int"):
        return describe_number(integer=f.type == "int", gt=f.gt, ge=f.ge, le=f.le)
    if f.type == "select":
        return "one of " + ", ".join(f.options)
    if f.type == "bool":
        return "true or false"
    if f.type == "mapping":
        return "a mapping of parameter value to threshold " + (
            f"({allowed_text(f.value)})" if f.value else ""
        )
    if f.pattern:
        return f"a name matching {f.pattern}"
    return "a non-empty string"


def conditional_default(model: type[RuleModel], name: str) -> str | None:
    """The defaults that depend on other fields, in words: "10 when behavior is warm_up or …"."""
    parts = [
        f"`{_val(d.value)}`" + (f" when {cond_text(d.when)}" if d.when else " otherwise")
        for d in model.DEFAULTS
        if d.field == name
    ]
    return ", ".join(parts) or None


def default_text(model: type[RuleModel], f: FieldFacts) -> str:
    if f.required:
        return "required"
    cond = conditional_default(model, f.name)
    if cond:
        return cond
    if f.default is None:
        return "derived" if f.name == "name" else "none"
    return f"`{_val(f.default)}`"


# ------------------------------------------------------------------ JSON Schema
def _cond_schema(model: type[RuleModel], when: Cond) -> dict[str, Any]:
    props: dict[str, Any] = {}
    required = []
    for f, vs in when.items():
        props[f] = {"enum": list(vs)}
        defaults = [model.model_fields[f].default, *(d.value for d in model.DEFAULTS if d.field == f)]
        if not any(d is not PydanticUndefined and d in vs for d in defaults):
            required.append(f)  # absent, the field cannot hold one of these values
    out: dict[str, Any] = {"properties": props}
    if required:
        out["required"] = required
    return out


def _conditionals(model: type[RuleModel]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for c in model.CONSTRAINTS:
        if isinstance(c, Requires):
            out.append({"if": _cond_schema(model, c.when), "then": {"required": [c.field]}})
        elif isinstance(c, OnlyWith):
            out.append({"if": {"required": [c.field]}, "then": _cond_schema(model, c.when)})
        elif isinstance(c, MustBe):
            out.append({"if": _cond_schema(model, c.when), "then": _cond_schema(model, {c.field: c.values})})
        elif isinstance(c, Bounds):
            prop: dict[str, Any] = {}
            if c.integer:
                prop["type"] = "integer"
            for key, b in (("exclusiveMinimum", c.gt), ("minimum", c.ge), ("maximum", c.le)):
                if b is not None:
                    prop[key] = b
            out.append({"if": _cond_schema(model, c.when), "then": {"properties": {c.field: prop}}})
    return out


def document_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a rule document, with the cross-field rules as if/then."""
    schema = RuleDocument.model_json_schema()
    for model in MODELS.values():
        sub = schema["$defs"][model.__name__]
        sub["description"] = f"{model.kind} rule: {model.title_text}"
        for d in model.DEFAULTS:
            prop = sub["properties"][d.field]
            prop["description"] += f" (default: {conditional_default(model, d.field)})".replace("`", "")
        conditionals = _conditionals(model)
        if conditionals:
            sub["allOf"] = conditionals
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


# ------------------------------------------------------------------ RULES.md reference
def _bounds_text(model: type[RuleModel], f: FieldFacts) -> str:
    parts = []
    if f.type in ("number", "int"):
        rng = [f"{op} {_num(b)}" for op, b in ((">", f.gt), ("≥", f.ge), ("≤", f.le)) if b is not None]
        parts.append(", ".join(rng))
    elif f.type == "mapping" and f.value is not None:
        parts.append("values: " + _bounds_text(model, f.value))
    elif f.type == "text":
        parts.append(f"≤ {f.max_length} characters" if f.max_length else "")
        if f.pattern:
            parts.append(f"pattern `{f.pattern}`")
    for c in model.CONSTRAINTS:
        if isinstance(c, Bounds) and c.field == f.name:
            parts.append(f"{cond_text(c.when)}: {c.allowed().replace('>=', '≥').replace('<=', '≤')}")
    return "; ".join(p for p in parts if p) or ""


def _type_text(f: FieldFacts) -> str:
    if f.type == "select":
        return " \\| ".join(f"`{o}`" for o in f.options)
    if f.type == "mapping":
        return "mapping value → " + (_type_text(f.value) if f.value else "any")
    return {"text": "string", "number": "number", "int": "integer", "bool": "`true` \\| `false`"}[f.type]


def reference_markdown(kind: str) -> str:
    """The reference table (field, type, default, bounds, description) and cross-field rules of a type."""
    model = MODELS[kind]
    lines = [
        "| field | type | default | bounds | description |",
        "|---|---|---|---|---|",
    ]
    for f in fields_of(model):
        desc = f.description.replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| `{f.name}` | {_type_text(f)} | {default_text(model, f)} | {_bounds_text(model, f)} | {desc} |"
        )
    if model.CONSTRAINTS:
        lines += ["", "Rules between fields:", ""]
        lines += [f"- {c.doc()}" for c in model.CONSTRAINTS if not isinstance(c, Bounds)]
    return "\n".join(lines)


BEGIN = "<!-- BEGIN GENERATED {kind} (python -m guardians.reference --write) -->"
END = "<!-- END GENERATED {kind} -->"
RULES_MD = Path(__file__).with_name("RULES.md")


def render_rules_md(text: str) -> str:
    """``text`` (RULES.md) with every generated block replaced by the models' reference."""
    for kind in RULE_TYPES:
        begin, end = BEGIN.format(kind=kind), END.format(kind=kind)
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
        if not pattern.search(text):
            raise ValueError(f"RULES.md has no generated block for {kind}: add the lines {begin!r} … {end!r}")
        text = pattern.sub(lambda _m, k=kind, b=begin, e=end: f"{b}\n{reference_markdown(k)}\n{e}", text)
    return text
