"""Broker sources in real stream runs: ``LocalRuntime``/``ParallelRuntime``/``kailash run`` against the real servers.

Redis 6379, NATS JetStream 4222, Mosquitto 1883, RabbitMQ 5672 (guest/guest); every test
uses its own stream/subject/topic/queue. Each workflow is source -> PythonCodeNode -> sink
(a broker writer, a JSON-lines file or a list), run as users run it. "Acked" is checked the
way a broker shows it: a second run of the same consumer receives nothing again.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from kailash.errors import KailashError
from kailash.nodes.code.python import PythonCodeNode
from kailash.nodes.data.writers import JSONWriterNode
from kailash.runtime import LocalRuntime, ParallelRuntime
from kailash.workflow import Workflow
from tests.nodes.data.broker_consumer import SYSTEMS, consume, prepare, publish, source_for, writer_for

ROOT = Path(__file__).resolve().parents[3]


def unique() -> str:
    return f"ks-{uuid.uuid4().hex[:10]}"


def workflow(system: str, name: str, code: str, **source: object) -> Workflow:
    """source -> PythonCodeNode ``code`` (inputs ``data`` and the parameters given at run time)."""
    wf = Workflow(f"stream-{system}")
    wf.add_node("src", source_for(system, name, **source))
    wf.add_node("code", PythonCodeNode(code=code))
    wf.connect("src", "code", mapping={"data": "data", "key": "key"})
    return wf


RECORD = "seen.append(data['i']); result = data['i']"


def run(wf: Workflow, seen: list | None = None, **kw: object) -> dict:
    results, _ = LocalRuntime(store=None).execute(wf, parameters={"code": {"seen": [] if seen is None else seen}},
                                                  **kw)
    return results["src"]


def test_a_broker_source_with_delivery_batch_is_an_ordinary_node_and_per_event_a_stream_run():
    node = source_for("redis", "x")
    assert node.streams({}) and node.streams({"delivery": "per_event"}) and not node.streams({"delivery": "batch"})
    with pytest.raises(KailashError, match=r"node 'src' \(RedisStreamSourceNode\): parameter 'delivery' must be "
                                           r"'per_event' or 'batch', got 'each'"):
        node.streams({"delivery": "each"})


@pytest.mark.parametrize("system", SYSTEMS)
def test_source_code_writer_every_event_once_in_order_and_acked(system):
    """source -> PythonCodeNode -> the same system's writer; a second run of the consumer gets nothing."""
    name, out = unique(), unique()
    asyncio.run(prepare(system, name))
    asyncio.run(prepare(system, out))
    asyncio.run(publish(system, name, [{"i": i} for i in range(30)]))
    wf = workflow(system, name, "result = {'i': data['i'], 'square': data['i'] ** 2}", timeout=1.0)
    writer, where = writer_for(system, out)
    wf.add_node("sink", type(writer)(**where))
    wf.connect("code", "sink", mapping={"result": "data"})
    summary = run(wf)
    assert (summary["events"], summary["failures"], summary["stopped_by"]) == (30, 0, "timeout")
    assert summary["nodes"]["sink"]["runs"] == 30
    assert run(wf)["events"] == 0  # all 30 were acknowledged: nothing is delivered again
    written: list = []
    asyncio.run(consume(source_for(system, out), {"timeout": 1.5}, written.append))
    assert [e.data for e in written] == [{"i": i, "square": i * i} for i in range(30)]  # once each, in order


@pytest.mark.parametrize("system", SYSTEMS)
def test_max_events_and_idle_timeout_stop_and_the_next_run_continues(system):
    name = unique()
    asyncio.run(prepare(system, name))
    asyncio.run(publish(system, name, [{"i": i} for i in range(10)]))
    wf = workflow(system, name, RECORD)  # the source's own idle timeout: 30 s
    seen: list = []
    first = LocalRuntime(store=None).execute(wf, parameters={"src": {"max_events": 2}, "code": {"seen": seen}})[0]
    assert (first["src"]["events"], first["src"]["stopped_by"]) == (2, "max_events")  # the node's parameter
    second = run(wf, seen, stream={"max_events": 3})  # the run's option
    assert (second["events"], second["stopped_by"]) == (3, "max_events")
    t0 = time.monotonic()
    third = run(wf, seen, stream={"timeout": 0.5})  # the run's idle timeout, well before the source's 30 s
    assert (third["events"], third["stopped_by"]) == (5, "timeout")
    assert time.monotonic() - t0 < 15
    assert seen == list(range(10))  # nothing lost or repeated across the stops
    assert run(wf, stream={"timeout": 0.5})["events"] == 0


@pytest.mark.parametrize("system", SYSTEMS)
def test_dead_letter_path_writes_the_failing_events_and_acks_them(system, tmp_path):
    name = unique()
    asyncio.run(prepare(system, name))
    asyncio.run(publish(system, name, [{"i": i} for i in range(10)]))
    wf = workflow(system, name, "if data['i'] % 4 == 1: raise ValueError(f\"bad {data['i']}\")\n" + RECORD,
                  timeout=1.0)
    seen: list = []
    dead = tmp_path / "dead.jsonl"
    summary = run(wf, seen, stream={"on_event_error": "dead_letter", "dead_letter": str(dead)})
    assert (summary["events"], summary["failures"], summary["dead_lettered"]) == (10, 3, 3)
    assert seen == [0, 2, 3, 4, 6, 7, 8]
    records = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [r["event"]["data"]["i"] for r in records] == [1, 5, 9]
    assert records[0]["node_id"] == "code" and "ValueError: bad 1" in records[0]["error"]
    assert run(wf)["events"] == 0  # dead-lettered events were acknowledged too


@pytest.mark.parametrize("system", SYSTEMS)
def test_on_event_error_fail_leaves_the_failing_event_unacked_and_it_is_delivered_again(system):
    name = unique()
    asyncio.run(prepare(system, name))
    asyncio.run(publish(system, name, [{"i": i} for i in range(6)]))
    wf = workflow(system, name, "if data['i'] == fail_at: raise ValueError('boom')\n" + RECORD, timeout=1.0)
    seen: list = []
    with pytest.raises(KailashError, match="boom") as info:
        LocalRuntime(store=None).execute(wf, parameters={"code": {"seen": seen, "fail_at": 3}})
    assert info.value.node_id == "code"
    assert info.value.results["src"]["stopped_by"] == "failed"
    assert seen == [0, 1, 2]
    again: list = []
    results, _ = LocalRuntime(store=None).execute(wf, parameters={"code": {"seen": again, "fail_at": -1}})
    assert again == [3, 4, 5]  # the failing event first, then the rest; the acked ones not again
    assert results["src"]["events"] == 3


@pytest.mark.parametrize("system", SYSTEMS)
def test_parallel_runtime_window_keeps_per_key_order_and_acks_everything(system):
    """window=4 with key_field: events of one key in order, keys interleaved; each event acked once."""
    name = unique()
    asyncio.run(prepare(system, name))
    n = 48
    asyncio.run(publish(system, name, [{"i": i, "k": f"k{i % 3}"} for i in range(n)]))
    code = "import time\ntime.sleep(0.002 * ((data['i'] * 7) % 5))\nseen.append((key, data['i'])); result = data['i']"
    wf = workflow(system, name, code, timeout=1.5, key_field="k")
    seen: list = []
    runtime = ParallelRuntime(store=None)
    try:
        results, _ = runtime.execute_sync(wf, parameters={"code": {"seen": seen}}, stream={"window": 4})
        assert results["src"]["events"] == n
        assert sorted(i for _, i in seen) == list(range(n))  # each once
        for k in ("k0", "k1", "k2"):
            assert [i for key, i in seen if key == k] == [i for i in range(n) if f"k{i % 3}" == k]
        again: list = []
        results, _ = runtime.execute_sync(wf, parameters={"code": {"seen": again}}, stream={"window": 4})
        assert again == [] and results["src"]["events"] == 0  # every ack reached the broker
    finally:
        runtime.close()


# -- real processes: SIGKILL mid-stream, SIGINT through `kailash run` -----------------------------------

def save_stream_workflow(system: str, name: str, tmp_path: Path, delay: float) -> tuple[Path, Path]:
    """stream.yaml: source -> PythonCodeNode (sleeps ``delay``) -> JSONWriterNode appending one line per event."""
    out = tmp_path / "processed.jsonl"
    wf = Workflow(f"crash-{system}")
    wf.add_node("src", source_for(system, name, timeout=3.0))
    wf.add_node("code", PythonCodeNode(code=f"import time\ntime.sleep({delay})\nresult = {{'i': data['i']}}"))
    wf.add_node("sink", JSONWriterNode(file_path=str(out), lines=True, append=True))
    wf.connect("src", "code", mapping={"data": "data"})
    wf.connect("code", "sink", mapping={"result": "data"})
    return wf.save(tmp_path / "stream.yaml"), out


def kailash(*args: str, home: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "kailash.cli.main", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(ROOT),
                            env={**os.environ, "PYTHONPATH": str(ROOT), "KAILASH_HOME": str(home)})


def processed(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [json.loads(x)["i"] for x in path.read_text().splitlines() if x.endswith("}")]


def wait_for_lines(proc: subprocess.Popen[str], out: Path, at_least: int) -> None:
    deadline = time.monotonic() + 60
    while len(processed(out)) < at_least:
        assert proc.poll() is None, f"the stream run ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, "the stream run processed nothing"
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("system", SYSTEMS)
def test_sigkilled_stream_run_resumes_after_the_last_acknowledged_event(system, tmp_path):
    """`kailash run stream.yaml` killed with SIGKILL mid-stream, run again: no event lost, in order.

    The side-effect file shows each event processed at least once. Repeats are only the
    events whose work had finished when the process died but whose ack had not reached
    the broker: Redis XACK and NATS AckSync are confirmed round trips (at most the one
    event being acked); MQTT PUBACK and AMQP basic.ack are not (possibly the last few).
    """
    n = 150
    name = unique()
    asyncio.run(prepare(system, name))
    asyncio.run(publish(system, name, [{"i": i} for i in range(n)]))
    path, out = save_stream_workflow(system, name, tmp_path, 0.01)
    child = kailash("run", str(path), home=tmp_path)
    try:
        wait_for_lines(child, out, 40)
        os.kill(child.pid, signal.SIGKILL)
        child.communicate(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    killed_at = len(processed(out))
    assert 40 <= killed_at < n  # killed mid-stream
    restarted = kailash("run", str(path), home=tmp_path)
    stdout, stderr = restarted.communicate(timeout=90)
    assert restarted.returncode == 0, stderr
    assert "stream stopped by timeout" in stdout
    seen = processed(out)
    assert set(seen) == set(range(n))  # no event lost
    first, rest = seen[:killed_at], seen[killed_at:]
    assert first == list(range(killed_at))  # in order before the kill
    assert rest == list(range(rest[0], n))  # in order after the restart, each once
    repeated = killed_at - rest[0]
    limit = {"redis": 1, "nats": 1}.get(system, 20)
    assert 0 <= repeated <= limit, f"{repeated} events processed twice"


@pytest.mark.slow
@pytest.mark.parametrize("system", ["redis", "nats"])
def test_sigint_stops_kailash_run_gracefully_with_the_last_event_acked(system, tmp_path):
    """Ctrl-C: the event in flight finishes and is acknowledged, exit 0; the next run starts right after it."""
    n = 400
    name = unique()
    asyncio.run(prepare(system, name))
    asyncio.run(publish(system, name, [{"i": i} for i in range(n)]))
    path, out = save_stream_workflow(system, name, tmp_path, 0.01)
    child = kailash("run", str(path), "--progress", home=tmp_path)
    try:
        wait_for_lines(child, out, 30)
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, stderr
    assert "stream stopped by signal" in stdout
    stopped_at = processed(out)
    assert stopped_at == list(range(len(stopped_at))) and len(stopped_at) < n
    t0 = time.monotonic()
    again = kailash("run", str(path), home=tmp_path)
    stdout, stderr = again.communicate(timeout=90)
    assert again.returncode == 0, stderr
    assert processed(out) == list(range(n))  # the last event before the stop was acked: no repeat, no gap
    assert time.monotonic() - t0 < 30  # NATS: nothing left pending, so no ack_wait before resuming


def test_nats_after_a_stopped_run_the_next_one_resumes_at_once_in_order():
    """A run that stops nacks what it fetched; the next open sees it redelivered first and does not wait ack_wait."""
    from kailash.nodes.data.brokers import NATSJetStreamSourceNode

    name = unique()
    asyncio.run(publish("nats", name, [{"i": i} for i in range(10)]))
    wf = Workflow("nats-resume")
    wf.add_node("src", NATSJetStreamSourceNode(stream=name.upper().replace("-", "_"), subject=f"{name}.events",
                                               durable="d", ack_wait=30.0, timeout=1.0))
    wf.add_node("code", PythonCodeNode(code=RECORD))
    wf.connect("src", "code")
    seen: list = []
    assert run(wf, seen, stream={"max_events": 3})["stopped_by"] == "max_events"
    t0 = time.monotonic()
    assert run(wf, seen, stream={"max_events": 3})["events"] == 3
    assert run(wf, seen)["events"] == 4
    assert time.monotonic() - t0 < 15  # not ack_wait (30 s) per reopen
    assert seen == list(range(10))


def test_parallel_runtime_redis_to_redis_writer_per_key_order_in_the_output_stream():
    """ParallelRuntime, window=8: the writer runs on the run's loop; each key's outputs land in order."""
    name, out = unique(), unique()
    n = 60
    asyncio.run(publish("redis", name, [{"i": i, "k": f"k{i % 4}"} for i in range(n)]))
    wf = workflow("redis", name, "import time\ntime.sleep(0.001 * (data['i'] % 3))\nresult = data", timeout=1.0,
                  key_field="k")
    writer, where = writer_for("redis", out)
    wf.add_node("sink", type(writer)(**where))
    wf.connect("code", "sink", mapping={"result": "data"})
    runtime = ParallelRuntime(store=None)
    try:
        results, _ = runtime.execute_sync(wf, stream={"window": 8})
    finally:
        runtime.close()
    assert (results["src"]["events"], results["src"]["failures"]) == (n, 0)
    written: list = []
    asyncio.run(consume(source_for("redis", out), {"timeout": 1.0}, written.append))
    got = [e.data for e in written]
    assert sorted(d["i"] for d in got) == list(range(n))
    for k in range(4):
        assert [d["i"] for d in got if d["k"] == f"k{k}"] == list(range(k, n, 4))


def test_dead_letters_to_a_broker_writer_node_go_out_on_one_connection():
    """dead_letter=RedisStreamWriterNode: each failing event's record is appended to a Redis stream, then acked."""
    from kailash.nodes.data.brokers import RedisStreamWriterNode

    name, dead = unique(), unique()
    asyncio.run(publish("redis", name, [{"i": i} for i in range(8)]))
    wf = workflow("redis", name, "if data['i'] % 3 == 0: raise ValueError('no multiples of 3')\n" + RECORD,
                  timeout=1.0)
    sink = RedisStreamWriterNode(name="dead", stream=dead)
    seen: list = []
    summary = run(wf, seen, stream={"on_event_error": "dead_letter", "dead_letter": sink})
    assert (summary["events"], summary["dead_lettered"]) == (8, 3) and seen == [1, 2, 4, 5, 7]
    assert "_broker_client" not in sink.__dict__  # its connection was closed with the run
    records: list = []
    asyncio.run(consume(source_for("redis", dead), {"timeout": 1.0}, records.append))
    assert [r.data["event"]["data"]["i"] for r in records] == [0, 3, 6]
    assert records[0].data["node_id"] == "code" and "no multiples of 3" in records[0].data["error"]
    assert run(wf)["events"] == 0


def test_window_between_a_broker_source_and_writer_flushes_the_last_window_and_closes_the_writer():
    from kailash.nodes.data.brokers import RedisStreamSourceNode, RedisStreamWriterNode
    from kailash.nodes.data.windows import WindowNode

    name, out = unique(), unique()
    asyncio.run(publish("redis", name, [{"i": i} for i in range(10)]))
    sink = RedisStreamWriterNode(stream=out)
    wf = Workflow("windowed")
    wf.add_node("src", RedisStreamSourceNode(stream=name, group="g", consumer="c1", timeout=0.5))
    wf.add_node("win", WindowNode(size=3, field="i", aggregates=["sum"]))
    wf.add_node("sink", sink)
    wf.connect("src", "win")
    wf.connect("win", "sink", mapping={"sum": "data"})
    results, _ = LocalRuntime(store=None).execute(wf)
    assert results["src"]["events"] == 10 and results["src"]["nodes"]["sink"]["runs"] == 4
    assert "_broker_client" not in sink.__dict__  # closed after the last (partial) window was written
    written: list = []
    asyncio.run(consume(source_for("redis", out), {"timeout": 0.5}, written.append))
    assert [e.data for e in written] == [3, 12, 21, 9]


def test_nats_a_worker_that_died_holding_messages_fetched_at_different_times_keeps_the_order():
    """A dead worker's messages expire at different times: the next run waits for all of them, in order."""
    import nats

    from kailash.nodes.data.brokers import NATSJetStreamSourceNode

    name = unique()
    stream, subject = name.upper().replace("-", "_"), f"{name}.events"
    source = NATSJetStreamSourceNode(name="src", stream=stream, subject=subject, durable="d", ack_wait=2.0,
                                     batch_size=5, timeout=1.5)
    asyncio.run(publish("nats", name, [{"i": i} for i in range(12)]))

    async def die_holding_messages() -> None:
        cursor = await source.open_stream({})  # creates the durable (max_ack_pending 5)
        await cursor.close()
        nc = await nats.connect("nats://127.0.0.1:4222")
        sub = await nc.jetstream().pull_subscribe(subject, durable="d", stream=stream)
        first = await sub.fetch(5, timeout=2)  # 0..4 at t=0
        for m in first[:2]:
            await m.ack_sync()
        await asyncio.sleep(1.0)
        await sub.fetch(2, timeout=2)  # 5, 6 at t=1: they expire a second after 2..4
        await nc.close()  # dies: nothing nacked

    asyncio.run(die_holding_messages())
    wf = Workflow("nats-dead-worker")
    wf.add_node("src", source)
    wf.add_node("code", PythonCodeNode(code=RECORD))
    wf.connect("src", "code")
    seen: list = []
    time.sleep(1.2)  # 2..4 have been redelivered by the server; 5, 6 not yet
    assert run(wf, seen)["events"] == 10
    assert seen == list(range(2, 12))
