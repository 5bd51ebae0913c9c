"""The engine: resources, their statistics and the slot chain that guards them.

A guarded call runs the slot chain of its resource:

1. *prepare*: find the resource's node (its statistics, and its chain's hot fields),
   read the clock once, locate the current 500 ms bucket;
2. *checks* in a fixed order — system (inbound entries only) → flow (the tightest
   direct QPS reject first) → param → breaker; the first ``Blocked`` wins; a
   queueing wait is served only once every check passed; a checker that raises
   anything else is logged and counted and the call goes on (a bug in a rule never
   breaks a call);
3. *stat hooks* that always run: pass/block counts at entry; success/error and
   response time at exit, then the exit hooks of checkers that learn from
   completions (breakers, adaptive limits) — those of the rules in force at the exit.

Rules are applied whole per resource: ``apply`` builds every resource's chain from the new
rule set, then installs each on its node (``_Slot.install``: the node's copies of the chain's
hot fields and the chain itself, stored with no call in between), so a call sees either the
old or the new rules of its resource. Checkers of rules that did not change are reused,
keeping their state (an open breaker stays open across an unrelated edit).

One object per call: the lock-free path reads only the resource's node — its counters and the
copies of its chain's fields (``free``, ``qps_limit``, ``slow``, ``exits``, ``breakers``) — never
the chain object. With 10,000 resources each is a few cold cache lines; nodes are created in
document order, so the nodes of a rule set lie together in memory.

``guard()`` (the domain's Guard port) and entries (``entry()`` and the HTTP middleware, through
``_enter``/``_pass``/``_exit``) run the same chain: the lock-free path inline in each (the QPS
compare, then checkers exact on their own), everything else in one ``_checks`` under the node's
lock. Both take the same decisions and keep the same statistics:
tests/unit/guardians/test_engine_paths.py drives both with random rules and calls.

Exact under threads: a check and the pass count it depends on must not interleave with another
thread's. Where a chain calls out between them (a concurrency limit, a queue, values in flight, a
breaker not closed, system rules) both run under the resource's ``glock`` (``_checks``). Otherwise
no lock is taken (``_Slot.inline``): either the only check is the inlined QPS compare, which runs
with no call between it and the pass count, or every checker is exact on its own (``lock_free``: an
origin's own window, param values, authority — each compares and counts its own state with no call
in between, or under its own lock; such checkers never queue). No other thread runs inside such a
call-free run, in either form of this code: interpreted, CPython switches threads only at calls and
backward jumps (the GIL keeps a run of bytecode with no call whole); compiled by mypyc
(``guardians._native``), the run is C reading and writing native fields, which keeps the GIL until it
calls into interpreted code, blocks (a lock, a sleep), or allocates enough for the garbage collector
to run finalizers — none of which it does between the compare and the count (no call, no allocation;
the same holds for ``ResourceNode.roll``, which makes its record only after the reset).
tests/unit/guardians/test_threads.py holds both kinds to their limits with 64 threads, compiled and
interpreted alike; a build without the GIL always takes the lock.
"""

from __future__ import annotations

import functools
import logging
import math
import operator
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, TypeVar

from common.clock import Clock, SystemClock
from guardians._wrap import guarded
from guardians.authority.checker import AuthorityChecker, build_authority
from guardians.blocklog import BlockLog
from guardians.breaker.checker import BreakerChecker
from guardians.breaker.manager import BreakerRuleManager
from guardians.degrade.checker import resolve_fallback
from guardians.degrade.manager import DegradeManager
from guardians.degrade.rule import DegradeRule
from guardians.errors import Blocked
from guardians.events import BreakerStateChanged
from guardians.flow.checker import OwnQpsReject, QpsReject
from guardians.flow.manager import FlowRuleManager
from guardians.param.checker import ParamChecker
from guardians.param.manager import ParamRuleManager
from guardians.rules import RuleSet
from guardians.snapshot import ResourceSnapshot
from guardians.stat import ResourceNode
from guardians.system.manager import SystemRuleManager
from guardians.system.probe import SystemProbe

log = logging.getLogger(__name__)
T = TypeVar("T")

INBOUND: Final = "__inbound__"
# the request parameters of a route whose param rules read only the client's address (the commonest):
# ``request_params`` answers with this very tuple, ``guardians.http.request_args`` tests it by identity
CLIENT_IP_ONLY: Final[tuple[str, ...]] = ("client_ip",)  # (a tuple object: compiled, not unboxed)
# the GIL keeps a run with no call in it whole, interpreted or compiled (3.13t builds may run without it)
_GIL: Final[bool] = bool(sys._is_gil_enabled()) if hasattr(sys, "_is_gil_enabled") else True
_INF: Final = float("inf")
# No lambda or nested function in a compiled module: mypyc makes each an object with a ``__dict__`` and a
# ``__weakref__`` slot, which on Python 3.11 it visits and clears as if it owned it (and never clears the
# weak references to it), so a weak reference to one corrupts memory (guardians/README.md, "The compiled
# hot path"). Attribute getters and the decorator (guardians/_wrap.py, interpreted) instead.
_THRESHOLD: Final = operator.attrgetter("threshold")
_CLUSTER: Final = operator.attrgetter("cluster")
_SHARED: Final = operator.attrgetter("shared")
_SECOND_RESOURCE: Final = operator.attrgetter("second", "resource")


def _probe() -> None:
    """(only to tell compiled from interpreted)"""


# whether this module runs compiled by mypyc (a compiled function has no ``__code__``)
_NATIVE: Final[bool] = not hasattr(_probe, "__code__")
# the identity cache of nodes (``Engine._cached_node``, compiled only): slots, a power of two (512 KB:
# the strings of 10,000 resources scattered over the heap share a slot one time in twenty or less)
_CACHE_SLOTS: Final = 1 << 16


def _free_check(chk: Any, node: ResourceNode, t: float, args: Any, origin: str | None) -> None:
    """A checker of the compiled lock-free path (``ResourceNode.free``): ``chk.check(node, t, args, origin)``.
    Compiled, the lock-free kinds are called by a typed (native) call after an exact type test: no bound
    method, no boxed ``t`` or result, no argument parsing (about a third of a param rule's cost); any
    other kind through its ``check``. (Their waits are 0: lock-free checkers never queue.)"""
    # (one branch per type, not one test with ``or``: each branch's call is typed by its own test)
    if type(chk) is ParamChecker:  # noqa: SIM114
        chk.check(node, t, args, origin)
    elif type(chk) is OwnQpsReject:  # noqa: SIM114 - an origin's or an entrance's own window
        chk.check(node, t, args, origin)
    elif type(chk) is AuthorityChecker:  # noqa: SIM114
        chk.check(node, t, args, origin)
    elif type(chk) is QpsReject:  # a relate rule's
        chk.check(node, t, args, origin)
    else:
        chk.check(node, t, args, origin)


class _Slot:
    """One resource's chain: the checks precomputed at apply time (its node keeps the statistics).

    The chain, in this order: the tightest direct QPS reject rule (``qps_checker``; looser
    ones add nothing), the other flow checkers, param, breakers. The stateless QPS
    reject goes first so that a call it blocks is never counted by a stateful checker
    (a warm-up's admitted calls, a queue's reservation). ``checks``/``exits`` are that
    chain as written; ``guard`` and entries run it with the two commonest checkers inlined:
    the QPS reject (``qps_limit``, an int compare on the node's counters) and breakers, which
    cost nothing while all are closed (the node's ``gate`` says so, kept by the breakers'
    transitions) and the call is not slow (``slow``: None without breakers, else the slowest
    call a breaker ignores, +inf if none counts slow calls). Exit hooks run breakers first,
    then the others (``fast_exits``), on both paths.

    ``install`` makes the chain its node's: the node keeps copies of the fields a call reads
    (``free``: the checkers of ``fast_checks`` if ``inline``, else None; ``qps_limit``; ``slow``; ``exits`` =
    ``fast_exits``; its breakers are bound to it), so a call on the lock-free path reads that one
    object and never this one.
    """

    __slots__ = (  # noqa: RUF023 - the fields read together first
        "node",
        "inline",
        "qps_limit",
        "qps_checker",
        "fast_checks",
        "free",
        "breakers",
        "holds",
        "system",
        "slow",
        "slow_ms",
        "fast_exits",
        "plain",
        "gated",
        "checkers",
        "checks",
        "exits",
        "inbound_checks",
        "degrade",
        "name",
    )

    def __init__(
        self,
        name: str,
        node: ResourceNode,
        checkers: list[Any],
        system: Any,
        degrade: DegradeRule | None,
    ) -> None:
        self.name = name
        self.node = node
        self.checkers = tuple(checkers)
        self.degrade = degrade
        # with an authority rule nothing is inlined: the authority check must come first
        authority = any(type(c) is AuthorityChecker for c in checkers)
        direct = [
            c
            for c in checkers
            if type(c) is QpsReject and c.ref_node is None and c.own is None and not authority
        ]
        self.qps_checker = min(direct, key=_THRESHOLD) if direct else None
        # block iff passes + 1 > threshold, i.e. passes >= floor(threshold): an int compare on the hot path
        self.qps_limit = math.floor(self.qps_checker.threshold) if self.qps_checker is not None else None
        breakers = [c for c in checkers if isinstance(c, BreakerChecker)]
        self.breakers = tuple(breakers)
        self.gated = bool(breakers)
        slow = [b.slow_ms for b in breakers if b.slow_ms is not None]
        self.slow_ms = min(slow) if slow else None
        # no breaker: +inf too (nothing is slower; a node without breakers is always gated open)
        self.slow = self.slow_ms if self.slow_ms is not None else _INF
        rest = [c for c in checkers if c not in direct and not isinstance(c, BreakerChecker)]
        self.fast_checks = tuple(c.check for c in rest)
        # the lock-free path's checks: compiled, the checkers themselves (``_free_check``: a typed call);
        # interpreted, their bound ``check`` methods (a call through ``_free_check`` would be one more)
        self.free = tuple(rest) if _NATIVE else self.fast_checks
        self.fast_exits = tuple(c.on_exit for c in rest if c.has_exit)
        chain = [*([self.qps_checker] if self.qps_checker is not None else []), *rest, *breakers]
        self.checks = tuple(c.check for c in chain)
        self.exits = tuple(c.on_exit for c in (*breakers, *rest) if c.has_exit)
        self.inbound_checks = (system.check, *self.checks) if system is not None else self.checks
        self.system = system
        # checkers that count values in flight (param grade concurrency): acquire at the pass, release at
        # the exit the values the pass took (carried on the guard/entry frame)
        self.holds = tuple(c for c in checkers if getattr(c, "holds", False))
        self.plain = not checkers
        # checks and counts without the node's lock (while every breaker is closed) when either nothing
        # but the inlined QPS compare applies (no call between it and the pass count: the GIL keeps them
        # together, interpreted or compiled: see the module docstring), or there is no inlined compare
        # and every other checker is exact on its own (``lock_free``: it reads and updates only its own
        # state, with no call in between or under its own lock, so the pass count does not matter to
        # it). Never with values in flight to acquire, never on a build without the GIL.
        self.inline = (
            _GIL
            and not self.holds
            and (not rest or (self.qps_limit is None and all(getattr(c, "lock_free", False) for c in rest)))
        )
        if node.breakers != self.breakers:
            node.bind(self.breakers)  # the node's gate now follows these breakers

    def qps_block(self, t: float) -> Blocked:
        """The refusal of the inlined QPS compare (there is one iff ``qps_checker`` is set)."""
        chk = self.qps_checker
        assert chk is not None
        return chk.block(0.5 - (t % 0.5) or 0.5)

    def install(self, ints: dict[int, int]) -> None:
        """Make this the node's chain. The node's copies of the hot fields and ``chain`` are stored in one
        run of attribute stores with no call in between, as a call reads them: a call on another thread
        sees either the old chain's fields or this one's, never a mix (interpreted and compiled alike:
        no call, and nothing freed until after the stores). ``ints`` interns the limits (interpreted, one
        int object per distinct threshold: the compare reads no cold object per resource; compiled, the
        node stores the int unboxed), ``qps_limit`` -1 and ``slow`` +inf meaning none."""
        node = self.node
        lim = self.qps_limit
        if lim is not None:
            lim = self.qps_limit = ints.setdefault(lim, lim)
        old = getattr(node, "chain", None)  # released after the stores (freeing it could run Python code)
        node.free = self.free if self.inline else None
        node.qps_limit = lim if lim is not None else -1
        node.slow = self.slow
        node.exits = self.fast_exits
        node.chain = self
        del old


class Engine:
    """Sentinel-class flow control for named resources. See the module docstring for the chain."""

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        probe: SystemProbe | None = None,
        max_resources: int = 50_000,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self._time = self.clock.time
        # the current half-second, shared by all nodes: a node is current iff node.h == self._h
        self._h: int = -1
        self._h_end = -1.0
        self._lock = threading.RLock()
        self._listeners: list[Callable[[BreakerStateChanged], None]] = []
        self._inbound = ResourceNode(INBOUND)
        self._probe = probe
        self._flow = FlowRuleManager()
        self._breaker = BreakerRuleManager(self.clock, self._emit)
        self._system = SystemRuleManager(self._inbound, self._get_probe)
        self._param = ParamRuleManager(self.clock)
        self._degrade = DegradeManager()
        self._nodes: dict[str, ResourceNode] = {}
        # compiled: the node last found for a caller's string object, by the object's address (see
        # _cached_node); interpreted, the dict lookup is cheaper
        self._by_id: list[ResourceNode | None] = [None] * _CACHE_SLOTS if _NATIVE else []
        self._slots: dict[str, _Slot] = {}
        self._parts: tuple[dict, dict, dict, dict, Any, dict] = ({}, {}, {}, {}, None, {})
        self._ruleset = RuleSet()
        self.rule_version: int | None = None
        self.max_resources = max_resources
        self.checker_errors = 0
        self._checker_errors_by: dict[str, int] = {}
        self._overflow_logged = False
        self.cluster: Any = None  # guardians.cluster.Cluster once enable_cluster() is called
        self._request_params: dict[str, tuple[str, ...]] = {}
        self.block_log = BlockLog()

    # ------------------------------------------------------------------ rules
    @property
    def ruleset(self) -> RuleSet:
        return self._ruleset

    def apply(self, ruleset: RuleSet, version: int | None = None) -> bool:
        """Swap in a whole rule set; returns whether anything changed."""
        with self._lock:
            flow, c1 = self._flow.load(ruleset.flow, self._node)
            breaker, c2 = self._breaker.load(ruleset.breaker)
            system, c3 = self._system.load(ruleset.system)
            param, c4 = self._param.load(ruleset.param)
            degrade, c5 = self._degrade.load(ruleset.degrade)
            authority = build_authority(ruleset.authority)
            c5 = c5 or ruleset.authority != self._ruleset.authority
            self._parts = (flow, param, breaker, degrade, system, authority)
            for name in ruleset.resources():  # in document order: their nodes lie together in memory
                self._node(name)
            needs: dict[str, set[str]] = {}
            for r in ruleset.param:
                if r.param == "client_ip" or ":" in r.param:  # (interned as the checkers' names)
                    needs.setdefault(r.resource, set()).add(sys.intern(r.param))
            self._request_params = {
                k: CLIENT_IP_ONLY if v == {"client_ip"} else tuple(sorted(v)) for k, v in needs.items()
            }
            slots = {name: self._build(name) for name in self._nodes}
            ints: dict[int, int] = {}
            for slot in slots.values():
                slot.install(ints)
            self._slots = slots
            self._ruleset = ruleset
            if version is not None:
                self.rule_version = version
            changed = c1 or c2 or c3 or c4 or c5
            if self.cluster is not None:
                self.cluster.retain(ruleset.flow, ruleset.breaker)
        log.info(
            "applied rule set%s: %d rules (%s)",
            f" v{version}" if version is not None else "",
            len(ruleset),
            "changed" if changed else "unchanged",
        )
        return changed

    def request_params(self, resource: str) -> tuple[str, ...]:
        """The request parameters (``client_ip``, ``header:…``, ``body:…``) param rules on ``resource``
        read: what the HTTP middleware extracts from the request (nothing when none)."""
        return self._request_params.get(resource, ())

    def enable_cluster(self, cluster: Any) -> None:
        """Cluster mode (``guardians.cluster.Cluster``): ``cluster: true`` flow rules lease from its
        shared counters, ``shared: true`` breakers share their state. Rules in force are rebuilt."""
        with self._lock:
            self.cluster = cluster
            self._flow.cluster_checker = cluster.flow_checker
            self._breaker.storage_for = cluster.breaker_storage
            self._param.cluster = cluster
            self._param.forget(_CLUSTER)
            self._flow.forget(_CLUSTER)
            self._breaker.forget(_SHARED)
            self.apply(self._ruleset)

    def cluster_status(self) -> dict[str, Any]:
        """Cluster mode for ``/ops/health``: ``{"status": "absent"}`` without it, else ``Cluster.status()``
        (mode ``cluster`` | ``fallback``, live nodes, leases, last error)."""
        if self.cluster is None:
            n = (
                sum(1 for r in self._ruleset.flow if r.cluster)
                + sum(1 for r in self._ruleset.breaker if r.shared)
                + sum(1 for r in self._ruleset.param if r.cluster)
            )
            return {
                "status": "absent",
                "mode": "off",
                "detail": "no Redis URL: cluster rules hold their thresholds per node"
                if n
                else "no Redis URL",
                "cluster_rules": n,
            }
        return self.cluster.status()

    def register_fallback(self, name: str, fn: Callable[[Blocked], Any]) -> None:
        """Register a named fallback that degrade rules can choose (``fn(blocked_exc) -> answer``)."""
        self._degrade.register(name, fn)

    def add_breaker_listener(self, fn: Callable[[BreakerStateChanged], None]) -> None:
        self._listeners.append(fn)

    def _emit(self, event: BreakerStateChanged) -> None:
        for fn in list(self._listeners):
            try:
                fn(event)
            except Exception:
                log.exception("breaker listener %r failed", fn)

    def _get_probe(self) -> SystemProbe:
        if self._probe is None:
            from guardians.system.probe import PsutilProbe

            self._probe = PsutilProbe()
        return self._probe

    # ------------------------------------------------------------ resources
    def _node(self, name: str) -> ResourceNode:
        """The node of ``name``, created with a chain of no checkers if new (every node in ``_nodes``
        has a chain: ``apply`` installs the rule set's)."""
        node = self._nodes.get(name)
        if node is None:
            with self._lock:
                node = self._nodes.get(name)
                if node is None:
                    node = ResourceNode(name)
                    _Slot(name, node, [], self._parts[4], None).install({})
                    self._nodes[name] = node
        return node

    def _build(self, name: str) -> _Slot:
        flow, param, breaker, degrade, system, authority = self._parts
        # authority first (as Sentinel's AuthoritySlot): a refused origin is never counted by a limit
        checkers = [
            *authority.get(name, ()), *flow.get(name, ()), *param.get(name, ()), *breaker.get(name, ())
        ]
        return _Slot(name, self._nodes[name], checkers, system, degrade.get(name))

    def _cached_node(self, resource: str) -> ResourceNode | None:
        """``self._nodes.get(resource)``, compiled, for a caller that passes the same string object again
        (a literal, a route resolver's cached name: nearly every caller) without reading the dict.

        The dict's keys are the rule document's strings, never the caller's: its lookup compares the two
        strings, reading the key's — with 10,000 resources its entry and its key are two or three cold
        cache lines per call, more than the node itself. Here a slot chosen by the object's address holds
        the node last found for it, and ``node.key`` the caller's object it was found for: a hit is that
        identity, so it is always the right node (``key`` keeps the object alive: no other object can
        have its address meanwhile). A miss looks the dict up and fills the slot. No lock: a reader sees
        either node of a slot, and each is right for its own ``key`` (set before the node is stored).
        The slot: the address in 64-byte steps (string objects made one after another get consecutive
        slots) with its 4 MB blocks folded in (objects a multiple of 4 MB apart do not share one)."""
        cache = self._by_id
        a = id(resource)
        i = ((a >> 6) ^ (a >> 22)) & (_CACHE_SLOTS - 1)
        node = cache[i]
        if node is not None and node.key is resource:
            return node
        node = self._nodes.get(resource)
        if node is not None:
            node.key = resource
            cache[i] = node
        return node

    def _new_node(self, name: str) -> ResourceNode | None:
        """The node of a resource first called now (None past ``max_resources``: unguarded)."""
        with self._lock:
            node = self._nodes.get(name)
            if node is not None:
                return node
            if len(self._nodes) >= self.max_resources:
                if not self._overflow_logged:
                    log.warning(
                        "more than %d resources: %r and later new ones pass unguarded and uncounted",
                        self.max_resources,
                        name,
                    )
                    self._overflow_logged = True
                return None
            node = self._node(name)
            slot = self._slots[name] = self._build(name)
            slot.install({})
            return node

    def _tick(self, t: float) -> int:
        """Advance the engine's half-second (forward only)."""
        h = int(t * 2)
        if h > self._h:
            self._h = h
            self._h_end = (h + 1) / 2
        return self._h

    def _checker_failed(self, at: _Slot | ResourceNode, chk: Any) -> None:
        """A checker raised something other than ``Blocked`` on the resource of ``at`` (a chain or node):
        logged and counted, the call goes on."""
        name = at.name
        self.checker_errors += 1
        n = self._checker_errors_by[name] = self._checker_errors_by.get(name, 0) + 1
        if n <= 3 or n % 1000 == 0:
            log.exception("rule checker %r failed on %s (%d so far); the call goes on", chk, name, n)

    # ------------------------------------------------------------- the guard
    def guard(
        self,
        resource: str,
        call: Callable[[], T],
        *,
        args: Mapping[str, str] | None = None,
        fallback: Callable[[BaseException], T] | None = None,
    ) -> T:
        """Run ``call`` guarded by ``resource``'s rules (the domain's Guard port).

        When blocked: the degrade rule's fallback answers if there is one (name
        ``default`` = the ``fallback`` given here), otherwise the ``Blocked`` error
        propagates.
        """
        # one object per call: the node has the current half-second's counters and its chain's hot fields
        node = self._cached_node(resource) if _NATIVE else self._nodes.get(resource)
        if node is None:
            node = self._new_node(resource)
            if node is None:
                return call()
        t = self._time()
        if t >= self._h_end:
            self._tick(t)
        if node.h != self._h:
            node.roll(t, self._h)
        # (the chain object is read only off the lock-free pass: loading it would write its refcount)
        free = node.free
        if free is not None and node.gate:
            # -- lock-free (see the module docstring), every breaker closed: the inlined QPS compare runs
            # with no call before the pass count, so no other thread runs in between (interpreted, the
            # GIL switches threads only at calls and backward jumps; compiled, this is native code that
            # neither calls nor allocates here), or the checkers are exact on their own
            lim = node.qps_limit
            if lim >= 0 and node.passed + node.prev_passed >= lim:
                slot = node.chain  # (read with the fields above: the same rules)
                return self._blocked(slot, t, slot.qps_block(t), args, fallback)
            if free:  # (never with an inlined compare) lock-free checkers, which never queue
                slot = node.chain
                for chk in free:
                    try:
                        if _NATIVE:
                            _free_check(chk, node, t, args, None)
                        else:
                            chk(node, t, args, None)
                    except Blocked as e:
                        return self._blocked(slot, t, e, args, fallback)
                    except Exception:
                        self._checker_failed(node, chk)
            node.passed += 1
            node.concurrency += 1
            held = None
        else:
            # -- the general chain, under the node's lock
            slot = node.chain
            exc, wait, held = self._checks(slot, node, t, args, None, None)
            if exc is not None:
                return self._blocked(slot, t, exc, args, fallback, True)
            if wait:
                return self._queued(slot, wait, call, args)
        try:
            result = call()
        except BaseException:
            self._exit(node.chain, t, True, False, held)
            raise
        if held is None:
            node.concurrency -= 1  # one attribute update: whole under the GIL (interpreted or compiled)
        else:
            with node.glock:
                node.concurrency -= 1
                self._release(held)
        t1 = self._time()
        rt = (t1 - t) * 1000.0
        if t1 >= self._h_end:
            self._tick(t1)
        if node.h != self._h:
            node.roll(t1, self._h)
        node.success += 1
        node.rt_sum += rt
        if rt > node.rt_max:
            node.rt_max = rt
        if rt < node.rt_min:
            node.rt_min = rt
        # the exit hooks of the rules in force. Breakers: nothing to do while all are closed and the call
        # is not slow (they read their window from the node); no call at all in that common case
        breakers = not node.gate or rt > node.slow
        if breakers or node.exits:
            self._exit_hooks(node, t1, rt, False, breakers)
        return result

    def _exit_hooks(self, node: ResourceNode, t: float, rt: float, error: bool, breakers: bool) -> None:
        """A call's exit through the exit hooks of the rules in force (``guard()`` and ``_exit``):
        the breakers when ``breakers``, then the other exit hooks (adaptive limits); a failing hook
        is counted, never the call's problem."""
        if breakers:
            for br in node.breakers:
                try:
                    br.on_exit(node, t, rt, error)
                except Exception:
                    self._checker_failed(node, br)
        for ex in node.exits:
            try:
                ex(node, t, rt, error)
            except Exception:
                self._checker_failed(node, ex)

    def _checks(
        self, slot: _Slot, node: ResourceNode, t: float, args: Any, origin: str | None, system: Any
    ) -> tuple[Blocked | None, float, Any]:
        """The general chain of ``guard`` and entries alike, for a call at ``t`` (``node`` rolled to it):
        system (inbound calls) → the inlined QPS compare → the other checkers → breakers not closed.
        The first block wins; waits add up. Without a block or a wait the pass is counted (and the
        values in flight taken). Checks and counts run under the node's lock, so that limits hold
        exactly under threads; a block is counted on the node. Returns (blocked, wait, values in flight).
        """
        exc: Blocked | None = None
        wait = 0.0
        held = None
        lock = node.glock
        lock.acquire()
        try:
            if system is not None:
                try:
                    system.check(node, t, args, origin)
                except Blocked as e:
                    exc = e
                except Exception:
                    self._checker_failed(slot, system)
            lim = slot.qps_limit
            if exc is not None:
                pass
            elif lim is not None and node.passed + node.prev_passed >= lim:
                exc = slot.qps_block(t)
            else:
                for chk in slot.fast_checks:
                    try:
                        w = chk(node, t, args, origin)
                    except Blocked as e:
                        exc = e
                        break
                    except Exception:
                        self._checker_failed(slot, chk)
                    else:
                        if w:
                            wait += w
                if exc is None and not node.gate:  # a breaker is not closed
                    for br in slot.breakers:
                        if br.state != "closed":
                            try:
                                w = br.check(node, t, args, origin)
                            except Blocked as e:
                                exc = e
                                break
                            except Exception:
                                self._checker_failed(slot, br)
                            else:
                                if w:
                                    wait += w
                if exc is None and not wait:
                    node.passed += 1
                    node.concurrency += 1
                    if slot.holds:
                        held = self._acquire(slot, args)
            if exc is not None:
                self._node_now(node, t).count_block(exc.kind)
        finally:
            lock.release()
        return exc, wait, held

    def _queued(self, slot: _Slot, wait: float, call: Callable[[], T], args: Any) -> T:
        """``guard`` of a call the chain admitted after a queueing wait: the wait, then the pass and the
        exit of the general chain (as entries)."""
        self.clock.sleep(wait)
        t0, held = self._pass(slot, False, args)
        try:
            result = call()
        except BaseException:
            self._exit(slot, t0, True, False, held)
            raise
        self._exit(slot, t0, False, False, held)
        return result

    @staticmethod
    def _acquire(slot: _Slot, args: Any) -> tuple[tuple[Any, tuple[str, ...]], ...]:
        """The values in flight a pass takes (under the node's lock): (checker, values) per holder."""
        return tuple((c, c.acquire(args)) for c in slot.holds)

    @staticmethod
    def _release(held: tuple[tuple[Any, tuple[str, ...]], ...]) -> None:
        for c, values in held:
            if values:
                c.release(values)

    def _blocked(
        self,
        slot: _Slot,
        t: float,
        exc: Blocked,
        args: Any,
        fallback: Callable[[BaseException], Any] | None,
        counted: bool = False,
    ) -> Any:
        """``guard`` of a blocked call: the block counted (on the node under its lock unless
        ``counted``) and logged, then the fallback's answer or the error."""
        if not counted:
            with slot.node.glock:
                self._node_now(slot.node, t).count_block(exc.kind)
        if exc.args_ is None:
            exc.args_ = args
        self.block_log.record(t, slot.name, exc, None, args)
        return self._degraded(slot, exc, fallback)

    def route_fallback(self, resource: str) -> tuple[str, Callable[[Blocked], Any]] | None:
        """The degrade rule's registered fallback of an HTTP route resource ``(name, fn)``, or None:
        the middleware answers a blocked request with ``fn(exc)`` instead of a 429 (``default``
        names the call site's fallback, which a route does not have)."""
        slot = self._slots.get(resource)
        if slot is None or slot.degrade is None:
            return None
        fn = resolve_fallback(self._degrade, slot.degrade, None)
        return (slot.degrade.fallback, fn) if fn is not None else None

    def _degraded(self, slot: _Slot, exc: Blocked, fallback: Callable[[BaseException], Any] | None) -> Any:
        fn = resolve_fallback(self._degrade, slot.degrade, fallback)
        if fn is None:
            raise exc
        return fn(exc)

    def entry(
        self,
        resource: str,
        args: Mapping[str, str] | None = None,
        origin: str | None = None,
        *,
        inbound: bool = False,
    ) -> Entry:
        """A guarded section: ``with engine.entry("r"):``, ``async with …``, or ``@engine.entry("r")``.

        ``inbound=True`` marks traffic entering the node (the HTTP middleware):
        it counts in the node-wide inbound statistics and is subject to system rules.
        """
        return Entry(self, resource, args, origin, inbound)

    # -- entries and the middleware: the same chain in three steps (enter, pass after a wait, exit) --
    def _node_now(self, node: ResourceNode, t: float) -> ResourceNode:
        """``node`` rolled to time ``t`` (its counters are then the current half-second's)."""
        if t >= self._h_end:
            self._tick(t)
        if node.h != self._h:
            node.roll(t, self._h)
        return node

    def _enter(
        self, resource: str, args: Any, origin: str | None, inbound: bool
    ) -> tuple[_Slot | None, float, float, Any]:
        """Run the checks; returns (slot, t0, wait, held). With wait == 0 the pass is already
        counted (``held``: the values in flight it took, for ``_exit``); otherwise the caller
        waits, then calls ``_pass`` for t0 and held. ``guard``'s chain (``_checks``), with system
        rules first for inbound calls; a refusal raises ``Blocked``."""
        node = self._cached_node(resource) if _NATIVE else self._nodes.get(resource)
        if node is None:
            node = self._new_node(resource)
            if node is None:
                return None, 0.0, 0.0, None
        t = self._time()
        if t >= self._h_end:
            self._tick(t)
        h = self._h
        if node.h != h:
            node.roll(t, h)
        slot = node.chain
        held = None
        free = node.free
        if free is not None and node.gate and (not inbound or slot.system is None):
            # lock-free, as in guard()
            lim = node.qps_limit
            if lim >= 0 and node.passed + node.prev_passed >= lim:
                self._refused(slot, t, slot.qps_block(t), args, origin, inbound)
            if free:
                for chk in free:
                    try:
                        if _NATIVE:
                            _free_check(chk, node, t, args, origin)
                        else:
                            chk(node, t, args, origin)
                    except Blocked as e:
                        self._refused(slot, t, e, args, origin, inbound)
                    except Exception:
                        self._checker_failed(slot, chk)
            node.passed += 1
            node.concurrency += 1
        else:
            exc, wait, held = self._checks(slot, node, t, args, origin, slot.system if inbound else None)
            if exc is not None:
                self._refused(slot, t, exc, args, origin, inbound, True)
            if wait:
                return slot, t, wait, None
        if inbound:
            ib = self._inbound
            if ib.h != h:
                ib.roll(t, h)
            ib.passed += 1
            ib.concurrency += 1
        return slot, t, 0.0, held

    def _refused(
        self, slot: _Slot, t: float, exc: Blocked, args: Any, origin: str | None, inbound: bool,
        counted: bool = False,
    ) -> None:
        """An entry refused: the block counted (on the node under its lock unless ``counted``), logged,
        raised."""
        if not counted:
            with slot.node.glock:
                self._node_now(slot.node, t).count_block(exc.kind)
        if inbound:
            self._node_now(self._inbound, t).count_block(exc.kind)
        if exc.args_ is None:
            exc.args_ = args
        self.block_log.record(t, slot.name, exc, origin, args)
        raise exc

    def _pass(self, slot: _Slot, inbound: bool, args: Any = None) -> tuple[float, Any]:
        """Count a pass after a queueing wait; returns the new t0 and the values in flight it took."""
        t = self._time()
        node = slot.node
        held = None
        with node.glock:
            self._node_now(node, t)
            node.passed += 1
            node.concurrency += 1
            if slot.holds:
                held = self._acquire(slot, args)
        if inbound:
            ib = self._node_now(self._inbound, t)
            ib.passed += 1
            ib.concurrency += 1
        return t, held

    def _exit(self, slot: _Slot, t0: float, error: bool, inbound: bool = False, held: Any = None) -> None:
        """A call entered by ``_enter`` completed: statistics, then the exit hooks (as ``guard``)."""
        node = slot.node
        if held is None:
            node.concurrency -= 1  # one attribute update: whole under the GIL (interpreted or compiled)
        else:
            with node.glock:
                node.concurrency -= 1
                self._release(held)
        t = self._time()
        rt = (t - t0) * 1000.0
        if t >= self._h_end:
            self._tick(t)
        h = self._h
        if node.h != h:
            node.roll(t, h)
        if error:
            node.error += 1
        else:
            node.success += 1
        node.rt_sum += rt
        if rt > node.rt_max:
            node.rt_max = rt
        if rt < node.rt_min:
            node.rt_min = rt
        if inbound:
            ib = self._inbound
            ib.concurrency -= 1
            if ib.h != h:
                ib.roll(t, h)
            if error:
                ib.error += 1
            else:
                ib.success += 1
            ib.rt_sum += rt
            if rt > ib.rt_max:
                ib.rt_max = rt
            if rt < ib.rt_min:
                ib.rt_min = rt
        # the exit hooks of the rules in force, as guard(). Breakers: nothing to do for a success while all
        # are closed and the call is not slow
        breakers = not node.gate or rt > node.slow or (error and len(node.breakers) > 0)
        if breakers or node.exits:
            self._exit_hooks(node, t, rt, error, breakers)

    # ------------------------------------------------------------ statistics
    def metrics_since(self, after_second: int) -> list[ResourceSnapshot]:
        """Every completed 1 s bucket newer than ``after_second`` (from the 60 × 1 s window)."""
        t = self._time()
        out: list[ResourceSnapshot] = []
        for node in list(self._nodes.values()):
            out.extend(node.completed_seconds(after_second, t))
        out.sort(key=_SECOND_RESOURCE)
        return out

    def stats(self) -> dict[str, Any]:
        """Current per-resource statistics (sliding 1 s window + last minute) for GET /ops/stats."""
        t = self._time()
        breakers = {b.resource: b.describe() for b in self._breaker.breakers()}
        resources = {}
        for name, node in sorted(self._nodes.items()):
            s = node.stats(t)
            if name in breakers:
                s["breaker"] = breakers[name]
            resources[name] = s
        return {
            "at": self.clock.now().isoformat(),
            "rule_version": self.rule_version,
            "rules": {k: len(v) for k, v in self._ruleset.to_document().items()},
            "inbound": self._inbound.stats(t),
            "resources": resources,
            "checker_errors": self.checker_errors,
            "fallbacks": self._degrade.names(),
        }

    def breaker_states(self) -> dict[str, str]:
        return {b.resource: b.state for b in self._breaker.breakers()}

    def resources(self) -> list[str]:
        return sorted(self._nodes)


class Entry:
    """A guarded section (context manager, async context manager, decorator)."""

    __slots__ = ("_engine", "_held", "_slot", "_t0", "args", "inbound", "origin", "resource")

    def __init__(self, engine: Engine, resource: str, args: Any, origin: str | None, inbound: bool) -> None:
        self._engine = engine
        self.resource = resource
        self.args = args
        self.origin = origin
        self.inbound = inbound
        self._slot: _Slot | None = None
        self._t0 = 0.0
        self._held: Any = None

    def __enter__(self) -> Entry:
        eng = self._engine
        slot, t0, wait, held = eng._enter(self.resource, self.args, self.origin, self.inbound)
        if wait:
            eng.clock.sleep(wait)
            t0, held = eng._pass(slot, self.inbound, self.args)  # type: ignore[arg-type]
        self._t0 = t0
        self._held = held
        self._slot = slot
        return self

    def __exit__(self, et: Any, ev: Any, tb: Any) -> Literal[False]:
        if self._slot is not None:
            self._engine._exit(self._slot, self._t0, et is not None, self.inbound, self._held)
            self._slot = None
            self._held = None
        return False

    async def __aenter__(self) -> Entry:
        eng = self._engine
        slot, t0, wait, held = eng._enter(self.resource, self.args, self.origin, self.inbound)
        if wait:
            await eng.clock.asleep(wait)
            t0, held = eng._pass(slot, self.inbound, self.args)  # type: ignore[arg-type]
        self._t0 = t0
        self._held = held
        self._slot = slot
        return self

    async def __aexit__(self, et: Any, ev: Any, tb: Any) -> bool:
        return self.__exit__(et, ev, tb)

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        # the wrapper is made by interpreted code (see _THRESHOLD): a fresh Entry per call
        make = functools.partial(Entry, self._engine, self.resource, self.args, self.origin, self.inbound)
        return guarded(fn, make)
