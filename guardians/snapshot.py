"""The per-resource, per-second statistics record read by collectors."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ResourceSnapshot:
    resource: str
    second: int  # epoch seconds, start of the completed 1-second bucket
    passed: int
    block_flow: int
    block_breaker: int
    block_system: int
    block_param: int
    success: int
    error: int
    rt_avg_ms: float
    rt_max_ms: float
    rt_min_ms: float
    concurrency: int

    @property
    def blocked(self) -> int:
        return self.block_flow + self.block_breaker + self.block_system + self.block_param

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
