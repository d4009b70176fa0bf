"""What a node gets when no runtime is calling it.

Two moments have no run: validating a workflow (a ``WorkflowNode`` checks its inner
workflow, so it must load it) and running a node on its own (``node.execute()``). For the
first, validation hands the node a :class:`WorkflowLoader` (the workflow package's
loader, see :meth:`kailash.nodes.base.Node.validate_with`). For the second, the runtime
package registers, when it is imported, how to make a fresh
:class:`~kailash.nodes.context.ExecutionContext` (:func:`provide_standalone_context`);
the dependency points down, so nodes never import a runtime. This module imports
nothing above ``nodes``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from kailash.errors import NodeConfigurationError
from kailash.nodes.context import ExecutionContext

__all__ = ["WorkflowLoader", "provide_standalone_context", "standalone_context"]


class WorkflowLoader(Protocol):
    """What validation hands a node that contains workflows: loading them, not running them."""

    def load_workflow(self, source: Any) -> Any:
        """See :meth:`kailash.nodes.context.ExecutionContext.load_workflow`."""
        ...


_standalone: Callable[[], ExecutionContext] | None = None


def provide_standalone_context(factory: Callable[[], ExecutionContext]) -> None:
    """Register how a context-needing node run on its own (``node.execute()``) gets its context.

    ``kailash.runtime`` calls this when it is imported.
    """
    global _standalone
    _standalone = factory


def standalone_context(node: str) -> ExecutionContext:
    """A fresh context for running ``node`` (how errors name it) outside any workflow.

    Raises:
        NodeConfigurationError: no runtime is loaded to run it with.
    """
    if _standalone is None:
        raise NodeConfigurationError(
            f"{node} runs a workflow, which needs a runtime: import kailash.runtime (for example "
            "`from kailash.runtime import LocalRuntime`) before calling execute(), or run it inside a workflow",
            expected="a loaded runtime",
        )
    return _standalone()
