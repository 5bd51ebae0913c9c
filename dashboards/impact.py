"""Impact preview: replay a resource's recorded per-second traffic against a proposed rule.

Pure. The offered load of a second is what the resource saw: calls that passed
plus calls that any rule blocked. The replay asks, second by second, how many of
those calls the proposed rule alone would have let through:

- flow, ``grade: qps``: at most ``threshold`` calls per second pass (reject behaviour;
  warm-up and queueing spread the same budget differently, so the totals are the same
  upper bound for a steady second);
- flow, ``grade: concurrency``: by Little's law the concurrency of a second is
  ``qps × rt``, so ``threshold`` concurrent calls allow ``threshold / rt_avg_s`` calls per
  second; a second without a recorded RT is not limited (and is counted in ``unknown_rt_s``);
- param: the hot value carries ``hot_share`` of the offered load (1.0, the worst case:
  every call has the same value; rounded up) and at most ``threshold + burst`` of it passes per second;
  calls with other values are assumed under their limit.

A flow rule is per node unless ``cluster`` is set, so samples are replayed per instance
and then added up; a cluster rule is replayed on the sum over instances.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from collectors.query import Row


@dataclass(frozen=True)
class TrafficSample:
    """One instance's recorded second of one resource."""

    second: int  # epoch seconds
    passed: int
    blocked: int  # by any reason
    rt_avg_ms: float | None = None
    instance: str = ""

    @property
    def offered(self) -> int:
        return self.passed + self.blocked


@dataclass(frozen=True)
class FlowProposal:
    threshold: float
    grade: Literal["qps", "concurrency"] = "qps"
    cluster: bool = False

    def __post_init__(self) -> None:
        if self.grade not in ("qps", "concurrency"):
            raise ValueError(f"grade must be one of qps, concurrency, got {self.grade!r}")
        if not self.threshold >= 0:
            raise ValueError(f"threshold must be >= 0, got {self.threshold!r}")


@dataclass(frozen=True)
class ParamProposal:
    threshold: float
    burst: float = 0.0
    hot_share: float = 1.0

    def __post_init__(self) -> None:
        if not self.threshold >= 0:
            raise ValueError(f"threshold must be >= 0, got {self.threshold!r}")
        if not self.burst >= 0:
            raise ValueError(f"burst must be >= 0, got {self.burst!r}")
        if not 0 < self.hot_share <= 1:
            raise ValueError(f"hot_share must be in (0, 1], got {self.hot_share!r}")


Proposal = FlowProposal | ParamProposal


@dataclass(frozen=True)
class ImpactSecond:
    second: int
    offered: int
    would_pass: int
    would_block: int
    passed_now: int  # as recorded under the rules in force
    blocked_now: int


@dataclass(frozen=True)
class ImpactResult:
    seconds: tuple[ImpactSecond, ...]
    offered: int
    would_pass: int
    would_block: int
    passed_now: int
    blocked_now: int
    peak_offered_qps: int
    seconds_blocking: int  # seconds in which the proposal blocks at least one call
    unknown_rt_s: int = 0  # concurrency grade: seconds replayed without an RT
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def block_share(self) -> float:
        """Share of the offered calls the proposal would block (0 with no traffic)."""
        return self.would_block / self.offered if self.offered else 0.0

    @property
    def has_traffic(self) -> bool:
        return self.offered > 0


def _allowed(proposal: Proposal, offered: int, rt_avg_ms: float | None) -> tuple[int, bool]:
    """(calls that pass in one second, whether the RT was unknown)."""
    if math.isinf(proposal.threshold):  # no limit (e.g. recorded traffic shown for a fallback proposal)
        return offered, False
    if isinstance(proposal, ParamProposal):
        hot = math.ceil(offered * proposal.hot_share)
        budget = math.floor(proposal.threshold + proposal.burst)
        return offered - max(0, hot - budget), False
    if proposal.grade == "qps":
        return min(offered, math.floor(proposal.threshold)), False
    if rt_avg_ms is None or rt_avg_ms <= 0:
        return offered, True
    per_second = math.floor(proposal.threshold * 1000.0 / rt_avg_ms)
    return min(offered, per_second), False


def replay(samples: Iterable[TrafficSample], proposal: Proposal) -> ImpactResult:
    """Would-pass / would-block per second and in total; seconds sorted, one entry per second."""
    per_unit: dict[tuple[int, str], list[TrafficSample]] = defaultdict(list)
    cluster = isinstance(proposal, FlowProposal) and proposal.cluster
    for s in samples:
        per_unit[(s.second, "" if cluster else s.instance)].append(s)

    acc: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # offered, pass, passed_now, blocked_now
    unknown: set[int] = set()
    for (second, _instance), group in per_unit.items():
        passed = sum(s.passed for s in group)
        blocked = sum(s.blocked for s in group)
        offered = passed + blocked
        rts = [(s.rt_avg_ms, s.passed) for s in group if s.rt_avg_ms is not None and s.rt_avg_ms > 0]
        rt = None
        if rts:
            weight = sum(max(n, 1) for _, n in rts)
            rt = sum(r * max(n, 1) for r, n in rts) / weight
        would_pass, rt_unknown = _allowed(proposal, offered, rt)
        if rt_unknown and offered:
            unknown.add(second)
        slot = acc[second]
        slot[0] += offered
        slot[1] += would_pass
        slot[2] += passed
        slot[3] += blocked

    seconds = tuple(
        ImpactSecond(second=sec, offered=o, would_pass=p, would_block=o - p, passed_now=pn, blocked_now=bn)
        for sec, (o, p, pn, bn) in sorted(acc.items())
    )
    notes: list[str] = []
    if unknown:
        notes.append(
            f"{len(unknown)} s without a recorded response time were not limited (concurrency grade)."
        )
    return ImpactResult(
        seconds=seconds,
        offered=sum(s.offered for s in seconds),
        would_pass=sum(s.would_pass for s in seconds),
        would_block=sum(s.would_block for s in seconds),
        passed_now=sum(s.passed_now for s in seconds),
        blocked_now=sum(s.blocked_now for s in seconds),
        peak_offered_qps=max((s.offered for s in seconds), default=0),
        seconds_blocking=sum(1 for s in seconds if s.would_block > 0),
        unknown_rt_s=len(unknown),
        notes=tuple(notes),
    )


def samples_from_rows(rows: Sequence[Row], block_fields: Sequence[str]) -> list[TrafficSample]:
    """Samples from the rows of ``dashboards.queries.resource_traffic`` (bucket 1 s, per instance)."""
    out: list[TrafficSample] = []
    for row in rows:
        v = row.values
        passed = int(v.get("pass") or 0)
        blocked = int(sum(v.get(f) or 0 for f in block_fields))
        if passed == 0 and blocked == 0:
            continue
        rt = v.get("rt_avg_ms")
        out.append(
            TrafficSample(
                second=int(row.time.timestamp()),
                passed=passed,
                blocked=blocked,
                rt_avg_ms=float(rt) if rt is not None else None,
                instance=row.tags.get("instance", ""),
            )
        )
    return out
