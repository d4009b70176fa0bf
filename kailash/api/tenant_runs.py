"""What a tenant's run may do: its capability scope, its security policy, and the checks before it starts.

A tenant's workflow runs under :func:`tenant_policy` (code sandboxed, files only in the
tenant's own directory) and its capability scope; :func:`check_tenant_run` refuses
parameters naming ``${ENV}`` (422) and nodes needing capabilities the tenant lacks (403)
before anything runs. The gateway's own runs are left as configured.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from kailash.api.responses import ApiError
from kailash.security.secrets import redact

__all__ = ["scope_of", "check_tenant_run", "tenant_policy", "tenant_security"]


def scope_of(workspace: Any) -> Any:
    """The capability scope of a tenant's workspace; the safe default when the workspace carries none."""
    scope = getattr(workspace, "scope", None)
    if scope is None:  # fail closed: a tenant never runs without restrictions
        from kailash.nodes.capabilities import DEFAULT_TENANT_CAPABILITIES, TenantScope
        from kailash.runtime.store import kailash_home

        files = kailash_home() / "tenant-files" / str(workspace.tenant_id)
        files.mkdir(parents=True, exist_ok=True)
        scope = TenantScope(tenant_id=str(workspace.tenant_id), capabilities=DEFAULT_TENANT_CAPABILITIES,
                            files_dir=str(files))
    return scope


def check_tenant_run(scope: Any, workflow: Any, parameters: dict[str, Any], secrets: frozenset[str]) -> None:
    """Refuse a tenant's run whose parameters name ``${ENV}`` or whose nodes need more than it is granted."""
    from kailash.errors import SecurityError
    from kailash.nodes.capabilities import refuse_env_references, tenant_scope, workflow_problems

    with tenant_scope(scope):
        try:
            refuse_env_references(parameters, where="run parameters", parameter="parameters")
        except SecurityError as exc:
            raise ApiError(422, "invalid_parameters", redact(exc.message, secrets), parameter="parameters") from None
        problems = workflow_problems(workflow, scope.capabilities, tenant_id=scope.tenant_id)
    if problems:
        from kailash.api.documents import problem

        raise ApiError(403, "capability_refused", f"tenant '{scope.tenant_id}' may not run this workflow: "
                       + "; ".join(problems), problems=[problem(p) for p in problems])


def tenant_policy(tenant_id: str, tenant: Any = None) -> Any:
    """The security policy a tenant's runs execute under.

    Code nodes run in the sandbox (no network, no file system beyond the tenant's own
    directory); file nodes may only touch ``$KAILASH_HOME/tenant-files/<tenant>``. The
    limits of a process-wide policy, if one is set, are kept, except where the tenant's
    own record (``tenant``) sets its CPU seconds or memory per sandboxed call.
    """
    from kailash.runtime.store import kailash_home
    from kailash.security.config import get_security_config
    from kailash.security.config import tenant_policy as derive

    files = kailash_home() / "tenant-files" / tenant_id
    files.mkdir(parents=True, exist_ok=True)
    overrides: dict[str, Any] = {}
    if tenant is not None and tenant.cpu_seconds is not None:  # the tenant's own limits win
        overrides["execution_timeout"] = tenant.cpu_seconds
    if tenant is not None and tenant.memory_limit is not None:
        overrides["memory_limit"] = tenant.memory_limit
    # keeps the operator's isolation and limits; a tenant policy never falls back to weaker isolation
    return derive(get_security_config(), tenant=tenant_id, allowed_directories=[str(files)], **overrides)


@contextlib.contextmanager
def tenant_security(tenant_id: str | None, workspace: Any = None) -> Iterator[None]:
    """Run a tenant's workflow under :func:`tenant_policy` and its capability scope; the gateway's own runs as configured."""
    if tenant_id is None:
        yield
        return
    from types import SimpleNamespace

    from kailash.nodes.capabilities import tenant_scope
    from kailash.security.config import security_context

    scope = scope_of(workspace if workspace is not None else SimpleNamespace(tenant_id=tenant_id))
    with security_context(tenant_policy(tenant_id, getattr(workspace, "tenant", None))), tenant_scope(scope):
        yield
