"""Windows over broker sources: an event is acknowledged only when the window it went into is done.

Real servers (Redis 6379, NATS JetStream 4222), unique stream/subject names. The crash
test kills a real ``kailash run`` child with SIGKILL while a window is partly filled and
runs it again with the same consumer: every event appears in exactly one emitted window.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest

from kailash.errors import KailashError
from kailash.nodes.code.python import PythonCodeNode
from kailash.nodes.data.brokers import NATSJetStreamSourceNode, RedisStreamSourceNode
from kailash.nodes.data.windows import WindowNode
from kailash.nodes.data.writers import JSONWriterNode
from kailash.runtime import LocalRuntime, ParallelRuntime
from kailash.workflow import Workflow
from tests.nodes.data.broker_consumer import consume, publish, source_for
from tests.nodes.data.test_broker_stream_runs import kailash, unique


def windows_of(path: Path) -> list[list[int]]:
    if not path.exists():
        return []
    return [json.loads(x)["list"] for x in path.read_text().splitlines() if x.endswith("}")]


def windowed(system: str, name: str, out: Path, size: int = 5, **source: object) -> Workflow:
    """source -> WindowNode(size, list of i) -> JSONWriterNode appending one line per window."""
    wf = Workflow(f"windowed-{system}")
    wf.add_node("src", source_for(system, name, **source))
    wf.add_node("win", WindowNode(size=size, field="i", aggregates=["list"]))
    wf.add_node("sink", JSONWriterNode(file_path=str(out), lines=True, append=True))
    wf.connect("src", "win", mapping={"data": "data"})
    wf.connect("win", "sink", mapping={"result": "data"})
    return wf


def delivered(system: str, name: str) -> int:
    """How many events the consumer was handed so far (the broker's count)."""
    if system == "redis":
        import redis

        client = redis.Redis(host="127.0.0.1", port=6379)
        try:
            group = next(g for g in client.xinfo_groups(name) if g["name"] in (b"g", "g"))
            return int(group["entries-read"] or 0)
        finally:
            client.close()

    async def nats_delivered() -> int:
        import nats

        nc = await nats.connect("nats://127.0.0.1:4222")
        try:
            info = await nc.jetstream().consumer_info(name.upper().replace("-", "_"), "d1")
            return int(info.delivered.stream_seq)
        finally:
            await nc.close()

    try:
        return asyncio.run(nats_delivered())
    except Exception:  # the consumer does not exist yet
        return 0


def left_over(system: str, name: str) -> list[int]:
    """What one more run of the same consumer receives (acknowledged events never come back)."""
    got: list = []
    asyncio.run(consume(source_for(system, name), {"timeout": 1.5}, got.append))
    return [e.data["i"] for e in got]


@pytest.mark.slow
@pytest.mark.parametrize("system", ["redis", "nats"])
def test_sigkill_with_a_window_partly_filled_loses_nothing_and_the_next_run_rebuilds_it(system, tmp_path):
    name, out = unique(), tmp_path / "windows.jsonl"
    asyncio.run(publish(system, name, [{"i": i} for i in range(12)]))
    path = windowed(system, name, out, timeout=3.0).save(tmp_path / "stream.yaml")
    child = kailash("run", str(path), home=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while len(windows_of(out)) < 2 or delivered(system, name) < 12:
            assert child.poll() is None, f"the stream run ended early: {child.communicate()}"
            assert time.monotonic() < deadline, "the stream run did not get through two windows"
            time.sleep(0.05)
        time.sleep(1.5)  # events 10 and 11 are in the open window now (NATS: longer than its ack_wait of 1 s)
        assert child.poll() is None
        os.kill(child.pid, signal.SIGKILL)
        child.communicate(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    assert windows_of(out) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]  # killed with 10, 11 in the open window
    asyncio.run(publish(system, name, [{"i": i} for i in range(12, 25)]))
    again = kailash("run", str(path), home=tmp_path)
    stdout, stderr = again.communicate(timeout=90)
    assert again.returncode == 0, stderr
    emitted = windows_of(out)
    assert emitted[:2] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]] and [len(w) for w in emitted] == [5] * 5
    assert sorted(i for w in emitted for i in w) == list(range(25))  # each event in exactly one window, none lost
    if system == "redis":  # its pending entries come back first; NATS redelivers 10, 11 when their ack_wait ends
        assert emitted[2:] == [[10, 11, 12, 13, 14], [15, 16, 17, 18, 19], [20, 21, 22, 23, 24]]
    assert left_over(system, name) == []  # and every one acknowledged once its window was written


def test_graceful_stop_emits_the_last_partial_window_then_acknowledges_its_events(tmp_path):
    name, out = unique(), tmp_path / "w.jsonl"
    asyncio.run(publish("redis", name, [{"i": i} for i in range(12)]))
    results, _ = LocalRuntime(store=None).execute(windowed("redis", name, out, timeout=0.5),
                                                 stream={"max_events": 7})
    assert results["src"]["stopped_by"] == "max_events"
    assert windows_of(out) == [[0, 1, 2, 3, 4], [5, 6]]
    assert left_over("redis", name) == list(range(7, 12))  # 0-6 acknowledged, the rest never read


def test_a_failing_run_leaves_the_open_window_unacknowledged(tmp_path):
    name, out = unique(), tmp_path / "w.jsonl"
    asyncio.run(publish("redis", name, [{"i": i} for i in range(8)]))
    wf = Workflow("fails")
    wf.add_node("src", source_for("redis", name, timeout=0.5))
    wf.add_node("check", PythonCodeNode(code="assert data['i'] != 7, 'no 7'\nresult = data"))
    wf.add_node("win", WindowNode(size=5, field="i", aggregates=["list"]))
    wf.add_node("sink", JSONWriterNode(file_path=str(out), lines=True, append=True))
    wf.connect("src", "check", mapping={"data": "data"})
    wf.connect("check", "win", mapping={"result": "data"})
    wf.connect("win", "sink", mapping={"result": "data"})
    with pytest.raises(KailashError, match="no 7"):
        LocalRuntime(store=None).execute(wf)
    assert windows_of(out) == [[0, 1, 2, 3, 4]]
    assert left_over("redis", name) == [5, 6, 7]  # the open window's events and the failing one come back


def test_a_time_window_closed_on_a_quiet_stream_acknowledges_its_events(tmp_path):
    name, out = unique(), tmp_path / "w.jsonl"
    asyncio.run(publish("redis", name, [{"i": i} for i in range(4)]))
    wf = Workflow("timed")
    wf.add_node("src", source_for("redis", name, timeout=1.5))
    wf.add_node("win", WindowNode(duration=0.2, field="i", aggregates=["list"]))
    wf.add_node("sink", JSONWriterNode(file_path=str(out), lines=True, append=True))
    wf.connect("src", "win", mapping={"data": "data"})
    wf.connect("win", "sink", mapping={"result": "data"})
    results, _ = LocalRuntime(store=None).execute(wf)
    assert results["src"]["windows_on_time"] >= 1
    assert sorted(i for w in windows_of(out) for i in w) == [0, 1, 2, 3]
    assert left_over("redis", name) == []


def test_parallel_runtime_window_one_event_in_flight_holds_a_thousand_event_window(tmp_path):
    """Held events do not count against ``window``: a 1,000-event window with window=1 (and 4) completes."""
    name, out = unique(), tmp_path / "w.jsonl"
    asyncio.run(publish("redis", name, [{"i": i, "k": str(i % 3)} for i in range(1100)]))
    for window in (1, 4):
        wf = windowed("redis", name, out, size=1000, timeout=0.5, key_field="k", max_events=550)
        runtime = ParallelRuntime(store=None)
        try:
            results, _ = runtime.execute_sync(wf, stream={"window": window})
        finally:
            runtime.close()
        assert results["src"]["events"] == 550
    emitted = windows_of(out)
    assert [len(w) for w in emitted] == [550, 550]  # each run emitted its last partial window at max_events
    assert sorted(i for w in emitted for i in w) == list(range(1100))
    assert left_over("redis", name) == []


def test_a_count_window_larger_than_the_brokers_unacked_limit_fails_before_the_first_event(tmp_path):
    wf = Workflow("too-big")
    wf.add_node("src", NATSJetStreamSourceNode(stream="KS_NEVER", subject="ks-never.events", batch_size=3,
                                               timeout=0.5))
    wf.add_node("win", WindowNode(size=5))
    wf.connect("src", "win", mapping={"data": "data"})
    with pytest.raises(KailashError, match=r"node 'src' \(NATSJetStreamSourceNode\): parameter 'batch_size' is 3, "
                                           r"but the windows below it hold .*'win' holds up to 4"):
        LocalRuntime(store=None).execute(wf)
    ok = Workflow("fits")
    ok.add_node("src", RedisStreamSourceNode(stream=unique(), group="g", consumer="c1", timeout=0.2))
    ok.add_node("win", WindowNode(size=5000))
    ok.connect("src", "win", mapping={"data": "data"})
    assert LocalRuntime(store=None).execute(ok)[0]["src"]["events"] == 0  # Redis: no limit


def test_each_broker_source_names_its_unacked_limit():
    from kailash.nodes.data.brokers import AMQPSourceNode, MQTTSourceNode

    assert RedisStreamSourceNode(stream="s", group="g", consumer="c").stream_unacked_limit({}) is None
    assert NATSJetStreamSourceNode(stream="S", subject="s").stream_unacked_limit({}) == (100, "batch_size")
    assert NATSJetStreamSourceNode(stream="S", subject="s", batch_size=2000).stream_unacked_limit({})[0] == 2000
    assert AMQPSourceNode(queue="q").stream_unacked_limit({"prefetch": 7}) == (7, "prefetch")
    assert MQTTSourceNode(topic="t", client_id="c").stream_unacked_limit({}) == (20, "broker_inflight")
