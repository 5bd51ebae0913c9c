"""Flow control: QPS / concurrency thresholds with reject, warm-up, queue and adaptive behaviours."""

from guardians.flow.rule import FlowRule

__all__ = ["FlowRule"]
