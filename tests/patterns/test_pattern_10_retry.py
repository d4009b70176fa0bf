"""Seed pattern 10 (Retry with Backoff), as written: ``perform_operation`` is a real local
function passed in as an input. The sample's back-off sleeps (1-2 s, then 2-3 s) are
recorded instead of slept so that the suite stays fast; the delays are asserted."""

from __future__ import annotations

import time

import pytest

from kailash.errors import NodeExecutionError
from kailash.runtime import LocalRuntime
from kailash.workflow import Workflow


class Unreliable:
    """Fails the first ``failures`` calls, then doubles its input."""

    def __init__(self, failures):
        self.failures = failures
        self.calls = 0

    def __call__(self, data):
        self.calls += 1
        if self.calls <= self.failures:
            raise TimeoutError(f"attempt {self.calls} timed out")
        return data * 2


def build():
    # --- the sample, as written ------------------------------------------------------------------
    from kailash.nodes.code.python import PythonCodeNode

    retry_node = PythonCodeNode(
        config={
            "code": """
import time
import random

max_retries = 3
base_delay = 1.0

for attempt in range(max_retries):
    try:
        result = perform_operation(data)
        break
    except Exception as e:
        if attempt == max_retries - 1:
            raise

        # Exponential backoff with jitter
        delay = base_delay * (2 ** attempt) + random.uniform(0, 1)
        time.sleep(delay)
""",
            "imports": ["time", "random"]
        }
    )
    # --- end of sample ---------------------------------------------------------------------------
    workflow = Workflow("retrying_call")
    workflow.add_node("retry_node", retry_node)
    return workflow


@pytest.fixture
def sleeps(monkeypatch):
    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)
    return slept


def test_first_try_succeeds_without_waiting(sleeps):
    op = Unreliable(0)
    results, _ = LocalRuntime().execute(build(), parameters={"retry_node": {"perform_operation": op, "data": 21}})
    assert results["retry_node"] == {"result": 42}
    assert op.calls == 1 and sleeps == []


def test_two_failures_then_success_with_exponential_backoff_and_jitter(sleeps):
    op = Unreliable(2)
    results, _ = LocalRuntime().execute(build(), parameters={"retry_node": {"perform_operation": op, "data": 5}})
    assert results["retry_node"] == {"result": 10}
    assert op.calls == 3
    assert len(sleeps) == 2
    assert 1.0 <= sleeps[0] <= 2.0
    assert 2.0 <= sleeps[1] <= 3.0


def test_giving_up_re_raises_naming_the_node_and_line_and_records_the_failure(sleeps):
    op = Unreliable(3)
    runtime = LocalRuntime()
    with pytest.raises(NodeExecutionError, match=r"node 'retry_node' \(PythonCodeNode\) failed at line 10 of its code: "
                       r"TimeoutError: attempt 3 timed out\n    10 \| result = perform_operation\(data\)") as info:
        runtime.execute(build(), parameters={"retry_node": {"perform_operation": op, "data": 5}})
    assert op.calls == 3 and len(sleeps) == 2
    assert isinstance(info.value.__cause__, TimeoutError)
    record = runtime.get_run(info.value.run_id)
    assert record.status == "failed" and record.error_node == "retry_node"
