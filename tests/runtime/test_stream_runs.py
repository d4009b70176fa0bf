"""Stream runs against the real local websocket and SSE servers: one run consumes a whole stream.

The handlers are real local functions passed in as inputs; each records what it saw,
so the tests check exactly which events ran, how often and in which order.
"""

from __future__ import annotations

import gc
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from kailash.errors import KailashError, NodeConfigurationError
from kailash.nodes.code.python import PythonCodeNode
from kailash.nodes.data.streaming import EventStreamNode
from kailash.nodes.data.writers import JSONWriterNode
from kailash.runtime import LocalRuntime, ParallelRuntime
from kailash.runtime.streaming import StreamOptions
from kailash.workflow import Workflow
from tests.servers import fixtures as servers

http_server = servers.http_server
ws_server = servers.ws_server
dead_url = servers.dead_url
ROOT = Path(__file__).resolve().parents[2]


def stream_workflow(url: str, code: str = "result = handle(event_type, data)", **source) -> Workflow:
    wf = Workflow("stream-test")
    wf.add_node("source", EventStreamNode(stream_url=url, **source))
    wf.add_node("process", PythonCodeNode(code=code))
    wf.connect("source", "process")
    return wf


class Seen:
    """A handler that records (event_type, seq) of every event it is called with."""

    def __init__(self, fail_when=None) -> None:
        self.items: list[tuple[str, int]] = []
        self.fail_when = fail_when
        self.lock = threading.Lock()

    def __call__(self, event_type, data):
        with self.lock:
            self.items.append((event_type, data["seq"]))
        if self.fail_when is not None and self.fail_when(data):
            raise ValueError(f"cannot handle seq {data['seq']}")
        return data.get("value")


def test_one_run_processes_every_event_once_in_order_without_heartbeats(ws_server):
    seen = Seen()
    wf = stream_workflow(f"{ws_server.url}/events?count=9&types=data_update,heartbeat,status_change",
                         event_types=["data_update", "status_change"])
    results, run_id = LocalRuntime().execute(wf, parameters={"process": {"handle": seen}})
    assert seen.items == [(("data_update", "heartbeat", "status_change")[i % 3], i) for i in range(9) if i % 3 != 1]
    summary = results["source"]
    assert (summary["events"], summary["failures"], summary["stopped_by"]) == (6, 0, "closed")
    assert "process" not in results  # per-event outputs are not accumulated
    record = LocalRuntime().get_run(run_id)
    assert record.status == "completed"
    assert record.outputs["source"]["events"] == 6
    assert {n.node_id: n.status for n in record.nodes} == {"source": "completed", "process": "completed"}


def test_server_sent_events_stream_in_one_run(http_server):
    seen = Seen()
    wf = stream_workflow(f"{http_server.url}/sse?count=5")
    results, _ = LocalRuntime(store=None).execute(wf, parameters={"process": {"handle": seen}})
    assert [s for _, s in seen.items] == [0, 1, 2, 3, 4]
    assert results["source"]["events"] == 5


def test_batch_delivery_is_still_an_ordinary_run(ws_server):
    wf = stream_workflow(f"{ws_server.url}/events?count=4", code="result = len(data)", delivery="batch")
    results, _ = LocalRuntime(store=None).execute(wf)
    assert results["process"]["result"] == 4


def test_upstream_nodes_run_once_and_feed_every_event(ws_server):
    calls = []
    wf = Workflow("with-upstream")
    wf.add_node("config", PythonCodeNode(code="calls.append(1); result = 100"))
    wf.add_node("source", EventStreamNode(stream_url=f"{ws_server.url}/events?count=5"))
    wf.add_node("process", PythonCodeNode(code="out.append(data['seq'] + offset); result = None"))
    wf.connect("config", "process", mapping={"result": "offset"})
    wf.connect("source", "process")
    out: list[int] = []
    results, _ = LocalRuntime(store=None).execute(wf, parameters={"config": {"calls": calls}, "process": {"out": out}})
    assert calls == [1] and out == [100, 101, 102, 103, 104]
    assert results["config"]["result"] == 100


@pytest.fixture(scope="module")
def ws_process():
    """The test websocket server in a child process: tracemalloc then sees only the consumer."""
    code = ("import sys, time; from tests.servers.fixtures import start_ws_server; running, stop = start_ws_server(compression=None); "
            "print(running.url, flush=True); sys.stdin.read(); stop()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("ws://"), url
        yield url
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def test_twenty_thousand_events_in_constant_memory(ws_process):
    wf = stream_workflow(f"{ws_process}/events?count=20000", code="result = data['value'] * 2")

    def peak(count: int) -> int:
        wf.nodes["source"].config["stream_url"] = f"{ws_process}/events?count={count}"
        gc.collect()
        tracemalloc.start()
        try:
            results, _ = LocalRuntime(store=None).execute(wf)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            assert results["source"]["events"] == count

    peak(100)  # warm: imports and first-use caches are not the stream's
    small, large = peak(5000), peak(20000)
    # 15,000 more events cost under 1 MB: kept outputs (hundreds of bytes an event) would add several MB.
    # What remains is the websocket client's own read buffer (one socket read), the same for any length.
    assert large < small + 1024 * 1024 and large < 3 * 1024 * 1024, (small, large)


def test_dead_letter_file_gets_failed_events_and_the_run_goes_on(ws_server, tmp_path):
    seen = Seen(fail_when=lambda d: d["seq"] % 4 == 0)
    dead = tmp_path / "dead.jsonl"
    wf = stream_workflow(f"{ws_server.url}/events?count=10")
    results, run_id = LocalRuntime().execute(
        wf, parameters={"process": {"handle": seen}},
        stream={"on_event_error": "dead_letter", "dead_letter": str(dead)})
    assert [s for _, s in seen.items] == list(range(10))
    lines = [json.loads(x) for x in dead.read_text().splitlines()]
    assert [x["event"]["data"]["seq"] for x in lines] == [0, 4, 8]
    assert lines[0]["node_id"] == "process" and "cannot handle seq 0" in lines[0]["error"]
    assert lines[0]["run_id"] == run_id
    s = results["source"]
    assert (s["events"], s["failures"], s["dead_lettered"]) == (10, 3, 3)
    assert s["nodes"]["process"] == {"runs": 10, "failures": 3, "seconds": pytest.approx(s["nodes"]["process"]["seconds"])}
    assert LocalRuntime().get_run(run_id).outputs["source"]["dead_lettered"] == 3


def test_dead_letter_table_and_writer_node(ws_server, tmp_path):
    db = tmp_path / "dead.db"
    wf = stream_workflow(f"{ws_server.url}/events?count=6")
    seen = Seen(fail_when=lambda d: d["seq"] in (1, 5))
    LocalRuntime(store=None).execute(wf, parameters={"process": {"handle": seen}}, stream=StreamOptions(
        on_event_error="dead_letter", dead_letter={"connection_string": f"sqlite:///{db}", "table": "dead_events"}))
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT node_id, error, event FROM dead_events ORDER BY ts").fetchall()
    assert [json.loads(r[2])["id"] for r in rows] == [1, 5] and rows[0][0] == "process"
    out = tmp_path / "dead-node.jsonl"
    writer = JSONWriterNode(file_path=str(out), lines=True, append=True)
    LocalRuntime(store=None).execute(wf, parameters={"process": {"handle": Seen(fail_when=lambda d: d["seq"] == 2)}},
                                     stream={"on_event_error": "dead_letter", "dead_letter": writer})
    assert [json.loads(x)["event"]["id"] for x in out.read_text().splitlines()] == [2]


def test_fail_policy_fails_the_run_at_the_first_failing_event(ws_server):
    seen = Seen(fail_when=lambda d: d["seq"] == 3)
    wf = stream_workflow(f"{ws_server.url}/events?count=8")
    runtime = LocalRuntime()
    with pytest.raises(KailashError, match=r"cannot handle seq 3") as info:
        runtime.execute(wf, parameters={"process": {"handle": seen}})
    assert [s for _, s in seen.items] == [0, 1, 2, 3]  # nothing after the failing event
    assert info.value.node_id == "process"
    record = runtime.get_run(info.value.run_id)
    assert record.status == "failed" and record.error_node == "process"
    assert record.outputs["source"]["events"] == 4 and record.outputs["source"]["failures"] == 1


def test_stop_rules_max_events_idle_timeout_and_stop_event(ws_server):
    wf = stream_workflow(f"{ws_server.url}/endless?interval=0.01")
    seen = Seen()
    results, _ = LocalRuntime(store=None).execute(wf, parameters={"process": {"handle": seen}},
                                                  stream={"max_events": 7})
    assert results["source"]["stopped_by"] == "max_events" and len(seen.items) == 7
    slow = stream_workflow(f"{ws_server.url}/endless?interval=5")
    t0 = time.monotonic()
    results, _ = LocalRuntime(store=None).execute(slow, parameters={"process": {"handle": Seen()}},
                                                  stream={"timeout": 0.3})
    assert results["source"]["stopped_by"] == "timeout" and results["source"]["events"] == 1
    assert time.monotonic() - t0 < 4
    stop = threading.Event()
    stopper = Seen(fail_when=lambda d: d["seq"] == 4 and stop.set() and False)
    results, _ = LocalRuntime(store=None).execute(wf, parameters={"process": {"handle": stopper}},
                                                  stream={"stop": stop})
    assert results["source"]["stopped_by"] == "stop" and 5 <= len(stopper.items) <= 7


def test_stream_options_are_checked():
    wf = stream_workflow("ws://127.0.0.1:9/x")
    with pytest.raises(NodeConfigurationError, match="stream option 'on_event_error' must be 'fail' or 'dead_letter'"):
        LocalRuntime(store=None).execute(wf, stream={"on_event_error": "ignore"})
    with pytest.raises(NodeConfigurationError, match="stream option 'dead_letter' must be a sink"):
        LocalRuntime(store=None).execute(wf, stream={"on_event_error": "dead_letter"})
    with pytest.raises(NodeConfigurationError, match=r"unknown option\(s\) max_event "):
        LocalRuntime(store=None).execute(wf, stream={"max_event": 3})
    plain = Workflow("plain")
    plain.add_node("n", PythonCodeNode(code="result = 1"))
    with pytest.raises(NodeConfigurationError, match="has no stream source"):
        LocalRuntime(store=None).execute(plain, stream={"max_events": 3})


def test_parallel_runtime_runs_events_concurrently_keeping_per_key_order(ws_server):
    lock = threading.Lock()
    state = {"now": 0, "max": 0}
    order: dict[str, list[int]] = {}

    def handle(event_type, data):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.002 * (data["seq"] % 3))
        with lock:
            order.setdefault(data["key"], []).append(data["seq"])
            state["now"] -= 1

    wf = stream_workflow(f"{ws_server.url}/events?count=200&keys=4", key_field="key")
    runtime = ParallelRuntime(max_concurrency=16, store=None)
    try:
        results, _ = runtime.execute_sync(wf, parameters={"process": {"handle": handle}}, stream={"window": 8})
    finally:
        runtime.close()
    assert results["source"]["events"] == 200
    assert sorted(order) == ["k0", "k1", "k2", "k3"]
    for key, seqs in order.items():
        assert seqs == sorted(seqs) and len(seqs) == 50, key
    assert state["max"] > 1  # events of different keys did run at once


def test_parallel_runtime_window_one_is_strictly_in_order(ws_server):
    seen = Seen()
    wf = stream_workflow(f"{ws_server.url}/events?count=30")
    runtime = ParallelRuntime(store=None)
    try:
        results, _ = runtime.execute_sync(wf, parameters={"process": {"handle": seen}})
    finally:
        runtime.close()
    assert [s for _, s in seen.items] == list(range(30)) and results["source"]["events"] == 30


def test_live_progress_events_reach_observers(ws_server):
    events = []
    wf = stream_workflow(f"{ws_server.url}/events?count=50&interval=0.01")
    LocalRuntime(store=None).execute(wf, parameters={"process": {"handle": Seen()}}, observers=[events.append],
                                     stream={"progress_every": 0.1})
    progress = [e for e in events if e["event"] == "stream_progress"]
    assert len(progress) >= 2
    assert progress[-1]["events"] == 50 and progress[-1]["failures"] == 0
    assert [p["events"] for p in progress] == sorted(p["events"] for p in progress)


def test_a_source_that_cannot_connect_fails_the_run_naming_it(dead_url):
    wf = stream_workflow(dead_url.replace("http://", "ws://"), reconnect_attempts=0)
    runtime = LocalRuntime()
    with pytest.raises(KailashError, match=r"node 'source' \(EventStreamNode\): cannot read the stream") as info:
        runtime.execute(wf, parameters={"process": {"handle": Seen()}})
    assert info.value.node_id == "source"
    record = runtime.get_run(info.value.run_id)
    assert record.status == "failed" and record.error_node == "source"


def test_an_upstream_failure_fails_the_run_before_the_stream_opens(ws_server):
    wf = stream_workflow(f"{ws_server.url}/events?count=3")
    wf.add_node("config", PythonCodeNode(code="result = 1 / 0"))
    wf.connect("config", "process", mapping={"result": "offset"})
    seen = Seen()
    before = ws_server.state.connections.get("/events", 0)
    with pytest.raises(KailashError, match="ZeroDivisionError") as info:
        LocalRuntime(store=None).execute(wf, parameters={"process": {"handle": seen}})
    assert info.value.node_id == "config" and seen.items == []
    assert ws_server.state.connections.get("/events", 0) == before  # the stream was never opened


def test_parallel_fail_policy_stops_taking_events(ws_server):
    seen = Seen(fail_when=lambda d: d["seq"] == 10)
    wf = stream_workflow(f"{ws_server.url}/events?count=200&keys=4", key_field="key")
    runtime = ParallelRuntime(store=None)
    try:
        with pytest.raises(KailashError, match="cannot handle seq 10") as info:
            runtime.execute_sync(wf, parameters={"process": {"handle": seen}}, stream={"window": 4})
    finally:
        runtime.close()
    assert info.value.node_id == "process"
    assert len(seen.items) < 200
    assert info.value.results["source"]["failures"] >= 1


def test_workflow_metadata_sets_stream_options_and_survives_saving(ws_server, tmp_path):
    from kailash.workflow.graph import Workflow as W

    wf = stream_workflow(f"{ws_server.url}/events?count=20", code="result = data['seq']")
    wf.metadata["stream"] = {"max_events": 4}
    loaded = W.load(wf.save(tmp_path / "s.yaml"))
    results, _ = LocalRuntime(store=None).execute(loaded)
    assert (results["source"]["events"], results["source"]["stopped_by"]) == (4, "max_events")
    results, _ = LocalRuntime(store=None).execute(loaded, stream={"max_events": 2})  # the call's options win
    assert results["source"]["events"] == 2
