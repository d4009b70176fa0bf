"""One type rule: a value fits a declared type the same way wherever it comes from."""

from __future__ import annotations

import pickle
from typing import Any, Optional

import pytest

from kailash.errors import NodeConfigurationError, WorkflowValidationError
from kailash.nodes.base import Node, NodeParameter
from kailash.nodes.code.python import PythonCodeNode
from kailash.nodes.types import compile_type_check, fits
from kailash.runtime import LocalRuntime
from kailash.security.secrets import Secret
from kailash.workflow import Workflow


class Count(Node):
    """Takes a count (int) and a ratio (float)."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"n": NodeParameter(type=int, required=True), "ratio": NodeParameter(type=float, default=1.0)}

    def run(self, n: int, ratio: float = 1.0) -> dict[str, Any]:
        return {"result": n * ratio}


def emitting(value: Any) -> Workflow:
    wf = Workflow("w")
    wf.add_node("src", PythonCodeNode(code=f"result = {value!r}"))
    wf.add_node("count", Count())
    wf.connect("src", "count", mapping={"result": "n"})
    return wf


@pytest.mark.parametrize("tp,value,ok", [
    (int, 3, True), (int, True, False), (int, 3.0, False), (int, None, True),
    (float, 2, True), (float, 2.5, True), (float, False, False),
    (bool, True, True), (bool, 1, False), (bool | int, True, True), (int | None, True, False),
    (Optional[int], False, False),  # noqa: UP045 - the typing spelling must work too
    (str, "x", True), (str, b"x", False), (list[int], [1], True),
    (list[int], (1,), False), (dict, {}, True), (Any, object(), True), (object, True, True),
    ("SomeForwardRef", 1, True), ((int, str), "a", True), ((int, str), True, False),
    (int, Secret("s"), True),
])
def test_the_rule(tp, value, ok):
    assert fits(value, tp) is ok
    check = compile_type_check(tp)
    assert (check is None or check(value)) is ok


def test_a_subclass_of_a_declared_type_fits():
    class Name(str):
        pass

    assert fits(Name("x"), str)


def test_a_compiled_check_survives_pickling():
    check = compile_type_check(int)
    again = pickle.loads(pickle.dumps(check))
    assert again(1) and not again(True) and again.expected == "int"


def test_bool_is_refused_for_an_int_directly():
    with pytest.raises(NodeConfigurationError, match="parameter 'n' expects int, got bool"):
        Count().execute(n=True)


def test_bool_is_refused_for_an_int_over_a_connection():
    # the same value must get the same answer whether given directly or by an upstream node
    with pytest.raises(NodeConfigurationError, match=r"node 'count' \(Count\): parameter 'n' expects int, got bool") as info:
        LocalRuntime(store=None).execute(emitting(True))
    assert (info.value.node_id, info.value.parameter, info.value.expected, info.value.got) == ("count", "n", "int", "bool")


def test_bool_is_refused_for_a_float_over_a_connection_too():
    wf = emitting(2)
    wf.add_node("flag", PythonCodeNode(code="result = True"))
    wf.connect("flag", "count", mapping={"result": "ratio"})
    with pytest.raises(NodeConfigurationError, match="parameter 'ratio' expects float, got bool"):
        LocalRuntime(store=None).execute(wf)


def test_an_int_arrives_over_a_connection():
    results, _ = LocalRuntime(store=None).execute(emitting(4))
    assert results["count"] == {"result": 4.0}


def test_bool_is_refused_in_runtime_parameters_and_in_config():
    wf = Workflow("w")
    wf.add_node("count", Count())
    with pytest.raises(WorkflowValidationError, match="node 'count': parameter 'n' expects int, got bool") as info:
        LocalRuntime(store=None).execute(wf, parameters={"count": {"n": True}})
    (problem,) = info.value.problems
    assert (problem.node_id, problem.parameter, problem.expected, problem.got) == ("count", "n", "int", "bool")
    wf2 = Workflow("w2")
    wf2.add_node("count", Count(n=False))
    with pytest.raises(WorkflowValidationError, match=r"node 'count' \(Count\): parameter 'n' expects int, got bool"):
        wf2.validate()
