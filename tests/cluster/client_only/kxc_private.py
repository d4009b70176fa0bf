"""A node class only the submitting host has: a worker cannot import this module."""

from __future__ import annotations

from typing import Any

from kailash.nodes.base import Node, NodeParameter


class PrivateNode(Node):
    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"data": NodeParameter(default=None)}

    def run(self, data: Any) -> dict[str, Any]:
        return {"result": data}
