"""PythonCodeNode under a SecurityConfig: the sandbox through the node and LocalRuntime."""

from __future__ import annotations

import os

import pytest

from kailash.errors import NodeConfigurationError, NodeExecutionError, NodeTimeoutError, SecurityError
from kailash.nodes.code.python import PythonCodeNode
from kailash.runtime import LocalRuntime
from kailash.security import SecurityConfig, set_security_config
from kailash.workflow import Workflow

COUNTER = """
if not hasattr(self, "n"):
    self.n = 0
self.n += 1
result = self.n
"""


@pytest.fixture
def cfg(sandbox_dirs):
    allowed, _ = sandbox_dirs
    return SecurityConfig(allowed_directories=[str(allowed)], execution_timeout=5.0, memory_limit=256 * 1024 * 1024)


def test_node_execute_runs_in_the_sandbox(cfg):
    node = PythonCodeNode(name="calc", code="import math\nresult = math.factorial(x)", security_config=cfg)
    assert node.execute(x=5) == {"result": 120}
    with pytest.raises(SecurityError, match="'calc'.*import of 'os'"):
        PythonCodeNode(name="calc", code="import os", security_config=cfg).execute()


def test_the_same_node_keeps_its_state(cfg):
    node = PythonCodeNode(code=COUNTER, security_config=cfg)
    assert [node.execute()["result"] for _ in range(3)] == [1, 2, 3]


def test_a_new_node_never_sees_another_nodes_state(cfg):
    assert [PythonCodeNode(code=COUNTER, security_config=cfg).execute()["result"] for _ in range(12)] == [1] * 12


def test_errors_from_the_sandbox_name_the_workflow_node(cfg):
    workflow = Workflow("sandboxed")
    workflow.add_node("divide", PythonCodeNode(code="x = 1\nresult = x / zero", security_config=cfg))
    with pytest.raises(NodeExecutionError, match=r"'divide'.*line 2.*ZeroDivisionError") as info:
        LocalRuntime().execute(workflow, parameters={"divide": {"zero": 0}})
    assert info.value.node_id == "divide" and info.value.run_id


def test_syntax_errors_name_the_node_and_line(cfg):
    node = PythonCodeNode(name="broken", code="x = (\n", security_config=cfg)
    with pytest.raises(NodeConfigurationError, match="'broken'.*line 1"):
        node.execute()


def test_timeouts_through_the_runtime(sandbox_dirs):
    allowed, _ = sandbox_dirs
    set_security_config(SecurityConfig(allowed_directories=[str(allowed)], execution_timeout=1.0))
    workflow = Workflow("spin")
    workflow.add_node("spin", PythonCodeNode(code="while True:\n    pass"))
    with pytest.raises(NodeTimeoutError, match="'spin'"):
        LocalRuntime().execute(workflow)


def test_upstream_data_flows_into_and_out_of_the_sandbox(cfg, sandbox_dirs):
    allowed, _ = sandbox_dirs
    workflow = Workflow("flow")
    workflow.add_node("make", PythonCodeNode(code="result = [{'v': i} for i in range(5)]"))
    workflow.add_node("total", PythonCodeNode(code="result = sum(r['v'] for r in data)", security_config=cfg))
    workflow.connect("make", "total")
    results, _ = LocalRuntime().execute(workflow)
    assert results["total"]["result"] == 10
    assert os.path.isdir(allowed)


def test_a_sandbox_violation_fails_only_that_node(cfg):
    workflow = Workflow("two")
    workflow.add_node("good", PythonCodeNode(code="result = 1"))
    workflow.add_node("bad", PythonCodeNode(code="result = open('/etc/passwd').read()", security_config=cfg))
    workflow.connect("good", "bad")
    with pytest.raises(SecurityError) as info:
        LocalRuntime().execute(workflow)
    assert info.value.node_id == "bad"
    assert info.value.results["good"] == {"result": 1}
