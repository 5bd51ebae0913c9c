"""The canary rollout's check: compare the canary's nodes with the rest and roll back automatically.

``check`` is run by ``tradeguard rules canary status`` and by the worker's ``canary`` job (the
leader's scheduler, every few seconds): the auto-rollback must not depend on someone watching a
terminal, and running it from status too makes it work where no worker runs (a one-node demo, a
test). Both are idempotent: the store ends a running canary once (``CanaryError`` otherwise).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from collectors.query import MetricStore
from dashboards.canary import compare, queries
from guardians.store import Canary, CanaryError, RuleStore

log = logging.getLogger(__name__)
GUARD_BY = "canary-guard"


def pick_share(live: list[str], share: float) -> list[str]:
    """``ceil(share × live nodes)`` of the live instances (sorted by name, so the pick is reproducible)."""
    if not 0 < share <= 1:
        raise CanaryError(f"share must be in (0, 1], got {share!r}")
    if not live:
        raise CanaryError("share: no live node in the fleet to pick from")
    return sorted(live)[: max(1, math.ceil(share * len(live)))]


def check(
    store: RuleStore,
    metrics: MetricStore,
    app: str,
    now: datetime,
    *,
    window_s: float | None = None,
    auto: bool = True,
) -> dict[str, Any]:
    """Status of the app's running (else latest) canary, with the comparison; aborts on a breach when
    the canary's guard asks for it (``guard.auto``) and ``auto`` is on."""
    canary = store.active_canary(app) or store.latest_canary(app)
    if canary is None:
        return {"app": app, "canary": None}
    out: dict[str, Any] = {
        "app": app,
        "canary": canary.to_dict(),
        "stale": canary.state == "running" and store.current_version(app) != canary.base_version,
    }
    if canary.state != "running":
        out["events"] = store.canary_events_of(canary.id)
        return out
    start = (
        canary.started_at if window_s is None else max(canary.started_at, now - timedelta(seconds=window_s))
    )
    seconds = max((now - start).total_seconds(), 1.0)
    q_sums, q_p99 = queries(start, now + timedelta(seconds=1), app)
    try:
        sums = metrics.query(q_sums)
        try:
            p99 = metrics.query(q_p99)
        except Exception:  # a store without percentiles (rollups): no p99
            p99 = []
        cmp = compare(sums, p99, canary.targets, seconds, canary.guard)
    except Exception as exc:
        out["comparison"] = None
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["events"] = store.canary_events_of(canary.id)
        return out
    out["comparison"] = cmp.to_dict()
    if cmp.breached and auto and canary.guard.get("auto", True):
        out["canary"] = _auto_abort(store, app, canary, cmp.verdict, cmp.to_dict())
        out["auto_rolled_back"] = out["canary"] is not None
    out["events"] = store.canary_events_of(canary.id)
    return out


def _auto_abort(
    store: RuleStore, app: str, canary: Canary, verdict: str, detail: dict[str, Any]
) -> dict[str, Any] | None:
    try:
        ended = store.abort_canary(
            app, GUARD_BY, f"auto-rollback of canary {canary.id}: {verdict}", auto=True, detail=detail
        )
    except CanaryError:  # someone else ended it meanwhile
        return None
    log.warning("canary %d of %s rolled back automatically: %s", canary.id, app, verdict)
    return ended.to_dict()


def worker_job(store: RuleStore, metrics: MetricStore, app: str, clock: Any) -> Callable[[], None]:
    """The worker's ``canary`` job: one check per run, on the worker's rule store and metric store."""

    def job() -> None:
        try:
            check(store, metrics, app, clock.now())
        except Exception:
            log.exception("canary check failed")

    return job
