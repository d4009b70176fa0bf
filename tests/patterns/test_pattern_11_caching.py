"""Seed pattern 11 (Caching), as written: ``expensive_computation`` is a real local
function passed in as an input; the cache lives in ``self`` between runs."""

from __future__ import annotations

from kailash.runtime import LocalRuntime
from kailash.workflow import Workflow


class Expensive:
    """A real computation that counts how often it actually runs."""

    def __init__(self):
        self.calls = 0

    def __call__(self, data):
        self.calls += 1
        return {"sum": sum(data["values"]), "n": len(data["values"])}


def build():
    # --- the sample, as written ------------------------------------------------------------------
    from kailash.nodes.code.python import PythonCodeNode

    caching_node = PythonCodeNode(
        config={
            "code": """
import hashlib
import json

# Simple in-memory cache
if not hasattr(self, '_cache'):
    self._cache = {}

# Generate cache key
cache_key = hashlib.md5(
    json.dumps(data, sort_keys=True).encode()
).hexdigest()

# Check cache
if cache_key in self._cache:
    result = self._cache[cache_key]
else:
    # Compute result
    result = expensive_computation(data)
    self._cache[cache_key] = result

# Optional: Cache eviction
if len(self._cache) > 1000:
    # Remove oldest entries
    self._cache = dict(list(self._cache.items())[-500:])
""",
            "imports": ["hashlib", "json"]
        }
    )
    # --- end of sample ---------------------------------------------------------------------------
    workflow = Workflow("cached")
    workflow.add_node("caching_node", caching_node)
    return workflow, caching_node


def test_repeated_input_is_served_from_the_cache():
    workflow, _ = build()
    compute = Expensive()
    runtime = LocalRuntime()

    def run(data):
        results, _ = runtime.execute(workflow, parameters={"caching_node": {"expensive_computation": compute, "data": data}})
        return results["caching_node"]["result"]

    assert run({"values": [1, 2, 3]}) == {"sum": 6, "n": 3}
    assert run({"values": [1, 2, 3]}) == {"sum": 6, "n": 3}
    assert compute.calls == 1
    assert run({"values": [4]}) == {"sum": 4, "n": 1}
    assert compute.calls == 2
    # key order does not matter (sort_keys)
    assert run({"values": [1, 2, 3], "tag": "x"}) == run({"tag": "x", "values": [1, 2, 3]})
    assert compute.calls == 3


def test_cache_eviction_keeps_the_newest_entries():
    workflow, node = build()
    compute = Expensive()
    runtime = LocalRuntime(store=None)
    for i in range(1001):
        runtime.execute(workflow, parameters={"caching_node": {"expensive_computation": compute, "data": {"values": [i]}}})
    assert compute.calls == 1001
    assert len(node.state._cache) == 500
    # the newest entry is still cached, the oldest is not
    runtime.execute(workflow, parameters={"caching_node": {"expensive_computation": compute, "data": {"values": [1000]}}})
    assert compute.calls == 1001
    runtime.execute(workflow, parameters={"caching_node": {"expensive_computation": compute, "data": {"values": [0]}}})
    assert compute.calls == 1002
