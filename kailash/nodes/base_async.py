"""AsyncNode: nodes whose work is a coroutine.

Subclasses implement ``async_run(**inputs)``. The async runtimes await it on their
event loop; ``LocalRuntime`` and direct ``execute()`` drive it to completion, so an
async node works everywhere a node does.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from abc import abstractmethod
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from kailash.errors import KailashError, NodeExecutionError
from kailash.nodes.base import Node, NodeParameter, ensure_output_dict, register_node

__all__ = ["AsyncNode", "NodeParameter", "register_node", "run_coroutine"]


def run_coroutine(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` to completion from sync code, even when an event loop is running here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    ctx = contextvars.copy_context()  # the security policy and tenant scope travel with the call
    t = threading.Thread(target=ctx.run, args=(target,), name="kailash-async-bridge")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


class AsyncNode(Node):
    """A node implemented as a coroutine.

    Example:
        >>> import asyncio
        >>> class Sleepy(AsyncNode):
        ...     def get_parameters(self):
        ...         return {"x": NodeParameter(type=int, required=True)}
        ...     async def async_run(self, x):
        ...         await asyncio.sleep(0)
        ...         return {"result": x + 1}
        >>> Sleepy().execute(x=1)
        {'result': 2}
    """

    is_async = True
    _abstract_node = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_abstract_node" not in cls.__dict__:
            cls._abstract_node = False

    if TYPE_CHECKING:
        # each node's own keyword parameters (``async def async_run(self, url: str)``): no [override]
        async_run: Callable[..., Coroutine[Any, Any, dict[str, Any]]]
    else:

        @abstractmethod
        async def async_run(self, **inputs: Any) -> dict[str, Any]:
            """Do the node's work; return a dict of named outputs."""

    def run(self, **inputs: Any) -> dict[str, Any]:
        return run_coroutine(self.async_run(**inputs))

    async def async_call(self, values: dict[str, Any], context: Any) -> dict[str, Any]:
        """The async twin of :meth:`Node.call`, used by the async runtimes."""
        try:
            out = await self.async_run(**values)
        except KailashError as exc:
            if exc.node_id is None:
                exc.node_id = self.name
            raise
        except Exception as exc:
            raise NodeExecutionError(
                f"node {self.label} ({type(self).__name__}) failed: {type(exc).__name__}: {exc}",
                node_id=self.name,
            ) from exc
        return ensure_output_dict(self, out)

    async def async_execute(self, **inputs: Any) -> dict[str, Any]:
        """Validate inputs and await the node (direct async execution)."""
        return await self.async_call(self.resolve_inputs(inputs), None)
