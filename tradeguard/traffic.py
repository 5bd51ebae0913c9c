"""The shopper simulator: open-loop HTTP traffic against a node.

Open loop means arrivals follow a schedule fixed in advance — a (non-homogeneous)
Poisson process drawn from a seeded RNG — and each request is *sent at its scheduled
time* by a pool of async httpx workers, whether or not earlier requests have returned.
When every worker is busy a request waits in the queue; the delay between its scheduled
time and its actual send time is measured and reported as "behind schedule", so a
load generator that cannot keep up says so instead of silently lowering the load.

Profiles (rate multipliers over time, see ``rate_factor``):
- ``steady``: the base rate;
- ``diurnal``: a compressed day, night 0.3× → noon 1.7× → night, one cycle per duration
  (or per ``DEFAULT_CYCLE_S`` when running forever);
- ``flash-sale``: base rate, ramp to ``multiplier``× on the flash-sale SKUs, hold, ramp
  down, base again (phases at 25/35/65/75% of the cycle).

The mix: mostly order placements (``flash_sale`` orders on flash SKUs during a surge,
``fixed_price`` otherwise), payment of placed orders, some buyer cancellations and
partial refunds of paid orders; orders left unpaid are cancelled by the node's timeout job.

With ``--tx-mix``, the other transaction types are carried through too: a presale placed (deposit
paid) has its balance paid (``{"stage": "balance"}``) once the window its order answer gives is
open; a cash-on-delivery order is shipped and delivered with the cash collected (merchant actions:
the ops token); ``auction=W`` turns that share of placements into bids on the seed's running demo
auction (``GET /auctions/{id}`` for the next minimum, then ``POST /auctions/{id}/bids``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

import httpx

from common.clock import Clock, SystemClock
from common.stats import percentile

log = logging.getLogger(__name__)

PROFILES = ("steady", "diurnal", "flash-sale")
DEFAULT_CYCLE_S = 120.0
LATE_MS = 100.0  # a request sent more than this after its scheduled time is "behind schedule"

# share of each action among arrivals (pay/cancel/refund fall back to place when nothing qualifies)
MIX = {"place": 0.56, "pay": 0.36, "cancel": 0.04, "refund": 0.04}
CHANNELS = ("app", "app", "app", "web", "mini_program")
PROVINCES = {
    "Zhejiang": ("Hangzhou", "Ningbo"),
    "Guangdong": ("Shenzhen", "Guangzhou"),
    "Sichuan": ("Chengdu",),
    "Beijing": ("Beijing",),
    "Shanghai": ("Shanghai",),
}
# real districts of each city: the node's address library refuses unknown ones (422 address.district)
DISTRICTS = {
    "Hangzhou": ("Xihu", "Shangcheng", "Binjiang", "Yuhang"), "Ningbo": ("Haishu", "Yinzhou"),
    "Shenzhen": ("Nanshan", "Futian", "Luohu"), "Guangzhou": ("Tianhe", "Yuexiu", "Haizhu"),
    "Chengdu": ("Wuhou", "Jinjiang", "Qingyang"), "Beijing": ("Haidian", "Chaoyang", "Dongcheng"),
    "Shanghai": ("Pudong", "Xuhui", "Huangpu"),
}


class TrafficError(ValueError):
    """A bad traffic option; the message names the option and the allowed values."""


# "auction" is not an order a buyer places (422 auction.by_award): its share of placements are bids
MIX_TX_TYPES = ("fixed_price", "flash_sale", "presale", "cod", "auction")


def demo_auction_ids() -> tuple[str, ...]:
    """The auctions the seed puts up (``domain.catalog.demo_auction``), the ones the simulator bids on."""
    from domain.catalog import demo_auction

    return (demo_auction(datetime.now(UTC)).id,)


def parse_tx_mix(text: str) -> dict[str, float]:
    """``fixed_price=80,presale=10,cod=10`` → shares summing to 1 (weights need not sum to 100)."""
    mix: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, weight = part.partition("=")
        name = name.strip()
        if not sep or name not in MIX_TX_TYPES:
            raise TrafficError(f"tx-mix entries are TYPE=WEIGHT with TYPE one of {', '.join(MIX_TX_TYPES)}, "
                               f"got {part!r}")
        try:
            value = float(weight)
        except ValueError:
            raise TrafficError(f"tx-mix weight of {name} must be a number, got {weight!r}") from None
        if not (value >= 0 and math.isfinite(value)):
            raise TrafficError(f"tx-mix weight of {name} must be >= 0, got {weight!r}")
        mix[name] = mix.get(name, 0.0) + value
    total = sum(mix.values())
    if total <= 0:
        raise TrafficError(f"tx-mix needs at least one weight > 0, got {text!r}")
    return {k: v / total for k, v in mix.items() if v > 0}


@dataclass(frozen=True)
class TrafficConfig:
    url: str
    rate: float = 10.0
    profile: str = "steady"
    multiplier: float = 20.0
    duration: float | None = None  # seconds; None runs until stopped
    seed: int | None = None
    concurrency: int = 128
    timeout_s: float = 5.0
    buyers: int = 5000
    # the node's TRADEGUARD_OPS_TOKEN: the merchant's refund completion needs it (never printed)
    ops_token: str | None = field(default=None, repr=False)
    tx_mix: dict[str, float] | None = None  # share of placements per tx type (parse_tx_mix); None: as before
    auction_ids: tuple[str, ...] | None = None  # auctions to bid on with tx_mix auction=W; None: the seed's

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise TrafficError(f"profile must be one of {', '.join(PROFILES)}, got {self.profile!r}")
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise TrafficError(f"rate must be a number > 0 (requests per second), got {self.rate}")
        if not (self.multiplier >= 1 and math.isfinite(self.multiplier)):
            raise TrafficError(f"multiplier must be >= 1, got {self.multiplier}")
        if self.duration is not None and not self.duration > 0:
            raise TrafficError(
                f"duration must be > 0 seconds (or omitted to run forever), got {self.duration}"
            )
        if self.concurrency < 1:
            raise TrafficError(f"concurrency must be >= 1, got {self.concurrency}")
        if not self.timeout_s > 0:
            raise TrafficError(f"timeout must be > 0 seconds, got {self.timeout_s}")
        if not self.url.startswith(("http://", "https://")):
            raise TrafficError(f"url must start with http:// or https://, got {self.url!r}")

    @property
    def cycle_s(self) -> float:
        return self.duration if self.duration else DEFAULT_CYCLE_S


# --------------------------------------------------------------------------- profiles
def rate_factor(profile: str, t: float, cycle_s: float, multiplier: float) -> float:
    """Multiplier of the base rate at ``t`` seconds into the run."""
    if profile == "steady":
        return 1.0
    phase = (t % cycle_s) / cycle_s
    if profile == "diurnal":
        return 1.0 - 0.7 * math.cos(2 * math.pi * phase)
    if profile == "flash-sale":
        if phase < 0.25 or phase >= 0.75:
            return 1.0
        if phase < 0.35:
            return 1.0 + (multiplier - 1.0) * (phase - 0.25) / 0.10
        if phase < 0.65:
            return multiplier
        return multiplier - (multiplier - 1.0) * (phase - 0.65) / 0.10
    raise TrafficError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")


def peak_factor(profile: str, multiplier: float) -> float:
    return {"steady": 1.0, "diurnal": 1.7, "flash-sale": multiplier}[profile]


def flash_share(profile: str, t: float, cycle_s: float, multiplier: float) -> float:
    """Share of placements that go for flash-sale SKUs: most of the surge, a few otherwise."""
    if profile != "flash-sale" or multiplier <= 1:
        return 0.05
    surge = (rate_factor(profile, t, cycle_s, multiplier) - 1.0) / (multiplier - 1.0)
    return 0.05 + 0.9 * surge


def arrival_times(
    profile: str,
    rate: float,
    rng: random.Random,
    *,
    duration: float | None,
    multiplier: float = 20.0,
    cycle_s: float | None = None,
) -> Iterator[float]:
    """Scheduled send times (seconds from start) of a Poisson process whose rate follows the profile.

    Thinning (Lewis & Shedler): candidates at the peak rate, each kept with probability
    rate(t) / peak. Deterministic for a seeded ``rng``; infinite when ``duration`` is None.
    """
    cycle = cycle_s or duration or DEFAULT_CYCLE_S
    peak = rate * peak_factor(profile, multiplier)
    t = 0.0
    while True:
        t += rng.expovariate(peak)
        if duration is not None and t >= duration:
            return
        if rng.random() * peak <= rate * rate_factor(profile, t, cycle, multiplier):
            yield t


# --------------------------------------------------------------------------- catalog and state
@dataclass(frozen=True)
class Sku:
    sku: str
    shop_id: str
    price_cents: int
    flash: bool
    tx_types: tuple[str, ...] = ()


def is_flash_product(product: dict[str, Any]) -> bool:
    """True if a product DTO says the SKU has a flash sale (any truthy ``flash*`` field or tx type)."""
    for key, value in product.items():
        if "flash" in key.lower() and value not in (None, False, 0, "", [], {}):
            return True
    tx = product.get("tx_types") or product.get("transaction_types") or ()
    return "flash_sale" in tx


def parse_catalog(
    shops: list[dict[str, Any]], products_by_shop: dict[str, list[dict[str, Any]]]
) -> list[Sku]:
    out = []
    for shop in shops:
        shop_id = str(shop.get("id") or shop.get("shop_id"))
        for p in products_by_shop.get(shop_id, []):
            sku = p.get("sku") or p.get("id")
            if not sku:
                continue
            price = p.get("price_cents") or p.get("price") or 0
            out.append(Sku(sku=str(sku), shop_id=shop_id, price_cents=int(price), flash=is_flash_product(p),
                           tx_types=tuple(str(t) for t in p.get("tx_types") or ())))
    return out


@dataclass
class Placed:
    order_id: str
    lines: list[dict[str, Any]]


@dataclass
class PresaleDue:
    """A presale whose deposit is paid: its balance may be paid inside the window the answer gave."""

    order_id: str
    lines: list[dict[str, Any]]
    starts_at: datetime
    ends_at: datetime

    def open_at(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at


@dataclass
class CodOrder:
    """A confirmed cash-on-delivery order: its sub-orders are to be shipped and delivered."""

    order_id: str
    lines: list[dict[str, Any]]
    sub_order_ids: list[str]


@dataclass
class ShopperState:
    """Orders the simulated shoppers hold, for pay / cancel / refund, balance payment and delivery."""

    unpaid: deque[Placed] = field(default_factory=lambda: deque(maxlen=5000))
    paid: deque[Placed] = field(default_factory=lambda: deque(maxlen=5000))
    presales: deque[PresaleDue] = field(default_factory=lambda: deque(maxlen=5000))
    cod: deque[CodOrder] = field(default_factory=lambda: deque(maxlen=5000))

    def settleable(self, now: datetime | None) -> bool:
        """A COD order to deliver or a presale whose balance window is open now."""
        if self.cod:
            return True
        return now is not None and any(p.open_at(now) for p in self.presales)

    def take_settlement(self, rng: random.Random, now: datetime) -> PresaleDue | CodOrder | None:
        """One settlement to do now (a presale whose window is open, or a COD order to deliver), taken
        out of the state; presales whose window has closed are dropped (the node lapses them)."""
        for p in [p for p in self.presales if now >= p.ends_at]:
            self.presales.remove(p)
        due = [p for p in self.presales if p.open_at(now)]
        kinds = [k for k, has in (("balance", due), ("deliver", self.cod)) if has]
        if not kinds:
            return None
        if rng.choice(kinds) == "balance":
            self.presales.remove(due[0])
            return due[0]
        return self.cod.popleft()


def choose_action(rng: random.Random, state: ShopperState, now: datetime | None = None) -> str:
    """``place`` / ``pay`` / ``cancel`` / ``refund`` by ``MIX``; ``settle`` (pay a presale balance or
    deliver a COD order) takes half the pay share while there is one to do at ``now``."""
    r = rng.random()
    acc = 0.0
    action = "place"
    for name, share in MIX.items():
        acc += share
        if r < acc:
            action = name
            break
    if action == "pay" and state.settleable(now) and (not state.unpaid or rng.random() < 0.5):
        return "settle"
    if action in ("pay", "cancel") and not state.unpaid:
        return "place"
    if action == "refund" and not state.paid:
        return "place"
    return action


def pick_tx_type(rng: random.Random, mix: dict[str, float] | None) -> str | None:
    if not mix:
        return None
    names = sorted(mix)
    return rng.choices(names, weights=[mix[n] for n in names])[0]


def make_order_body(
    rng: random.Random, skus: list[Sku], flash: bool, buyers: int, key: str, tx_type: str | None = None
) -> dict[str, Any]:
    """An order body; ``tx_type`` (from ``--tx-mix``) ``presale`` / ``cod`` picks one SKU that says it
    can be bought that way (one unit; presale pays its deposit stage), else a regular order."""
    flash_skus = [s for s in skus if s.flash]
    regular = [s for s in skus if not s.flash] or skus
    special = [s for s in skus if tx_type in s.tx_types] if tx_type in ("presale", "cod") else []
    extra: dict[str, Any] = {}
    if special and tx_type is not None:
        lines = [{"sku": rng.choice(special).sku, "qty": 1}]
        if tx_type == "presale":
            extra["stage"] = "deposit"
    elif (flash or tx_type == "flash_sale") and flash_skus:
        lines = [{"sku": rng.choice(flash_skus).sku, "qty": 1}]
        tx_type = "flash_sale"
    else:
        count = rng.choices((1, 2, 3), weights=(6, 3, 1))[0]
        chosen = rng.sample(regular, k=min(count, len(regular)))
        lines = [{"sku": s.sku, "qty": rng.choices((1, 2, 3), weights=(7, 2, 1))[0]} for s in chosen]
        tx_type = "fixed_price"
    province = rng.choice(sorted(PROVINCES))
    city = rng.choice(PROVINCES[province])
    buyer = f"buyer-{rng.randrange(buyers):05d}"
    return {
        "buyer_id": buyer,
        "tx_type": tx_type,
        "channel": rng.choice(CHANNELS),
        "lines": lines,
        "address": {
            "country": "CN",
            "province": province,
            "city": city,
            "district": rng.choice(DISTRICTS[city]),
            "street": f"{rng.randrange(1, 999)} Market Street",
            "recipient": buyer,
            "phone": f"138{rng.randrange(10**8):08d}",
        },
        "idempotency_key": key,
        **extra,
    }


# --------------------------------------------------------------------------- statistics
@dataclass
class Counters:
    sent: int = 0
    ok: int = 0
    http_4xx: int = 0
    blocked_429: int = 0
    blocked_503: int = 0
    http_5xx: int = 0
    timeouts: int = 0
    conn_errors: int = 0
    late: int = 0
    max_behind_ms: float = 0.0
    kinds_4xx: Counter[str] = field(default_factory=Counter)

    def add(self, other: Counters) -> None:
        for name in ("sent", "ok", "http_4xx", "blocked_429", "blocked_503", "http_5xx", "timeouts"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.conn_errors += other.conn_errors
        self.late += other.late
        self.max_behind_ms = max(self.max_behind_ms, other.max_behind_ms)
        self.kinds_4xx.update(other.kinds_4xx)

    def line(self, second: int, rate: float, queued: int) -> str:
        kinds = " ".join(f"{k}×{n}" for k, n in self.kinds_4xx.most_common(4))
        return (
            f"[traffic t={second:>4}s target={rate:7.1f}/s] sent={self.sent} 2xx={self.ok} "
            f"4xx={self.http_4xx}{' (' + kinds + ')' if kinds else ''} "
            f"429={self.blocked_429} 503={self.blocked_503} 5xx={self.http_5xx} "
            f"timeouts={self.timeouts} conn_err={self.conn_errors} "
            f"behind={self.late} (max {self.max_behind_ms:.0f} ms, queued {queued})"
        )


def problem_kind(response: httpx.Response) -> str:
    """``STATUS:kind`` of an error answer, kind from the problem+json ``type``/``code``/``title``."""
    kind = ""
    with contextlib.suppress(Exception):
        body = response.json()
        if isinstance(body, dict):
            raw = body.get("code") or body.get("type") or body.get("title") or ""
            kind = str(raw).rstrip("/").rsplit("/", 1)[-1].replace(" ", "_").lower()
            if kind == "about:blank":
                kind = ""
    return f"{response.status_code}:{kind}" if kind else str(response.status_code)


# --------------------------------------------------------------------------- the runner
class TrafficRunner:
    """Runs one traffic session. ``run()`` returns the final summary dict."""

    def __init__(
        self,
        config: TrafficConfig,
        *,
        out: TextIO | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self._transport = transport
        self.out = out or sys.stderr
        seed = config.seed if config.seed is not None else random.randrange(2**31)
        self.seed = seed
        self.schedule_rng = random.Random(seed)
        self.rng = random.Random(seed + 1)
        self.state = ShopperState()
        self.skus: list[Sku] = []
        self.interval = Counters()
        self.total = Counters()
        self.business: Counter[str] = Counter()
        self.latencies_ms: list[float] = []
        self._stop = asyncio.Event()
        self._order_seq = 0
        self._base_url = config.url.rstrip("/")
        self._merchant_headers = {"Authorization": f"Bearer {config.ops_token}"} if config.ops_token else {}
        bids = bool(config.tx_mix and config.tx_mix.get("auction"))
        self.auction_ids: tuple[str, ...] = (
            (config.auction_ids if config.auction_ids is not None else demo_auction_ids()) if bids else ()
        )

    def stop(self) -> None:
        self._stop.set()

    # --- discovery
    async def discover(self, client: httpx.AsyncClient, attempts: int = 30) -> list[Sku]:
        last: Exception | None = None
        for _ in range(attempts):
            try:
                shops = (await client.get("/shops")).raise_for_status().json()
                if isinstance(shops, dict):
                    shops = shops.get("shops") or shops.get("items") or []
                products: dict[str, list[dict[str, Any]]] = {}
                for shop in shops:
                    shop_id = str(shop.get("id") or shop.get("shop_id"))
                    got = (await client.get(f"/shops/{shop_id}/products")).raise_for_status().json()
                    if isinstance(got, dict):
                        got = got.get("products") or got.get("items") or []
                    products[shop_id] = got
                skus = parse_catalog(shops, products)
                if skus:
                    return skus
                last = RuntimeError("the catalog is empty: run `tradeguard seed` first")
            except (httpx.HTTPError, ValueError) as exc:
                last = exc
            if self._stop.is_set():
                break
            await asyncio.sleep(1.0)
        raise RuntimeError(f"cannot read the catalog from {self._base_url}: {last}")

    # --- one request
    def _record(self, response: httpx.Response, started: float) -> bool:
        c = self.interval
        status = response.status_code
        if 200 <= status < 300:
            c.ok += 1
            self.latencies_ms.append((time.perf_counter() - started) * 1000)
            return True
        if status == 429:
            c.blocked_429 += 1
        elif status == 503 and "retry-after" in response.headers:
            c.blocked_503 += 1  # a guardian's fast rejection (breaker open / system protection)
        elif status >= 500:
            c.http_5xx += 1
            log.warning(
                "HTTP %s from %s %s: %s",
                status,
                response.request.method,
                response.request.url.path,
                response.text[:300],
            )
        elif status >= 400:
            c.http_4xx += 1
            c.kinds_4xx[problem_kind(response)] += 1
        return False

    async def _request(self, client: httpx.AsyncClient, t: float) -> None:
        cfg = self.config
        action = choose_action(self.rng, self.state, self.clock.now() if cfg.tx_mix else None)
        started = time.perf_counter()
        self.interval.sent += 1
        try:
            if action == "settle":
                await self._settle(client, started)
            elif action == "place":
                self._order_seq += 1
                flash = self.rng.random() < flash_share(cfg.profile, t, cfg.cycle_s, cfg.multiplier)
                tx_type = None if flash else pick_tx_type(self.rng, cfg.tx_mix)
                if tx_type == "auction":
                    await self._bid(client, started)
                    return
                key = f"traffic-{self.seed}-{self._order_seq}"
                body = make_order_body(self.rng, self.skus, flash, cfg.buyers, key, tx_type)
                response = await client.post("/orders", json=body)
                if self._record(response, started):
                    self.business["orders_placed"] += 1
                    self._keep(body, response.json())
            elif action == "pay":
                placed = self.state.unpaid.popleft()
                response = await client.post(f"/orders/{placed.order_id}/pay")
                if self._record(response, started):
                    status = _status_of(response)
                    if response.status_code == 202:  # breaker open: the node queued the charge for later
                        self.business["payments_queued"] += 1
                    elif status in (None, "paid"):
                        self.business["orders_paid"] += 1
                        self.state.paid.append(placed)
                    else:
                        self.business["payments_failed"] += 1
                elif response.status_code in (402, 409, 422):
                    self.business["payments_failed"] += 1
            elif action == "cancel":
                placed = self.state.unpaid.pop()
                response = await client.post(f"/orders/{placed.order_id}/cancel", json={"reason": "buyer"})
                if self._record(response, started):
                    self.business["orders_cancelled"] += 1
            else:
                placed = self.state.paid.popleft()
                line = self.rng.choice(placed.lines)
                body = {"lines": [{"sku": line["sku"], "qty": 1}]}
                response = await client.post(f"/orders/{placed.order_id}/refunds", json=body)
                if self._record(response, started):
                    self.business["refunds"] += 1
                    refund_id = _id_of(response)
                    if refund_id:  # the merchant approves at once: money back, stock returned
                        self.interval.sent += 1
                        started = time.perf_counter()
                        done = await client.post(f"/refunds/{refund_id}/complete",
                                                 headers=self._merchant_headers)
                        if self._record(done, started):
                            self.business["refunds_completed"] += 1
        except httpx.TimeoutException:
            self.interval.timeouts += 1
        except httpx.TransportError as exc:
            self.interval.conn_errors += 1
            log.debug("transport error: %s", exc)

    def _keep(self, body: dict[str, Any], order: Any) -> None:
        """Remember a placed order for what comes next: a presale's balance (inside the window the
        answer gives), a COD order's delivery, or a regular order's payment."""
        if not isinstance(order, dict):
            return
        order_id = order.get("id") or order.get("order_id")
        if not order_id:
            return
        lines = body["lines"]
        presale = order.get("presale")
        if body.get("tx_type") == "presale" or isinstance(presale, dict):
            self.business["presale_deposits"] += 1
            window = _presale_window(presale)
            if window is not None:
                self.state.presales.append(PresaleDue(str(order_id), lines, *window))
            return
        if order.get("cash_on_delivery") or body.get("tx_type") == "cod":
            subs = [
                str(s["id"]) for s in order.get("sub_orders") or () if isinstance(s, dict) and s.get("id")
            ]
            if subs:
                self.state.cod.append(CodOrder(str(order_id), lines, subs))
            return
        self.state.unpaid.append(Placed(str(order_id), lines))

    async def _settle(self, client: httpx.AsyncClient, started: float) -> None:
        """Pay a presale's balance inside its window, or ship and deliver a COD order (cash collected)."""
        due = self.state.take_settlement(self.rng, self.clock.now())
        if due is None:  # the window closed between the choice and now: nothing sent
            self.interval.sent -= 1
            return
        if isinstance(due, PresaleDue):
            response = await client.post(f"/orders/{due.order_id}/pay", json={"stage": "balance"})
            if self._record(response, started):
                self.business["presale_balances_paid"] += 1
                self.state.paid.append(Placed(due.order_id, due.lines))
            elif response.status_code in (402, 409, 422):
                self.business["presale_balances_refused"] += 1
            return
        first = True
        for sub_id in due.sub_order_ids:
            if not first:
                self.interval.sent += 1
                started = time.perf_counter()
            first = False
            shipped = await client.post(
                f"/sub-orders/{sub_id}/ship",
                json={"carrier": "SF Express", "tracking_no": f"SF{self.rng.randrange(10**10):010d}"},
                headers=self._merchant_headers,
            )
            if not self._record(shipped, started):
                return
            self.interval.sent += 1
            started = time.perf_counter()
            delivered = await client.post(
                f"/sub-orders/{sub_id}/deliver", json={"collected": True}, headers=self._merchant_headers
            )
            if not self._record(delivered, started):
                return
        self.business["cod_delivered"] += 1

    async def _bid(self, client: httpx.AsyncClient, started: float) -> None:
        """Bid the next minimum on a running auction (read first: ``phase`` and ``next_min_cents``)."""
        if not self.auction_ids:
            self.business["bids_skipped"] += 1
            self.interval.sent -= 1
            return
        auction_id = self.rng.choice(self.auction_ids)
        got = await client.get(f"/auctions/{auction_id}")
        if not self._record(got, started):
            return
        auction = got.json()
        if not isinstance(auction, dict) or auction.get("phase") != "running":
            self.business["bids_skipped"] += 1
            return
        self.interval.sent += 1
        started = time.perf_counter()
        buyer = f"buyer-{self.rng.randrange(self.config.buyers):05d}"
        amount = int(auction.get("next_min_cents") or 0)
        response = await client.post(
            f"/auctions/{auction_id}/bids", json={"buyer_id": buyer, "amount_cents": amount}
        )
        if self._record(response, started):
            self.business["bids"] += 1
        elif response.status_code == 409:  # outbid in between, or the auction ended
            self.business["bids_refused"] += 1

    # --- the loop
    async def run(self) -> dict[str, Any]:
        cfg = self.config
        limits = httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency)
        timeout = httpx.Timeout(cfg.timeout_s)
        async with httpx.AsyncClient(
            base_url=self._base_url, limits=limits, timeout=timeout, transport=self._transport
        ) as client:
            self.skus = await self.discover(client)
            log.info(
                "traffic: %d SKUs (%d flash-sale) at %s; profile %s, base %.1f/s, seed %d",
                len(self.skus),
                sum(s.flash for s in self.skus),
                self._base_url,
                cfg.profile,
                cfg.rate,
                self.seed,
            )
            queue: asyncio.Queue[tuple[float, float]] = asyncio.Queue()
            start = time.perf_counter()
            workers = [asyncio.create_task(self._worker(client, queue)) for _ in range(cfg.concurrency)]
            reporter = asyncio.create_task(self._report(start, queue))
            producer = asyncio.create_task(self._produce(queue, start))
            stopper = asyncio.create_task(self._stop.wait())
            await asyncio.wait({producer, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if not self._stop.is_set():  # schedule done: let the last requests finish
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(queue.join(), timeout=cfg.timeout_s + 1)
            for task in (producer, stopper, reporter, *workers):
                task.cancel()
            await asyncio.gather(producer, stopper, reporter, *workers, return_exceptions=True)
            elapsed = time.perf_counter() - start
        self.total.add(self.interval)
        return self.summary(elapsed)

    async def _produce(self, queue: asyncio.Queue[tuple[float, float]], start: float) -> None:
        cfg = self.config
        for t in arrival_times(
            cfg.profile,
            cfg.rate,
            self.schedule_rng,
            duration=cfg.duration,
            multiplier=cfg.multiplier,
            cycle_s=cfg.cycle_s,
        ):
            delay = start + t - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait((t, start + t))

    async def _worker(self, client: httpx.AsyncClient, queue: asyncio.Queue[tuple[float, float]]) -> None:
        while True:
            t, due = await queue.get()
            try:
                behind_ms = (time.perf_counter() - due) * 1000
                if behind_ms > LATE_MS:
                    self.interval.late += 1
                self.interval.max_behind_ms = max(self.interval.max_behind_ms, behind_ms)
                await self._request(client, t)
            except Exception:  # a simulator bug must not kill the worker
                log.exception("traffic worker error")
            finally:
                queue.task_done()

    async def _report(self, start: float, queue: asyncio.Queue[tuple[float, float]]) -> None:
        cfg = self.config
        second = 0
        while True:
            second += 1
            await asyncio.sleep(max(0.0, start + second - time.perf_counter()))
            target = cfg.rate * rate_factor(cfg.profile, second, cfg.cycle_s, cfg.multiplier)
            print(self.interval.line(second, target, queue.qsize()), file=self.out, flush=True)
            self.total.add(self.interval)
            self.interval = Counters()

    def run_sync(self) -> dict[str, Any]:
        return asyncio.run(self.run())

    def summary(self, elapsed: float) -> dict[str, Any]:
        c, cfg = self.total, self.config
        lat = sorted(self.latencies_ms)
        return {
            "url": self._base_url,
            "profile": cfg.profile,
            "rate": cfg.rate,
            "multiplier": cfg.multiplier,
            "seed": self.seed,
            "duration_s": round(elapsed, 3),
            "sent": c.sent,
            "achieved_rps": round(c.sent / elapsed, 2) if elapsed > 0 else 0.0,
            "http_2xx": c.ok,
            "http_4xx": c.http_4xx,
            "http_4xx_by_kind": dict(c.kinds_4xx.most_common()),
            "blocked_429": c.blocked_429,
            "blocked_503": c.blocked_503,
            "http_5xx": c.http_5xx,
            "timeouts": c.timeouts,
            "conn_errors": c.conn_errors,
            "behind_schedule": c.late,
            "max_behind_ms": round(c.max_behind_ms, 1),
            "p50_ms": round(percentile(lat, 50) or 0.0, 2),
            "p99_ms": round(percentile(lat, 99) or 0.0, 2),
            "orders_placed": self.business["orders_placed"],
            "orders_paid": self.business["orders_paid"],
            "payments_failed": self.business["payments_failed"],
            "payments_queued": self.business["payments_queued"],
            "orders_cancelled": self.business["orders_cancelled"],
            "refunds": self.business["refunds"],
            "refunds_completed": self.business["refunds_completed"],
            "presale_deposits": self.business["presale_deposits"],
            "presale_balances_paid": self.business["presale_balances_paid"],
            "presale_balances_refused": self.business["presale_balances_refused"],
            "cod_delivered": self.business["cod_delivered"],
            "bids": self.business["bids"],
            "bids_refused": self.business["bids_refused"],
            "bids_skipped": self.business["bids_skipped"],
        }


def _id_of(response: httpx.Response) -> str | None:
    with contextlib.suppress(Exception):
        body = response.json()
        if isinstance(body, dict) and body.get("id"):
            return str(body["id"])
    return None


def _presale_window(presale: Any) -> tuple[datetime, datetime] | None:
    """``(balance_starts_at, balance_ends_at)`` of an order answer's ``presale``; None without one."""
    if not isinstance(presale, dict):
        return None
    try:
        starts = datetime.fromisoformat(str(presale["balance_starts_at"]))
        ends = datetime.fromisoformat(str(presale["balance_ends_at"]))
    except (KeyError, ValueError):
        return None
    if starts.tzinfo is None:
        starts = starts.replace(tzinfo=UTC)
    if ends.tzinfo is None:
        ends = ends.replace(tzinfo=UTC)
    return starts, ends


def _status_of(response: httpx.Response) -> str | None:
    with contextlib.suppress(Exception):
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("status"), str):
            return body["status"]
    return None


def run_traffic(
    config: TrafficConfig, *, out: TextIO | None = None, install_signals: bool = True
) -> dict[str, Any]:
    """Run a session to its end (duration) or until SIGINT/SIGTERM; returns the summary."""
    runner = TrafficRunner(config, out=out)

    async def main() -> dict[str, Any]:
        if install_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, runner.stop)
        return await runner.run()

    return asyncio.run(main())


def dumps_summary(summary: dict[str, Any]) -> str:
    return json.dumps(summary, sort_keys=False)
