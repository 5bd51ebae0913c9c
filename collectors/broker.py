"""The event bus port and its two adapters: domain events from the journal, for other consumers.

``EventBroker.publish(events)`` returns only when the broker has taken every event (confirmed) and
raises :class:`BrokerUnavailable` otherwise; the journal relay then keeps its cursor, so a broker
outage loses nothing and the relay catches up when it is back. Delivery is at least once: after a
failure part of a batch may be published again, with the same ``message_id`` (the journal id),
so consumers drop duplicates by message id.

- :class:`InProcessBroker` (default, nothing to start): calls in-process subscribers.
- :class:`RabbitMQBroker` (``TRADEGUARD_BROKER_URL=amqp://…``, aio-pika): a durable topic exchange
  ``tradeguard.events``, routing key ``<app>.<EventName>``, persistent messages
  (``delivery_mode=2``), publisher confirms awaited per batch, ``message_id`` = journal id.

:func:`open_broker` picks the adapter from the URL.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from collectors.errors import ConfigError
from common.redact import redact_text, redact_url
from domain.adapters.journal import JournalRow

log = logging.getLogger(__name__)

EXCHANGE = "tradeguard.events"


class BrokerUnavailable(RuntimeError):
    """The broker did not confirm a publish (down, refused, nacked): nothing after it counts as sent."""


class EventBroker(Protocol):
    def publish(self, events: Sequence[JournalRow]) -> None: ...

    def close(self) -> None: ...


def message_body(app: str, event: JournalRow) -> bytes:
    return json.dumps(
        {"app": app, "id": event.id, "name": event.name, "occurred_at": event.occurred_at.isoformat(),
         "order_id": event.order_id, "payload": event.payload},
        separators=(",", ":"),
        sort_keys=True,
        default=str,
    ).encode()


def routing_key(app: str, event: JournalRow) -> str:
    return f"{app}.{event.name}"


class InProcessBroker:
    """Subscribers in this process, called in order; a subscriber that raises fails the publish."""

    def __init__(self) -> None:
        self._subscribers: list[Callable[[JournalRow], None]] = []
        self.published = 0

    def subscribe(self, fn: Callable[[JournalRow], None]) -> None:
        self._subscribers.append(fn)

    def publish(self, events: Sequence[JournalRow]) -> None:
        for event in events:
            for fn in self._subscribers:
                try:
                    fn(event)
                except Exception as exc:
                    raise BrokerUnavailable(
                        f"in-process subscriber {fn!r} failed on event {event.id}: {exc}"
                    ) from exc
            self.published += 1

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return "InProcessBroker()"


class RabbitMQBroker:
    """aio-pika with publisher confirms, publishing a batch at a time.

    pika's ``BlockingConnection`` waits for each message's confirm before it sends the next (one
    round trip per event, ~2,800 events/s here). This adapter sends a whole batch and then awaits
    every confirm together (the broker acks many delivery tags at once), so a batch costs about one
    round trip. ``publish`` still returns only when every message of the batch is confirmed, and
    raises :class:`BrokerUnavailable` otherwise (the relay keeps its cursor). The connection lives on
    a private asyncio loop in one daemon thread (created on first use, stopped by ``close()``); after
    a failure the next publish reconnects."""

    def __init__(self, url: str, *, app: str = "tradeguard", exchange: str = EXCHANGE,
                 connect_timeout_s: float = 5.0, confirm_timeout_s: float = 30.0,
                 window: int = 2000) -> None:
        import aio_pika

        for name in ("aio_pika", "aiormq"):  # they log every connection step at INFO
            if logging.getLogger(name).level == logging.NOTSET:
                logging.getLogger(name).setLevel(logging.WARNING)
        self._aio_pika = aio_pika
        self.url = url
        self.app = app
        self.exchange_name = exchange
        self.connect_timeout_s = connect_timeout_s
        self.confirm_timeout_s = confirm_timeout_s
        self.window = max(1, window)  # messages in flight before awaiting their confirms
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._conn: Any = None
        self._channel: Any = None
        self._exchange: Any = None
        self._lock = threading.Lock()
        self.published = 0

    # ---------------------------------------------------------------- the private loop
    def _run(self, coro: Any, timeout: float) -> Any:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="rabbitmq-broker", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no confirm within {timeout:g} s") from None

    async def _open(self) -> Any:
        if self._channel is not None and not self._channel.is_closed and self._exchange is not None:
            return self._exchange
        await self._close_connection()
        aio_pika = self._aio_pika
        conn = await aio_pika.connect(self.url, timeout=self.connect_timeout_s)
        try:
            channel = await conn.channel(publisher_confirms=True)
            exchange = await channel.declare_exchange(
                self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
            )
        except BaseException:
            await conn.close()
            raise
        self._conn, self._channel, self._exchange = conn, channel, exchange
        return exchange

    async def _close_connection(self) -> None:
        conn, self._conn, self._channel, self._exchange = self._conn, None, None, None
        if conn is not None:
            try:
                await conn.close()
            except Exception:
                pass

    async def _publish(self, events: Sequence[JournalRow]) -> int:
        aio_pika = self._aio_pika
        exchange = await self._open()
        done = 0
        for i in range(0, len(events), self.window):
            chunk = events[i : i + self.window]
            confirms = [
                exchange.publish(
                    aio_pika.Message(
                        message_body(self.app, event),
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        message_id=str(event.id),
                        content_type="application/json",
                        type=event.name,
                        app_id=self.app,
                    ),
                    routing_key=routing_key(self.app, event),
                    mandatory=False,
                )
                for event in chunk
            ]
            results = await asyncio.gather(*confirms, return_exceptions=True)  # sent in order, then acked
            for result in results:  # a Nack/Reject raises DeliveryError; a lost connection raises too
                if isinstance(result, BaseException):
                    raise result
                if _nacked(result):
                    raise RuntimeError(f"the broker did not ack a message: {type(result).__name__}")
            done += len(chunk)
        return done

    # ---------------------------------------------------------------- the port
    def publish(self, events: Sequence[JournalRow]) -> None:
        if not events:
            return
        with self._lock:
            timeout = self.connect_timeout_s + self.confirm_timeout_s
            try:
                self.published += self._run(self._publish(list(events)), timeout)
            except Exception as exc:
                self._reset()
                why = redact_text(str(exc)) or type(exc).__name__
                raise BrokerUnavailable(
                    f"RabbitMQ at {redact_url(self.url)} did not confirm: {type(exc).__name__}: {why}"
                ) from exc

    def _reset(self) -> None:
        if self._loop is None:
            return
        try:
            self._run(self._close_connection(), self.connect_timeout_s)
        except Exception:
            self._conn = self._channel = self._exchange = None

    def health(self) -> dict[str, Any]:
        ok = self._channel is not None and not self._channel.is_closed
        return {"status": "ok" if ok else "disconnected", "url": redact_url(self.url)}

    def close(self) -> None:
        with self._lock:
            self._reset()
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
            if loop is not None:
                loop.call_soon_threadsafe(loop.stop)
                if thread is not None:
                    thread.join(5)
                loop.close()

    def __repr__(self) -> str:
        return f"RabbitMQBroker({redact_url(self.url)!r}, exchange={self.exchange_name!r})"


def _nacked(frame: Any) -> bool:
    """A confirm frame that is not an ack (Basic.Nack / Basic.Reject)."""
    return frame is not None and type(frame).__name__ != "Ack"


def open_broker(url: str | None, *, app: str = "tradeguard") -> EventBroker:
    """``amqp://`` / ``amqps://`` → RabbitMQ; unset or empty → in-process. Anything else is an error."""
    if not url:
        return InProcessBroker()
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("amqp", "amqps"):
        return RabbitMQBroker(url, app=app)
    raise ConfigError(
        f"TRADEGUARD_BROKER_URL {redact_url(url)!r}: unsupported scheme {scheme or '(none)'!r}; "
        "allowed: amqp://, amqps:// (unset: in-process)"
    )
