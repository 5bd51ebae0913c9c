"""The Instances page: every node from its heartbeat; a node on another rule version stands out; and
every worker (leader / standby) from the worker heartbeats (``collectors.lease.WorkerBeats``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from console.services.ports import RuleStorePort
from guardians.fleet import GONE, LIVE, STALE, NodeStatus

_ORDER = {LIVE: 0, STALE: 1, GONE: 2}


@dataclass(frozen=True)
class InstanceView:
    instance: str
    address: str
    status: str  # live | stale | gone
    version: str
    rule_version: int | None
    last_beat: datetime
    last_snapshot_at: datetime | None
    outdated: bool  # runs another rule version than the one in force


@dataclass(frozen=True)
class WorkerView:
    instance: str
    host: str
    pid: int
    role: str  # leader | standby | stopped | gone
    last_beat: datetime
    age_s: float


@dataclass(frozen=True)
class InstancesData:
    nodes: list[InstanceView]
    rule_version_in_force: int | None
    queries: int
    errors: list[str] = field(default_factory=list)
    workers: list[WorkerView] = field(default_factory=list)


WORKER_GONE_S = 7.0  # 3 missed renewals (every 2 s) and a second


def worker_views(rows: Sequence[Mapping[str, Any]], leader: str | None = None) -> list[WorkerView]:
    """Worker heartbeats → views: a beat older than ``WORKER_GONE_S`` reads ``gone``; a ``leader``
    beat whose holder no longer holds the lease reads ``standby``."""
    out = []
    for r in rows:
        role = str(r["role"])
        if role in ("leader", "standby") and float(r["age_s"]) > WORKER_GONE_S:
            role = "gone"
        elif role == "leader" and leader is not None and r.get("holder") != leader:
            role = "standby"
        out.append(
            WorkerView(
                str(r["instance"]), str(r["host"]), int(r["pid"]), role, r["last_beat"], float(r["age_s"])
            )
        )
    order = {"leader": 0, "standby": 1, "stopped": 2, "gone": 3}
    return sorted(out, key=lambda w: (order.get(w.role, 4), w.instance))


def instance_view(node: NodeStatus, in_force: int | None) -> InstanceView:
    return InstanceView(
        instance=node.instance,
        address=node.address,
        status=node.state,
        version=node.version,
        rule_version=node.rule_version,
        last_beat=node.last_beat_at,
        last_snapshot_at=node.last_snapshot_at,
        outdated=node.state != GONE and in_force is not None and node.rule_version != in_force,
    )


def instances_data(
    nodes: Sequence[NodeStatus],
    in_force: int | None,
    errors: list[str],
    *,
    queries: int,
    workers: Sequence[WorkerView] = (),
) -> InstancesData:
    views = sorted(
        (instance_view(n, in_force) for n in nodes), key=lambda n: (_ORDER.get(n.status, 3), n.instance)
    )
    return InstancesData(
        nodes=views, rule_version_in_force=in_force, queries=queries, errors=errors, workers=list(workers)
    )


# ------------------------------------------------------------------ the journal relay
RELAY_LAG_ALERT_S = 30.0  # the default alert: relay lag > 30 s for 1 min
RELAY_STALE_S = 30.0


@dataclass(frozen=True)
class RelayView:
    state: str  # ok | lagging | stale | error | absent
    leader: str | None
    lag_s: float | None
    cursor: int
    last_cycle_age_s: float | None
    error: str | None


def relay_view(status: Mapping[str, Any] | None) -> RelayView:
    """The relay's row (``collectors.relay.RelayControl.status()``) → the Instances page's block."""
    if not status:
        return RelayView("absent", None, None, 0, None, None)
    leader, age, lag = status.get("leader"), status.get("last_cycle_age_s"), status.get("lag_s")
    if age is None and leader is None:
        state = "absent"
    elif leader is None or age is None or float(age) > RELAY_STALE_S:
        state = "stale"
    elif lag is not None and float(lag) > RELAY_LAG_ALERT_S:
        state = "lagging"
    elif status.get("error"):
        state = "error"
    else:
        state = "ok"
    return RelayView(
        state=state, leader=leader, lag_s=None if lag is None else float(lag),
        cursor=int(status.get("cursor") or 0), last_cycle_age_s=None if age is None else float(age),
        error=status.get("error"),
    )


# ------------------------------------------------------------------ canary rollout in progress
@dataclass(frozen=True)
class RolloutView:
    canary_id: int
    base_version: int
    targets: list[str]
    running_on: list[str]  # targets whose heartbeat says they run the canary
    waiting_on: list[str]  # targets not (yet) running it
    started_by: str
    why: str
    guard: dict


def rollout(store: RuleStorePort, app: str, nodes: Sequence[NodeStatus]) -> RolloutView | None:
    """The app's running canary (1 rule-store read; None when none runs)."""
    c = store.active_canary(app)
    if c is None:
        return None
    running = {n.instance for n in nodes if n.canary == c.id and n.state != GONE}
    return RolloutView(
        canary_id=c.id, base_version=c.base_version, targets=list(c.targets),
        running_on=sorted(running), waiting_on=[t for t in c.targets if t not in running],
        started_by=c.started_by, why=c.why, guard=dict(c.guard),
    )
