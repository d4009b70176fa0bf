"""Time windows close on a quiet stream: the stream run's timed wake-up, over real sources.

Each test runs a real stream run in a thread (a websocket server in this process, or a real
broker: Redis Streams, NATS JetStream, MQTT, AMQP, on a unique stream/subject/topic/queue), sends a few events, then sends nothing: the
window's aggregate must reach the sink while the stream is still open, after the window's
end (never early) and within a generous bound of it. Windows are counted: none twice,
none lost, a late event where docs/streams.md says it goes.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.server import serve

from kailash.errors import KailashError, NodeConfigurationError
from kailash.nodes.code.python import PythonCodeNode
from kailash.nodes.data.streaming import EventStreamNode
from kailash.nodes.data.windows import WindowNode
from kailash.runtime import LocalRuntime, ParallelRuntime
from kailash.workflow import Workflow

BOUND = 2.0  # seconds after a window's end by which its aggregate must be out (the design's bound is far smaller)
WIDTH = 0.5


class Feed:
    """A websocket server in this process: sends what the test gives it, ends the stream when told."""

    def __init__(self) -> None:
        self.items: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.connected = threading.Event()
        self.server = serve(self._serve, "127.0.0.1", 0)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}"

    def _serve(self, ws: Any) -> None:
        self.connected.set()
        while (item := self.items.get()) is not None:
            ws.send(json.dumps({"event_type": "tick", "data": item}))

    def send(self, **data: Any) -> None:
        self.items.put(data)

    def end(self) -> None:
        self.items.put(None)


class Sink:
    """What the sink node saw: (time.time(), the aggregate), appended as each window closes."""

    def __init__(self) -> None:
        self.got: list[tuple[float, dict[str, Any]]] = []

    def __call__(self, result: dict[str, Any]) -> None:
        self.got.append((time.time(), result))

    def windows(self) -> list[dict[str, Any]]:
        return [r for _, r in self.got]

    def wait(self, n: int, within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while len(self.got) < n:
            assert time.monotonic() < deadline, f"only {len(self.got)} window(s) after {within} s, expected {n}"
            time.sleep(0.01)


def windowed(source: Any, window: WindowNode, code: str = "record(result); result = 1") -> Workflow:
    wf = Workflow("quiet-windows")
    wf.add_node("source", source)
    wf.add_node("window", window)
    wf.add_node("sink", PythonCodeNode(code=code))
    wf.connect("source", "window")
    wf.connect("window", "sink", mapping={"result": "result"})
    return wf


class Background:
    """``run()`` in a thread: its result or error, and whether it is still going."""

    def __init__(self, run: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None

        def target() -> None:
            try:
                self.result = run()
            except BaseException as exc:  # handed to the test
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def alive(self) -> bool:
        return self.thread.is_alive()

    def join(self) -> Any:
        self.thread.join(15)
        assert not self.thread.is_alive(), "the stream run did not end"
        if self.error is not None:
            raise self.error
        return self.result


def local(wf: Workflow, sink: Sink, **stream: Any) -> Background:
    return Background(lambda: LocalRuntime(store=None).execute(
        wf, parameters={"sink": {"record": sink}}, stream=stream or None)[0])


def parallel(wf: Workflow, sink: Sink, **stream: Any) -> Background:
    def go() -> Any:
        runtime = ParallelRuntime(store=None)
        try:
            return runtime.execute_sync(wf, parameters={"sink": {"record": sink}}, stream=stream or None)[0]
        finally:
            runtime.close()

    return Background(go)


def early_in_a_window() -> None:
    """Sleep until shortly after a window boundary, so a quick burst of events falls in one window."""
    phase = time.time() % WIDTH
    time.sleep((WIDTH - phase) % WIDTH + 0.05)


def check_on_time(when: float, window: dict[str, Any], after: float = 0.0) -> None:
    """Emitted after the window's end (+ ``after``), never early, and within BOUND of it."""
    assert window["window_end"] - window["window_start"] == pytest.approx(WIDTH)
    assert window["window_end"] + after - 0.01 <= when <= window["window_end"] + after + BOUND


@pytest.mark.parametrize("door", [local, parallel], ids=["LocalRuntime", "ParallelRuntime"])
def test_a_processing_time_window_closes_on_a_quiet_stream_while_it_is_open(door: Callable[..., Background]):
    feed, sink = Feed(), Sink()
    run = door(windowed(EventStreamNode(stream_url=feed.url), WindowNode(duration=WIDTH)), sink)
    assert feed.connected.wait(10)
    for burst in (3, 2):
        early_in_a_window()
        for i in range(burst):
            feed.send(seq=i)
        sink.wait(1 if burst == 3 else 2)  # nothing more arrives: only the tick can close it
        assert run.alive()  # the stream is still open
        when, window = sink.got[-1]
        check_on_time(when, window)
        assert (window["count"], window["late"]) == (burst, 0)
    feed.end()
    summary = run.join()["source"]
    windows = sink.windows()
    assert [w["count"] for w in windows] == [3, 2]  # each window once; nothing left for the end to flush
    assert windows[0]["window_end"] <= windows[1]["window_start"]
    assert (summary["events"], summary["stopped_by"], summary["windows_on_time"]) == (5, "closed", 2)
    assert summary["nodes"]["sink"]["runs"] == 2  # the closes are recorded like events' parts


def test_an_event_time_window_waits_idle_seconds_and_a_late_event_counts_in_the_next_window():
    feed, sink = Feed(), Sink()
    window = WindowNode(duration=WIDTH, timestamp_field="ts", idle=0.2, field="seq", aggregates=["count", "list"])
    run = parallel(windowed(EventStreamNode(stream_url=feed.url), window), sink, window=4)
    assert feed.connected.wait(10)
    early_in_a_window()
    for i in range(3):
        feed.send(seq=i, ts=time.time())
    sink.wait(1)
    assert run.alive()
    when, first = sink.got[0]
    check_on_time(when, first, after=0.2)  # the watermark follows the clock once the stream was quiet 0.2 s
    assert (first["list"], first["late"]) == ([0, 1, 2], 0)
    feed.send(seq=3, ts=first["window_start"] + 0.1)  # late: its window has closed
    sink.wait(2)
    assert run.alive()
    late = sink.got[1][1]
    # not a second copy of the closed window: the window after it, which it opens, and counted as late
    assert (late["window_start"], late["list"], late["late"]) == (first["window_end"], [3], 1)
    feed.end()
    summary = run.join()["source"]
    assert [w["list"] for w in sink.windows()] == [[0, 1, 2], [3]]  # 4 events, 4 counted, once each
    assert (summary["events"], summary["windows_on_time"]) == (4, 2)


def test_a_window_closes_on_time_while_other_events_keep_the_run_busy():
    """Heartbeats every 50 ms never reach the window (a switch routes them away): it still closes on time."""
    from kailash.nodes.logic.operations import SwitchNode

    feed, sink = Feed(), Sink()
    wf = Workflow("busy")
    wf.add_node("source", EventStreamNode(stream_url=feed.url))
    wf.add_node("switch", SwitchNode(condition="kind", outputs=["reading"]))
    wf.add_node("window", WindowNode(duration=WIDTH, field="v", aggregates=["sum"]))
    wf.add_node("sink", PythonCodeNode(code="record(result); result = 1"))
    wf.connect("source", "switch")
    wf.connect("switch", "window", mapping={"reading": "data"})
    wf.connect("window", "sink", mapping={"result": "result"})
    run = local(wf, sink)
    assert feed.connected.wait(10)
    early_in_a_window()
    feed.send(kind="reading", v=2)
    feed.send(kind="reading", v=3)
    deadline = time.monotonic() + 10
    while not sink.got and time.monotonic() < deadline:
        feed.send(kind="heartbeat", v=0)
        time.sleep(0.05)
    assert sink.got and run.alive()
    when, window = sink.got[0]
    check_on_time(when, window)
    assert window["sum"] == 5
    feed.end()
    summary = run.join()["source"]
    assert [w["sum"] for w in sink.windows()] == [5] and summary["windows_on_time"] == 1
    assert summary["events"] > 2  # the heartbeats kept coming


def test_a_window_that_fails_downstream_when_closed_on_time_is_dead_lettered(tmp_path: Path):
    feed, sink, dead = Feed(), Sink(), tmp_path / "dead.jsonl"
    wf = windowed(EventStreamNode(stream_url=feed.url), WindowNode(duration=WIDTH, field="v", aggregates=["sum"]),
                  code="record(result); result = 1 // 0")
    run = local(wf, sink, on_event_error="dead_letter", dead_letter=str(dead))
    assert feed.connected.wait(10)
    early_in_a_window()
    feed.send(v=4)
    feed.send(v=5)
    sink.wait(1)
    deadline = time.monotonic() + 10
    while not (dead.exists() and dead.read_text().strip()):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert run.alive()  # the run goes on
    feed.end()
    summary = run.join()["source"]
    record = json.loads(dead.read_text())
    assert record["node_id"] == "sink" and "ZeroDivisionError" in record["error"]
    assert record["event"]["event_type"] == "window_closed" and record["event"]["data"]["sum"] == 9
    assert (summary["failures"], summary["dead_lettered"], summary["windows_on_time"]) == (1, 1, 1)


def test_a_window_that_fails_downstream_when_closed_on_time_fails_the_open_stream():
    feed, sink = Feed(), Sink()
    wf = windowed(EventStreamNode(stream_url=feed.url), WindowNode(duration=WIDTH),
                  code="record(result); result = 1 // 0")
    run = local(wf, sink)
    assert feed.connected.wait(10)
    feed.send(v=1)
    run.thread.join(10)  # the feed never ends: only the failure can stop the run
    assert not run.alive()
    assert isinstance(run.error, KailashError) and "ZeroDivisionError" in str(run.error)
    assert run.error.node_id == "sink"
    assert len(sink.got) == 1
    feed.end()


@pytest.mark.parametrize("system", ["redis", "nats", "mqtt", "amqp"])
def test_a_broker_window_closes_while_the_broker_is_quiet_and_every_event_is_acked(system: str):
    """Redis Streams (XREADGROUP blocks), NATS JetStream, MQTT, AMQP: no message wakes the run."""
    from tests.nodes.data.broker_consumer import prepare, publish, source_for

    name, sink, stop = f"ks-ticks-{uuid.uuid4().hex[:10]}", Sink(), threading.Event()
    asyncio.run(prepare(system, name))

    def source() -> Any:
        return source_for(system, name)

    wf = windowed(source(), WindowNode(duration=WIDTH, field="i", aggregates=["count", "list"]))
    run = local(wf, sink, stop=stop)
    sent = 0
    for burst in (3, 2):
        early_in_a_window()
        asyncio.run(publish(system, name, [{"i": sent + i} for i in range(burst)]))
        sent += burst
        sink.wait(1 if burst == 3 else 2)  # the source waits for messages: only the timer closes the window
        assert run.alive()
        when, window = sink.got[-1]
        check_on_time(when, window)
    stop.set()
    summary = run.join()["source"]
    assert [w["list"] for w in sink.windows()] == [[0, 1, 2], [3, 4]]
    assert (summary["events"], summary["stopped_by"], summary["windows_on_time"]) == (5, "stop", 2)
    # acknowledged: the same consumer group gets nothing again
    again = windowed(source(), WindowNode(duration=WIDTH))
    second, _ = LocalRuntime(store=None).execute(again, parameters={"sink": {"record": Sink()}},
                                                 stream={"timeout": 0.5})
    assert second["source"]["events"] == 0


def test_count_windows_and_plain_stream_runs_get_no_timer():
    feed, sink = Feed(), Sink()
    run = local(windowed(EventStreamNode(stream_url=feed.url), WindowNode(size=2)), sink)
    for i in range(3):
        feed.send(seq=i)
    feed.end()
    summary = run.join()["source"]
    assert "windows_on_time" not in summary  # no ticking stage: no ticker was built
    assert [w["count"] for w in sink.windows()] == [2, 1]
    assert not WindowNode(size=2).stream_ticks({"size": 2}) and WindowNode(duration=1).stream_ticks({"duration": 1})


def test_idle_is_checked():
    with pytest.raises(NodeConfigurationError, match="'idle' must be unset unless the window is an event-time"):
        WindowNode(duration=1, idle=0.5).execute(data=1)
    with pytest.raises(NodeConfigurationError, match="'idle' must be a number of seconds >= 0"):
        WindowNode(duration=1, timestamp_field="ts", idle=-1).execute(data={"ts": 1})
