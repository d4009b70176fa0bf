"""Shared pieces of the gateway tests: keys, test nodes, workflows."""

from __future__ import annotations

import threading
from typing import Any

from kailash.nodes.base import Node, NodeParameter
from kailash.security.secrets import Secret, reveal

API_KEY = "test-key-0123456789"
HEADERS = {"X-API-Key": API_KEY}


class TokenCheckNode(Node):
    """Checks a token; fails (quoting it, as careless code does) when told to."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "token": NodeParameter(type=(str, Secret), required=True, secret=True, description="a credential"),
            "fail": NodeParameter(type=bool, default=False, description="fail on purpose"),
        }

    def run(self, token: Any, fail: bool) -> dict[str, Any]:
        if fail:
            raise ValueError(f"upstream rejected token {reveal(token)}")
        return {"length": len(reveal(token)), "token_is_secret": isinstance(token, Secret)}


class GateNode(Node):
    """Blocks until the test opens the gate (for concurrency tests)."""

    capabilities = frozenset()  # touches nothing on the host: tenants may use it
    gate = threading.Event()
    entered = threading.Semaphore(0)

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"data": NodeParameter(default=None)}

    def run(self, data: Any) -> dict[str, Any]:
        GateNode.entered.release()
        if not GateNode.gate.wait(20):
            raise TimeoutError("gate never opened")
        return {"result": "passed"}


def make_workflows() -> dict[str, Any]:
    from kailash.nodes.code.python import PythonCodeNode
    from kailash.nodes.logic.operations import SwitchNode
    from kailash.workflow import Workflow

    double = Workflow("double", description="Doubles x")
    double.add_node("make", PythonCodeNode(code="result = x * 2"))
    double.add_node("plus", PythonCodeNode(code="result = data + 1"))
    double.connect("make", "plus")

    failing = Workflow("failing")
    failing.add_node("ok", PythonCodeNode(code="result = 1"))
    failing.add_node("explode", PythonCodeNode(code="raise ValueError('the data is bad')"))
    failing.connect("ok", "explode")

    secret = Workflow("secret")
    secret.add_node("check", TokenCheckNode())

    gated = Workflow("gated")
    gated.add_node("wait", GateNode())

    routed = Workflow("routed")
    routed.add_node("src", PythonCodeNode(code="result = {'kind': 'a', 'v': 1}"))
    routed.add_node("switch", SwitchNode(condition="kind", outputs=["a", "b"]))
    routed.add_node("on_a", PythonCodeNode(code="result = 'took a'"))
    routed.add_node("on_b", PythonCodeNode(code="result = 'took b'"))
    routed.connect("src", "switch")
    routed.connect("switch", "on_a", "a")
    routed.connect("switch", "on_b", "b")
    return {"double": double, "failing": failing, "secret": secret, "gated": gated, "routed": routed}


SIMPLE_DOC = {
    "name": "hello",
    "nodes": [
        {"id": "greet", "type": "PythonCodeNode", "config": {"code": "result = 'hello ' + who"}},
        {"id": "shout", "type": "PythonCodeNode", "config": {"code": "result = data.upper()"}},
    ],
    "connections": [{"from": "greet", "to": "shout"}],
}
