"""WindowNode in stream runs over the real websocket server: count and time windows, fake and real clocks."""

from __future__ import annotations

import pytest

from kailash.errors import NodeConfigurationError
from kailash.nodes.code.python import PythonCodeNode
from kailash.nodes.data.streaming import EventStreamNode
from kailash.nodes.data.windows import ManualClock, WindowNode
from kailash.runtime import LocalRuntime, ParallelRuntime
from kailash.workflow import Workflow
from tests.servers import fixtures as servers

ws_server = servers.ws_server


def windowed(url: str, window: WindowNode) -> tuple[Workflow, list[dict]]:
    """source -> window -> sink: the sink appends each aggregate it gets."""
    got: list[dict] = []
    wf = Workflow("windows")
    wf.add_node("source", EventStreamNode(stream_url=url))
    wf.add_node("window", window)
    wf.add_node("sink", PythonCodeNode(code="got.append(result); result = len(got)"))
    wf.connect("source", "window")
    wf.connect("window", "sink", mapping={"result": "result"})
    return wf, got


def run(wf: Workflow, got: list[dict]) -> dict:
    results, _ = LocalRuntime(store=None).execute(wf, parameters={"sink": {"got": got}})
    return results


def test_count_windows_emit_one_aggregate_per_window_and_flush_the_last(ws_server):
    wf, got = windowed(f"{ws_server.url}/events?count=10",
                       WindowNode(size=4, field="value", aggregates=["count", "sum", "avg", "min", "max", "list"]))
    results = run(wf, got)
    assert [(g["count"], g["sum"], g["min"], g["max"]) for g in got] == [(4, 60, 0, 30), (4, 220, 40, 70), (2, 170, 80, 90)]
    assert got[0]["avg"] == 15 and got[2]["list"] == [80, 90]
    assert results["source"]["events"] == 10
    assert results["source"]["nodes"]["sink"]["runs"] == 3  # once per window (two closed, one flushed), not per event


def test_event_time_windows_from_a_timestamp_field(ws_server):
    # value = 10 * seq serves as the event time: windows of 25 s hold values [0,25), [25,50), ...
    wf, got = windowed(f"{ws_server.url}/events?count=8",
                       WindowNode(duration=25, timestamp_field="value", aggregates=["count", "list"], field="seq"))
    run(wf, got)
    assert [(g["window_start"], g["window_end"], g["list"]) for g in got] == [
        (0, 25, [0, 1, 2]), (25, 50, [3, 4]), (50, 75, [5, 6, 7])]


class TickingClock(ManualClock):
    """Arrival time that moves 0.4 s each time it is read (one read per event)."""

    def __call__(self) -> float:
        self.now += 0.4
        return self.now


def test_count_updates_per_second_with_a_fake_clock(ws_server):
    # the three-node workflow of the issue: stream -> one-second windows -> sink
    wf, got = windowed(f"{ws_server.url}/events?count=10", WindowNode(duration=1.0, clock=TickingClock(100.0)))
    run(wf, got)
    # arrivals at 100.4, 100.8 | 101.2, 101.6 | 102.0, 102.4, 102.8 | 103.2, 103.6 | 104.0
    assert [(g["window_start"], g["count"]) for g in got] == [(100.0, 2), (101.0, 2), (102.0, 3), (103.0, 2),
                                                            (104.0, 1)]


def test_time_windows_with_real_time(ws_server):
    wf, got = windowed(f"{ws_server.url}/events?count=6&interval=0.3", WindowNode(duration=0.5))
    run(wf, got)
    assert sum(g["count"] for g in got) == 6
    assert len(got) >= 3  # 6 events over ~1.5 s of real time
    assert all(g["count"] <= 2 for g in got)
    assert [g["window_start"] for g in got] == sorted(g["window_start"] for g in got)


def test_windows_under_parallel_runtime(ws_server):
    wf, got = windowed(f"{ws_server.url}/events?count=9", WindowNode(size=3, field="seq", aggregates=["list"]))
    runtime = ParallelRuntime(store=None)
    try:
        runtime.execute_sync(wf, parameters={"sink": {"got": got}})
    finally:
        runtime.close()
    assert [g["list"] for g in got] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def test_a_failing_aggregate_names_node_and_field(ws_server):
    wf, got = windowed(f"{ws_server.url}/events?count=3", WindowNode(size=2, field="missing", aggregates=["sum"]))
    with pytest.raises(Exception, match=r"node 'window' \(WindowNode\): the event has no field 'missing'"):
        run(wf, got)


def test_window_settings_are_checked():
    with pytest.raises(NodeConfigurationError, match="'size' must be set, or 'duration' set"):
        WindowNode().execute(data=1)
    with pytest.raises(NodeConfigurationError, match="'aggregates' must be a list of count, sum"):
        WindowNode(size=2, aggregates=["median"]).execute(data=1)
    with pytest.raises(NodeConfigurationError, match="'duration' must be a positive number"):
        WindowNode(duration=0).execute(data=1)
