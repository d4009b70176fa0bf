"""Workflows: the graph (``Workflow``), the fluent ``WorkflowBuilder``, validation and files."""

from __future__ import annotations

from kailash.workflow.builder import WorkflowBuilder
from kailash.workflow.graph import Connection, Workflow

__all__ = ["Workflow", "WorkflowBuilder", "Connection"]
