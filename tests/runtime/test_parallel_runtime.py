"""ParallelRuntime: readiness scheduling, concurrency limits, threads for sync nodes, failures."""

from __future__ import annotations

import asyncio
import threading

import pytest
from runtime_nodes import AsyncDelayNode, BoomNode, TokenNode

from kailash.errors import NodeConfigurationError, NodeExecutionError
from kailash.nodes.base import Node, NodeParameter
from kailash.nodes.base_async import AsyncNode
from kailash.nodes.code.python import PythonCodeNode
from kailash.runtime import AsyncLocalRuntime, ParallelRuntime
from kailash.runtime.store import default_store
from kailash.workflow import Workflow


class Gate(AsyncNode):
    """Waits (bounded) for a shared asyncio.Event, or sets it."""

    def __init__(self, event: asyncio.Event, *, wait: bool, **kw):
        super().__init__(**kw)
        self.event, self.wait = event, wait

    def get_parameters(self):
        return {"data": NodeParameter(default=None)}

    async def async_run(self, data=None):
        if self.wait:
            await asyncio.wait_for(self.event.wait(), 5)
        else:
            self.event.set()
        return {"result": "done"}


class Meet(Node):
    """A sync node that only finishes when ``parties`` threads reach the barrier together."""

    def __init__(self, barrier: threading.Barrier, **kw):
        super().__init__(**kw)
        self.barrier = barrier

    def run(self):
        self.barrier.wait(timeout=5)
        return {"result": threading.current_thread().name}


class Track(AsyncNode):
    """Records how many Track nodes run at the same time."""

    live = 0
    peak = 0

    async def async_run(self):
        Track.live += 1
        Track.peak = max(Track.peak, Track.live)
        await asyncio.sleep(0.02)
        Track.live -= 1
        return {"result": 1}


async def test_execute_is_awaited_and_returns_results_and_run_id():
    wf = Workflow("fan")
    for i in range(3):
        wf.add_node(f"s{i}", AsyncDelayNode(delay=0.01, tag=f"s{i}", data=i))
    results, run_id = await ParallelRuntime().execute(wf)
    assert results == {f"s{i}": {"result": {f"s{i}": i}} for i in range(3)}
    assert results.run_id == run_id
    assert default_store().get_run(run_id).runtime == "parallel"


async def test_a_node_starts_when_its_own_predecessors_are_done():
    # 'wait' (level 0) blocks until 'release' (level 1) has run: a level-by-level
    # scheduler would deadlock here; readiness scheduling runs 'release' at once.
    event = asyncio.Event()
    wf = Workflow("ready")
    wf.add_node("start", TokenNode())
    wf.add_node("release", Gate(event, wait=False))
    wf.add_node("wait", Gate(event, wait=True))
    wf.connect("start", "release", mapping={"token": "data"})
    results, _ = await ParallelRuntime().execute(wf)
    assert results["wait"] == results["release"] == {"result": "done"}


def test_sync_nodes_run_concurrently_in_the_thread_pool():
    barrier = threading.Barrier(3)
    wf = Workflow("threads")
    for i in range(3):
        wf.add_node(f"m{i}", Meet(barrier))
    runtime = ParallelRuntime(max_concurrency=3)
    results, _ = runtime.execute_sync(wf)
    names = {results[f"m{i}"]["result"] for i in range(3)}
    assert len(names) == 3 and all(n.startswith("kailash-parallel") for n in names)
    runtime.close()


def test_max_concurrency_is_honoured():
    wf = Workflow("limit")
    for i in range(8):
        wf.add_node(f"t{i}", Track())
    Track.live = Track.peak = 0
    ParallelRuntime(max_concurrency=3).execute_sync(wf)
    assert Track.peak == 3
    Track.live = Track.peak = 0
    ParallelRuntime(max_concurrency=8).execute_sync(wf)
    assert Track.peak == 8


async def test_execute_sync_works_inside_a_running_loop():
    wf = Workflow("inside")
    wf.add_node("a", AsyncDelayNode(data=1))
    results, _ = AsyncLocalRuntime().execute_sync(wf)  # bridged to a thread: no "loop already running"
    assert results["a"] == {"result": {"value": 1}}
    assert AsyncLocalRuntime is ParallelRuntime


def test_after_a_failure_no_new_node_starts_and_running_ones_finish():
    wf = Workflow("stop")
    wf.add_node("boom", BoomNode(data="x"))
    wf.add_node("slow", AsyncDelayNode(delay=0.2, data="slow"))
    wf.add_node("after_boom", PythonCodeNode(code="result = 1"))
    wf.add_node("after_slow", PythonCodeNode(code="result = 2"))
    wf.connect("boom", "after_boom")
    wf.connect("slow", "after_slow")
    with pytest.raises(NodeExecutionError, match="node 'boom' .*cannot handle 'x'") as info:
        ParallelRuntime().execute_sync(wf)
    err = info.value
    assert list(err.results) == ["slow"]  # finished (it was running), its successor never started
    record = default_store().get_run(err.run_id)
    assert record.status == "failed" and record.error_node == "boom"
    assert {(n.node_id, n.status) for n in record.nodes} == {("boom", "failed"), ("slow", "completed")}
    assert record.outputs == {"slow": {"result": {"value": "slow"}}}


def test_observers_see_every_node():
    events = []
    wf = Workflow("observed")
    wf.add_node("a", AsyncDelayNode())
    wf.add_node("b", PythonCodeNode(code="result = data"))
    wf.connect("a", "b")
    ParallelRuntime(observers=[events.append]).execute_sync(wf)
    kinds = [(e["event"], e.get("node_id")) for e in events]
    assert kinds[0] == ("run_started", None) and kinds[-1] == ("run_completed", None)
    assert kinds.index(("node_completed", "a")) < kinds.index(("node_started", "b"))


async def test_cancelling_the_run_cancels_running_nodes():
    wf = Workflow("cancel")
    wf.add_node("long", AsyncDelayNode(delay=30))
    task = asyncio.ensure_future(ParallelRuntime(store=None).execute(wf))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


@pytest.mark.parametrize("kwargs, message", [
    ({"max_concurrency": 0}, "max_concurrency must be an integer >= 1, got 0"),
    ({"max_workers": -1}, "max_workers must be an integer >= 1, got -1"),
    ({"record_outputs": "sometimes"}, "record_outputs must be 'failed', 'always' or 'never'"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(NodeConfigurationError, match=message):
        ParallelRuntime(**kwargs)
