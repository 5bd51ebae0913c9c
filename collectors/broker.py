"""The event bus port and its two adapters: domain events from the journal, for other consumers.

``EventBroker.publish(events)`` returns only when the broker has taken every event (confirmed) and
raises :class:`BrokerUnavailable` otherwise; the journal relay then keeps its cursor, so a broker
outage loses nothing and the relay catches up when it is back. Delivery is at least once: after a
failure part of a batch may be published again, with the same ``message_id`` (the journal id),
so consumers drop duplicates by message id.

- :class:`InProcessBroker` (default, nothing to start): calls in-process subscribers.
- :class:`RabbitMQBroker` (``TRADEGUARD_BROKER_URL=amqp://…``, pika): a durable topic exchange
  ``tradeguard.events``, routing key ``<app>.<EventName>``, persistent messages
  (``delivery_mode=2``), publisher confirms, ``message_id`` = journal id.

:func:`open_broker` picks the adapter from the URL.
"""

from __future__ import annotations

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
    """pika ``BlockingConnection`` with publisher confirms; reconnects on the next publish after a failure."""

    def __init__(self, url: str, *, app: str = "tradeguard", exchange: str = EXCHANGE,
                 connect_timeout_s: float = 5.0) -> None:
        import pika

        if logging.getLogger("pika").level == logging.NOTSET:  # pika logs every connection step at INFO
            logging.getLogger("pika").setLevel(logging.WARNING)
        self._pika = pika
        self.url = url
        self.app = app
        self.exchange = exchange
        self.params = pika.URLParameters(url)
        self.params.socket_timeout = connect_timeout_s
        self.params.blocked_connection_timeout = 30
        self.params.connection_attempts = 1
        self._conn: Any = None
        self._channel: Any = None
        self._lock = threading.Lock()
        self.published = 0

    def _open(self) -> Any:
        if self._channel is not None and self._channel.is_open:
            return self._channel
        self._reset()
        conn = self._pika.BlockingConnection(self.params)
        channel = conn.channel()
        channel.exchange_declare(exchange=self.exchange, exchange_type="topic", durable=True)
        channel.confirm_delivery()
        self._conn, self._channel = conn, channel
        return channel

    def _reset(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def publish(self, events: Sequence[JournalRow]) -> None:
        if not events:
            return
        pika = self._pika
        with self._lock:
            try:
                channel = self._open()
                for event in events:
                    channel.basic_publish(
                        exchange=self.exchange,
                        routing_key=routing_key(self.app, event),
                        body=message_body(self.app, event),
                        properties=pika.BasicProperties(
                            delivery_mode=2,
                            message_id=str(event.id),
                            content_type="application/json",
                            type=event.name,
                            app_id=self.app,
                        ),
                    )  # with confirm_delivery(): returns once the broker acked, raises on nack
                    self.published += 1
            except Exception as exc:
                self._reset()
                why = redact_text(str(exc)) or type(exc).__name__
                raise BrokerUnavailable(f"RabbitMQ at {redact_url(self.url)} did not confirm: {why}") from exc

    def health(self) -> dict[str, Any]:
        ok = self._channel is not None and self._channel.is_open
        return {"status": "ok" if ok else "disconnected", "url": redact_url(self.url)}

    def close(self) -> None:
        with self._lock:
            self._reset()

    def __repr__(self) -> str:
        return f"RabbitMQBroker({redact_url(self.url)!r}, exchange={self.exchange!r})"


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
