"""MQTT at QoS 1: a persistent-session source with manual PUBACK, and a QoS 1 writer.

The source connects with a fixed ``client_id`` and ``clean_session=False`` (MQTT 3.1.1)
so the broker keeps its subscription and queues QoS 1 messages while it is away, and
with paho-mqtt's ``manual_ack``: a message's PUBACK is sent only when the runtime acks
its event. The broker resends every unacknowledged message when the client reconnects
with the same id. paho-mqtt's network loop runs in its own thread; messages cross into
the event loop through a queue. Uses paho-mqtt 2.x (``pip install 'kailash[streams]'``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import unquote, urlsplit

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

__all__ = ["MQTTSourceNode", "MQTTWriterNode"]

DEFAULT_URL = "mqtt://127.0.0.1:1883"
MQTT = Broker(DEFAULT_URL, ("mqtt", "mqtts"), "mqtt:// or mqtts://")
CONNECT_TIMEOUT = 10.0


class _Connection:
    """One paho client driven by its own thread, with asyncio futures for connect/subscribe/publish."""

    def __init__(self, node: Any, url: str, client_id: str | None, persistent: bool) -> None:
        mqtt = require("paho.mqtt.client", "paho-mqtt")
        self.node, self.url, self.client_id = node, url, client_id or ""
        self.loop = asyncio.get_running_loop()
        self.messages: asyncio.Queue[Any] = asyncio.Queue()
        self.connected: asyncio.Future[Any] = self.loop.create_future()
        self.disconnected: asyncio.Future[Any] = self.loop.create_future()
        self.waiting: dict[int, asyncio.Future[Any]] = {}
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or "",
                                  clean_session=not persistent, protocol=mqtt.MQTTv311, manual_ack=persistent)
        if parts.username:
            self.client.username_pw_set(unquote(parts.username), unquote(parts.password or "") or None)
        if parts.scheme == "mqtts":
            self.client.tls_set()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_done
        self.client.on_unsubscribe = self._on_done
        self.client.on_publish = self._on_done

    def _post(self, fn: Any, *args: Any) -> None:
        """Hand a callback from paho's thread to the event loop (gone once that loop has closed)."""
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(fn, *args)

    def _settle(self, fut: asyncio.Future[Any], value: Any) -> None:
        if not fut.done():
            fut.set_result(value)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._post(self._settle, self.connected, reason)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._post(self._settle, self.disconnected, reason)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self._post(self.messages.put_nowait, message)

    def _on_done(self, client: Any, userdata: Any, mid: int, *rest: Any) -> None:
        def settle() -> None:
            fut = self.waiting.pop(mid, None)
            if fut is not None:
                self._settle(fut, rest[0] if rest else None)
        self._post(settle)

    async def open(self) -> _Connection:
        try:
            await asyncio.to_thread(self.client.connect, self.host, self.port, 30)
            self.client.loop_start()
            reason = await asyncio.wait_for(self.connected, CONNECT_TIMEOUT)
        except Exception as exc:
            self.client.loop_stop()
            raise self.node._error(f"cannot connect to MQTT broker {display(self.url)}: {type(exc).__name__}: {exc}; "
                                   "check that the broker is reachable", parameter="url",
                                   expected="a reachable MQTT broker") from exc
        if reason.is_failure:
            self.client.loop_stop()
            raise self.node._error(f"MQTT broker {display(self.url)} refused the connection: {reason}",
                                   parameter="url", expected="credentials the broker accepts")
        return self

    async def wait(self, mid: int, what: str) -> Any:
        fut = self.waiting.setdefault(mid, self.loop.create_future())
        try:
            return await asyncio.wait_for(fut, CONNECT_TIMEOUT)
        except TimeoutError:
            self.waiting.pop(mid, None)
            raise self.node._error(f"MQTT broker {display(self.url)} did not confirm {what} within "
                                   f"{CONNECT_TIMEOUT:.0f}s", parameter="url", expected="a responsive broker") from None

    async def subscribe(self, topic: str) -> None:
        result, mid = self.client.subscribe(topic, qos=1)
        codes = await self.wait(mid, f"the subscription to {topic!r}")
        if result != 0 or any(getattr(c, "is_failure", False) for c in (codes or [])):
            raise self.node._error(f"MQTT broker refused the subscription to {topic!r}: {codes}", parameter="topic",
                                   expected="a topic filter this client may subscribe to")

    async def publish(self, topic: str, payload: bytes, retain: bool) -> int:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != 0:
            raise self.node._error(f"cannot publish to MQTT topic {topic!r}: error {info.rc}", parameter="topic",
                                   expected="a connected broker")
        await self.wait(info.mid, f"the message to {topic!r}")
        return int(info.mid)

    def close(self) -> None:
        """Disconnect at once (sync callers: PUBACKs still queued may not be sent; they are resent later)."""
        self.client.disconnect()
        self.client.loop_stop()

    async def aclose(self) -> None:
        """Disconnect once the broker has processed every PUBACK sent so far.

        Closing a socket with unread incoming data (messages the broker keeps pushing)
        resets the connection, and the broker may drop what it had not read yet. An
        UNSUBSCRIBE of a filter never subscribed is a round trip without side effects:
        its UNSUBACK means the PUBACKs queued before it were processed.
        """
        with contextlib.suppress(Exception):
            result, mid = self.client.unsubscribe(f"kailash/ack-barrier/{self.client_id}")
            if result == 0:
                await self.wait(mid, "the ack barrier")
        self.client.disconnect()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.disconnected), CONNECT_TIMEOUT)
        self.client.loop_stop()


class _MQTTCursor(BrokerCursor):
    def __init__(self, node: MQTTSourceNode, options: dict[str, Any], conn: _Connection) -> None:
        super().__init__(node, options, f"MQTT topic {options['topic']!r}")
        self.conn = conn
        self.unacked: dict[int, bool] = {}  # packet ids of QoS 1 messages received, in order -> work done

    async def receive(self, wait: float | None) -> list[Any]:
        batch = await self._receive(wait)
        for m in batch:
            if m.qos > 0:
                self.unacked[m.mid] = False
        return batch

    async def _receive(self, wait: float | None) -> list[Any]:
        try:
            first = await asyncio.wait_for(self.conn.messages.get(), min(1.0 if wait is None else wait, 1.0))
        except TimeoutError:
            return []
        batch = [first]
        while len(batch) < 100 and not self.conn.messages.empty():
            batch.append(self.conn.messages.get_nowait())
        return batch

    def parse(self, raw: Any) -> StreamEvent:
        return StreamEvent(data=decode(raw.payload, self.options["message_format"]), event_type=raw.topic,
                           id=raw.mid, token=(raw.mid, raw.qos))

    def token_of(self, raw: Any) -> Any:
        return (raw.mid, raw.qos)

    async def ack_token(self, token: Any) -> None:
        """PUBACK in the order the messages arrived (MQTT 3.1.1, 4.6), whatever order their work finished in.

        A concurrent stream run (``window`` > 1) finishes events out of order; an event's
        PUBACK waits until every earlier message was acknowledged too.
        """
        mid, qos = token
        if qos == 0 or mid not in self.unacked:
            return
        unacked = self.unacked
        unacked[mid] = True
        while unacked:
            first = next(iter(unacked))
            if not unacked[first]:
                break
            del unacked[first]
            self.conn.client.ack(first, 1)

    async def nack_token(self, token: Any) -> None:
        """MQTT has no negative ack: an unacknowledged message is resent when the client reconnects."""

    async def unread(self, raws: list[Any]) -> None:
        """Left unacknowledged: the broker resends them on the next connection with this client id."""

    async def release(self) -> None:
        await self.conn.aclose()


@register_node(category="data")
class MQTTSourceNode(BrokerSourceNode):
    """Consume an MQTT topic at QoS 1 with a persistent session; PUBACK each message after its work.

    ``client_id`` must be fixed and unique per worker: the broker keeps that client's
    session (subscription and queued messages) between connections. ``data`` is the
    payload parsed as ``message_format``, ``event_type`` the topic, ``id`` the packet id
    (only unique among a connection's in-flight messages). Messages published before
    the session first subscribed are not delivered (except a retained one).

    Example:
        >>> MQTTSourceNode(topic="sensors/+/temp", client_id="worker-1").get_parameters()["url"].default
        'mqtt://127.0.0.1:1883'
    """

    broker = MQTT

    def system_parameters(self) -> dict[str, NodeParameter]:
        return {
            "topic": NodeParameter(type=str, required=True, description="topic filter to subscribe to"),
            "client_id": NodeParameter(type=str, required=True, description="fixed client id (the session's name)"),
            "broker_inflight": NodeParameter(type=int, default=20,
                                             description="the broker's limit of unacknowledged QoS 1 messages to "
                                                         "one client (Mosquitto max_inflight_messages, default 20)"),
        }

    def options(self, v: dict[str, Any]) -> dict[str, Any]:
        return {**self.common(v), "topic": self._name(v, "topic"), "client_id": self._name(v, "client_id")}

    def stream_unacked_limit(self, inputs: dict[str, Any]) -> tuple[int, str] | None:
        """The broker's in-flight limit for this client, as ``broker_inflight`` says it is (MQTT 3.1.1 cannot ask)."""
        size = self.values(inputs).get("broker_inflight")
        return (size if type(size) is int else 20), "broker_inflight"

    async def open_stream(self, inputs: dict[str, Any]) -> _MQTTCursor:
        o = self.options(self.values(inputs))
        conn = await _Connection(self, o["url"], o["client_id"], persistent=True).open()
        try:
            await conn.subscribe(o["topic"])
        except BaseException:
            conn.close()
            raise
        return _MQTTCursor(self, o, conn)


@register_node(category="data")
class MQTTWriterNode(BrokerWriterNode):
    """Publish ``data`` to an MQTT topic at QoS 1 and wait for the broker's PUBACK.

    Outputs the packet id as ``id``.

    Example:
        >>> sorted(MQTTWriterNode(topic="sensors/1/temp").get_outputs())
        ['id']
    """

    broker = MQTT

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "url": self.broker.url,
            "topic": NodeParameter(type=str, required=True, description="topic to publish to"),
            "data": PAYLOAD,
            "retain": NodeParameter(type=bool, default=False, description="ask the broker to retain the message"),
            "message_format": MESSAGE_FORMAT,
        }

    def get_outputs(self) -> dict[str, NodeParameter]:
        return {"id": NodeParameter(type=int, description="the packet id")}

    async def async_run(self, **inputs: Any) -> dict[str, Any]:
        v, url, topic, _, payload = self.outgoing(inputs, "topic")
        conn = await self.connection(url, lambda: _Connection(self, url, None, persistent=False).open())
        try:
            mid = await conn.publish(topic, payload, bool(v.get("retain")))
        except BaseException:
            self._drop_client()
            conn.close()
            raise
        return {"id": mid}

    async def shutdown(self, client: Any) -> None:
        await client.aclose()

    def discard(self, client: Any) -> None:
        client.close()  # paho's network thread would otherwise outlive the event loop

    def close(self) -> None:
        """Disconnect the kept connection."""
        conn = self._drop_client()
        if conn is not None:
            conn.close()
