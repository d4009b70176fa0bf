"""The execution context a runtime hands a node (``kailash.nodes.context.ExecutionContext``)."""

from __future__ import annotations

import pytest

from kailash.errors import NodeConfigurationError
from kailash.nodes.base import Node
from kailash.nodes.context import ExecutionContext
from kailash.runtime import LocalRuntime
from kailash.workflow import Workflow

INNER = {"name": "inner", "nodes": [{"id": "add", "type": "PythonCodeNode", "config": {"code": "result = x + 1"}}]}


class RunsInner(Node):
    """Loads and runs an inner workflow through the context alone (imports no runtime)."""

    needs_context = True

    def run(self, **inputs):
        raise AssertionError("called without a context")

    def run_in_context(self, context, /, **inputs):
        assert isinstance(context, ExecutionContext)
        inner = context.load_workflow(INNER)
        assert context.load_workflow(inner) is inner
        results = context.run_workflow(inner, {"add": {"x": 41}})
        return {"result": results["add"]["result"], "run_id": context.run_id, "node_id": context.node_id}


def test_a_node_loads_and_runs_an_inner_workflow_through_its_context():
    wf = Workflow("outer")
    wf.add_node("outer", RunsInner())
    results, run_id = LocalRuntime(store=None).execute(wf)
    assert results["outer"] == {"result": 42, "run_id": run_id, "node_id": "outer"}


def test_loading_a_missing_file_names_the_path(tmp_path):
    class Loads(RunsInner):
        def run_in_context(self, context, /, **inputs):
            return context.load_workflow(str(tmp_path / "nope.yaml"))

    wf = Workflow("outer")
    wf.add_node("outer", Loads())
    with pytest.raises(NodeConfigurationError, match=r"nope.yaml' does not exist"):
        LocalRuntime(store=None).execute(wf)
