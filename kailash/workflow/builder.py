"""WorkflowBuilder: a fluent way to describe a workflow, validated on ``build()``."""

from __future__ import annotations

from typing import Any

from kailash.workflow.graph import Workflow

__all__ = ["WorkflowBuilder"]


class WorkflowBuilder:
    """Build a workflow step by step; ``build()`` validates and returns it.

    Example:
        >>> from kailash.workflow import WorkflowBuilder
        >>> wf = (WorkflowBuilder("double")
        ...       .add_node("PythonCodeNode", "make", code="result = 21")
        ...       .add_node("PythonCodeNode", "twice", code="result = data * 2")
        ...       .connect("make", "twice")
        ...       .build())
        >>> from kailash.runtime import LocalRuntime
        >>> LocalRuntime(store=None).execute(wf)[0]["twice"]["result"]
        42
    """

    def __init__(self, name: str | None = None, description: str = "") -> None:
        self._workflow = Workflow(name, description)

    def add_node(self, node_type: Any, node_id: str, config: dict[str, Any] | None = None, **params: Any) -> WorkflowBuilder:
        """Add a node by type name, class or instance, with config as a dict and/or keywords."""
        self._workflow.add_node(node_id, node_type, **{**(config or {}), **params})
        return self

    def connect(self, source: str, target: str, port: str | None = None, *, mapping: dict[str, str] | None = None) -> WorkflowBuilder:
        self._workflow.connect(source, target, port, mapping=mapping)
        return self

    def add_connection(self, source: str, source_output: str, target: str, target_input: str) -> WorkflowBuilder:
        """Connect one named output to one named input."""
        return self.connect(source, target, mapping={source_output: target_input})

    def build(self) -> Workflow:
        """Validate (raising one error listing every problem) and return the workflow."""
        self._workflow.validate()
        return self._workflow
