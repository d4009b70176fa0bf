"""What a node may touch on the host, and what a tenant's run is allowed to touch.

Every node type declares, in its class attribute ``capabilities``, the host resources
it may use (a frozenset of the names in :data:`CAPABILITIES`). A run started for a
tenant executes inside :func:`tenant_scope`; while it is active:

* :func:`workflow_problems` refuses a workflow (at upload and when a run starts, and
  for every inner workflow a :class:`~kailash.nodes.logic.workflow.WorkflowNode`
  loads) that holds a node type needing a capability the tenant was not granted, or a
  node type that declares nothing (``capabilities = None``: unknown means refused);
* the code that actually reaches the host calls :func:`require` first (starting an
  MCP stdio server, reading a provider key from the environment, resolving
  ``${ENV}``), so a value that arrives at run time through a connection is checked too.

Outside a tenant scope nothing here refuses anything. This module holds data and
checks only; it imports no node module and no runtime.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kailash.errors import SecurityError

__all__ = [
    "CAPABILITIES", "DEFAULT_TENANT_CAPABILITIES", "TenantScope", "tenant_scope", "current_tenant", "require",
    "check_capability_names", "node_needs", "workflow_problems", "refuse_env_references", "tenant_file",
]

#: Every capability name, with what it lets a node do.
CAPABILITIES: dict[str, str] = {
    "host_process": "start programs on the gateway's machine (MCP stdio servers)",
    "host_env": "read the gateway's environment (${ENV} references, provider keys and URLs from the environment)",
    "files": "read and write files (inside the tenant's own directory only)",
    "network": "open network connections (HTTP, websockets, brokers, model providers, MCP over HTTP)",
    "database": "run SQL (SQLite inside the tenant's directory; PostgreSQL as the tenant's own role)",
    "code": "run Python code (always in the sandbox)",
}

#: What a tenant gets unless its policy says otherwise: never the host's processes or environment.
DEFAULT_TENANT_CAPABILITIES = frozenset({"files", "network", "database", "code"})

_ENV_REF_PREFIX = "${"
_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")  # the same references serialization resolves


@dataclass(frozen=True, kw_only=True, slots=True)
class TenantScope:
    """Whom a run executes for, and what it may touch.

    Attributes:
        tenant_id: the tenant.
        capabilities: the capability names granted to it.
        files_dir: its own directory; every file it names resolves inside it.
        database_role: its own PostgreSQL role (``None``: no PostgreSQL for it).
        database_password: that role's password, if the server needs one.
        database_schema: its schema (the role's ``search_path``).
        run_timeout: seconds one of its runs may take (``None``: no limit); calls that block
            outside Python (a SQL statement) are bounded by it too.
    """

    tenant_id: str
    capabilities: frozenset[str]
    files_dir: str
    database_role: str | None = None
    database_password: Any = None
    database_schema: str | None = None
    run_timeout: float | None = None

    def __repr__(self) -> str:  # the password never shows
        return (f"TenantScope(tenant_id={self.tenant_id!r}, capabilities={sorted(self.capabilities)}, "
                f"database_role={self.database_role!r})")


_scope: contextvars.ContextVar[TenantScope | None] = contextvars.ContextVar("kailash_tenant", default=None)


def current_tenant() -> TenantScope | None:
    """The tenant the code running here works for, or ``None`` (the operator's own runs)."""
    return _scope.get()


@contextlib.contextmanager
def tenant_scope(scope: TenantScope) -> Iterator[TenantScope]:
    """Run the enclosed code for ``scope``'s tenant (this thread or task, and threads that copy the context)."""
    if type(scope) is not TenantScope:
        raise SecurityError(f"tenant_scope expects a TenantScope, got {type(scope).__name__}", parameter="scope")
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)


def check_capability_names(names: Any, *, parameter: str = "capabilities") -> frozenset[str]:
    """``names`` as a frozenset, or SecurityError naming the first unknown one."""
    if isinstance(names, str) or not hasattr(names, "__iter__"):
        raise SecurityError(f"{parameter} must be a list of capability names, got {type(names).__name__}",
                            parameter=parameter, expected="list[str]", got=type(names).__name__)
    out = []
    for n in names:
        if type(n) is not str or n not in CAPABILITIES:
            raise SecurityError(f"unknown capability {n!r} in {parameter} (known: {', '.join(CAPABILITIES)})",
                                parameter=parameter, expected=", ".join(CAPABILITIES), got=n)
        out.append(n)
    return frozenset(out)


def require(capability: str, *, who: str, what: str, node_id: str | None = None,
            parameter: str | None = None) -> None:
    """Refuse (SecurityError) unless no tenant is running or its policy grants ``capability``.

    Args:
        capability: the name from :data:`CAPABILITIES`.
        who: the node or component, as messages name it (``node 'x' (MCPClientNode)``).
        what: what it was about to do, for the message.
    """
    scope = _scope.get()
    if scope is None or capability in scope.capabilities:
        return
    raise SecurityError(
        f"{who}: {what} needs the '{capability}' capability, which tenant '{scope.tenant_id}' is not granted "
        f"(its capabilities: {', '.join(sorted(scope.capabilities)) or 'none'}); the operator grants it with "
        f"`kailash tenant create|set-capabilities --grant {capability}`",
        node_id=node_id, parameter=parameter, expected=f"capability '{capability}'", got=scope.tenant_id)


def node_needs(node: Any) -> frozenset[str] | None:
    """What ``node`` needs from its configuration (``None``: its type declares nothing)."""
    declared = _declared(type(node))
    if declared is None:
        return None
    narrow = getattr(node, "required_capabilities", None)
    return frozenset(narrow()) if callable(narrow) else frozenset(declared)


def _declared(cls: type) -> Any:
    """``capabilities`` as declared for ``cls``: a class outside Kailash must declare its own (a custom
    subclass of a built-in node may do more than its parent, so it inherits no declaration)."""
    for klass in cls.__mro__:
        if "capabilities" in vars(klass):
            return vars(klass)["capabilities"]
        if not klass.__module__.startswith("kailash."):
            return None
    return None


def workflow_problems(workflow: Any, capabilities: frozenset[str], *, tenant_id: str = "",
                      _depth: int = 0) -> list[str]:
    """Every node of ``workflow`` (and of inner workflows) needing more than ``capabilities``."""
    if _depth > 16:
        return [f"workflow '{workflow.name}': inner workflows are nested more than 16 levels deep"]
    problems: list[str] = []
    for node_id, node in workflow.nodes.items():
        kind = type(node).__name__
        needs = node_needs(node)
        if needs is None:
            problems.append(f"node '{node_id}' ({kind}): this node type does not declare what it touches on the "
                            "host (class attribute 'capabilities'), so tenants cannot use it")
            continue
        missing = sorted(needs - capabilities)
        if missing:
            problems.append(f"node '{node_id}' ({kind}) needs the capabilit{'y' if len(missing) == 1 else 'ies'} "
                            f"{', '.join(repr(m) for m in missing)}, which tenant '{tenant_id}' is not granted")
        inner = getattr(node, "tenant_inner_workflow", None)
        if callable(inner):
            try:
                sub = inner()
            except SecurityError as exc:
                problems.append(f"node '{node_id}' ({kind}): {exc.message}")
                continue
            if sub is not None:
                problems += [f"node '{node_id}' ({kind}) inner workflow: {p}"
                             for p in workflow_problems(sub, capabilities, tenant_id=tenant_id, _depth=_depth + 1)]
    return problems


def refuse_env_references(value: Any, *, where: str, node_id: str | None = None, parameter: str | None = None,
                          _depth: int = 0) -> None:
    """Raise SecurityError if a tenant is running and ``value`` holds a ``${NAME}`` reference anywhere."""
    scope = _scope.get()
    if scope is None or "host_env" in scope.capabilities:
        return
    name = _first_env_reference(value, 0)
    if name is not None:
        raise SecurityError(
            f"{where}: refers to environment variable ${{{name}}}; tenant '{scope.tenant_id}' cannot read the "
            "gateway's environment — pass the value itself instead",
            node_id=node_id, parameter=parameter, expected="a value, not an ${ENV} reference", got=f"${{{name}}}")


def _first_env_reference(value: Any, depth: int) -> str | None:
    if depth > 200:
        raise SecurityError("value is nested more than 200 levels", parameter="parameters")
    if type(value) is str:
        return _env_name(value)
    if isinstance(value, dict):
        items: Any = value.values()
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        return None
    for v in items:
        kind = type(v)
        if kind is str:
            found = _env_name(v)
        elif kind in (int, float, bool) or v is None:
            continue
        else:
            found = _first_env_reference(v, depth + 1)
        if found is not None:
            return found
    return None


def _env_name(text: str) -> str | None:
    """The variable a ``${NAME}`` reference names (exactly what loading would resolve), else ``None``."""
    if text.startswith(_ENV_REF_PREFIX):
        m = _ENV_REF.match(text)
        if m is not None:
            return m.group(1)
    return None


def tenant_file(path: Any, *, who: str, parameter: str, node_id: str | None = None) -> str:
    """``path`` resolved inside the running tenant's directory (unchanged outside a tenant scope).

    A relative path is taken relative to the tenant's directory. A path that leaves it
    (``..``, an absolute path elsewhere, a symbolic link out) is refused with one message
    that never says whether the host path exists.
    """
    scope = _scope.get()
    if scope is None:
        return os.fspath(path)
    if type(path) is not str:
        raise SecurityError(f"{who}: parameter '{parameter}' must be a path string", node_id=node_id,
                            parameter=parameter, expected="str", got=type(path).__name__)
    base = Path(scope.files_dir).resolve()
    if "\x00" in path:
        resolved = None
    else:
        resolved = (base / path).resolve() if not os.path.isabs(path) else Path(path).resolve()
    if resolved is None or not (resolved == base or base in resolved.parents):
        raise SecurityError(
            f"{who}: parameter '{parameter}' names '{path}', which is outside tenant '{scope.tenant_id}''s own "
            "directory; tenants may only use files inside it (use a path relative to it)",
            node_id=node_id, parameter=parameter, expected="a path inside the tenant's directory", got=path)
    return str(resolved)
