"""Nodes used by the runtime tests (importable by Dask workers: their sys.path is inherited)."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

import pytest

from kailash.nodes.base import Node, NodeParameter
from kailash.nodes.base_async import AsyncNode


class TokenNode(Node):
    """Outputs a fresh random token per call, so a test can tell a rerun from a reused output."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"x": NodeParameter(default=None)}

    def run(self, x: Any = None) -> dict[str, Any]:
        return {"token": uuid.uuid4().hex, "x": x}


class FlakyNode(Node):
    """Fails its first ``failures`` calls (counted per node instance), then succeeds."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"failures": NodeParameter(type=int, default=1), "data": NodeParameter(default=None)}

    def run(self, failures: int = 1, data: Any = None) -> dict[str, Any]:
        calls = getattr(self.state, "calls", 0) + 1
        self.state.calls = calls
        if calls <= failures:
            raise ConnectionError(f"transient failure {calls}")
        return {"result": {"calls": calls, "data": data}}


class BoomNode(Node):
    """Raises ValueError unless ``ok`` is true."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"data": NodeParameter(default=None), "ok": NodeParameter(type=bool, default=False)}

    def run(self, data: Any = None, ok: bool = False) -> dict[str, Any]:
        if not ok:
            raise ValueError(f"cannot handle {data!r}")
        return {"result": data}


class ScaleNode(Node):
    """Multiplies its required ``value`` by ``factor``."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"value": NodeParameter(type=int, required=True), "factor": NodeParameter(type=int, default=2)}

    def run(self, value: int, factor: int = 2) -> dict[str, Any]:
        return {"result": value * factor}


class SlowNode(Node):
    """Sleeps in short steps for ``seconds`` (a stoppable sync node)."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"seconds": NodeParameter(type=float, default=5.0)}

    def run(self, seconds: float = 5.0) -> dict[str, Any]:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(0.02)
        return {"result": seconds}


class AsyncDelayNode(AsyncNode):
    """Awaits ``delay`` seconds, then outputs ``{tag: value}``."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "delay": NodeParameter(type=float, default=0.01),
            "tag": NodeParameter(type=str, default="value"),
            "data": NodeParameter(default=None),
        }

    async def async_run(self, delay: float = 0.01, tag: str = "value", data: Any = None) -> dict[str, Any]:
        await asyncio.sleep(delay)
        return {"result": {tag: data}}


_RUN_ID = re.compile(r"\(run [0-9a-f]{32}\)")


def outcome(fn: Any) -> tuple[str, Any, str]:
    """``(error type, node_id, message without the run id)`` of the error ``fn()`` raises."""
    with pytest.raises(Exception) as info:
        fn()
    err = info.value
    return type(err).__name__, getattr(err, "node_id", None), _RUN_ID.sub("(run …)", str(err))
