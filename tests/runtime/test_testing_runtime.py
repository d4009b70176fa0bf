"""TestRuntime: results alone, fixed outputs for named nodes, no recording by default."""

from __future__ import annotations

import pytest

from kailash.errors import NodeExecutionError, WorkflowValidationError
from kailash.nodes.base import Node, NodeParameter
from kailash.nodes.code.python import PythonCodeNode
from kailash.runtime import LocalRuntime
from kailash.runtime.testing import TestRuntime
from kailash.workflow import Workflow


class ExternalAPI(Node):
    """Stands in for a node that talks to a service; counts real calls."""

    calls = 0

    def get_parameters(self):
        return {"url": NodeParameter(type=str, required=True, description="endpoint")}

    def run(self, url):
        type(self).calls += 1
        raise ConnectionError(f"no network in tests: {url}")


def workflow():
    wf = Workflow("orders")
    wf.add_node("fetch", ExternalAPI())
    wf.add_node("paid", PythonCodeNode(code="result = [o for o in data if o['paid']]"))
    wf.add_node("count", PythonCodeNode(code="result = len(data)"))
    wf.connect("fetch", "paid", mapping={"orders": "data"})
    wf.connect("paid", "count")
    return wf


ORDERS = {"orders": [{"id": 1, "paid": True}, {"id": 2, "paid": False}, {"id": 3, "paid": True}]}


def test_returns_results_alone():
    wf = Workflow("w")
    wf.add_node("a", PythonCodeNode(code="result = 2"))
    results = TestRuntime().execute(wf)
    assert results == {"a": {"result": 2}}
    assert isinstance(results, dict)


def test_mocked_node_is_not_run_and_downstream_sees_the_fixed_outputs():
    ExternalAPI.calls = 0
    results = TestRuntime(mock_outputs={"fetch": ORDERS}).execute(workflow())
    assert ExternalAPI.calls == 0
    assert results["fetch"] == ORDERS
    assert results["paid"]["result"] == [{"id": 1, "paid": True}, {"id": 3, "paid": True}]
    assert results["count"] == {"result": 2}


def test_mocks_given_to_execute_and_by_method():
    rt = TestRuntime()
    assert rt.execute(workflow(), mock_outputs={"fetch": ORDERS})["count"] == {"result": 2}
    rt.mock("fetch", {"orders": []}).mock("paid", {"result": [1, 2, 3, 4]})
    assert rt.execute(workflow())["count"] == {"result": 4}
    assert rt.execute(workflow(), mock_outputs={"paid": {"result": []}})["count"] == {"result": 0}


def test_without_a_mock_the_real_node_runs_and_fails():
    ExternalAPI.calls = 0
    with pytest.raises(NodeExecutionError, match=r"node 'fetch' \(ExternalAPI\) failed: ConnectionError: no network in tests: https://x"):
        TestRuntime().execute(workflow(), parameters={"fetch": {"url": "https://x"}})
    assert ExternalAPI.calls == 1


def test_required_inputs_of_mocked_nodes_are_not_required():
    with pytest.raises(WorkflowValidationError, match=r"node 'fetch' \(ExternalAPI\) requires parameter 'url'"):
        TestRuntime().execute(workflow())
    assert TestRuntime(mock_outputs={"fetch": ORDERS}).execute(workflow())["count"] == {"result": 2}


def test_other_validation_problems_are_still_reported_with_mocks():
    wf = workflow()
    wf.add_node("needs", PythonCodeNode())  # no code
    with pytest.raises(WorkflowValidationError, match=r"node 'needs' \(PythonCodeNode\): parameter 'code' is required"):
        TestRuntime(mock_outputs={"fetch": ORDERS}).execute(wf)


def test_runtime_parameters_reach_unmocked_nodes():
    wf = Workflow("w")
    wf.add_node("src", PythonCodeNode(code="result = 1"))
    wf.add_node("scale", PythonCodeNode(code="result = data * k"))
    wf.connect("src", "scale")
    results = TestRuntime(mock_outputs={"src": {"result": 5}}).execute(wf, parameters={"scale": {"k": 3}})
    assert results["scale"] == {"result": 15}


def test_mocking_an_unknown_node_or_with_a_non_dict_is_an_error():
    with pytest.raises(WorkflowValidationError, match=r"TestRuntime: mock_outputs name unknown node\(s\) 'fetc' \(nodes: fetch, paid, count\)"):
        TestRuntime(mock_outputs={"fetc": ORDERS}).execute(workflow())
    with pytest.raises(WorkflowValidationError, match=r"TestRuntime: mock_outputs\['fetch'\] must be a dict of outputs, got list"):
        TestRuntime(mock_outputs={"fetch": [1]}).execute(workflow())


def test_nothing_is_recorded_unless_a_store_is_given(tmp_path):
    TestRuntime(mock_outputs={"fetch": ORDERS}).execute(workflow())
    assert LocalRuntime().list_runs() == []
    rt = TestRuntime(mock_outputs={"fetch": ORDERS}, store=str(tmp_path / "t.db"))
    results = rt.execute(workflow())
    run = rt.store.get_run(results.run_id)
    assert run.status == "completed" and run.runtime == "testing"


def test_skipped_branches_are_reported_as_with_local_runtime():
    wf = Workflow("w")
    wf.add_node("router", "SwitchNode", condition="ok")
    wf.add_node("yes", PythonCodeNode(code="result = 'y'"))
    wf.connect("router", "yes", "true")
    results = TestRuntime(mock_outputs={"router": {"false": {"ok": False}}}).execute(wf)
    assert results.skipped == ("yes",)
    assert "yes" not in results
