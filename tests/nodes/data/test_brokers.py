"""Broker sources and writers against the real local servers.

Redis 6379, NATS JetStream 4222, Mosquitto 1883, RabbitMQ 5672 (guest/guest); every
test uses its own stream/subject/topic/queue. The source is driven as a stream run
drives it: open once, process an event, then ack it (tests/nodes/data/broker_consumer.py).
Whole stream runs through the runtimes, and the SIGKILL/SIGINT tests of real processes,
are in test_broker_stream_runs.py.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from kailash.errors import NodeConfigurationError, NodeExecutionError
from kailash.nodes.data.brokers.amqp import AMQPSourceNode, AMQPWriterNode
from kailash.nodes.data.brokers.mqtt import MQTTWriterNode
from kailash.nodes.data.brokers.nats_jetstream import NATSJetStreamSourceNode
from kailash.nodes.data.brokers.redis_streams import RedisStreamSourceNode, RedisStreamWriterNode
from kailash.nodes.data.stream_source import StreamCursor, is_stream_source
from kailash.security.secrets import Secret
from tests.nodes.data.broker_consumer import SYSTEMS, consume, prepare, publish, source_for

ROOT = Path(__file__).resolve().parents[3]


def unique() -> str:
    return f"kt-{uuid.uuid4().hex[:10]}"


async def drain(node, **inputs) -> list:
    """Every event until the source is idle, each acked after 'processing' (collecting it)."""
    seen: list = []
    await consume(node, {"timeout": 1.5, **inputs}, seen.append)
    return seen


@pytest.mark.parametrize("system", SYSTEMS)
async def test_every_event_once_in_order_with_key_and_time(system):
    name = unique()
    await prepare(system, name)
    await publish(system, name, [{"i": i, "k": f"key{i % 3}", "ts": 1_700_000_000 + i} for i in range(40)])
    node = source_for(system, name, key_field="k", timestamp_field="ts")
    assert is_stream_source(node)
    events = await drain(node)
    assert [e.data["i"] for e in events] == list(range(40))
    assert [e.key for e in events[:4]] == ["key0", "key1", "key2", "key0"]
    assert events[5].timestamp == 1_700_000_005.0
    assert all(e.event_type for e in events) and all(e.id is not None for e in events)
    assert await drain(node) == []  # everything was acknowledged: nothing comes back


@pytest.mark.parametrize("system", SYSTEMS)
async def test_unacknowledged_events_are_redelivered_after_reconnect(system):
    name = unique()
    await prepare(system, name)
    await publish(system, name, [{"i": i} for i in range(10)])
    node = source_for(system, name)
    cursor = await node.open_stream({"timeout": 5.0})
    assert isinstance(cursor, StreamCursor)
    got = []
    async for event in cursor:
        got.append(event.data["i"])
        if event.data["i"] == 4:
            break  # event 4 was read but its work never finished: no ack
        await cursor.ack(event)
    await cursor.close()
    assert got == [0, 1, 2, 3, 4]
    again = await drain(node, timeout=3.0)
    assert [e.data["i"] for e in again] == list(range(4, 10))


@pytest.mark.parametrize("system", SYSTEMS)
async def test_max_events_stops_and_leaves_the_rest(system):
    name = unique()
    await prepare(system, name)
    await publish(system, name, [{"i": i} for i in range(7)])
    node = source_for(system, name)
    seen: list = []
    assert await consume(node, {"max_events": 3, "timeout": 5.0}, seen.append) == "max_events"
    assert [e.data["i"] for e in seen] == [0, 1, 2]
    assert [e.data["i"] for e in await drain(node, timeout=3.0)] == [3, 4, 5, 6]


@pytest.mark.parametrize("system", SYSTEMS)
async def test_malformed_message_fails_naming_node_then_skip_drops_it(system):
    name = unique()
    await prepare(system, name)
    await publish(system, name, [{"i": 0}])
    await publish(system, name, ["{not json"], message_format="text")
    await publish(system, name, [{"i": 2}])
    node = source_for(system, name)
    seen: list = []
    with pytest.raises(NodeExecutionError, match=r"node 'src' \(\w+SourceNode\): a message from .* is malformed: "
                                                 r"not valid JSON .*on_malformed='skip'") as info:
        await consume(node, {"timeout": 3.0}, seen.append)
    assert info.value.parameter == "message_format"
    assert [e.data["i"] for e in seen] == [0]
    # the malformed message stayed unacknowledged; 'skip' acknowledges and drops it
    assert [e.data["i"] for e in await drain(node, on_malformed="skip", timeout=3.0)] == [2]
    assert await drain(node, timeout=1.0) == []


@pytest.mark.parametrize("system", SYSTEMS)
async def test_text_format_passes_the_payload_through(system):
    name = unique()
    await prepare(system, name)
    await publish(system, name, ["plain line", "{not json"], message_format="text")
    events = await drain(source_for(system, name), message_format="text")
    assert [e.data for e in events] == ["plain line", "{not json"]


async def test_batch_run_collects_and_acknowledges():
    name = unique()
    await publish("redis", name, [{"i": i} for i in range(3)])
    out = await source_for("redis", name).async_run(timeout=0.5)
    assert out["count"] == 3 and out["stopped_by"] == "timeout"
    assert [e["data"]["i"] for e in out["data"]] == [0, 1, 2]
    assert (await source_for("redis", name).async_run(timeout=0.3))["count"] == 0


async def test_redis_claims_entries_a_dead_consumer_left_pending():
    name = unique()
    await publish("redis", name, [{"i": i} for i in range(5)])
    dead = RedisStreamSourceNode(name="src", stream=name, group="g", consumer="dead")
    cursor = await dead.open_stream({"timeout": 2.0, "batch_size": 5})
    async for event in cursor:
        await cursor.ack(event)
        break  # 'dead' read all 5, acked one, and is never seen again
    await cursor.close()
    alive = RedisStreamSourceNode(name="src", stream=name, group="g", consumer="alive")
    assert await drain(alive) == []  # without claim_idle: another consumer's pending entries are not taken
    events = await drain(alive, claim_idle=0.05)
    assert [e.data["i"] for e in events] == [1, 2, 3, 4]


async def test_redis_writer_maxlen_event_type_and_fields_without_payload_field():
    import redis.asyncio as aioredis

    name = unique()
    writer = RedisStreamWriterNode(name="w")
    for i in range(250):
        await writer.async_run(stream=name, data={"i": i}, event_type="order", maxlen=10)
    client = aioredis.from_url("redis://127.0.0.1:6379/0")
    try:
        assert await client.xlen(name) < 250  # trimmed (approximately: whole macro nodes of ~100 entries)
        await client.xadd(name, {"sensor": "t1", "value": "20.5"})
    finally:
        await client.aclose()
    await writer.aclose()
    events = await drain(RedisStreamSourceNode(name="src", stream=name, group="g", consumer="c"))
    assert events[0].event_type == "order"
    assert events[-1].data == {"sensor": "t1", "value": "20.5"} and events[-1].event_type == name


async def test_amqp_exchange_binding_and_secret_url():
    name = unique()
    url = Secret("amqp://guest:guest@127.0.0.1:5672/")
    source = AMQPSourceNode(name="src", queue=name, exchange="amq.topic", routing_key=f"{name}.#", url=url)
    assert await drain(source, timeout=0.3) == []  # declares and binds the queue
    writer = AMQPWriterNode(name="w")
    for i in range(3):
        await writer.async_run(url=url, exchange="amq.topic", routing_key=f"{name}.created", data={"i": i})
    await writer.aclose()
    events = await drain(source)
    assert [e.data["i"] for e in events] == [0, 1, 2] and events[0].event_type == f"{name}.created"


# -- configuration errors, secrets, missing client ---------------------------------------------------

@pytest.mark.parametrize(("kw", "param", "expected"), [
    ({"message_format": "xml"}, "message_format", "'json' or 'text'"),
    ({"on_malformed": "ignore"}, "on_malformed", "'error' or 'skip'"),
    ({"batch_size": 0}, "batch_size", "a positive number"),
    ({"max_events": -1}, "max_events", "a positive number"),
    ({"timeout": 0}, "timeout", "a positive number"),
    ({"url": "http://127.0.0.1:6379"}, "url", "redis://"),
])
async def test_bad_parameters_name_node_parameter_and_expected(kw, param, expected):
    node = RedisStreamSourceNode(name="orders_in", stream="s")
    with pytest.raises(NodeConfigurationError, match=rf"node 'orders_in' \(RedisStreamSourceNode\): "
                                                     rf"parameter '{param}' must be .*{expected}") as info:
        await node.open_stream(kw)
    assert info.value.parameter == param


async def test_passwords_never_in_errors():
    node = AMQPSourceNode(name="q_in", queue="x", url=Secret("amqp://guest:s3cretpw@127.0.0.1:1/"))
    with pytest.raises(NodeExecutionError, match=r"node 'q_in' \(AMQPSourceNode\): cannot connect") as info:
        await node.open_stream({})
    assert "s3cretpw" not in str(info.value) and "amqp://127.0.0.1:1/" in str(info.value)
    bad = RedisStreamSourceNode(name="r", stream="s", url="https://user:hunter22@example/")
    with pytest.raises(NodeConfigurationError) as info2:
        await bad.open_stream({})
    assert "hunter22" not in str(info2.value)
    nats = NATSJetStreamSourceNode(name="n", stream="S", subject="s", url="nats://u:p4ssw0rd@127.0.0.1:1")
    with pytest.raises(NodeExecutionError, match="cannot connect to NATS") as info3:
        await nats.open_stream({})
    assert "p4ssw0rd" not in str(info3.value)


async def test_a_missing_client_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "aio_pika", None)
    with pytest.raises(ImportError, match=r"aio-pika client: pip install 'kailash\[streams\]'"):
        await AMQPSourceNode(name="q", queue="x").open_stream({})


def test_importing_the_package_imports_no_client():
    code = ("import sys, kailash.nodes.data.brokers as b, kailash.nodes.data.brokers.redis_streams, "
            "kailash.nodes.data.brokers.nats_jetstream, kailash.nodes.data.brokers.mqtt, "
            "kailash.nodes.data.brokers.amqp; "
            "print(sorted(m for m in ('redis', 'nats', 'paho', 'aio_pika') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "[]"


def test_nodes_are_in_the_catalog():
    from kailash.nodes.registry import get_node_class

    for name in ("RedisStreamSourceNode", "RedisStreamWriterNode", "NATSJetStreamSourceNode", "NATSJetStreamWriterNode",
                 "MQTTSourceNode", "MQTTWriterNode", "AMQPSourceNode", "AMQPWriterNode"):
        assert get_node_class(name).__name__ == name


# -- a consumer process killed with SIGKILL mid-stream: a real stream run, in test_broker_stream_runs.py

# -- run as ordinary nodes (no stream run) -----------------------------------------------------------

def test_ordinary_workflow_run_reads_a_batch_and_writes_it():
    import redis

    from kailash.nodes.code.python import PythonCodeNode
    from kailash.runtime import LocalRuntime
    from kailash.workflow import Workflow

    name = unique()
    asyncio.run(publish("redis", name, [{"i": i} for i in range(3)]))
    wf = Workflow("batch")
    wf.add_node("src", RedisStreamSourceNode(stream=name, timeout=0.3, delivery="batch"))
    wf.add_node("code", PythonCodeNode(code="result = sum(e['data']['i'] for e in data)"))
    wf.add_node("sink", RedisStreamWriterNode(stream=f"{name}-out"))
    wf.connect("src", "code", mapping={"data": "data"})
    wf.connect("code", "sink", mapping={"result": "data"})
    results, _ = LocalRuntime().execute(wf)
    assert results["src"]["count"] == 3 and results["code"]["result"] == 3
    client = redis.Redis()
    try:
        assert client.xrange(f"{name}-out")[0][1] == {b"data": b"3"}
    finally:
        client.delete(name, f"{name}-out")
        client.close()


def test_a_writer_run_from_sync_code_leaves_no_client_thread_behind():
    import threading

    writer = MQTTWriterNode(name="w", topic=f"kailash-test/{unique()}")
    before = threading.active_count()
    for i in range(3):  # each execute() runs on its own event loop: the previous loop's client is let go
        assert writer.execute(data={"i": i})["id"] >= 1
    assert threading.active_count() <= before + 1
    writer.close()
    assert threading.active_count() == before
