"""The scheduling core itself: executors plug in, the plan stays immutable, records go through the recorder."""

from __future__ import annotations

import ast
import asyncio
import pathlib
from concurrent.futures import ThreadPoolExecutor

import pytest

import kailash
from kailash.errors import NodeExecutionError
from kailash.nodes.code.python import PythonCodeNode
from kailash.runtime.engine import RunContext, RunRecorder, new_run_id
from kailash.runtime.scheduler import (
    INLINE,
    ConcurrentExecutor,
    InlineExecutor,
    Run,
    acall_node,
    call_node,
    run_concurrent,
    run_inline,
)
from kailash.runtime.store import NodeRecord
from kailash.workflow import Workflow


def chain_and_side() -> Workflow:
    wf = Workflow("seams")
    wf.add_node("a", PythonCodeNode(code="result = x"))
    wf.add_node("b", PythonCodeNode(code="result = data * 10"))
    wf.add_node("c", PythonCodeNode(code="result = data + 1"))
    wf.add_node("side", PythonCodeNode(code="result = 'side'"))
    wf.connect("a", "b")
    wf.connect("b", "c")
    return wf


def new_run(wf: Workflow, parameters=None, **kwargs) -> Run:
    plan = wf.compile()
    run_id = new_run_id()
    return Run(plan, plan.prepare(parameters), RunContext(run_id, None), RunRecorder(plan.name, run_id, None, None, None),
               **kwargs)


class CountingExecutor:
    """A ConcurrentExecutor written outside the runtime package: threads, counting calls."""

    def __init__(self) -> None:
        self.max_concurrency = 2
        self.pool = ThreadPoolExecutor(2)
        self.calls: list[str] = []

    def start(self, step, inputs, ctx):
        self.calls.append(step.id)
        return acall_node(step, inputs, ctx, self.pool)


class LoggingInline:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def call(self, step, inputs, ctx):
        self.calls.append(step.id)
        return call_node(step, inputs, ctx)


def test_any_executor_plugs_into_the_core():
    assert isinstance(INLINE, InlineExecutor)
    concurrent = CountingExecutor()
    assert isinstance(concurrent, ConcurrentExecutor)
    got = asyncio.run(run_concurrent(new_run(chain_and_side(), {"a": {"x": 2}}), concurrent))
    assert got["c"] == {"result": 21} and list(got) == ["a", "side", "b", "c"]  # plan order
    assert sorted(concurrent.calls) == ["a", "b", "c", "side"]
    concurrent.pool.shutdown()
    inline = LoggingInline()
    got = run_inline(new_run(chain_and_side(), {"a": {"x": 2}}), inline)
    assert got["c"] == {"result": 21} and inline.calls == ["a", "side", "b", "c"]


@pytest.mark.parametrize("walk", ["inline", "concurrent"])
def test_rerunning_the_part_below_a_node_with_new_outputs(walk):
    """The seam stream processing builds on: new outputs for 'a', only what depends on it runs."""
    wf = chain_and_side()
    first = run_inline(new_run(wf, {"a": {"x": 1}}))
    plan = wf.compile()
    below = plan.descendants(["a"]) - {"a"}
    fixed = {k: v for k, v in first.items() if k not in below}
    fixed["a"] = {"result": 5}  # the event
    run = new_run(wf, {"a": {"x": 1}}, fixed=fixed, only=below)
    assert run.downstream(["a"]) == below | {"a"}
    if walk == "inline":
        got = run_inline(run)
    else:
        executor = CountingExecutor()
        got = asyncio.run(run_concurrent(run, executor))
        assert sorted(executor.calls) == ["b", "c"]  # 'side' and 'a' were not called
    assert got["b"] == {"result": 50} and got["c"] == {"result": 51} and got["side"] == {"result": "side"}


def test_a_failure_is_recorded_and_raised_with_what_finished():
    wf = chain_and_side()
    wf.add_node("bad", PythonCodeNode(code="result = 1 / 0"))
    wf.connect("b", "bad")
    run = new_run(wf, {"a": {"x": 1}})
    with pytest.raises(NodeExecutionError, match="ZeroDivisionError") as info:
        run_inline(run)
    assert info.value.node_id == "bad" and set(info.value.results) == {"a", "side", "b", "c"}
    nodes = run.recorder.nodes
    assert all(isinstance(n, NodeRecord) for n in nodes)
    assert [(n.node_id, n.status) for n in nodes][-1] == ("bad", "failed")


def test_the_plan_is_immutable():
    plan = chain_and_side().compile()
    with pytest.raises(AttributeError, match="ExecutionPlan is immutable"):
        plan.name = "other"
    with pytest.raises(AttributeError, match="ExecutionPlan is immutable"):
        plan.cache = {}  # no side tables on the plan
    with pytest.raises(AttributeError):
        plan.steps[0].gather = None  # frozen steps; gather compiled when the plan was built
    assert all(callable(s.gather) for s in plan.steps)
    assert plan.predecessors == {"a": 0, "b": 1, "c": 1, "side": 0}


def _attribute_uses(name: str) -> list[str]:
    root = pathlib.Path(kailash.__file__).parent
    found = []
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == name:
                found.append(str(path.relative_to(root)))
    return sorted(set(found))


def test_only_the_recorder_writes_node_rows_and_nothing_writes_plan_dicts():
    assert _attribute_uses("_rows") == ["runtime/engine.py"]
    assert _attribute_uses("rows") == []  # the old public list other modules appended to
    assert "plan.__dict__" not in "".join(p.read_text() for p in pathlib.Path(kailash.__file__).parent.rglob("*.py"))


def test_every_runtime_is_a_runtime(dask_client):
    from kailash.runtime import DaskRuntime, LocalRuntime, ParallelRuntime, TestRuntime
    from kailash.runtime.types import Runtime

    runtimes = [LocalRuntime(store=None), ParallelRuntime(store=None), TestRuntime(),
                DaskRuntime(client=dask_client, store=None)]
    assert all(isinstance(r, Runtime) for r in runtimes)
    assert [r.name for r in runtimes] == ["local", "parallel", "testing", "dask"]


def test_a_run_on_a_lapsed_lease_renews_it_before_its_next_node_or_stops_without_an_outcome():
    import time

    from kailash.errors import RunStoppedError
    from kailash.nodes.context import run_time_left
    from kailash.runtime.scheduler import lease_run, run_deadline

    calls: list[float] = []

    def renewed() -> None:  # the claim is still held: a fresh lease
        calls.append(time.perf_counter())
        lease_run(deadline, time.perf_counter() + 60)

    with run_deadline() as deadline:
        lease_run(deadline, time.perf_counter() - 1, renewed)  # lapsed (the process stalled past it)
        assert run_time_left() is None  # a lease is not a time limit: calls are not cut short by it
        got = run_inline(new_run(chain_and_side(), {"a": {"x": 5}}))
    assert got["c"] == {"result": 51} and len(calls) == 1  # renewed once, before the first node

    with run_deadline() as deadline:
        lease_run(deadline, time.perf_counter() - 1, lambda: None)  # not renewed (lost, or no database)
        run = new_run(chain_and_side(), {"a": {"x": 5}})
        with pytest.raises(RunStoppedError, match="before node 'a': its lease lapsed") as info:
            run_inline(run)
    assert info.value.recorded is False and run.recorder.nodes == []  # no node ran; no outcome recorded


def test_a_run_stopped_without_an_outcome_while_its_last_node_runs_records_none():
    import time
    from typing import Any

    from kailash.errors import RunStoppedError
    from kailash.nodes.base import Node, NodeParameter
    from kailash.nodes.context import RUN_DEADLINE
    from kailash.runtime.scheduler import run_deadline, stop_run

    class LastNode(Node):
        def get_parameters(self) -> dict[str, NodeParameter]:
            return {"data": NodeParameter(default=None), "lose": NodeParameter(type=bool, default=True)}

        def run(self, data: Any = None, lose: bool = True) -> dict[str, Any]:
            deadline = RUN_DEADLINE.get()
            if lose:  # its owner loses the run while it runs (a queue lease passed to another owner)
                stop_run(deadline, "another owner holds it", record=False)
            else:  # the run's time limit passes while it runs
                deadline.at = deadline.limit = time.perf_counter() - 1
            return {"result": data}

    wf = chain_and_side()
    wf.add_node("last", LastNode())
    wf.connect("c", "last")
    with run_deadline():
        run = new_run(wf, {"a": {"x": 1}})
        with pytest.raises(RunStoppedError, match="before its outcome was recorded: another owner holds it") as info:
            run_inline(run)
    assert info.value.recorded is False and info.value.results["last"] == {"result": 11}
    with run_deadline(60):  # every node ran: the run completes
        assert run_inline(new_run(wf, {"a": {"x": 1}, "last": {"lose": False}}))["last"] == {"result": 11}
