"""The event bus port and its two adapters: domain events from the journal, for other consumers.

``EventBroker.publish(events)`` returns only when the broker has taken every event (confirmed) and
raises :class:`BrokerUnavailable` otherwise; the journal relay then keeps its cursor, so a broker
outage loses nothing and the relay catches up when it is back. Delivery is at least once: after a
failure part of a batch may be published again, with the same ``message_id`` (the journal id),
so consumers drop duplicates by message id.

- :class:`InProcessBroker` (default, nothing to start): calls in-process subscribers.
- :class:`RabbitMQBroker` (``TRADEGUARD_BROKER_URL=amqp://…``, pika): a durable topic exchange
  ``tradeguard.events``, routing key ``<app>.<EventName>``, persistent messages
  (``delivery_mode=2``), publisher confirms (a window in flight, all awaited before ``publish``
  returns), ``message_id`` = journal id.

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
    """pika's asynchronous connection with publisher confirms, a window of messages in flight.

    The ordinary clients cost one confirm round trip per message (pika's ``BlockingConnection``
    waits for each confirm before it sends the next, ~2,800 events/s here) or one socket write per
    message (aio-pika/aiormq, ~1,800 events/s here even with every confirm of a batch awaited
    together). This adapter uses pika's ``AsyncioConnection``, holds the frames of a run of
    publishes and writes them together (``cork``/``uncork``), keeps up to ``window`` messages
    unconfirmed while it sends the next ones, and resumes the publisher only when the confirms it
    waits for are in (an ack may cover many delivery tags: ``multiple``). ``publish`` still returns
    only when every message of the batch is confirmed (Basic.Ack), and raises
    :class:`BrokerUnavailable` otherwise (a nack, a closed channel or connection, no confirm in
    ``confirm_timeout_s``): the relay keeps its cursor.
    The connection lives on a private asyncio loop in one daemon thread (created on first use,
    stopped by ``close()``); after a failure the next publish reconnects."""

    def __init__(self, url: str, *, app: str = "tradeguard", exchange: str = EXCHANGE,
                 connect_timeout_s: float = 5.0, confirm_timeout_s: float = 30.0,
                 window: int = 1000) -> None:
        import pika

        # pika logs every connection step, and every failed one at ERROR on each cycle of an outage;
        # the relay reports the failure once per cycle (a warning with the reason) instead
        if logging.getLogger("pika").level == logging.NOTSET:
            logging.getLogger("pika").setLevel(logging.CRITICAL)
        self._pika = pika
        self.url = url
        self.app = app
        self.exchange_name = exchange
        self.connect_timeout_s = connect_timeout_s
        self.confirm_timeout_s = confirm_timeout_s
        self.window = max(1, window)  # messages in flight (sent, not yet confirmed) before waiting
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._conn: Any = None
        self._channel: Any = None
        self._next_tag = 0  # the channel's last delivery tag (confirm mode numbers messages from 1)
        self._pending: dict[int, None] = {}  # unconfirmed delivery tags, in increasing order
        self._failure: BaseException | None = None  # a nack or a close, for the batch in flight
        self._waiter: asyncio.Future[None] | None = None
        self._wake_at = 0  # wake the publisher when this few messages are left unconfirmed
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

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _callback(self, start: Callable[[Callable[..., None]], None], what: str) -> Any:
        """Run a pika call that reports through a callback; its argument, or the failure meanwhile."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        self._waiter = loop.create_future()
        waiter = self._waiter

        def callback(arg: Any = None) -> None:
            if not done.done():
                done.set_result(arg)

        start(callback)
        await asyncio.wait([done, waiter], timeout=self.connect_timeout_s,
                           return_when=asyncio.FIRST_COMPLETED)
        if done.done():
            return done.result()
        raise self._failure or TimeoutError(f"{what}: no answer within {self.connect_timeout_s:g} s")

    async def _open(self) -> Any:
        channel = self._channel
        if channel is not None and channel.is_open and self._failure is None:
            return channel
        await self._close_connection()
        pika = self._pika
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[Any] = loop.create_future()
        self._failure = None

        def on_open(conn: Any) -> None:
            if not opened.done():
                opened.set_result(conn)

        def on_open_error(_conn: Any, exc: BaseException) -> None:
            if not opened.done():
                opened.set_exception(ConnectionError(f"cannot connect: {exc!r}"))

        params = pika.URLParameters(self.url)
        params.socket_timeout = self.connect_timeout_s
        params.stack_timeout = self.connect_timeout_s
        params.connection_attempts = 1
        conn = _corked_connection_class()(
            params, on_open_callback=on_open, on_open_error_callback=on_open_error,
            on_close_callback=self._on_connection_closed, custom_ioloop=loop,
        )
        self._conn = conn
        try:
            await asyncio.wait_for(opened, self.connect_timeout_s)
            channel = await self._callback(lambda cb: conn.channel(on_open_callback=cb), "channel open")
            channel.add_on_close_callback(self._on_channel_closed)
            await self._callback(
                lambda cb: channel.confirm_delivery(self._on_confirm, callback=cb), "confirm select"
            )
            await self._callback(
                lambda cb: channel.exchange_declare(self.exchange_name, exchange_type="topic",
                                                    durable=True, callback=cb),
                "exchange declare",
            )
        except BaseException:
            await self._close_connection()
            raise
        self._channel, self._next_tag, self._pending = channel, 0, {}
        return channel

    # pika's callbacks, on the private loop
    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        tag = method.delivery_tag
        if method.multiple:
            while self._pending:
                first = next(iter(self._pending))
                if first > tag:
                    break
                del self._pending[first]
        else:
            self._pending.pop(tag, None)
        if type(method).__name__ != "Ack":  # Basic.Nack: the broker did not take these messages
            self._failure = self._failure or RuntimeError(
                f"the broker nacked delivery tag {tag}{' and before' if method.multiple else ''}"
            )
        if self._failure is not None or len(self._pending) <= self._wake_at:
            self._wake()  # not on every ack: a resumed coroutine per ack costs more than the ack

    def _on_channel_closed(self, channel: Any, reason: BaseException) -> None:
        if channel is self._channel or self._channel is None:
            self._failure = self._failure or ConnectionError(f"channel closed: {reason!r}")
            self._channel = None
        self._wake()

    def _on_connection_closed(self, conn: Any, reason: BaseException) -> None:
        if conn is self._conn:
            self._failure = self._failure or ConnectionError(f"connection closed: {reason!r}")
            self._conn = self._channel = None
        self._wake()

    async def _close_connection(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        self._pending = {}
        if conn is not None and not (conn.is_closing or conn.is_closed):
            try:
                conn.close()
            except Exception:
                pass

    async def _confirmed_down_to(self, limit: int, deadline: float) -> None:
        """Wait until at most ``limit`` messages are unconfirmed; raise on a nack, close or timeout."""
        loop = asyncio.get_running_loop()
        while True:
            if self._failure is not None:
                raise self._failure
            if len(self._pending) <= limit:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{len(self._pending)} messages unconfirmed after "
                                   f"{self.confirm_timeout_s:g} s")
            self._wake_at = limit
            self._waiter = loop.create_future()
            await asyncio.wait([self._waiter], timeout=remaining)

    async def _publish(self, events: Sequence[JournalRow]) -> int:
        pika = self._pika
        channel = await self._open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.confirm_timeout_s
        conn = self._conn
        try:
            for event in events:
                if len(self._pending) >= self.window:
                    conn.uncork()
                    await self._confirmed_down_to(self.window // 2, deadline)
                conn.cork()  # the frames of a run of publishes leave in one write
                channel.basic_publish(
                    self.exchange_name,
                    routing_key(self.app, event),
                    message_body(self.app, event),
                    pika.BasicProperties(
                        delivery_mode=pika.DeliveryMode.Persistent,
                        message_id=str(event.id),
                        content_type="application/json",
                        type=event.name,
                        app_id=self.app,
                    ),
                )
                self._next_tag += 1
                self._pending[self._next_tag] = None
        finally:
            conn.uncork()
        await self._confirmed_down_to(0, deadline)
        return len(events)

    # ---------------------------------------------------------------- the port
    def publish(self, events: Sequence[JournalRow]) -> None:
        if not events:
            return
        with self._lock:
            timeout = self.connect_timeout_s * 4 + self.confirm_timeout_s
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
            self._conn = self._channel = None

    def health(self) -> dict[str, Any]:
        channel = self._channel
        ok = channel is not None and channel.is_open
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


_CORKED: Any = None


def _corked_connection_class() -> Any:
    """pika's ``AsyncioConnection`` that can hold its outgoing frames and hand them to the socket
    as one write (``cork()`` … ``uncork()``): its transport otherwise sends every frame (three per
    message) with its own ``send``. Frames keep their order; only the write size changes."""
    global _CORKED
    if _CORKED is None:
        from pika.adapters.asyncio_connection import AsyncioConnection

        class CorkedConnection(AsyncioConnection):  # type: ignore[misc]
            _held: list[bytes] | None = None

            @property
            def corked(self) -> bool:
                return self._held is not None

            def cork(self) -> None:
                if self._held is None:
                    self._held = []

            def uncork(self) -> None:
                held, self._held = self._held, None
                if held:
                    super()._adapter_emit_data(b"".join(held))

            def _adapter_emit_data(self, data: bytes) -> None:
                if self._held is not None:
                    self._held.append(data)
                else:
                    super()._adapter_emit_data(data)

        _CORKED = CorkedConnection
    return _CORKED


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
