"""Kailash: build workflows of nodes, run them locally, in parallel or on a cluster.

Example:
    >>> from kailash import Workflow, LocalRuntime
    >>> from kailash.nodes.code.python import PythonCodeNode
    >>> wf = Workflow("demo")
    >>> _ = wf.add_node("double", PythonCodeNode(code="result = x * 2"))
    >>> results, run_id = LocalRuntime(store=None).execute(wf, parameters={"double": {"x": 21}})
    >>> results["double"]
    {'result': 42}

Names are re-exported lazily: ``import kailash`` imports almost nothing. Type checkers
read ``__init__.pyi`` beside this file, which imports each name from where it lives (kept
in step with ``_EXPORTS`` by tests/test_typing.py; a stub, because the import layering
counts imports under ``TYPE_CHECKING`` too).
"""

from __future__ import annotations

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
    "node": "kailash.nodes.decorators",
    "KailashError": "kailash.errors",
    "WorkflowValidationError": "kailash.errors",
    "NodeConfigurationError": "kailash.errors",
    "NodeExecutionError": "kailash.errors",
    "SecurityError": "kailash.errors",
    "SerializationError": "kailash.errors",
    "UnknownNodeTypeError": "kailash.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


__getattr__ = lazy_exports("kailash", _EXPORTS, globals())


def __dir__() -> list[str]:
    return __all__
