"""NATS JetStream: a durable pull-consumer source (explicit ack) and a publish-with-ack writer.

The source binds durable consumer ``durable`` on stream ``stream`` (created, capturing
``subject``, if missing) with explicit acks, ``ack_wait`` and ``max_ack_pending`` equal
to ``batch_size``. An ack waits for the server's confirmation (``AckSync``), so an event
whose ack returned is never delivered again. A consumer that finds messages of its durable
still unacknowledged when it opens fetches once: if the server hands all of them back,
starting right after the ack floor (a previous run stopped and nacked what it held), it
goes on at once; otherwise a killed worker still holds some, and it waits ``ack_wait``: by
then the server has queued them for redelivery, which comes before newer messages, so
processing resumes in order after the last acknowledged event.
Uses nats-py (``pip install 'kailash[streams]'``).
"""

from __future__ import annotations

import asyncio
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

__all__ = ["NATSJetStreamSourceNode", "NATSJetStreamWriterNode"]

DEFAULT_URL = "nats://127.0.0.1:4222"
NATS = Broker(DEFAULT_URL, ("nats", "tls", "ws", "wss"), "nats:// or tls://")


async def _quiet(*_: Any) -> None:
    """Connection callbacks: the client's default ones log server URLs, which may carry credentials."""


async def _connect(node: Any, url: str) -> Any:
    nats = require("nats", "nats-py")
    try:
        return await nats.connect(servers=[url], connect_timeout=5, max_reconnect_attempts=5,
                                  error_cb=_quiet, disconnected_cb=_quiet, reconnected_cb=_quiet, closed_cb=_quiet)
    except Exception as exc:
        raise node._error(f"cannot connect to NATS at {display(url)}: {type(exc).__name__}: {exc}; "
                          "check that the server is reachable", parameter="url", expected="a reachable NATS server") from exc


async def _ensure_stream(node: Any, js: Any, stream: str, subject: str) -> None:
    errors = require("nats.js.errors", "nats-py")
    try:
        await js.stream_info(stream)
    except errors.NotFoundError:
        try:
            await js.add_stream(name=stream, subjects=[subject])
        except Exception as exc:
            raise node._error(f"cannot create JetStream stream {stream!r} for subject {subject!r}: {exc}",
                              parameter="stream", expected="a JetStream stream name") from exc


class _NATSCursor(BrokerCursor):
    def __init__(self, node: NATSJetStreamSourceNode, options: dict[str, Any], nc: Any, sub: Any) -> None:
        super().__init__(node, options, f"JetStream consumer {options['durable']!r} on {options['stream']!r}")
        self.nc, self.sub = nc, sub
        self.timeout_error = require("nats.errors", "nats-py").TimeoutError
        self.outstanding: dict[int, Any] = {}  # fetched, not yet acked or nacked: nacked on close
        self.first: list[Any] = []  # fetched while opening (redeliveries), handed out first
        self.touched = asyncio.get_running_loop().time()  # when outstanding messages last said "in progress"

    async def receive(self, wait: float | None) -> list[Any]:
        if self.first:
            msgs, self.first = self.first, []
            for m in msgs:
                self.outstanding[id(m)] = m
            return msgs
        await self.keep_alive()
        try:
            most = self.options["ack_wait"] / 3 if self.outstanding else 1.0  # back in time for keep_alive
            msgs = list(await self.sub.fetch(self.options["batch_size"],
                                             timeout=min(1.0 if wait is None else wait, 1.0, most)))
        except (self.timeout_error, TimeoutError):
            return []
        for m in msgs:
            self.outstanding[id(m)] = m
        return msgs

    async def keep_alive(self) -> None:
        """Messages held unacknowledged (events in a window not yet done) are not redelivered while this
        run lives: every third of ``ack_wait`` each outstanding message is marked in progress (``+WPI``)."""
        now = asyncio.get_running_loop().time()
        if not self.outstanding or now - self.touched < self.options["ack_wait"] / 3:
            return
        self.touched = now
        for m in list(self.outstanding.values()):
            await m.in_progress()

    def parse(self, raw: Any) -> StreamEvent:
        meta = raw.metadata
        stamp = meta.timestamp.timestamp() if meta.timestamp is not None else None
        return StreamEvent(data=decode(raw.data, self.options["message_format"]), event_type=raw.subject,
                           id=meta.sequence.stream, timestamp=stamp, token=raw)

    async def ack_token(self, token: Any) -> None:
        self.outstanding.pop(id(token), None)
        await token.ack_sync(timeout=5.0)  # confirmed: a crash after ack() returns repeats nothing

    async def nack_token(self, token: Any) -> None:
        self.outstanding.pop(id(token), None)
        await token.nak()

    async def unread(self, raws: list[Any]) -> None:
        """Left outstanding: :meth:`release` nacks every outstanding message, in stream order."""

    async def release(self) -> None:
        try:  # redelivered now rather than after ack_wait, in stream order (the server redelivers in nak order)
            for msg in sorted(self.outstanding.values(), key=lambda m: m.metadata.sequence.stream):
                await self.nack_token(msg)
            await self.sub.unsubscribe()
        finally:
            await self.nc.drain()  # flushes the acks still buffered, then closes


@register_node(category="data")
class NATSJetStreamSourceNode(BrokerSourceNode):
    """Consume a NATS JetStream stream through a durable pull consumer; ack each event after its work.

    ``data`` is the message payload parsed as ``message_format``; ``id`` the stream
    sequence, ``event_type`` the subject, ``timestamp`` the server's time (or
    ``timestamp_field``). A message not acknowledged within ``ack_wait`` seconds
    (the worker died, or its work takes longer) is delivered again.

    Example:
        >>> node = NATSJetStreamSourceNode(stream="ORDERS", subject="orders.>", durable="billing")
        >>> node.get_parameters()["ack_wait"].default
        30.0
    """

    broker = NATS

    def stream_unacked_limit(self, inputs: dict[str, Any]) -> tuple[int, str] | None:
        """The consumer's ``max_ack_pending`` (``batch_size``)."""
        size = self.values(inputs).get("batch_size")
        return (size if type(size) is int else 100), "batch_size"

    def system_parameters(self) -> dict[str, NodeParameter]:
        return {
            "stream": NodeParameter(type=str, required=True, description="the JetStream stream"),
            "subject": NodeParameter(type=str, required=True, description="subject (filter) to consume"),
            "durable": NodeParameter(type=str, default="kailash", description="durable consumer name"),
            "deliver": NodeParameter(type=str, default="all",
                                     description="where a new consumer starts: 'all' or 'new'"),
            "ack_wait": NodeParameter(type=float, default=30.0,
                                      description="seconds before an unacknowledged message is redelivered"),
            "batch_size": NodeParameter(type=int, default=100,
                                        description="messages per fetch (and the consumer's max_ack_pending)"),
            "create_stream": NodeParameter(type=bool, default=True, description="create the stream if missing"),
        }

    def options(self, v: dict[str, Any]) -> dict[str, Any]:
        return {**self.common(v), "stream": self._name(v, "stream"), "subject": self._name(v, "subject"),
                "durable": self._name(v, "durable"), "deliver": self._choice(v, "deliver", ("all", "new")),
                "ack_wait": self._positive(v, "ack_wait", allow_none=False, number=True),
                "batch_size": self._positive(v, "batch_size", allow_none=False),
                "create_stream": bool(v.get("create_stream", True))}

    async def open_stream(self, inputs: dict[str, Any]) -> _NATSCursor:
        o = self.options(self.values(inputs))
        api = require("nats.js.api", "nats-py")
        nc = await _connect(self, o["url"])
        try:
            js = nc.jetstream()
            if o["create_stream"]:
                await _ensure_stream(self, js, o["stream"], o["subject"])
            config = api.ConsumerConfig(
                ack_policy=api.AckPolicy.EXPLICIT, ack_wait=o["ack_wait"], max_ack_pending=o["batch_size"],
                deliver_policy=api.DeliverPolicy.ALL if o["deliver"] == "all" else api.DeliverPolicy.NEW)
            sub = await js.pull_subscribe(o["subject"], durable=o["durable"], stream=o["stream"], config=config)
            info = await js.consumer_info(o["stream"], o["durable"])
            first = await self._resume(sub, info, o) if info.num_ack_pending else []
        except Exception as exc:
            await nc.close()
            if isinstance(exc, NodeExecutionError):
                raise
            raise self._error(f"cannot consume {o['subject']!r} from JetStream stream {o['stream']!r}: "
                              f"{type(exc).__name__}: {exc}", parameter="stream", expected="an existing stream") from exc
        cursor = _NATSCursor(self, o, nc, sub)
        cursor.first = first
        return cursor

    async def _resume(self, sub: Any, info: Any, o: dict[str, Any]) -> list[Any]:
        """The durable has unacknowledged messages: the first batch to process, in order after the ack floor.

        Messages a stopped run nacked (or whose ``ack_wait`` already expired) are
        redelivered at once: when this fetch gets every pending message back, starting
        right after the ack floor, go on with them. Otherwise a killed worker still holds
        some, which come back only when their ``ack_wait`` expires: hand back what was
        fetched (nacked, in stream order: redelivered first) and wait for that.
        """
        errors = require("nats.errors", "nats-py")
        try:
            msgs = list(await sub.fetch(o["batch_size"], timeout=0.5))
        except (errors.TimeoutError, TimeoutError):
            msgs = []
        floor = (info.ack_floor.stream_seq if info.ack_floor is not None else 0) or 0
        again = sum(1 for m in msgs if (m.metadata.num_delivered or 1) > 1)
        if msgs and msgs[0].metadata.sequence.stream == floor + 1 and again >= info.num_ack_pending:
            return msgs
        for m in sorted(msgs, key=lambda m: m.metadata.sequence.stream):
            await m.nak()
        await asyncio.sleep(float(info.config.ack_wait or o["ack_wait"]) + 0.1)
        return []


@register_node(category="data")
class NATSJetStreamWriterNode(BrokerWriterNode):
    """Publish ``data`` to a JetStream subject and wait for the stream's acknowledgement.

    With ``stream`` set, that stream is created (capturing ``subject``) if missing.
    Outputs the stored message's stream sequence as ``id``.

    Example:
        >>> sorted(NATSJetStreamWriterNode(subject="orders.new").get_outputs())
        ['id']
    """

    broker = NATS

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "url": self.broker.url,
            "subject": NodeParameter(type=str, required=True, description="subject to publish to"),
            "data": PAYLOAD,
            "stream": NodeParameter(type=str, default=None, description="create this stream if missing"),
            "message_format": MESSAGE_FORMAT,
        }

    def get_outputs(self) -> dict[str, NodeParameter]:
        return {"id": NodeParameter(type=int, description="the message's stream sequence")}

    async def async_run(self, **inputs: Any) -> dict[str, Any]:
        v, url, subject, _, payload = self.outgoing(inputs, "subject")
        stream = v.get("stream")

        async def connect() -> tuple[Any, Any, set[str]]:
            nc = await _connect(self, url)
            return nc, nc.jetstream(), set()

        nc, js, ensured = await self.connection(url, connect)
        try:
            if stream and stream not in ensured:
                await _ensure_stream(self, js, stream, subject)
                ensured.add(stream)
            ack = await js.publish(subject, payload)
        except Exception as exc:
            self._drop_client()
            await nc.close()
            if isinstance(exc, NodeExecutionError):
                raise
            hint = "; no stream captures this subject (set 'stream' to create one)" if "NoResponders" in type(
                exc).__name__ else ""
            raise self._error(f"cannot publish to {subject!r} at {display(url)}: {type(exc).__name__}: {exc}{hint}",
                              parameter="subject", expected="a subject a JetStream stream captures") from exc
        return {"id": ack.seq}

    async def shutdown(self, client: Any) -> None:
        await client[0].drain()
