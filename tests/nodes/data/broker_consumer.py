"""The broker tests' harness: one source/writer per system on a unique name, publish, consume.

``consume(node, inputs, process)`` drives a source's cursor as a stream run does (open
the source once, run the processing for each event, then ack it): the cursor-level
tests use it. The crash and signal tests run real stream runs in child processes
(``kailash run stream.yaml``, test_broker_stream_runs.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from kailash.nodes.data.brokers.amqp import AMQPSourceNode, AMQPWriterNode
from kailash.nodes.data.brokers.mqtt import MQTTSourceNode, MQTTWriterNode
from kailash.nodes.data.brokers.nats_jetstream import NATSJetStreamSourceNode, NATSJetStreamWriterNode
from kailash.nodes.data.brokers.redis_streams import RedisStreamSourceNode, RedisStreamWriterNode
from kailash.nodes.data.stream_source import StreamEvent

SYSTEMS = ("redis", "nats", "mqtt", "amqp")


def source_for(system: str, name: str, **kw: Any) -> Any:
    """A source on the unique stream/subject/topic/queue ``name`` (NATS: redelivery after 1 s)."""
    if system == "redis":
        return RedisStreamSourceNode(name="src", stream=name, group="g", consumer="c1", **kw)
    if system == "nats":
        return NATSJetStreamSourceNode(name="src", stream=name.upper().replace("-", "_"), subject=f"{name}.events",
                                       durable="d1", ack_wait=1.0, **kw)
    if system == "mqtt":
        return MQTTSourceNode(name="src", topic=f"kailash-test/{name}", client_id=f"kt-{name}", **kw)
    return AMQPSourceNode(name="src", queue=name, **kw)


def writer_for(system: str, name: str) -> tuple[Any, dict[str, Any]]:
    """A writer node and the inputs that address the same stream/subject/topic/queue as :func:`source_for`."""
    if system == "redis":
        return RedisStreamWriterNode(name="w"), {"stream": name}
    if system == "nats":
        return NATSJetStreamWriterNode(name="w"), {"subject": f"{name}.events", "stream": name.upper().replace("-", "_")}
    if system == "mqtt":
        return MQTTWriterNode(name="w"), {"topic": f"kailash-test/{name}"}
    return AMQPWriterNode(name="w"), {"routing_key": name}


async def prepare(system: str, name: str) -> None:
    """Make the source's durable state exist before anything is published.

    MQTT keeps QoS 1 messages only for a session that has subscribed; the others keep
    everything (Redis: group at '0', NATS: stream created by the writer, AMQP: the
    writer declares the queue).
    """
    if system == "mqtt":
        cursor = await source_for(system, name).open_stream({"timeout": 0.1})
        async for _ in cursor:
            pass
        await cursor.close()


async def publish(system: str, name: str, items: list[Any], message_format: str = "json") -> None:
    """Publish ``items`` in order through the system's writer node."""
    writer, where = writer_for(system, name)
    defaults = {k: p.default for k, p in writer.get_parameters().items() if not p.required}
    try:
        for item in items:
            await writer.async_run(**{**defaults, **where, "data": item, "message_format": message_format})
    finally:
        await writer.aclose()


async def consume(node: Any, inputs: dict[str, Any],
                  process: Callable[[StreamEvent], Awaitable[None] | None]) -> str | None:
    """Open the source once; for each event run ``process`` then ack (what a stream run does)."""
    cursor = await node.open_stream(inputs)
    try:
        async for event in cursor:
            result = process(event)
            if result is not None:
                await result
            await cursor.ack(event)
    finally:
        await cursor.close()
    return cursor.stopped_by
