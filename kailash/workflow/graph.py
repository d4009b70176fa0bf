"""Workflow: a graph of nodes and the connections between them.

This module describes; it never executes. Runtimes ask :meth:`Workflow.compile` for an
immutable :class:`~kailash.workflow.plan.ExecutionPlan` (cached until the graph
changes) and run that.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kailash.errors import NodeConfigurationError, WorkflowValidationError
from kailash.nodes.base import Node

if TYPE_CHECKING:
    from kailash.workflow.plan import ExecutionPlan

__all__ = ["Workflow", "Connection"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Connection:
    """An edge from ``source`` to ``target``.

    * no ``port`` and no ``mapping``: every output of the source is offered to the
      target by name, and the source's primary output feeds the target's primary input;
    * ``port``: that named output of the source feeds the target's primary input;
    * ``mapping``: ``{source_output: target_input}`` pairs (``result.field`` reaches into
      a dict output).
    """

    source: str
    target: str
    port: str | None = None
    mapping: tuple[tuple[str, str], ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"from": self.source, "to": self.target}
        if self.port is not None:
            d["output_key"] = self.port
        if self.mapping is not None:
            d["mapping"] = dict(self.mapping)
        return d


class Workflow:
    """A graph of nodes.

    Example:
        >>> from kailash.workflow import Workflow
        >>> from kailash.nodes.code.python import PythonCodeNode
        >>> wf = Workflow("numbers")
        >>> _ = wf.add_node("make", PythonCodeNode(code="result = [1, 2, 3]"))
        >>> _ = wf.add_node("total", PythonCodeNode(code="result = sum(data)"))
        >>> wf.connect("make", "total")
        >>> from kailash.runtime import LocalRuntime
        >>> LocalRuntime(store=None).execute(wf)[0]["total"]
        {'result': 6}
    """

    def __init__(
        self,
        name: str | None = None,
        description: str = "",
        *,
        workflow_id: str | None = None,
        version: str = "1.0.0",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.name = name or "workflow"
        self.description = description
        self.workflow_id = workflow_id or self.name
        self.version = version
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.nodes: dict[str, Node] = {}
        self.connections: list[Connection] = []
        self.policies: dict[str, Any] = {}
        self._version = 0
        self._plan: ExecutionPlan | None = None

    # -- building ------------------------------------------------------------------------
    def add_node(self, node_id: Any, node: Any = None, /, **config: Any) -> Node:
        """Add a node and return the node instance.

        Accepted forms: ``add_node("id", node)``, ``add_node("id", node, **config)``
        (config merged into the node's config), ``add_node("id", NodeClass, **config)``,
        ``add_node("id", "NodeTypeName", **config)`` and ``add_node(node)`` (id = ``node.name``).
        """
        if isinstance(node_id, Node) and node is None:
            node, node_id = node_id, node_id.name
            if not node_id:
                raise WorkflowValidationError(
                    f"add_node({type(node).__name__}(...)) needs a node id: give the node a name= or call add_node('id', node)",
                    parameter="node_id", expected="a node id",
                )
        if not isinstance(node_id, str) or not node_id:
            raise WorkflowValidationError(
                f"node id must be a non-empty string, got {node_id!r}", parameter="node_id", expected="str"
            )
        if node_id in self.nodes:
            raise WorkflowValidationError(
                f"duplicate node id '{node_id}': a node with that id is already in workflow '{self.name}'",
                node_id=node_id, expected="a unique node id",
            )
        if isinstance(node, str):
            from kailash.errors import UnknownNodeTypeError
            from kailash.nodes.registry import get_node_class

            try:
                node = get_node_class(node)
            except UnknownNodeTypeError as exc:
                raise UnknownNodeTypeError(
                    f"add_node('{node_id}', '{node}'): {exc.message}", node_id=node_id, parameter="node",
                    expected=exc.expected, got=exc.got, suggestions=exc.suggestions,
                ) from None
        if isinstance(node, type):
            if not issubclass(node, Node):
                raise NodeConfigurationError(
                    f"add_node('{node_id}', {node.__name__}): {node.__name__} is not a Node subclass",
                    node_id=node_id, expected="a Node subclass",
                )
            node = node(config=config, name=node_id)
        elif isinstance(node, Node):
            if config:
                node.config.update(config)
                node._parameters = None
                node._type_checks = None
        else:
            raise NodeConfigurationError(
                f"add_node('{node_id}', ...) expects a Node instance, a Node class or a registered type name, "
                f"got {type(node).__name__}",
                node_id=node_id, expected="Node | type[Node] | str", got=type(node).__name__,
            )
        if node.name is None or node.name != node_id:
            node.name = node_id
        self.nodes[node_id] = node
        self._touch()
        return node

    def connect(
        self,
        source: str,
        target: str,
        port: str | dict[str, str] | None = None,
        *,
        mapping: dict[str, str] | None = None,
    ) -> None:
        """Connect ``source`` to ``target`` (see :class:`Connection` for the three forms).

        Problems (unknown ids, ports, parameters) are reported by :meth:`validate`,
        which every runtime calls before running any node.
        """
        if isinstance(port, dict):
            if mapping is not None:
                raise WorkflowValidationError(
                    f"connect('{source}', '{target}'): give the mapping once, positionally or as mapping=",
                    parameter="mapping",
                )
            mapping, port = port, None
        if isinstance(source, Node):
            source = source.name  # type: ignore[assignment]
        if isinstance(target, Node):
            target = target.name  # type: ignore[assignment]
        if mapping is not None and not isinstance(mapping, dict):
            raise WorkflowValidationError(
                f"connect('{source}', '{target}'): mapping must be a dict of output -> input names, "
                f"got {type(mapping).__name__}",
                parameter="mapping", expected="dict[str, str]",
            )
        if mapping is not None and (port is not None):
            raise WorkflowValidationError(
                f"connect('{source}', '{target}'): give either a port or a mapping, not both", parameter="port"
            )
        pairs = tuple((str(k), str(v)) for k, v in mapping.items()) if mapping is not None else None
        self.connections.append(Connection(source=source, target=target, port=port, mapping=pairs))
        self._touch()

    def remove_node(self, node_id: str) -> None:
        """Remove a node and every connection touching it."""
        if node_id not in self.nodes:
            raise WorkflowValidationError(f"no node '{node_id}' to remove", node_id=node_id)
        del self.nodes[node_id]
        self.connections = [c for c in self.connections if node_id not in (c.source, c.target)]
        self.policies.pop(node_id, None)
        self._touch()

    def set_policy(
        self,
        node_id: str,
        *,
        retries: int = 0,
        backoff: float = 0.5,
        max_backoff: float = 60.0,
        jitter: bool = True,
        timeout: float | None = None,
        circuit_breaker: Any = None,
        cache_ttl: float | None = None,
    ) -> Any:
        """Set the failure policy of ``node_id`` (replacing any earlier one) and return it.

        Args:
            retries: extra attempts after a failure, waiting ``backoff * 2**(n-1)`` seconds
                (at most ``max_backoff``; randomised by ``jitter``) after failed attempt ``n``.
            timeout: seconds one attempt may take; a late node is stopped and reported
                with :class:`~kailash.errors.NodeTimeoutError`.
            circuit_breaker: ``True``, a failure count, ``{"failure_threshold": n,
                "reset_timeout": s}`` or a shared :class:`~kailash.workflow.policies.CircuitBreaker`;
                its state is shared by every run of this workflow in this process.
            cache_ttl: reuse the node's outputs for identical inputs for this many seconds.

        With no options the node's policy is removed. Every runtime honours the policy.
        See :mod:`kailash.workflow.policies`.
        """
        from kailash.workflow.policies import make_policy

        if node_id not in self.nodes:
            import difflib

            close = difflib.get_close_matches(str(node_id), list(self.nodes), n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise WorkflowValidationError(
                f"set_policy: no node '{node_id}' in workflow '{self.name}' "
                f"(nodes: {', '.join(self.nodes) or 'none'}){hint}",
                node_id=node_id, parameter="node_id", expected="an existing node id",
            )
        policy = make_policy(node_id, retries=retries, backoff=backoff, max_backoff=max_backoff, jitter=jitter,
                             timeout=timeout, circuit_breaker=circuit_breaker, cache_ttl=cache_ttl)
        if policy is None:
            self.policies.pop(node_id, None)
        else:
            self.policies[node_id] = policy
        self._touch()
        return policy

    def _touch(self) -> None:
        self._version += 1
        self._plan = None

    # -- checking and compiling ------------------------------------------------------------
    def compile(self) -> ExecutionPlan:
        """The validated, immutable execution plan (cached until the graph changes)."""
        plan = self._plan
        if plan is None or plan.version != self._version:
            from kailash.workflow.validation import compile_workflow

            plan = compile_workflow(self)
            self._plan = plan
        return plan

    def validate(self, parameters: dict[str, Any] | None = None, *, require_inputs: bool | None = None) -> None:
        """Check the whole graph; raise one :class:`WorkflowValidationError` listing every problem.

        With ``parameters`` (or ``require_inputs=True``), required inputs that nothing
        supplies are problems too; without, they may still come at run time. A node whose
        optional dependency is not installed (``pip install 'kailash[EXTRA]'``) is a problem
        naming the node and the extra (:mod:`kailash.nodes.extras`).
        """
        from kailash.nodes.extras import missing_extras

        plan = self.compile()
        missing = missing_extras(self.nodes)
        if missing:
            raise WorkflowValidationError.listing(f"workflow '{self.name}' needs extras that are not installed",
                                                  missing)
        if require_inputs or parameters is not None:
            plan.prepare(parameters or {})

    # -- views -----------------------------------------------------------------------------
    def get_node(self, node_id: str) -> Node:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise WorkflowValidationError(f"no node '{node_id}' in workflow '{self.name}'", node_id=node_id) from None

    def successors(self, node_id: str) -> list[str]:
        return [c.target for c in self.connections if c.source == node_id]

    def predecessors(self, node_id: str) -> list[str]:
        return [c.source for c in self.connections if c.target == node_id]

    def __repr__(self) -> str:
        return f"Workflow(name={self.name!r}, nodes={len(self.nodes)}, connections={len(self.connections)})"

    # -- serialization -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The workflow as plain data (secrets as references); see :mod:`kailash.workflow.serialization`."""
        from kailash.workflow.serialization import workflow_to_dict

        return workflow_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Workflow:
        """Build a workflow from :meth:`to_dict` output (unknown node types are refused)."""
        from kailash.workflow.serialization import workflow_from_dict

        return workflow_from_dict(data)

    def save(self, path: str | os.PathLike[str], format: str | None = None) -> Path:
        """Write the workflow as YAML or JSON (by ``format`` or the file extension)."""
        from kailash.workflow.serialization import save_workflow

        return save_workflow(self, path, format)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Workflow:
        """Read a workflow saved with :meth:`save` (safe YAML, never executes anything)."""
        from kailash.workflow.serialization import load_workflow

        return load_workflow(path)
