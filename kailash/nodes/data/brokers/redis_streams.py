"""Redis Streams: a consumer-group source (XREADGROUP, XACK) and an XADD writer.

The source joins consumer group ``group`` as consumer ``consumer`` (created with
``XGROUP CREATE ... MKSTREAM`` at ``start_id`` if missing). On open it first re-reads
its own pending entries (``XREADGROUP ... 0``: delivered before, never acknowledged,
e.g. because the process was killed), then, with ``claim_idle`` set, claims entries
other consumers left pending that long (``XAUTOCLAIM``), then reads new entries (``>``).
An entry is acknowledged (``XACK``) when the runtime acks its event.
Uses redis-py's asyncio client (``pip install 'kailash[streams]'``).
"""

from __future__ import annotations

from typing import Any

from kailash.nodes.base import NodeParameter, register_node
from kailash.nodes.data.brokers._common import (
    MESSAGE_FORMAT,
    Broker,
    BrokerCursor,
    BrokerSourceNode,
    BrokerWriterNode,
    Malformed,
    decode,
    display,
    require,
)
from kailash.nodes.data.stream_source import StreamEvent

__all__ = ["RedisStreamSourceNode", "RedisStreamWriterNode"]

DEFAULT_URL = "redis://127.0.0.1:6379/0"
REDIS = Broker(DEFAULT_URL, ("redis", "rediss", "unix"), "redis:// or rediss://")
STREAM = NodeParameter(type=str, required=True, description="the stream key")
FIELD = NodeParameter(type=str, default="data", description="the entry field holding the payload")


def _s(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


async def _connect(node: Any, url: str) -> Any:
    aioredis = require("redis.asyncio", "redis")
    client = aioredis.from_url(url)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        raise node._error(f"cannot connect to Redis at {display(url)}: {type(exc).__name__}: {exc}; "
                          "check that the server is reachable", parameter="url", expected="a reachable Redis") from exc
    return client


class _RedisCursor(BrokerCursor):
    def __init__(self, node: RedisStreamSourceNode, options: dict[str, Any], client: Any) -> None:
        super().__init__(node, options, f"Redis stream {options['stream']!r}")
        self.client = client
        self.stream, self.group, self.consumer = options["stream"], options["group"], options["consumer"]
        self.phase = "pending"  # then "claim" (with claim_idle), then "new"
        self.position: Any = "0"

    async def receive(self, wait: float | None) -> list[Any]:
        count = self.options["batch_size"]
        if self.phase == "claim":
            reply = await self.client.xautoclaim(self.stream, self.group, self.consumer,
                                                 int(self.options["claim_idle"] * 1000), self.position, count=count)
            self.position = reply[0]
            if _s(reply[0]) == "0-0":
                self.phase = "new"
            return await self._live(reply[1])
        block = None
        if self.phase == "new":
            block = max(1, int(min(1.0 if wait is None else wait, 1.0) * 1000))  # wake up to notice close()
        reply = await self.client.xreadgroup(self.group, self.consumer, {self.stream: ">" if self.phase == "new"
                                             else self.position}, count=count, block=block)
        entries = reply[0][1] if reply else []
        if self.phase == "pending":
            if not entries:
                self.phase, self.position = ("claim", "0-0") if self.options["claim_idle"] else ("new", ">")
            else:
                self.position = entries[-1][0]
        return await self._live(entries)

    async def _live(self, entries: list[Any]) -> list[Any]:
        """Entries whose data still exists; ids of trimmed/deleted ones are acknowledged and dropped."""
        gone = [eid for eid, fields in entries if not fields]
        if gone:
            await self.client.xack(self.stream, self.group, *gone)
        return [e for e in entries if e[1]]

    def parse(self, raw: Any) -> StreamEvent:
        eid, fields = raw
        fields = {_s(k): v for k, v in fields.items()}
        field = self.options["field"]
        if field in fields:
            data = decode(fields[field], self.options["message_format"])
        else:
            try:
                data = {k: bytes(v).decode("utf-8") if isinstance(v, bytes) else v for k, v in fields.items()}
            except UnicodeDecodeError as exc:
                raise Malformed(f"entry {_s(eid)} has no field {field!r} and its fields are not UTF-8 ({exc})") from None
        event_type = _s(fields["event_type"]) if "event_type" in fields and field != "event_type" else self.stream
        sid = _s(eid)
        return StreamEvent(data=data, event_type=event_type, id=sid, timestamp=int(sid.split("-", 1)[0]) / 1000,
                           token=eid)

    def token_of(self, raw: Any) -> Any:
        return raw[0]

    async def unread(self, raws: list[Any]) -> None:
        """Nothing to do: they stay pending for this consumer and are read again first on the next open."""

    async def ack_token(self, token: Any) -> None:
        await self.client.xack(self.stream, self.group, token)

    async def nack_token(self, token: Any) -> None:
        """Redis has no negative ack: the entry stays pending and is re-read on the next open (or claimed)."""

    async def release(self) -> None:
        await self.client.aclose()


@register_node(category="data")
class RedisStreamSourceNode(BrokerSourceNode):
    """Consume a Redis stream through a consumer group; acknowledge each event after its work.

    A stream run yields one event per entry: ``data`` is the entry's ``field``
    (default ``"data"``) parsed as ``message_format``, or, if the entry has no such
    field, all its fields as a dict; ``id`` is the entry id, ``timestamp`` its time
    (or ``timestamp_field`` of the payload), ``event_type`` the entry's ``event_type``
    field or the stream name. After a crash the consumer re-reads its own pending
    entries first, so nothing acknowledged is seen again and nothing unacknowledged is
    lost. Keep ``consumer`` stable across restarts of the same worker and distinct
    between concurrent workers.

    Example:
        >>> node = RedisStreamSourceNode(stream="orders", group="billing")
        >>> sorted(node.get_outputs())[:4]
        ['count', 'data', 'done', 'event']
    """

    broker = REDIS

    def system_parameters(self) -> dict[str, NodeParameter]:
        return {
            "stream": STREAM,
            "group": NodeParameter(type=str, default="kailash", description="consumer group"),
            "consumer": NodeParameter(type=str, default="kailash", description="this consumer's name in the group"),
            "start_id": NodeParameter(type=str, default="0",
                                      description="where a new group starts: '0' (whole stream) or '$' (new only)"),
            "field": FIELD,
            "batch_size": NodeParameter(type=int, default=100, description="entries per XREADGROUP"),
            "claim_idle": NodeParameter(type=float, default=None,
                                        description="claim entries other consumers left pending this many seconds"),
        }

    def options(self, v: dict[str, Any]) -> dict[str, Any]:
        claim = v.get("claim_idle")
        return {**self.common(v), "stream": self._name(v, "stream"), "group": self._name(v, "group"),
                "consumer": self._name(v, "consumer"), "start_id": self._name(v, "start_id"),
                "field": self._name(v, "field"), "batch_size": self._positive(v, "batch_size", allow_none=False),
                "claim_idle": None if claim is None else self._positive(v, "claim_idle", number=True)}

    async def open_stream(self, inputs: dict[str, Any]) -> _RedisCursor:
        o = self.options(self.values(inputs))
        client = await _connect(self, o["url"])
        exceptions = require("redis.exceptions", "redis")
        try:
            await client.xgroup_create(o["stream"], o["group"], id=o["start_id"], mkstream=True)
        except exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                await client.aclose()
                raise self._error(f"cannot create consumer group {o['group']!r} on stream {o['stream']!r}: {exc}",
                                  parameter="stream", expected="a Redis stream key") from exc
        return _RedisCursor(self, o, client)


@register_node(category="data")
class RedisStreamWriterNode(BrokerWriterNode):
    """Append ``data`` to a Redis stream (``XADD``), optionally capped at ``maxlen`` entries.

    The payload is stored under ``field`` (JSON, or text with ``message_format="text"``);
    ``event_type`` adds an ``event_type`` field. Outputs the new entry's ``id``.

    Example:
        >>> sorted(RedisStreamWriterNode(stream="orders").get_outputs())
        ['id']
    """

    broker = REDIS

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "url": self.broker.url,
            "stream": STREAM,
            "data": NodeParameter(required=True, description="the payload to append"),
            "event_type": NodeParameter(type=str, default=None, description="stored as the entry's event_type"),
            "field": FIELD,
            "message_format": MESSAGE_FORMAT,
            "maxlen": NodeParameter(type=int, default=None, description="keep about this many entries (MAXLEN ~)"),
        }

    def get_outputs(self) -> dict[str, NodeParameter]:
        return {"id": NodeParameter(type=str, description="the new entry's id")}

    async def async_run(self, **inputs: Any) -> dict[str, Any]:
        v, url, stream, _, payload = self.outgoing(inputs, "stream")
        maxlen = self._positive(v, "maxlen")
        fields = {self._name(v, "field"): payload}
        if v.get("event_type") is not None:
            fields["event_type"] = str(v["event_type"]).encode()
        client = await self.connection(url, lambda: _connect(self, url))
        try:
            eid = await client.xadd(stream, fields, maxlen=maxlen, approximate=True)
        except Exception as exc:
            self._drop_client()
            raise self._error(f"cannot append to Redis stream {stream!r} at {display(url)}: "
                              f"{type(exc).__name__}: {exc}", parameter="stream", expected="a writable stream") from exc
        return {"id": eid.decode() if isinstance(eid, bytes) else str(eid)}

    async def shutdown(self, client: Any) -> None:
        await client.aclose()
