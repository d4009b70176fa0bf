"""AMQP 0-9-1 (RabbitMQ): a manual-ack queue source with bounded prefetch, and a confirmed writer.

The source declares the durable ``queue`` (bound to ``exchange`` with ``routing_key``
when given), sets ``prefetch`` (at most that many unacknowledged deliveries in flight)
and consumes with manual acks: a delivery is acked when the runtime acks its event.
When the channel closes (or the process dies) RabbitMQ requeues every unacknowledged
delivery, marked ``redelivered``. The writer publishes persistent messages on a channel
with publisher confirms, so a run finishes only once the broker has taken the message.
Uses aio-pika (``pip install 'kailash[streams]'``).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from kailash.errors import NodeExecutionError
from kailash.nodes.base import NodeParameter, register_node
from kailash.nodes.data.brokers._common import (
    MESSAGE_FORMAT,
    PAYLOAD,
    Broker,
    BrokerCursor,
    BrokerSourceNode,
    BrokerWriterNode,
    decode,
    display,
    require,
)
from kailash.nodes.data.stream_source import StreamEvent

__all__ = ["AMQPSourceNode", "AMQPWriterNode"]

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
AMQP = Broker(DEFAULT_URL, ("amqp", "amqps"), "amqp:// or amqps://")


async def _connect(node: Any, url: str) -> Any:
    aio_pika = require("aio_pika", "aio-pika")
    try:
        return await aio_pika.connect(url, timeout=10)
    except Exception as exc:
        raise node._error(f"cannot connect to AMQP broker {display(url)}: {type(exc).__name__}: {exc}; "
                          "check that the broker is reachable and the credentials", parameter="url",
                          expected="a reachable AMQP broker") from exc


class _AMQPCursor(BrokerCursor):
    def __init__(self, node: AMQPSourceNode, options: dict[str, Any], conn: Any, channel: Any) -> None:
        super().__init__(node, options, f"AMQP queue {options['queue']!r}")
        self.conn, self.channel = conn, channel
        self.deliveries: asyncio.Queue[Any] = asyncio.Queue()

    async def receive(self, wait: float | None) -> list[Any]:
        try:
            first = await asyncio.wait_for(self.deliveries.get(), min(1.0 if wait is None else wait, 1.0))
        except TimeoutError:
            return []
        batch = [first]
        while not self.deliveries.empty():
            batch.append(self.deliveries.get_nowait())
        return batch

    def parse(self, raw: Any) -> StreamEvent:
        stamp = raw.timestamp.timestamp() if raw.timestamp is not None else None
        return StreamEvent(data=decode(raw.body, self.options["message_format"]), event_type=raw.routing_key,
                           id=raw.message_id if raw.message_id is not None else raw.delivery_tag,
                           timestamp=stamp, token=raw)

    async def ack_token(self, token: Any) -> None:
        await token.ack()

    async def nack_token(self, token: Any) -> None:
        await token.nack(requeue=True)

    async def unread(self, raws: list[Any]) -> None:
        """Nothing to do: closing the channel requeues them, in order, ahead of newer messages."""

    async def release(self) -> None:
        await self.conn.close()


@register_node(category="data")
class AMQPSourceNode(BrokerSourceNode):
    """Consume a RabbitMQ queue with manual acks; ack each delivery after its event's work.

    ``data`` is the body parsed as ``message_format``, ``event_type`` the routing key,
    ``id`` the message id (the writer sets one) or the delivery tag, ``timestamp`` the
    message's timestamp property (or ``timestamp_field``). At most ``prefetch``
    deliveries are unacknowledged at once.

    Example:
        >>> AMQPSourceNode(queue="orders").get_parameters()["prefetch"].default
        100
    """

    broker = AMQP

    def stream_unacked_limit(self, inputs: dict[str, Any]) -> tuple[int, str] | None:
        """The channel's ``prefetch_count`` (``prefetch``)."""
        size = self.values(inputs).get("prefetch")
        return (size if type(size) is int else 100), "prefetch"

    def system_parameters(self) -> dict[str, NodeParameter]:
        return {
            "queue": NodeParameter(type=str, required=True, description="queue to consume (declared durable)"),
            "exchange": NodeParameter(type=str, default=None, description="bind the queue to this exchange"),
            "routing_key": NodeParameter(type=str, default=None, description="binding key (default: the queue name)"),
            "prefetch": NodeParameter(type=int, default=100, description="unacknowledged deliveries in flight, at most"),
        }

    def options(self, v: dict[str, Any]) -> dict[str, Any]:
        exchange = v.get("exchange")
        return {**self.common(v), "queue": self._name(v, "queue"),
                "exchange": None if exchange is None else self._name(v, "exchange"),
                "routing_key": v.get("routing_key"), "prefetch": self._positive(v, "prefetch", allow_none=False)}

    async def open_stream(self, inputs: dict[str, Any]) -> _AMQPCursor:
        o = self.options(self.values(inputs))
        conn = await _connect(self, o["url"])
        try:
            channel = await conn.channel()
            await channel.set_qos(prefetch_count=o["prefetch"])
            queue = await channel.declare_queue(o["queue"], durable=True)
            if o["exchange"]:
                await queue.bind(o["exchange"], routing_key=o["routing_key"] or o["queue"])
            cursor = _AMQPCursor(self, o, conn, channel)

            async def deliver(message: Any) -> None:
                cursor.deliveries.put_nowait(message)

            await queue.consume(deliver, no_ack=False)
        except Exception as exc:
            await conn.close()
            raise self._error(f"cannot consume AMQP queue {o['queue']!r}: {type(exc).__name__}: {exc}",
                              parameter="queue", expected="a queue this user may consume") from exc
        return cursor


@register_node(category="data")
class AMQPWriterNode(BrokerWriterNode):
    """Publish ``data`` as a persistent message and wait for the broker's confirm.

    With ``exchange`` unset the message goes through the default exchange to the queue
    named ``routing_key`` (declared durable unless ``declare_queue=False``). Each message
    gets a fresh ``message_id`` (the source's event ``id``), output as ``id``.

    Example:
        >>> sorted(AMQPWriterNode(routing_key="orders").get_outputs())
        ['id']
    """

    broker = AMQP

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "url": self.broker.url,
            "routing_key": NodeParameter(type=str, required=True, description="routing key (the queue name by default)"),
            "data": PAYLOAD,
            "exchange": NodeParameter(type=str, default=None, description="exchange (default: the default exchange)"),
            "declare_queue": NodeParameter(type=bool, default=True,
                                           description="declare the durable queue routing_key (default exchange only)"),
            "message_format": MESSAGE_FORMAT,
        }

    def get_outputs(self) -> dict[str, NodeParameter]:
        return {"id": NodeParameter(type=str, description="the message id")}

    async def async_run(self, **inputs: Any) -> dict[str, Any]:
        aio_pika = require("aio_pika", "aio-pika")
        v, url, key, fmt, body = self.outgoing(inputs, "routing_key")

        async def connect() -> tuple[Any, Any, dict[Any, Any]]:
            conn = await _connect(self, url)
            return conn, await conn.channel(publisher_confirms=True), {}

        try:
            conn, channel, exchanges = await self.connection(url, connect)
            name = v.get("exchange") or ""
            exchange = exchanges.get(name)
            if exchange is None:
                exchange = await channel.get_exchange(name) if name else channel.default_exchange
                exchanges[name] = exchange
            if not name and v.get("declare_queue", True) and ("queue", key) not in exchanges:
                await channel.declare_queue(key, durable=True)
                exchanges[("queue", key)] = True
            message_id = uuid.uuid4().hex
            await exchange.publish(aio_pika.Message(
                body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=message_id, timestamp=datetime.now(UTC),
                content_type="application/json" if fmt == "json" else "text/plain"), routing_key=key)
        except Exception as exc:
            dropped = self._drop_client()
            if dropped is not None:
                await dropped[0].close()
            if isinstance(exc, NodeExecutionError):
                raise
            raise self._error(f"cannot publish to {key!r} at {display(url)}: {type(exc).__name__}: {exc}",
                              parameter="routing_key", expected="a route the broker confirms") from exc
        return {"id": message_id}

    async def shutdown(self, client: Any) -> None:
        await client[0].close()
