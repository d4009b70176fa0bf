"""Which node parameters a caller of the gateway may set when running a workflow.

A workflow served by the gateway is a program its owner wrote; a caller supplies data.
So run parameters may not replace what decides *what runs* or *what is reached*: a code
node's code, a database node's connection and SQL, the URLs requests and credentials go
to, the files read and written, the commands and MCP servers started, a sub-workflow.
This is how Prefect deployments and Dagster jobs draw the line too: a run supplies the
values the definition leaves open (flow parameters, run config within the schema),
never the code.

This applies to workflows registered in code (``register_workflow``, ``kailash serve
FILE``): those are the fixed programs, which no key can replace or delete over the API.
An uploaded workflow belongs to whoever may upload to its namespace, who could replace it
outright, so its runs are not restricted here (a tenant's runs are confined by the
tenant's policy instead).

The protected names are :data:`PROTECTED_PARAMETERS` (on every node type),
:data:`PROTECTED_BY_TYPE` (a name that is data elsewhere, such as ``query``) and a node
class's own ``protected_parameters``. A caller may still supply one when

* nothing in the workflow supplies it (a required input left open is an input the
  workflow asks for), or
* the workflow allows it: ``register_workflow(..., allow_overrides={"fetch": ["url"]})``
  or ``workflow.metadata["allow_overrides"] = {"fetch": ["url"]}`` (kept when the
  workflow is saved, so a file served with ``kailash serve`` carries it).

Nothing here runs a workflow; :func:`refuse_overrides` only reads the plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kailash.api.responses import ApiError

__all__ = ["PROTECTED_PARAMETERS", "PROTECTED_BY_TYPE", "protected_names", "parse_allowed", "workflow_allowed",
           "refuse_overrides"]

PROTECTED_PARAMETERS = frozenset({
    # what runs
    "code", "imports", "security_config", "workflow", "workflow_path", "input_mapping", "command", "stop_condition",
    # what is reached, and where data and credentials go
    "connection_string", "url", "base_url", "stream_url", "endpoint", "token_url", "server_config",
    "mcp_servers", "mcp_server", "mcp_config", "provider", "verify_ssl", "file_path",
})
PROTECTED_BY_TYPE: dict[str, frozenset[str]] = {
    "SQLDatabaseNode": frozenset({"query", "execute_many"}),
    "SwitchNode": frozenset({"outputs", "condition"}),
}


def protected_names(node: Any) -> frozenset[str]:
    """The parameters of ``node`` a run may not replace unless allowed."""
    cls = type(node)
    own = getattr(cls, "protected_parameters", ())
    extra = frozenset(n for n in own if type(n) is str) if isinstance(own, (frozenset, set, tuple, list)) else frozenset()
    by_type = frozenset().union(*(PROTECTED_BY_TYPE.get(c.__name__, frozenset()) for c in cls.__mro__))
    return PROTECTED_PARAMETERS | by_type | extra


def parse_allowed(value: Any, workflow: Any, *, where: str) -> dict[str, frozenset[str]]:
    """Check an ``allow_overrides`` mapping ``{node_id: [parameter, ...]}`` against ``workflow``.

    Raises:
        ValueError: naming every node id that is not in the workflow and every entry that
            is not a list of parameter names.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: allow_overrides must map node ids to lists of parameter names, got "
                         f"{type(value).__name__}")
    out: dict[str, frozenset[str]] = {}
    problems: list[str] = []
    for node_id, names in value.items():
        if type(node_id) is not str or node_id not in workflow.nodes:
            problems.append(f"no node {node_id!r} in workflow '{workflow.name}'")
            continue
        if isinstance(names, str) or not isinstance(names, (list, tuple, set, frozenset)) \
                or not all(type(n) is str for n in names):
            problems.append(f"node '{node_id}': expected a list of parameter names, got {type(names).__name__}")
            continue
        out[node_id] = frozenset(names)
    if problems:
        raise ValueError(f"{where}: allow_overrides: " + "; ".join(problems))
    return out


def workflow_allowed(workflow: Any, registered: Mapping[str, frozenset[str]] | None = None) -> dict[str, frozenset[str]]:
    """The overrides ``workflow`` allows: its ``metadata["allow_overrides"]`` plus the registration's."""
    metadata = getattr(workflow, "metadata", None)
    declared = metadata.get("allow_overrides") if isinstance(metadata, dict) else None
    try:
        allowed = parse_allowed(declared, workflow, where=f"workflow '{workflow.name}' metadata")
    except ValueError:
        allowed = {}  # checked at registration and upload; a bad entry allows nothing
    for node_id, names in (registered or {}).items():
        allowed[node_id] = allowed.get(node_id, frozenset()) | names
    return allowed


def refuse_overrides(workflow: Any, per_node: Mapping[str, Mapping[str, Any]],
                     allowed: Mapping[str, frozenset[str]]) -> None:
    """Raise ApiError 422 ``parameter_not_overridable`` if ``per_node`` replaces a protected parameter.

    ``per_node`` is the plan's split of the run parameters (``plan.prepare(parameters)``),
    so workflow inputs offered to entry nodes are checked like per-node values. Every
    offending node and parameter is listed at once.
    """
    from kailash.api.documents import problem

    plan = workflow.compile()
    found: list[dict[str, Any]] = []
    for node_id, values in per_node.items():
        step = plan.by_id.get(node_id)
        if step is None:
            continue
        guarded = protected_names(step.node) & set(values)
        open_inputs = set(step.static_missing)  # nothing in the workflow supplies these
        for name in sorted(guarded - open_inputs - allowed.get(node_id, frozenset())):
            found.append(problem(
                f"node '{node_id}': parameter '{name}' is fixed by the workflow and a run may not replace it; "
                f"to let callers set it, register the workflow with allow_overrides={{'{node_id}': ['{name}']}}",
                node_id, name))
        for port, inner in _inner_protected(step.node, values, 0):  # values a sub-workflow passes on
            if port not in allowed.get(node_id, frozenset()):
                found.append(problem(
                    f"node '{node_id}': input '{port}' would replace {inner} of its inner workflow, which the "
                    f"workflow fixes; to let callers set it, register the workflow with "
                    f"allow_overrides={{'{node_id}': ['{port}']}}", node_id, port))
    if found:
        first = found[0]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise ApiError(422, "parameter_not_overridable", first["message"] + more, node_id=first["node_id"],
                       parameter=first["parameter"], problems=found)


def _inner_protected(node: Any, values: Mapping[str, Any], depth: int) -> list[tuple[str, str]]:
    """``(port, "parameter 'p' of node 'n'")`` for each value a sub-workflow node would pass to a protected
    parameter of an inner node (``{"wf": {"calc.code": ...}}``, or a name an entry node takes)."""
    find_inner = getattr(node, "tenant_inner_workflow", None)
    if not callable(find_inner) or depth > 16:
        return []
    try:
        inner = find_inner()
    except Exception:  # an inner workflow that cannot load fails the run anyway
        return []
    if inner is None:
        return []
    plan = inner.compile()
    mapping = node.config.get("input_mapping")
    mapping = mapping if isinstance(mapping, Mapping) and mapping else None
    own = ("workflow", "workflow_path", "input_mapping", "output_mapping")
    ports = [p for p in values if p not in own and (mapping is None or p in mapping)]
    found: list[tuple[str, str]] = []
    for port in ports:
        target = str(mapping[port]) if mapping is not None else port
        head, dot, param = target.partition(".")
        if dot and head in plan.by_id:
            takers = [(plan.by_id[head], param)]
        else:
            takers = [(s, target) for s in plan.entries if s.accepts is None or target in s.accepts]
        for step, name in takers:
            if name in protected_names(step.node) and name not in set(step.static_missing):
                found.append((port, f"parameter '{name}' of node '{step.id}'"))
            elif _inner_protected(step.node, {name: values[port]}, depth + 1):
                found.append((port, f"a protected parameter inside node '{step.id}'"))
    return found
