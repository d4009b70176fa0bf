"""``@node`` and ``from_function``: parameters and outputs derived from type hints."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal, TypedDict

import pytest

from kailash.errors import NodeConfigurationError, NodeExecutionError, WorkflowValidationError
from kailash.nodes.base import NodeParameter
from kailash.nodes.decorators import from_function, node
from kailash.runtime import LocalRuntime, ParallelRuntime
from kailash.workflow import Workflow


class Stats(TypedDict):
    total: float
    count: int


@node
def deco_stats(values: list[float], scale: Annotated[float, NodeParameter(minimum=0, description="multiplier")] = 1.0,
               unit: Literal["m", "km"] = "m") -> Stats:
    """Sum and count.

    Args:
        values: the measurements
        unit: length unit
    """
    return {"total": sum(values) * scale, "count": len(values)}


@node(name="deco_fetch", output="body")
async def fetch(url: str, delay: float = 0.0) -> str:
    await asyncio.sleep(delay)
    return f"got {url}"


def test_parameters_come_from_the_signature_hints_and_docstring():
    params = deco_stats().parameters
    assert params["values"].required and params["values"].type == list[float]
    assert params["values"].description == "the measurements"
    assert params["scale"].minimum == 0 and params["scale"].description == "multiplier" and not params["scale"].required
    assert params["unit"].json_schema() == {"enum": ["m", "km"], "description": "length unit", "default": "m"}
    assert set(deco_stats().get_outputs()) == {"total", "count"}
    assert fetch().get_outputs() is not None and list(fetch().get_outputs()) == ["body"]


def test_the_node_runs_and_keeps_the_function():
    assert deco_stats().execute(values=[1.0, 2.0], scale=2.0) == {"total": 6.0, "count": 2}
    assert deco_stats.function([1.0]) == {"total": 1.0, "count": 1}


def test_hints_are_enforced_like_any_node_parameter():
    with pytest.raises(NodeConfigurationError, match=r"parameter 'values' is required"):
        deco_stats().execute()
    with pytest.raises(NodeConfigurationError, match=r"parameter 'values' expects list\[float\], got str"):
        deco_stats().execute(values="1,2")
    wf = Workflow("bad")
    wf.add_node("s", deco_stats(unit="miles", scale=-1.0))
    with pytest.raises(WorkflowValidationError) as info:
        wf.validate()
    assert {p.parameter for p in info.value.problems} == {"unit", "scale"}


def test_typed_dict_outputs_connect_by_name_and_async_functions_run_on_the_loop():
    wf = Workflow("pipeline")
    wf.add_node("stats", deco_stats(values=[1.0, 2.0, 3.0]))
    wf.add_node("total", from_function(lambda x: x * 10, name="total"))
    wf.connect("stats", "total", mapping={"total": "x"})
    results, _ = LocalRuntime(store=None).execute(wf)
    assert results["total"] == {"result": 60.0}

    wf = Workflow("async")
    wf.add_node("a", fetch(url="a", delay=0.05))
    wf.add_node("b", fetch(url="b", delay=0.05))
    results, _ = ParallelRuntime().execute_sync(wf)
    assert results["a"] == {"body": "got a"} and results["b"] == {"body": "got b"}


def test_a_decorated_node_is_registered_and_saved_workflows_load_it(tmp_path):
    wf = Workflow("saved")
    wf.add_node("s", deco_stats(values=[2.0], unit="km"))
    path = wf.save(tmp_path / "wf.yaml")
    loaded = Workflow.load(path)
    assert LocalRuntime(store=None).execute(loaded)[0]["s"] == {"total": 2.0, "count": 1}


def test_a_function_returning_the_wrong_shape_is_named():
    @node(register=False)
    def bad_shape() -> Stats:
        return [1]  # type: ignore[return-value]

    with pytest.raises(NodeExecutionError, match=r"annotated to return a TypedDict of outputs but returned list"):
        bad_shape(name="b").execute()


def test_kwargs_accept_undeclared_inputs_and_positional_only_is_refused():
    def loose(a: int, **rest: object) -> int:
        return a + len(rest)

    assert from_function(loose).execute(a=1, b=2, c=3) == {"result": 3}

    def positional(a: int, /) -> int:
        return a

    with pytest.raises(NodeConfigurationError, match=r"parameter 'a' cannot be passed by name"):
        from_function(positional)
    with pytest.raises(NodeConfigurationError, match=r"@node expects a function, got int"):
        node(3)  # type: ignore[call-overload]
