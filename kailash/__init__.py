"""Kailash: build workflows of nodes, run them locally, in parallel or on a cluster.

Example:
    >>> from kailash import Workflow, LocalRuntime
    >>> from kailash.nodes.code.python import PythonCodeNode
    >>> wf = Workflow("demo")
    >>> _ = wf.add_node("double", PythonCodeNode(code="result = x * 2"))
    >>> results, run_id = LocalRuntime(store=None).execute(wf, parameters={"double": {"x": 21}})
    >>> results["double"]
    {'result': 42}

Names are re-exported lazily: ``import kailash`` imports almost nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kailash._lazy import lazy_exports
from kailash._version import __version__

_EXPORTS = {
    "Workflow": "kailash.workflow.graph",
    "WorkflowBuilder": "kailash.workflow.builder",
    "Connection": "kailash.workflow.graph",
    "LocalRuntime": "kailash.runtime.local",
    "Node": "kailash.nodes.base",
    "NodeParameter": "kailash.nodes.base",
    "register_node": "kailash.nodes.registry",
    "KailashError": "kailash.errors",
    "WorkflowValidationError": "kailash.errors",
    "NodeConfigurationError": "kailash.errors",
    "NodeExecutionError": "kailash.errors",
    "SecurityError": "kailash.errors",
    "SerializationError": "kailash.errors",
    "UnknownNodeTypeError": "kailash.errors",
}

if TYPE_CHECKING:  # what type checkers see; at run time each name is imported on first use
    from kailash.errors import KailashError as KailashError
    from kailash.errors import NodeConfigurationError as NodeConfigurationError
    from kailash.errors import NodeExecutionError as NodeExecutionError
    from kailash.errors import SecurityError as SecurityError
    from kailash.errors import SerializationError as SerializationError
    from kailash.errors import UnknownNodeTypeError as UnknownNodeTypeError
    from kailash.errors import WorkflowValidationError as WorkflowValidationError
    from kailash.nodes.base import Node as Node
    from kailash.nodes.base import NodeParameter as NodeParameter
    from kailash.nodes.registry import register_node as register_node
    from kailash.runtime.local import LocalRuntime as LocalRuntime
    from kailash.workflow.builder import WorkflowBuilder as WorkflowBuilder
    from kailash.workflow.graph import Connection as Connection
    from kailash.workflow.graph import Workflow as Workflow

__all__ = sorted(_EXPORTS) + ["__version__"]


__getattr__ = lazy_exports("kailash", _EXPORTS, globals())



def __dir__() -> list[str]:
    return __all__
