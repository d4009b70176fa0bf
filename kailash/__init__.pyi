"""Type stub of the lazily re-exporting ``kailash/__init__.py``: the real classes behind each name."""

from kailash._version import __version__ as __version__
from kailash.errors import KailashError as KailashError
from kailash.errors import NodeConfigurationError as NodeConfigurationError
from kailash.errors import NodeExecutionError as NodeExecutionError
from kailash.errors import SecurityError as SecurityError
from kailash.errors import SerializationError as SerializationError
from kailash.errors import UnknownNodeTypeError as UnknownNodeTypeError
from kailash.errors import WorkflowValidationError as WorkflowValidationError
from kailash.nodes.base import Node as Node
from kailash.nodes.base import NodeParameter as NodeParameter
from kailash.nodes.decorators import node as node
from kailash.nodes.registry import register_node as register_node
from kailash.runtime.local import LocalRuntime as LocalRuntime
from kailash.workflow.builder import WorkflowBuilder as WorkflowBuilder
from kailash.workflow.graph import Connection as Connection
from kailash.workflow.graph import Workflow as Workflow

__all__: list[str]

def __dir__() -> list[str]: ...
