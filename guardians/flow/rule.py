"""Flow rule: a threshold on a resource's QPS or concurrency."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from guardians._validate import Fields

GRADES = ("qps", "concurrency")
STRATEGIES = ("direct", "relate", "chain")
BEHAVIORS = ("reject", "warm_up", "queue", "warm_up_queue", "adaptive")
ALGORITHMS = ("gradient2", "vegas")
FIELDS = (
    "name",
    "resource",
    "grade",
    "threshold",
    "strategy",
    "ref_resource",
    "origin",
    "behavior",
    "warm_up_s",
    "cold_factor",
    "max_queue_ms",
    "algorithm",
    "min_limit",
    "cluster",
)


@dataclass(frozen=True)
class FlowRule:
    resource: str
    threshold: float
    grade: str = "qps"
    strategy: str = "direct"
    ref_resource: str | None = None
    origin: str | None = None
    behavior: str = "reject"
    warm_up_s: float | None = None
    cold_factor: float = 3
    max_queue_ms: int | None = None
    algorithm: str | None = None
    min_limit: int | None = None
    cluster: bool = False
    name: str = ""

    kind = "flow"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.behavior not in ("warm_up", "warm_up_queue"):
            d.pop("cold_factor")
        return {k: v for k, v in d.items() if v is not None and not (k == "cluster" and v is False)}


def parse_flow(raw: Any, path: str, errors: list[tuple[str, str]]) -> FlowRule | None:
    f = Fields(raw, path, errors, FIELDS)
    resource = f.string("resource", required=True)
    grade = f.choice("grade", GRADES, default="qps")
    behavior = f.choice("behavior", BEHAVIORS, default="reject")
    strategy = f.choice("strategy", STRATEGIES, default="direct")
    threshold = f.number("threshold", required=True, gt=0)
    ref = f.string("ref_resource")
    origin = f.string("origin")
    if strategy == "relate" and ref is None:
        f.fail(
            f"{path}.ref_resource",
            "is required when strategy is relate (the resource whose traffic is measured)",
        )
    if strategy != "relate":
        f.forbid("ref_resource", "only allowed with strategy relate")
    if strategy == "chain" and origin is None:
        f.fail(f"{path}.origin", "is required when strategy is chain (the caller origin this rule limits)")
    if strategy != "chain":
        f.forbid("origin", "only allowed with strategy chain")
    if ref is not None and ref == resource:
        f.fail(f"{path}.ref_resource", "must name a different resource than resource")

    warm_up_s = f.number("warm_up_s", gt=0, le=3600)
    cold_factor = f.number("cold_factor", default=3, gt=1, le=100)
    max_queue_ms = f.number("max_queue_ms", ge=0, le=60_000, integer=True)
    algorithm = None
    min_limit = None
    if behavior in ("warm_up", "warm_up_queue"):
        if warm_up_s is None:
            warm_up_s = 10
    else:
        f.forbid("warm_up_s", "only allowed with behavior warm_up or warm_up_queue")
        f.forbid("cold_factor", "only allowed with behavior warm_up or warm_up_queue")
    if behavior in ("queue", "warm_up_queue"):
        if max_queue_ms is None:
            max_queue_ms = 500
    else:
        f.forbid("max_queue_ms", "only allowed with behavior queue or warm_up_queue")
    if behavior == "adaptive":
        algorithm = f.choice("algorithm", ALGORITHMS, default="gradient2")
        min_limit = f.number("min_limit", default=1, ge=1, integer=True)
        if grade != "concurrency":
            f.fail(
                f"{path}.grade",
                "must be concurrency when behavior is adaptive (threshold is the maximum limit)",
            )
        if threshold is not None and min_limit is not None and min_limit > threshold:
            f.fail(f"{path}.min_limit", f"must be <= threshold ({threshold})")
    else:
        f.forbid("algorithm", "only allowed with behavior adaptive")
        f.forbid("min_limit", "only allowed with behavior adaptive")
    if strategy == "relate" and behavior != "reject":
        f.fail(
            f"{path}.behavior",
            "must be reject when strategy is relate (the referenced resource's traffic "
            "is compared with the threshold)",
        )
    if strategy == "chain" and grade != "qps":
        f.fail(f"{path}.grade", "must be qps when strategy is chain (it counts the calls of its origin)")
    if grade == "concurrency" and behavior not in ("reject", "adaptive"):
        f.fail(f"{path}.behavior", "must be one of reject, adaptive when grade is concurrency")
    cluster = f.boolean("cluster")
    if cluster:
        if grade != "qps":
            f.fail(
                f"{path}.grade", "must be qps when cluster is true (nodes share a calls-per-second budget)"
            )
        if behavior != "reject":
            f.fail(
                f"{path}.behavior",
                "must be reject when cluster is true (the shared counter admits or blocks)",
            )
        if strategy == "relate":
            f.fail(f"{path}.strategy", "must be direct or chain when cluster is true")
    name = f.string("name") or ""
    if not f.ok:
        return None
    assert resource is not None and threshold is not None
    return FlowRule(
        resource=resource,
        threshold=threshold,
        grade=grade,
        strategy=strategy,
        ref_resource=ref,
        origin=origin,
        behavior=behavior,
        warm_up_s=warm_up_s,
        cold_factor=cold_factor if behavior in ("warm_up", "warm_up_queue") else 3,
        max_queue_ms=max_queue_ms,
        algorithm=algorithm,
        min_limit=min_limit,
        cluster=cluster,
        name=name
        or f"flow:{resource}:{grade}:{behavior}"
        + (f":{origin}" if origin else "")
        + (f":{ref}" if ref else ""),
    )
