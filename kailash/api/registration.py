"""Workflows registered in code with the gateway: what registration checks and what it keeps.

:func:`registered_entry` checks a name and a workflow (the graph compiles, the
``allow_overrides`` name real protected parameters, MCP servers are registered) and
returns the :class:`RegisteredWorkflow` the gateway serves. Nothing here touches HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["RegisteredWorkflow", "registered_entry"]


@dataclass(kw_only=True)
class RegisteredWorkflow:
    """A workflow registered in code with :meth:`WorkflowGateway.register_workflow`."""

    name: str
    workflow: Any
    description: str = ""
    mcp_config: dict[str, Any] | None = None
    secrets: frozenset[str] = frozenset()
    allow_overrides: dict[str, frozenset[str]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


def registered_entry(name: str, workflow: Any, mcp_config: dict[str, Any] | None, *, description: str | None,
                     allow_overrides: dict[str, Any] | None, options: dict[str, Any]) -> RegisteredWorkflow:
    """Check ``name`` and ``workflow`` and return what the gateway keeps for them.

    Raises:
        ValueError: the name is not a URL name, or ``allow_overrides`` names no protected parameter.
        TypeError: ``workflow`` is not a Workflow.
        WorkflowValidationError: the graph is invalid (every problem listed).
    """
    from kailash.api.documents import NAME_PATTERN
    from kailash.api.overrides import parse_allowed
    from kailash.security.secrets import plain_secret_values

    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(f"register_workflow: name {name!r} must be 1-128 letters, digits, '_', '.' or '-', "
                         "starting with a letter or digit")
    if not hasattr(workflow, "compile") or not hasattr(workflow, "nodes"):
        raise TypeError(f"register_workflow('{name}', ...): expected a Workflow, got {type(workflow).__name__}")
    workflow.compile()  # raises WorkflowValidationError listing every problem
    allowed = parse_allowed(allow_overrides, workflow, where=f"register_workflow('{name}', ...)")
    parse_allowed((getattr(workflow, "metadata", None) or {}).get("allow_overrides"), workflow,
                  where=f"workflow '{name}' metadata")
    if mcp_config:
        from kailash.nodes.mcp import register_mcp_servers

        register_mcp_servers(mcp_config)
    secrets = plain_secret_values(*[n.config for n in workflow.nodes.values()])
    return RegisteredWorkflow(
        name=name, workflow=workflow, description=description if description is not None else workflow.description,
        mcp_config=dict(mcp_config) if mcp_config else None, secrets=secrets, allow_overrides=allowed,
        options=options)
