"""Node classes installed on the test workers (their PYTHONPATH holds this directory)."""

from __future__ import annotations

import os
import time
from typing import Any

from kailash.nodes.base import Node, NodeParameter


def _effect(token: str, node: str) -> None:
    """One line per execution: ``token node host pid`` (O_APPEND: whole lines from every host)."""
    path = os.environ.get("KXC_EFFECTS")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{token} {node} {os.environ.get('KXC_HOST', '?')} {os.getpid()}\n".encode())
        finally:
            os.close(fd)


class WhereNode(Node):
    """Returns the text it got, upper-cased, with the host and working directory that ran it."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"data": NodeParameter(type=str, required=True)}

    def run(self, data: str) -> dict[str, Any]:
        return {"result": {"text": data.upper(), "host": os.environ.get("KXC_HOST"), "cwd": os.getcwd()}}


class SlowNode(Node):
    """Sleeps ``delay`` s (records a side effect first); returns its index and the host."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"token": NodeParameter(type=str, default="t"), "index": NodeParameter(type=int, default=0),
                "delay": NodeParameter(type=float, default=0.2), "data": NodeParameter(default=None)}

    def run(self, token: str, index: int, delay: float, data: Any) -> dict[str, Any]:
        _effect(token, self.name)
        time.sleep(delay)
        return {"result": {"index": index, "host": os.environ.get("KXC_HOST")}}
