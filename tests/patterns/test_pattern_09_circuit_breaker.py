"""Seed pattern 9 (Circuit Breaker), as written: ``perform_operation`` is a real local
function passed in as an input; the breaker's state lives in ``self`` between runs."""

from __future__ import annotations

from kailash.runtime import LocalRuntime
from kailash.workflow import Workflow


class FlakyService:
    """A real local operation that fails while ``down`` is set."""

    def __init__(self):
        self.down = False
        self.calls = 0

    def __call__(self, data):
        self.calls += 1
        if self.down:
            raise ConnectionError("service unavailable")
        return {"echo": data, "call": self.calls}


def build():
    # --- the sample, as written ------------------------------------------------------------------
    from kailash.nodes.code.python import PythonCodeNode

    circuit_breaker = PythonCodeNode(
        config={
            "code": """
import time

# Circuit breaker state
if not hasattr(self, '_failures'):
    self._failures = 0
    self._last_failure = 0
    self._circuit_open = False

# Check circuit state
if self._circuit_open:
    if time.time() - self._last_failure > 60:  # 1 minute timeout
        self._circuit_open = False
        self._failures = 0
    else:
        result = {"error": "Circuit breaker is open"}
        return result

try:
    # Attempt operation
    result = perform_operation(data)
    self._failures = 0
except Exception as e:
    self._failures += 1
    self._last_failure = time.time()

    if self._failures >= 5:
        self._circuit_open = True

    result = {"error": str(e), "failures": self._failures}
""",
            "imports": ["time"]
        }
    )
    # --- end of sample ---------------------------------------------------------------------------
    workflow = Workflow("guarded_call")
    workflow.add_node("circuit_breaker", circuit_breaker)
    return workflow, circuit_breaker


def test_circuit_opens_after_five_failures_and_closes_after_the_timeout():
    workflow, node = build()
    service = FlakyService()
    runtime = LocalRuntime()

    def call(data):
        results, _ = runtime.execute(workflow, parameters={"circuit_breaker": {"perform_operation": service, "data": data}})
        return results["circuit_breaker"]["result"]

    assert call("a") == {"echo": "a", "call": 1}
    service.down = True
    assert [call(i) for i in range(5)] == [{"error": "service unavailable", "failures": n} for n in range(1, 6)]
    assert service.calls == 6
    # Open: calls are refused without touching the service.
    assert call("b") == {"error": "Circuit breaker is open"}
    assert call("c") == {"error": "Circuit breaker is open"}
    assert service.calls == 6
    # A minute later the circuit closes again and the (recovered) service is called.
    service.down = False
    node.state._last_failure -= 61
    assert call("d") == {"echo": "d", "call": 7}
    assert node.state._failures == 0 and node.state._circuit_open is False


def test_a_success_resets_the_failure_count():
    workflow, node = build()
    service = FlakyService()
    runtime = LocalRuntime(store=None)
    params = {"circuit_breaker": {"perform_operation": service, "data": 1}}
    service.down = True
    for _ in range(4):
        runtime.execute(workflow, parameters=params)
    service.down = False
    runtime.execute(workflow, parameters=params)
    service.down = True
    results, _ = runtime.execute(workflow, parameters=params)
    assert results["circuit_breaker"]["result"] == {"error": "service unavailable", "failures": 1}


def test_each_breaker_node_has_its_own_state():
    first, _ = build()
    second, _ = build()
    service = FlakyService()
    service.down = True
    runtime = LocalRuntime(store=None)
    for _ in range(5):
        runtime.execute(first, parameters={"circuit_breaker": {"perform_operation": service, "data": 0}})
    opened, _ = runtime.execute(first, parameters={"circuit_breaker": {"perform_operation": service, "data": 0}})
    fresh, _ = runtime.execute(second, parameters={"circuit_breaker": {"perform_operation": service, "data": 0}})
    assert opened["circuit_breaker"]["result"] == {"error": "Circuit breaker is open"}
    assert fresh["circuit_breaker"]["result"] == {"error": "service unavailable", "failures": 1}
