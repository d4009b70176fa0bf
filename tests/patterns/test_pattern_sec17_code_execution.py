"""Seed pattern 17 (Secure Code Execution): PythonCodeNode under a SecurityConfig, via LocalRuntime.

The code really runs outside the workflow process: a runaway loop or allocation is
stopped and reported, escapes are refused, and the workflow process keeps going.
"""

from __future__ import annotations

import time

import pytest

from kailash.errors import NodeExecutionError, NodeTimeoutError, SecurityError
from kailash.nodes.code.python import PythonCodeNode
from kailash.runtime import LocalRuntime
from kailash.security import SecurityConfig, set_security_config
from kailash.security.sandbox import shutdown_sandboxes
from kailash.workflow import Workflow


@pytest.fixture(scope="module", autouse=True)
def _stop_sandboxes():
    yield
    shutdown_sandboxes()


def build(code=None, **limits):
    # --- the sample, as written --------------------------------------------------------------
    # Configure secure execution
    secure_config = SecurityConfig(
        execution_timeout=limits.get("execution_timeout", 60.0),  # 1 minute limit
        memory_limit=256 * 1024 * 1024,  # 256MB limit
        enable_audit_logging=True
    )

    # Secure code execution node
    secure_code_node = PythonCodeNode(
        code=code or """
    # User-provided code runs in sandbox
    result = sum(range(input_value))
    """,
        security_config=secure_config
    )

    workflow = Workflow("secure_computation")
    workflow.add_node("compute", secure_code_node)
    # --- end of sample ----------------------------------------------------------------------------
    return workflow


def test_sample_computes_in_the_sandbox():
    # Execute with resource monitoring
    runtime = LocalRuntime()
    results, run_id = runtime.execute(build(), parameters={
        "compute": {"input_value": 1000}
    })
    assert results["compute"]["result"] == 499500
    assert run_id


def test_the_code_runs_outside_the_workflow_process():
    # Under the sandbox the code cannot reach the host at all: os is not importable.
    with pytest.raises(SecurityError, match=r"node 'compute'.*import of 'os' is not allowed"):
        LocalRuntime().execute(build("import os\nresult = os.getpid()"), parameters={"compute": {}})


def test_a_runaway_loop_is_stopped_and_the_workflow_process_survives():
    workflow = build("while True:\n    input_value += 1", execution_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(NodeTimeoutError, match="'compute'.*execution_timeout of 1.0s") as info:
        LocalRuntime().execute(workflow, parameters={"compute": {"input_value": 0}})
    assert time.monotonic() - started < 10
    assert info.value.node_id == "compute" and info.value.run_id
    results, _ = LocalRuntime().execute(build(), parameters={"compute": {"input_value": 10}})
    assert results["compute"]["result"] == 45


def test_a_runaway_allocation_is_stopped():
    workflow = build("blocks = []\nwhile True:\n    blocks.append(bytearray(input_value))")
    with pytest.raises((SecurityError, NodeExecutionError), match="memory"):
        LocalRuntime().execute(workflow, parameters={"compute": {"input_value": 10 ** 7}})


def test_user_errors_name_the_node_and_line():
    workflow = build("\n    total = 0\n    result = input_value / total\n")
    with pytest.raises(NodeExecutionError, match=r"'compute'.*line 3.*ZeroDivisionError"):
        LocalRuntime().execute(workflow, parameters={"compute": {"input_value": 1}})


def test_state_persists_between_runs_inside_the_sandbox():
    workflow = build("if not hasattr(self, 'runs'):\n    self.runs = 0\nself.runs += 1\nresult = self.runs")
    runtime = LocalRuntime()
    counts = [runtime.execute(workflow, parameters={"compute": {}})[0]["compute"]["result"] for _ in range(3)]
    assert counts == [1, 2, 3]


def test_a_global_policy_sandboxes_every_code_node(tmp_path):
    set_security_config(SecurityConfig(allowed_directories=[str(tmp_path)], execution_timeout=10.0))
    (tmp_path / "data.txt").write_text("42")

    reading = Workflow("reads_an_allowed_file")
    reading.add_node("read", PythonCodeNode(code=f"result = int(open({str(tmp_path / 'data.txt')!r}).read())"))
    results, _ = LocalRuntime().execute(reading)
    assert results["read"]["result"] == 42

    stealing = Workflow("reads_a_host_file")
    stealing.add_node("steal", PythonCodeNode(code="result = open('/etc/hostname').read()"))
    with pytest.raises(SecurityError, match="'steal'.*refused"):
        LocalRuntime().execute(stealing)
