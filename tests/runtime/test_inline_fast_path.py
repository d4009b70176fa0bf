"""The inline walk's fast paths (one clock reading per node, ``node.run(value)`` for a node
whose one input is a single connected value) behave exactly as the general path does."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from kailash.errors import NodeConfigurationError
from kailash.nodes.base import Node, NodeParameter
from kailash.runtime import LocalRuntime
from kailash.workflow import Workflow
from kailash.workflow.plan import positional_take


class Source(Node):
    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"value": NodeParameter(type=object, required=False, default=1, description="what to emit")}

    def run(self, value: Any = 1) -> dict[str, Any]:
        return {"result": value}


class AddOne(Node):
    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"data": NodeParameter(type=int, default=0, description="a number")}

    def run(self, data: int = 0) -> dict[str, Any]:
        return {"result": data + 1}


class KeywordsOnly(Node):
    """Its run takes keywords only: called with the inputs dict."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"data": NodeParameter(type=int, default=0, description="a number")}

    def run(self, **inputs: Any) -> dict[str, Any]:
        return {"result": inputs["data"] * 2, "seen": sorted(inputs)}


class SecondParam(Node):
    """Its connected input is not run's first parameter."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"data": NodeParameter(type=int, default=0, description="a number"),
                "scale": NodeParameter(type=int, default=3, description="a factor")}

    def run(self, scale: int = 3, data: int = 0) -> dict[str, Any]:
        return {"result": data * scale}


def _logged(fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        return {**fn(self, *args, **kwargs), "args": len(args), "kwargs": sorted(kwargs)}

    return wrapper


class Wrapped(Node):
    """Its run is wrapped by a decorator that tells positional from keyword arguments."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"data": NodeParameter(type=int, default=0, description="a number")}

    @_logged
    def run(self, data: int = 0) -> dict[str, Any]:
        return {"result": data}


class Static(Node):
    """Its run is a staticmethod: its first parameter is not bound to the node."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"data": NodeParameter(type=int, default=0, description="a number")}

    @staticmethod
    def run(scale: int = 5, data: int = 0) -> dict[str, Any]:
        return {"result": data * scale}


def chain(*nodes: Node) -> Workflow:
    wf = Workflow("fast-path")
    wf.add_node("src", Source())
    prev = "src"
    for i, node in enumerate(nodes):
        wf.add_node(f"n{i}", node)
        wf.connect(prev, f"n{i}")
        prev = f"n{i}"
    return wf


def test_chain_of_plain_nodes_uses_the_positional_call_and_records_every_node() -> None:
    wf = chain(*(AddOne() for _ in range(20)))
    plan = wf.compile()
    assert all(t is not None for (_, _, _, _, t) in plan.inline[1:])
    results, _ = LocalRuntime(store=None).execute(wf, parameters={"src": {"value": 5}})
    assert results["n19"]["result"] == 25


def test_nodes_that_do_not_bind_the_value_first_get_keywords() -> None:
    wf = chain(KeywordsOnly(), SecondParam(), Wrapped(), Static())
    plan = wf.compile()
    assert [positional_take(plan.by_id[f"n{i}"]) for i in range(4)] == [None, None, None, None]
    results, _ = LocalRuntime(store=None).execute(wf, parameters={"src": {"value": 2}})
    assert results["n0"] == {"result": 4, "seen": ["data"]}
    assert results["n1"]["result"] == 12
    assert results["n2"] == {"result": 12, "args": 0, "kwargs": ["data"]}
    assert results["n3"]["result"] == 60


def test_a_connected_value_of_the_wrong_type_fails_naming_node_and_parameter() -> None:
    wf = chain(AddOne(), AddOne())
    with pytest.raises(NodeConfigurationError) as info:
        LocalRuntime(store=None).execute(wf, parameters={"src": {"value": "seven"}})
    assert info.value.node_id == "n0" and info.value.parameter == "data"
    assert "expects int" in str(info.value)


def test_config_and_runtime_parameters_still_win_over_the_fast_path() -> None:
    wf = chain(AddOne(), AddOne())
    runtime = LocalRuntime(store=None)
    results, _ = runtime.execute(wf, parameters={"n1": {"data": 100}})
    assert results["n0"]["result"] == 2 and results["n1"]["result"] == 101
    wf.nodes["n0"].config["data"] = 40  # config set after compiling: the connected value still wins
    results, _ = runtime.execute(wf)
    assert results["n0"]["result"] == 2


def test_recorded_node_times_are_ordered_and_positive(tmp_path: Any) -> None:
    runtime = LocalRuntime(store=tmp_path / "runs.db")
    _, run_id = runtime.execute(chain(*(AddOne() for _ in range(10))))
    nodes = runtime.get_run(run_id).nodes
    assert [n.node_id for n in nodes] == ["src"] + [f"n{i}" for i in range(10)]
    starts = [n.started_at for n in nodes]
    assert starts == sorted(starts)
    assert all(n.duration > 0 for n in nodes)
    for a, b in zip(nodes, nodes[1:]):  # one clock reading per node: a node ends where the next starts
        assert b.started_at == pytest.approx(a.started_at + a.duration, abs=1e-6)


def test_a_plan_sent_to_another_process_keeps_its_fast_path_sentinel() -> None:
    import pickle

    import cloudpickle

    from kailash.runtime.engine import RunContext, RunRecorder
    from kailash.runtime.scheduler import Run, run_inline

    wf = chain(AddOne(), AddOne())
    plan = cloudpickle.loads(cloudpickle.dumps(wf.compile()))
    assert pickle.loads(pickle.dumps(plan.MISSING)) is plan.MISSING
    plan.by_id["n1"].node.config["data"] = 5  # config: n1's take gives MISSING, gather is used
    recorder = RunRecorder(plan.name, "r-pickled", None, None, None)
    results = run_inline(Run(plan, {}, RunContext("r-pickled", None), recorder))
    assert results["n0"]["result"] == 2 and results["n1"]["result"] == 3
