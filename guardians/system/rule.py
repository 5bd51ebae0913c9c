"""System rule: one node-wide metric and its threshold (applies to inbound entries)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from guardians._validate import Fields

METRICS = ("qps", "concurrency", "avg_rt", "cpu", "load")
STRATEGIES = ("plain", "bbr")
FIELDS = ("name", "metric", "threshold", "strategy")


@dataclass(frozen=True)
class SystemRule:
    metric: str
    threshold: float
    strategy: str = "plain"
    name: str = ""

    kind = "system"
    resource = "*"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_system(raw: Any, path: str, errors: list[tuple[str, str]]) -> SystemRule | None:
    f = Fields(raw, path, errors, FIELDS)
    metric = f.choice("metric", METRICS)
    if metric == "cpu":
        threshold = f.number("threshold", required=True, gt=0, le=1)
    else:
        threshold = f.number("threshold", required=True, gt=0)
    default = "bbr" if metric == "load" else "plain"
    strategy = f.choice("strategy", STRATEGIES, default=default)
    if strategy == "bbr" and metric not in ("load", "cpu"):
        f.fail(f"{path}.strategy", "bbr is only allowed with metric load or cpu; allowed values here: plain")
    name = f.string("name") or ""
    if not f.ok:
        return None
    return SystemRule(metric=metric, threshold=threshold, strategy=strategy, name=name or f"system:{metric}")
