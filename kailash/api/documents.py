"""Workflow documents as the gateway sees them: checking, describing and exporting.

``check_document`` turns an uploaded document into a workflow and gathers *every*
problem (unknown node types, bad config, bad connections, cycles) instead of stopping
at the first. ``describe_workflow`` gives the graph and the parameter schema the
REST API and OpenAPI show; ``python_source`` writes a workflow as Python. Nothing
here runs a workflow or touches storage.
"""

from __future__ import annotations

import re
from typing import Any

from kailash.errors import KailashError, Problem, SerializationError, WorkflowValidationError

__all__ = ["check_document", "problem", "describe_workflow", "parameters_schema", "json_schema_for",
           "python_source", "env_references", "NAME_PATTERN"]

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def problem(message: str | Problem, node_id: str | None = None, parameter: str | None = None, *,
            expected: str | None = None, got: str | None = None) -> dict[str, Any]:
    """One problem as the gateway sends it: ``{"message", "node_id", "parameter", "expected", "got"}``.

    ``message`` may be a :class:`~kailash.errors.Problem`, whose fields are used as they are;
    nothing is read back out of the wording.
    """
    if isinstance(message, Problem):
        return message.to_dict()
    return Problem(node_id=node_id, parameter=parameter, expected=expected, got=got, message=message).to_dict()


def _split(exc: KailashError) -> list[dict[str, Any]]:
    if isinstance(exc, WorkflowValidationError):
        return [problem(p) for p in exc.problems]
    lines = str(exc).split("\n  - ")
    if len(lines) == 1:
        return [problem(lines[0], exc.node_id, exc.parameter, expected=_text(exc.expected), got=_text(exc.got))]
    return [problem(line, exc.node_id) for line in lines[1:]]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def env_references(value: Any, path: str = "") -> list[str]:
    """``${NAME}`` references anywhere in ``value`` (they resolve from the server's environment)."""
    found: list[str] = []
    if isinstance(value, str):
        m = _ENV_REF.match(value)
        if m:
            found.append(m.group(1))
    elif isinstance(value, dict):
        for v in value.values():
            found += env_references(v)
    elif isinstance(value, list):
        for v in value:
            found += env_references(v)
    return found


def check_document(document: Any, *, allow_env: bool = True, scope: Any = None) -> tuple[Any, list[dict[str, Any]]]:
    """Build a workflow from ``document``; return ``(workflow or None, every problem)``.

    Args:
        document: the ``Workflow.to_dict()`` form.
        allow_env: whether ``${ENV}`` references may be used (tenants may not read the
            server's environment).
        scope: the uploading tenant's :class:`~kailash.nodes.capabilities.TenantScope`:
            the document is built as that tenant (files inside its directory) and every
            node needing a capability it lacks is a problem.
    """
    if scope is None:
        return _check_document(document, allow_env=allow_env)
    from kailash.nodes.capabilities import tenant_scope, workflow_problems
    from kailash.security.config import SecurityConfig, security_context

    # files opened while building (a WorkflowNode's workflow_path) open through the tenant's directory only
    with tenant_scope(scope), security_context(SecurityConfig(allowed_directories=[scope.files_dir])):
        workflow, problems = _check_document(document, allow_env=False)
        if workflow is not None:
            try:
                found = workflow_problems(workflow, scope.capabilities, tenant_id=scope.tenant_id)
            except KailashError as exc:
                found = [str(exc)]
            problems = [problem(p) for p in found]
    return (None if problems else workflow), problems


def _check_document(document: Any, *, allow_env: bool) -> tuple[Any, list[dict[str, Any]]]:
    from kailash.nodes.registry import get_node_class
    from kailash.workflow.graph import Workflow

    if not isinstance(document, dict):
        return None, [problem(f"a workflow must be a mapping with 'nodes' and 'connections', "
                              f"got {type(document).__name__}")]
    problems: list[dict[str, Any]] = []
    if not allow_env:
        for n in document.get("nodes") or []:
            if isinstance(n, dict):
                for name in env_references(n.get("config")):
                    problems.append(problem(f"node '{n.get('id')}': config refers to environment variable "
                                            f"${{{name}}}; tenants cannot read the server's environment — "
                                            "pass the value as a run parameter instead", n.get("id")))
    try:
        workflow = Workflow.from_dict(document)
    except KailashError as exc:
        if problems and type(exc).__name__ == "SecurityError":  # the ${ENV} refusal, already listed above
            return None, problems
        problems += _lenient(document, get_node_class, Workflow) or _split(exc)
        return None, problems
    except Exception as exc:  # a malformed document must not become a 500
        return None, problems + [problem(f"cannot read workflow: {type(exc).__name__}: {exc}")]
    try:
        workflow.compile()
    except KailashError as exc:
        problems += _split(exc)
    return (None if problems else workflow), problems


def _lenient(document: dict[str, Any], get_node_class: Any, workflow_cls: Any) -> list[dict[str, Any]]:
    """Load what can be loaded and validate it, so one upload reports every problem at once."""
    problems: list[dict[str, Any]] = []
    nodes = document.get("nodes", [])
    if isinstance(nodes, dict):
        nodes = [{"id": k, **v} if isinstance(v, dict) else {"id": k} for k, v in nodes.items()]
    if not isinstance(nodes, list):
        return [problem("'nodes' must be a list of {id, type, config}", parameter="nodes")]
    wf = workflow_cls(name=str(document.get("name") or "workflow"))
    broken: set[str] = set()
    for i, spec in enumerate(nodes):
        if not isinstance(spec, dict) or "id" not in spec or "type" not in spec:
            problems.append(problem(f"nodes[{i}] must be a mapping with 'id' and 'type'"))
            continue
        node_id = str(spec["id"])
        config = spec.get("config") or {}
        if not isinstance(config, dict):
            problems.append(problem(f"node '{node_id}': config must be a mapping", node_id))
            broken.add(node_id)
            continue
        try:
            cls = get_node_class(str(spec["type"]))
            wf.add_node(node_id, cls(config=dict(config), name=node_id))
        except KailashError as exc:
            text = str(exc)
            problems.append(problem(text if text.startswith(f"node '{node_id}'") else f"node '{node_id}': {text}",
                                    node_id, exc.parameter, expected=_text(exc.expected), got=_text(exc.got)))
            broken.add(node_id)
    connections = document.get("connections") or []
    if not isinstance(connections, list):
        problems.append(problem("'connections' must be a list of {from, to}", parameter="connections"))
        connections = []
    for i, c in enumerate(connections):
        if not isinstance(c, dict) or "from" not in c or "to" not in c:
            problems.append(problem(f"connections[{i}] must be a mapping with 'from' and 'to'"))
            continue
        if str(c["from"]) in broken or str(c["to"]) in broken:
            continue  # already reported on the node itself
        try:
            wf.connect(str(c["from"]), str(c["to"]), c.get("output_key", c.get("port")), mapping=c.get("mapping"))
        except KailashError as exc:
            problems += _split(exc)
    try:
        wf.compile()
    except KailashError as exc:
        problems += _split(exc)
    return problems


# -- describing ----------------------------------------------------------------------------

_JSON_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "list": "array",
               "tuple": "array", "dict": "object", "NoneType": "null"}


def json_schema_for(type_name: str) -> dict[str, Any]:
    """A JSON schema for a parameter type as :func:`kailash.nodes.base.type_name` writes it."""
    parts = [p.strip() for p in type_name.replace("Optional[", "").rstrip("]").split("|")]
    schemas = []
    for p in parts:
        base = p.split("[")[0]
        if base in _JSON_TYPES:
            schemas.append({"type": _JSON_TYPES[base]})
        elif base in ("any", "Any", "object"):
            return {}
        else:
            schemas.append({"x-kailash-type": p})
    if len(schemas) == 1:
        return schemas[0]
    return {"anyOf": schemas}


def parameters_schema(workflow: Any) -> dict[str, Any]:
    """JSON schema of ``{"parameters": {node_id: {param: value}}}`` for ``workflow``.

    A parameter is required here when nothing in the workflow supplies it (no config,
    no default, no connection).
    """
    needed: dict[str, tuple[str, ...]] = {}
    try:
        plan = workflow.compile()
        needed = {s.id: s.static_missing for s in plan.steps if s.static_missing}
    except KailashError:
        pass
    props: dict[str, Any] = {}
    for node_id, node in workflow.nodes.items():
        try:
            params = node.parameters
        except Exception:
            params = {}
        node_props = {}
        for name, p in params.items():
            prop: dict[str, Any] = p.json_schema()  # the type, enum, range and format the node checks
            prop.setdefault("description", p.description)
            if p.secret:
                prop["writeOnly"] = True
                prop["format"] = "password"
            node_props[name] = prop
        entry: dict[str, Any] = {"type": "object", "properties": node_props,
                                 "additionalProperties": bool(getattr(node, "extra_inputs", False))}
        if needed.get(node_id):
            entry["required"] = list(needed[node_id])
        props[node_id] = entry
    schema: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": True}
    if needed:
        schema["required"] = sorted(needed)
    return schema


def describe_workflow(name: str, workflow: Any, *, source: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The graph and parameter schema of ``workflow`` as ``GET /workflows/{name}`` returns it."""
    from kailash.security.secrets import redact

    nodes = []
    for node_id, node in workflow.nodes.items():
        try:
            params = [p.to_dict() for p in node.parameters.values()]
            secret = {p["name"] for p in params if p["secret"]}
        except Exception:
            params, secret = [], set()
        config = {k: ("***" if k in secret and v is not None else v) for k, v in redact(dict(node.config)).items()}
        nodes.append({"id": node_id, "type": type(node).__name__, "config": _plain(config),
                      "parameters": params, "primary_input": _safe(node.input_name),
                      "primary_output": _safe(node.output_name)})
    try:
        definition: dict[str, Any] | None = workflow.to_dict()
        definition["name"] = name  # type: ignore[index]
    except KailashError:
        definition = None
    out = {
        "name": name,
        "description": workflow.description,
        "version": workflow.version,
        "source": source,
        "nodes": nodes,
        "connections": [c.to_dict() for c in workflow.connections],
        "parameters_schema": parameters_schema(workflow),
        "definition": definition,
    }
    out.update(extra or {})
    return out


def _safe(fn: Any) -> Any:
    try:
        return fn()
    except Exception:
        return None


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return f"<{type(value).__name__}>"


# -- exporting -----------------------------------------------------------------------------

def python_source(document: dict[str, Any]) -> str:
    """Python that rebuilds the workflow ``document`` describes and runs it.

    Example:
        >>> src = python_source({"name": "w", "nodes": [{"id": "a", "type": "PythonCodeNode",
        ...                      "config": {"code": "result = 1"}}], "connections": []})
        >>> ns = {}; exec(src.replace('if __name__ == "__main__"', "if False"), ns); ns["workflow"].nodes["a"].config
        {'code': 'result = 1'}
    """
    if not isinstance(document, dict):
        raise SerializationError("python export needs a workflow document (a mapping)")
    lines = [
        f'"""Workflow {document.get("name", "workflow")!r}, exported by Kailash."""',
        "",
        "from kailash.runtime import LocalRuntime",
        "from kailash.workflow import Workflow",
        "",
        f"workflow = Workflow({str(document.get('name') or 'workflow')!r}, "
        f"description={str(document.get('description') or '')!r})",
    ]
    for n in document.get("nodes") or []:
        config = n.get("config") or {}
        if config and all(isinstance(k, str) and k.isidentifier() and k != "name" for k in config):
            args = "".join(f",\n    {k}={_literal(v, 4)}" for k, v in config.items())
            lines.append(f"workflow.add_node({n['id']!r}, {n['type']!r}{args},\n)")
        elif config:
            lines.append(f"workflow.add_node({n['id']!r}, {n['type']!r}, **{_literal(config, 0)})")
        else:
            lines.append(f"workflow.add_node({n['id']!r}, {n['type']!r})")
    for c in document.get("connections") or []:
        port = c.get("output_key", c.get("port"))
        if c.get("mapping") is not None:
            lines.append(f"workflow.connect({c['from']!r}, {c['to']!r}, mapping={c['mapping']!r})")
        elif port is not None:
            lines.append(f"workflow.connect({c['from']!r}, {c['to']!r}, {port!r})")
        else:
            lines.append(f"workflow.connect({c['from']!r}, {c['to']!r})")
    lines += ["", 'if __name__ == "__main__":', "    results, run_id = LocalRuntime().execute(workflow)",
              "    for node_id, outputs in results.items():", "        print(node_id, outputs)", ""]
    return "\n".join(lines)


def _literal(value: Any, indent: int) -> str:
    if isinstance(value, str) and "\n" in value:
        return "(\n" + "".join(f"{' ' * (indent + 4)}{line!r}\n" for line in value.splitlines(keepends=True)) + \
            f"{' ' * indent})"
    return repr(value)
