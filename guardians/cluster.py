"""Cluster mode: flow thresholds shared by every node through Redis, and shared breakers.

A flow rule with ``cluster: true`` holds its threshold across all nodes: the
nodes share one counter per rule and 1 s window (fixed windows aligned to the
epoch second) in a ``limits`` storage — ``limits.storage.RedisStorage`` built from
``TRADEGUARD_REDIS_URL`` in production, any ``limits`` storage in tests. A node does
not pay a round trip per call: it takes tokens from the shared counter in small
*leases* of ``k`` tokens (one ``incr(key, amount=k)``), spends them locally, and
refills in the background when half of a lease is spent. ``k`` adapts to the
node's own rate and the threshold: ``k = clamp(rate × lease_s, 1, threshold ×
budget / live_nodes)``, so tokens leased but left unspent at the end of a window
(the only way the cluster total falls short of the threshold) stay within about
``1.5 × budget`` of it (3 % with the default budget of 2 %); the total never
exceeds it (a lease is granted only up to what is left in the window).

When the storage fails (Redis unreachable, timeout) the call is never failed:
the node switches to *fallback* — a local share of each cluster threshold,
``threshold ÷ live nodes`` (the live count comes from the fleet heartbeats,
refreshed in the background) — and probes the storage every ``probe_s``; once a
probe succeeds it returns to cluster mode. ``Cluster.status()`` reports the mode
(``/ops/health``).

Breaker rules with ``shared: true`` keep their state in pybreaker's
``CircuitRedisStorage`` as well, through its public API only: transitions are
written to Redis in the background (never on the call path), and every ``sync_s``
each node reads the shared state and adopts an ``open`` (or a ``closed`` after
another node's probes succeeded) with the usual ``BreakerStateChanged`` event.

Everything time-dependent reads the injected clock; ``maintain()`` and
``run_pending()`` do the background work in tests, ``start()`` runs them on one
daemon thread in a node. Redis is imported only here, and only when a URL is used.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pybreaker

from common.clock import Clock, SystemClock
from common.redact import redact_text, redact_url, url_secrets
from guardians.errors import FlowBlocked
from guardians.events import CLOSED, HALF_OPEN, OPEN

if TYPE_CHECKING:
    from guardians.breaker.checker import BreakerChecker
    from guardians.breaker.rule import BreakerRule
    from guardians.flow.rule import FlowRule
    from guardians.stat import ResourceNode

log = logging.getLogger(__name__)

CLUSTER = "cluster"
FALLBACK = "fallback"
WINDOW_EXPIRY_S = 3  # a window's counter outlives the window a little (clock skew between nodes)


class Cluster:
    """Shared limits and breakers for one engine (one node).

    ``storage``: a ``limits`` storage (``incr(key, expiry, amount)``, ``check()``).
    ``live_nodes``: how many nodes share a threshold in fallback (e.g. ``Fleet.live_count``);
    called from ``maintain()`` only (it may do I/O), at most every ``nodes_s``.
    ``redis``: a redis client for shared breakers (``None``: breakers stay local).
    """

    def __init__(
        self,
        storage: Any,
        *,
        clock: Clock | None = None,
        live_nodes: Callable[[], int] | None = None,
        namespace: str = "tradeguard",
        redis: Any = None,
        lease_s: float = 0.05,
        budget: float = 0.02,
        probe_s: float = 1.0,
        nodes_s: float = 5.0,
        sync_s: float = 1.0,
        url: str | None = None,
    ) -> None:
        """``url``: the storage's URL, shown (redacted) in logs and ``status()``."""
        if not 0 < budget <= 0.5:
            raise ValueError(f"budget: must be in (0, 0.5], got {budget}")
        self.storage = storage
        self.clock = clock or SystemClock()
        self.live_nodes = live_nodes
        self.namespace = namespace
        self.redis = redis
        self.lease_s = lease_s
        self.budget = budget
        self.probe_s = probe_s
        self.nodes_s = nodes_s
        self.sync_s = sync_s
        self.url = redact_url(url) if url else None
        self._secrets = url_secrets(url) if url else ()
        self.mode = CLUSTER
        self.ok = True  # mode == CLUSTER (a bool for the hot path)
        self.nodes = 1  # live nodes sharing a threshold (≥ 1)
        self.last_error: str | None = None
        self.fallback_since: float | None = None
        self.fallbacks = 0  # how many times it fell back
        self.leases = 0
        self.lease_errors = 0
        self._next_probe = 0.0
        self._next_nodes = 0.0
        self._next_sync = 0.0
        self._limiters: dict[FlowRule, ClusterQps] = {}
        self._breakers: dict[BreakerRule, SharedBreakerStorage] = {}
        self._pending: deque[Callable[[], None]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------- building
    def flow_checker(self, rule: FlowRule, node_for: Any) -> ClusterQps:
        """The checker of a ``cluster: true`` flow rule (kept while the rule is unchanged)."""
        with self._lock:
            chk = self._limiters.get(rule)
            if chk is None:
                chk = self._limiters[rule] = ClusterQps(rule, self)
            return chk

    def breaker_storage(self, rule: BreakerRule) -> SharedBreakerStorage | None:
        """pybreaker storage of a ``shared: true`` breaker rule (None without a redis client)."""
        if self.redis is None:
            return None
        with self._lock:
            st = self._breakers.get(rule)
            if st is None:
                st = self._breakers[rule] = SharedBreakerStorage(self, self.key("breaker", rule.name))
            return st

    def retain(self, flow_rules: Any, breaker_rules: Any) -> None:
        """Forget limiters and shared breakers of rules no longer in force."""
        with self._lock:
            keep_f, keep_b = set(flow_rules), set(breaker_rules)
            self._limiters = {r: c for r, c in self._limiters.items() if r in keep_f}
            self._breakers = {r: s for r, s in self._breakers.items() if r in keep_b}

    def key(self, *parts: object) -> str:
        return ":".join((self.namespace, *(str(p) for p in parts)))

    # ------------------------------------------------------------ the leases
    def take(self, key: str, want: int, limit: int) -> int:
        """Lease up to ``want`` tokens of window ``key`` (limit ``limit``); raises on storage errors."""
        new = int(self.storage.incr(key, WINDOW_EXPIRY_S, amount=want))
        self.leases += 1
        return max(0, min(want, limit - (new - want)))

    def lease_size(self, threshold: float, rate: float) -> int:
        cap = max(1, math.floor(threshold * self.budget / max(self.nodes, 1)))
        return max(1, min(cap, math.ceil(rate * self.lease_s)))

    def share(self, threshold: float) -> int:
        """This node's share of a cluster threshold in fallback."""
        return max(1, math.floor(threshold / max(self.nodes, 1)))

    def failed(self, exc: BaseException) -> None:
        """A storage call failed: fall back to local shares (and probe later)."""
        self.lease_errors += 1
        self.last_error = self._describe(exc)
        if self.mode != FALLBACK:
            self.mode = FALLBACK
            self.ok = False
            self.fallbacks += 1
            t = self.clock.time()
            self.fallback_since = t
            self._next_probe = t + self.probe_s
            log.warning(
                "cluster storage %s failed (%s): each node now holds threshold / %d live nodes; "
                "probing every %.1f s",
                self.url or "",
                self.last_error,
                self.nodes,
                self.probe_s,
            )
        self._wake.set()

    def submit(self, job: Callable[[], None]) -> None:
        """Queue background work (lease refills, breaker writes)."""
        self._pending.append(job)
        self._wake.set()

    def run_pending(self) -> int:
        """Run queued background jobs (the worker thread does this; tests call it)."""
        n = 0
        while True:
            try:
                job = self._pending.popleft()
            except IndexError:
                return n
            n += 1
            try:
                job()
            except Exception:
                log.exception("cluster background job failed")

    # ------------------------------------------------------------- upkeep
    def maintain(self) -> None:
        """Refresh the live node count, probe the storage in fallback, sync shared breakers."""
        t = self.clock.time()
        if self.live_nodes is not None and t >= self._next_nodes:
            self._next_nodes = t + self.nodes_s
            try:
                n = int(self.live_nodes())
            except Exception as exc:
                log.warning("cluster: live node count unavailable (%s); keeping %d", exc, self.nodes)
            else:
                if n >= 1 and n != self.nodes:
                    log.info("cluster: %d live nodes (was %d)", n, self.nodes)
                    self.nodes = n
        if self.mode == FALLBACK and t >= self._next_probe:
            self._next_probe = t + self.probe_s
            if self._probe():
                log.info("cluster storage %s is back: cluster mode", self.url or "")
                self.mode = CLUSTER
                self.ok = True
                self.fallback_since = None
        if self.mode == CLUSTER and self._breakers and t >= self._next_sync:
            self._next_sync = t + self.sync_s
            for st in list(self._breakers.values()):
                try:
                    st.sync()
                except Exception as exc:
                    self.failed(exc)
                    break

    def _probe(self) -> bool:
        try:
            ok = bool(self.storage.check())
            if ok and self.redis is not None:
                self.redis.ping()
            return ok
        except Exception as exc:
            self.last_error = self._describe(exc)
            return False

    def _describe(self, exc: BaseException) -> str:
        """``exc`` as shown in logs and ``/ops/health``: without the storage's credentials."""
        return redact_text(f"{type(exc).__name__}: {exc}", self._secrets)

    def status(self) -> dict[str, Any]:
        """For ``/ops/health``: mode, live nodes, rules, leases, the last error."""
        t = self.clock.time()
        return {
            "status": "ok" if self.mode == CLUSTER else "degraded",
            "mode": self.mode,
            "storage": self.url,
            "live_nodes": self.nodes,
            "cluster_rules": len(self._limiters),
            "shared_breakers": len(self._breakers),
            "leases": self.leases,
            "lease_errors": self.lease_errors,
            "fallbacks": self.fallbacks,
            "fallback_for_s": round(t - self.fallback_since, 1) if self.fallback_since is not None else None,
            "last_error": self.last_error,
            "detail": "thresholds shared through the cluster storage"
            if self.mode == CLUSTER
            else f"cluster storage unreachable: each node holds threshold / {self.nodes} live nodes",
        }

    # ------------------------------------------------------------- thread
    def start(self, interval_s: float = 0.2) -> None:
        """Run background jobs and ``maintain()`` on one daemon thread."""
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            log.info("cluster worker started (storage %s, namespace %s)", self.url, self.namespace)
            while not self._stop.is_set():
                self._wake.wait(interval_s)
                self._wake.clear()
                self.run_pending()
                try:
                    self.maintain()
                except Exception:
                    log.exception("cluster upkeep failed")
            log.info("cluster worker stopped")

        self._thread = threading.Thread(target=loop, name="guardians-cluster", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        th = self._thread
        if th is None:
            return
        self._stop.set()
        self._wake.set()
        th.join(timeout=5)
        self._thread = None

    def close(self) -> None:
        self.stop()
        for obj in (self.redis, getattr(self.storage, "storage", None)):
            close = getattr(obj, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:
                    log.debug("closing the cluster storage failed", exc_info=True)


class ClusterQps:
    """The checker of one ``cluster: true`` QPS rule on one node: leases from the shared window counter.

    Per window (epoch second) the node holds the tokens it leased but has not spent;
    a call spends one. When a lease is half spent a refill is queued in the background;
    with none left the call takes a lease itself (one storage round trip). Once the
    shared counter is spent (a lease came back short) the node blocks until the
    next window. In fallback the node admits its share of the threshold per window.

    The tokens are an iterator counting down what is left of the newest lease:
    ``next()`` on it is atomic under the GIL, so spending a token takes no lock
    (window changes, leases and the fallback path do).
    """

    has_exit = False
    __slots__ = (  # noqa: RUF023 - hot fields first
        "origin",
        "window_end",
        "demand",
        "tokens",
        "low",
        "pending",
        "cluster",
        "exhausted",
        "passed",
        "window",
        "last_demand",
        "leased",
        "limit",
        "threshold",
        "prefix",
        "resource",
        "rule",
        "_lock",
    )

    def __init__(self, rule: FlowRule, cluster: Cluster) -> None:
        self.rule = rule
        self.resource = rule.resource
        self.threshold = rule.threshold
        self.limit = math.floor(rule.threshold)
        self.origin: str | None = None  # limit_app and chain are not allowed with cluster (schema)
        self.cluster = cluster
        self.prefix = cluster.key("flow", rule.resource, rule.name)
        self.window = -1
        self.window_end = -1.0
        self.tokens: Iterator[int] = iter(())
        self.passed = 0  # passed this window from the local share (fallback) or a lease's first token
        self.demand = 0  # calls this window (passed + blocked), for the lease size
        self.last_demand = 0  # calls in the previous window
        self.exhausted = False
        self.pending = False
        self.leased = 0  # tokens leased this window
        self.low = 0  # a token yielding this "left" value queues a background refill
        self._lock = threading.Lock()

    def block(self, retry_after_s: float, detail: str = "") -> FlowBlocked:
        return FlowBlocked(
            self.resource,
            self.rule,
            retry_after_s,
            detail=detail
            or f"cluster flow rule {self.rule.name} (qps threshold {self.threshold:g} across all nodes) "
            f"blocked {self.resource}",
        )

    def _roll(self, t: float) -> None:
        w = int(t)
        if w <= self.window:
            return
        self.last_demand = self.demand if w == self.window + 1 else 0
        self.window = w
        self.window_end = w + 1.0
        self.tokens = iter(())
        self.passed = 0
        self.demand = 0
        self.leased = 0
        self.exhausted = False

    def lease_size(self, t: float) -> int:
        elapsed = max(t - self.window, 0.05)
        rate = max(self.last_demand, self.demand / elapsed)
        return self.cluster.lease_size(self.threshold, rate)

    def check(self, node: ResourceNode | None, t: float, args: object, origin: str | None) -> float:
        if self.origin is not None and origin != self.origin:
            return 0.0
        if t >= self.window_end:
            with self._lock:
                self._roll(t)
        self.demand += 1  # an estimate (not locked)
        left = next(self.tokens, None)
        if left is not None:  # the common case: a leased token
            if left == self.low and not self.pending and not self.exhausted:
                self.pending = True
                w = self.window
                self.cluster.submit(lambda: self._refill(w))
            return 0.0
        with self._lock:
            return self._slow(t)

    def _lease(self, got: int, want: int) -> None:
        """Install a lease of ``got`` tokens (after what is left of the current one)."""
        self.leased += got
        self.low = want // 2
        if got < want:
            self.exhausted = True
        fresh = iter(range(got - 1, -1, -1))
        self.tokens = itertools.chain(self.tokens, fresh)

    def _slow(self, t: float) -> float:
        """No leased token at hand (or fallback): take a lease now, or count against the local share."""
        cl = self.cluster
        w = self.window
        if cl.ok and not self.exhausted:
            left = next(self.tokens, None)  # another thread's lease may have landed meanwhile
            if left is not None:
                return 0.0
            want = self.lease_size(t)
            try:
                got = cl.take(f"{self.prefix}:{w}", want, self.limit)
            except Exception as exc:
                cl.failed(exc)
            else:
                self._lease(got, want)
                if next(self.tokens, None) is not None:
                    return 0.0
                raise self.block(1.0 - (t - w) or 1.0)
        if not cl.ok:
            if self.passed < cl.share(self.threshold):
                self.passed += 1
                return 0.0
            raise self.block(1.0 - (t - w) or 1.0, self._fallback_detail())
        raise self.block(1.0 - (t - w) or 1.0)

    def _refill(self, w: int) -> None:
        """Background: lease ahead for window ``w`` (dropped if the window has passed)."""
        cl = self.cluster
        try:
            with self._lock:
                if w != self.window or self.exhausted or not cl.ok:
                    return
                want = self.lease_size(cl.clock.time())
            try:
                got = cl.take(f"{self.prefix}:{w}", want, self.limit)
            except Exception as exc:
                cl.failed(exc)
                return
            with self._lock:
                if w != self.window:
                    return  # too late: those tokens are lost with their window (they are few)
                self._lease(got, want)
        finally:
            self.pending = False

    def _fallback_detail(self) -> str:
        share = self.cluster.share(self.threshold)
        return (
            f"cluster flow rule {self.rule.name} (fallback: this node's share {share}/s of "
            f"{self.threshold:g}/s across {self.cluster.nodes} live nodes) blocked {self.resource}"
        )

    def describe(self) -> dict[str, Any]:
        return {
            "rule": self.rule.name,
            "threshold": self.threshold,
            "window": self.window,
            "calls": self.demand,
            "leased": self.leased,
            "exhausted": self.exhausted,
        }


class _RecordingRedis:
    """The Redis client as pybreaker's ``CircuitRedisStorage`` calls it, remembering (per thread) the
    error of a failed call before it propagates: that storage logs and swallows Redis errors (its
    ``state`` then reads as the fallback, ``closed``), which must not be taken for the shared state."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._last = threading.local()

    def _call(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self.redis, name)(*args)
        except Exception as exc:
            self._last.error = exc
            raise

    def get(self, key: str) -> Any:
        return self._call("get", key)

    def set(self, key: str, value: Any) -> Any:
        return self._call("set", key, value)

    def setnx(self, key: str, value: Any) -> Any:
        return self._call("setnx", key, value)

    def incr(self, key: str) -> Any:
        return self._call("incr", key)

    def raise_last(self) -> None:
        """Raise the error of this thread's last failed call (swallowed or not), once."""
        exc = getattr(self._last, "error", None)
        self._last.error = None
        if exc is not None:
            raise exc


class SharedBreakerStorage(pybreaker.CircuitMemoryStorage):
    """pybreaker storage of a shared breaker: the local copy answers at once; transitions are
    written in the background to pybreaker's ``CircuitRedisStorage`` (through its public ``state``
    property, so any pybreaker reading that namespace sees them), and ``sync()`` adopts the shared
    state. The exact opening time (pybreaker keeps whole seconds; recovery may be shorter than one)
    is kept beside it in a key of ours, ``NS:opened_t``."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        super().__init__(pybreaker.STATE_CLOSED)
        self.cluster = cluster
        self.ns = namespace
        self.opened_key = f"{namespace}:opened_t"
        self.checker: BreakerChecker | None = None
        self.adopting = False
        self.unpushed = 0  # transitions queued for Redis, not yet written
        self._client = _RecordingRedis(cluster.redis)
        self._remote: pybreaker.CircuitRedisStorage | None = None

    def remote(self) -> pybreaker.CircuitRedisStorage:
        """pybreaker's Redis storage (built on first use: its constructor talks to Redis)."""
        if self._remote is None:
            self._remote = pybreaker.CircuitRedisStorage(
                pybreaker.STATE_CLOSED, self._client, namespace=self.ns
            )
        return self._remote

    @property
    def state(self) -> str:
        return super().state

    @state.setter
    def state(self, state: str) -> None:
        pybreaker.CircuitMemoryStorage.state.__set__(self, state)  # the memory storage's own setter
        if self.checker is None or self.adopting:
            return
        at = self.cluster.clock.time()
        self.unpushed += 1
        self.cluster.submit(lambda: self._push(state, at))

    def _push(self, state: str, at: float) -> None:
        try:
            if self.cluster.mode != CLUSTER:
                return
            remote = self.remote()
            if state == pybreaker.STATE_OPEN:  # the time first: a node that reads "open" finds it
                self._client.set(self.opened_key, repr(at))
            remote.state = state
            self._client.raise_last()
        except Exception as exc:
            self.cluster.failed(exc)
        finally:
            self.unpushed -= 1

    def sync(self) -> None:
        """Adopt the shared state: another node opened the circuit, or closed it after its probes."""
        chk = self.checker
        if chk is None or self.unpushed:
            return  # our own transition is on its way to Redis: nothing to learn yet
        shared = self.remote().state
        self._client.raise_last()  # Redis failed: its "closed" fallback is not the shared state
        local = chk.state
        if shared == pybreaker.STATE_OPEN and local != OPEN:
            raw_at = self._client.get(self.opened_key)
            opened_t = float(raw_at) if raw_at else self.cluster.clock.time()
            if local == HALF_OPEN and opened_t <= chk.opened_t:
                return  # the opening we already served; our probes decide now
            self._adopt(OPEN, opened_t)
        elif shared == pybreaker.STATE_CLOSED and local != CLOSED:
            self._adopt(CLOSED, self.cluster.clock.time())

    def _adopt(self, state: str, t: float) -> None:
        chk = self.checker
        assert chk is not None
        self.adopting = True
        try:
            chk.adopt(state, t)
        finally:
            self.adopting = False


def connect(
    url: str,
    *,
    clock: Clock | None = None,
    live_nodes: Callable[[], int] | None = None,
    namespace: str = "tradeguard",
    timeout_s: float = 0.25,
    **options: Any,
) -> Cluster:
    """A ``Cluster`` on the Redis at ``url`` (``redis://host:port/db``) through ``limits``' RedisStorage.

    Nothing is sent to Redis here (an unreachable Redis only shows at the first lease,
    which falls back). A URL ``limits`` does not know raises ``ValueError`` naming it.
    """
    from limits.errors import ConfigurationError
    from limits.storage import storage_from_string

    if not url.startswith(("redis://", "rediss://", "redis+unix://")):
        raise ValueError(
            f"redis_url: must be redis://HOST:PORT/DB (or rediss://, redis+unix://), got {redact_url(url)!r}"
        )
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    try:
        storage = storage_from_string(
            url,
            key_prefix=f"{namespace}-limits",
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
    except (ConfigurationError, ValueError) as exc:  # the cause may quote the URL: not chained
        why = redact_text(str(exc), url_secrets(url))
        raise ValueError(f"redis_url: {why} ({redact_url(url)!r})") from None
    return Cluster(
        storage,
        clock=clock,
        live_nodes=live_nodes,
        namespace=namespace,
        redis=storage.storage,
        url=url,
        **options,
    )

