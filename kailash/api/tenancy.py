"""Tenants: who they are, their API keys, their limits and their workspaces.

A tenant has an id, a storage namespace (a PostgreSQL schema, or a directory of
SQLite files), optional Redis database for its rate-limit counters, limits (max
concurrent runs, requests per minute) and API keys. Keys are shown once at creation
and stored only as SHA-256 digests. The gateway maps a request's key to its tenant
and hands it that tenant's :class:`~kailash.api.storage.Workspace` only, so one
tenant cannot reach another's workflows or runs. This module does no HTTP.

Example:
    >>> import tempfile
    >>> registry = TenantRegistry(home=tempfile.mkdtemp())
    >>> tenant, key = registry.create_tenant("acme-corp", database_schema="acme", redis_db=2)
    >>> registry.authenticate_key(key).tenant_id
    'acme-corp'
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kailash.api.middleware import Principal, key_digest
from kailash.api.storage import SQLiteTenantBackend, Storage, Workspace, open_storage
from kailash.api.tenant_hosts import normalise_domain
from kailash.errors import TenantError
from kailash.nodes.capabilities import (
    CAPABILITIES,
    DEFAULT_TENANT_CAPABILITIES,
    TenantScope,
    check_capability_names,
)
from kailash.security.secrets import Secret

__all__ = ["Tenant", "TenantError", "TenantRegistry", "SQLiteTenantBackend", "create_tenant", "tenant_scope_of",
           "tenant_files_dir", "CAPABILITIES"]

_TENANT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True, kw_only=True, slots=True)
class Tenant:
    """One tenant.

    Attributes:
        tenant_id: the tenant's id (``acme-corp``).
        database_schema: its storage namespace (PostgreSQL schema / SQLite directory).
        redis_db: the Redis database for its counters, if any.
        domain: the only host name it is served under, if any.
        max_concurrent_runs: at most this many of its runs at once (``None``: no limit).
        requests_per_minute: at most this many of its requests per minute (``None``: no limit).
        created_at: creation time (Unix seconds).
        metadata: free-form extra data.
        capabilities: what its nodes may touch (:mod:`kailash.nodes.capabilities`).
        cpu_seconds: CPU (and wall-clock) seconds per sandboxed code call (``None``: the gateway's).
        memory_limit: bytes per sandboxed code call (``None``: the gateway's).
        run_timeout: seconds one of its runs may take (``None``: no limit).
        database_role: its PostgreSQL login role (PostgreSQL storage only).
        database_password: that role's password (never shown).
    """

    tenant_id: str
    database_schema: str
    redis_db: int | None = None
    domain: str | None = None
    max_concurrent_runs: int | None = None
    requests_per_minute: int | None = None
    created_at: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)
    capabilities: frozenset[str] = DEFAULT_TENANT_CAPABILITIES
    cpu_seconds: float | None = None
    memory_limit: int | None = None
    run_timeout: float | None = None
    database_role: str | None = None
    database_password: str | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The tenant for display (never the database role's password)."""
        return {"tenant_id": self.tenant_id, "database_schema": self.database_schema, "redis_db": self.redis_db,
                "domain": self.domain, "max_concurrent_runs": self.max_concurrent_runs,
                "requests_per_minute": self.requests_per_minute, "created_at": self.created_at,
                "metadata": self.metadata, "capabilities": sorted(self.capabilities),
                "cpu_seconds": self.cpu_seconds, "memory_limit": self.memory_limit,
                "run_timeout": self.run_timeout, "database_role": self.database_role}

    def policy(self) -> dict[str, Any]:
        """The stored policy column: capabilities, sandbox and run limits, database role."""
        return {"capabilities": sorted(self.capabilities), "cpu_seconds": self.cpu_seconds,
                "memory_limit": self.memory_limit, "run_timeout": self.run_timeout,
                "database_role": self.database_role, "database_password": self.database_password}

    def _row(self) -> tuple[Any, ...]:
        return (self.tenant_id, self.database_schema, self.redis_db, self.domain, self.max_concurrent_runs,
                self.requests_per_minute, self.created_at, self.metadata or None, self.policy())


def _tenant(row: tuple[Any, ...] | None) -> Tenant | None:
    if row is None:
        return None
    meta, policy = row[7], row[8] if len(row) > 8 else None
    if isinstance(meta, str):
        meta = json.loads(meta)
    if isinstance(policy, str):
        policy = json.loads(policy)
    policy = policy or {}
    caps = policy.get("capabilities")  # a registry row from before capabilities existed gets the safe default
    return Tenant(tenant_id=row[0], database_schema=row[1], redis_db=row[2], domain=row[3],
                  max_concurrent_runs=row[4], requests_per_minute=row[5], created_at=row[6], metadata=meta or {},
                  capabilities=DEFAULT_TENANT_CAPABILITIES if caps is None else check_capability_names(caps),
                  cpu_seconds=policy.get("cpu_seconds"), memory_limit=policy.get("memory_limit"),
                  run_timeout=policy.get("run_timeout"), database_role=policy.get("database_role"),
                  database_password=policy.get("database_password"))


def tenant_files_dir(tenant_id: str) -> Path:
    """A tenant's own directory, ``$KAILASH_HOME/tenant-files/<tenant>`` (created on first use)."""
    from kailash.runtime.store import kailash_home

    path = kailash_home() / "tenant-files" / tenant_id
    path.mkdir(parents=True, exist_ok=True)
    return path


def tenant_scope_of(tenant: Tenant) -> TenantScope:
    """What the tenant's runs may touch (:mod:`kailash.nodes.capabilities`)."""
    return TenantScope(tenant_id=tenant.tenant_id, capabilities=tenant.capabilities,
                       files_dir=str(tenant_files_dir(tenant.tenant_id)), database_role=tenant.database_role,
                       database_password=Secret(tenant.database_password) if tenant.database_password else None,
                       database_schema=tenant.database_schema if tenant.database_role else None,
                       run_timeout=tenant.run_timeout)


def _positive(name: str, value: int | None) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise TenantError(f"{name} must be a positive integer or None, got {value!r}", parameter=name,
                          expected="int >= 1", got=value)
    return value


def _seconds(name: str, value: float | None) -> float | None:
    if value is not None and (type(value) not in (int, float) or not 0 < value < 1e7):
        raise TenantError(f"{name} must be a positive number of seconds or None, got {value!r}", parameter=name,
                          expected="seconds > 0", got=value)
    return None if value is None else float(value)


def _capabilities(capabilities: Any, grant: Any, revoke: Any) -> frozenset[str]:
    from kailash.errors import SecurityError

    try:
        caps = DEFAULT_TENANT_CAPABILITIES if capabilities is None else check_capability_names(capabilities)
        return (caps | check_capability_names(grant or (), parameter="grant")) - check_capability_names(
            revoke or (), parameter="revoke")
    except SecurityError as exc:
        raise TenantError(exc.message, parameter=exc.parameter, expected=", ".join(CAPABILITIES)) from None


def _role_name(role: str | None, schema: str) -> str:
    name = role or ("kt_" + schema)[:63]
    if not isinstance(name, str) or not _SCHEMA.match(name):
        raise TenantError(f"database role {name!r} is not valid: use lowercase letters, digits and '_'",
                          parameter="database_role", expected="[a-z_][a-z0-9_]*", got=name)
    return name


class TenantRegistry:
    """Create, find and authenticate tenants; open their workspaces.

    Args:
        storage: the storage backend; by default PostgreSQL when ``database_url`` or
            ``KAILASH_DATABASE_URL`` is set, else SQLite under ``home`` / ``$KAILASH_HOME``.
        database_url: a PostgreSQL URL (schema per tenant).
        home: the directory for SQLite storage.
        registry_schema: the PostgreSQL schema holding the registry (default ``kailash``).
    """

    def __init__(self, storage: Storage | None = None, *, database_url: str | None = None,
                 home: str | Path | None = None, registry_schema: str | None = None) -> None:
        self.storage = storage or open_storage(database_url, home=home, registry_schema=registry_schema)
        self._backend = self.storage.tenant_backend()
        self._listeners: list[Any] = []
        self._domains: tuple[float, dict[str, str]] | None = None

    def on_change(self, callback: Any) -> None:
        """Call ``callback(tenant_id)`` after a tenant's keys or limits change or it is deleted."""
        self._listeners.append(callback)

    def _changed(self, tenant_id: str) -> None:
        self._domains = None
        for callback in list(self._listeners):
            callback(tenant_id)

    # -- tenants -----------------------------------------------------------------------
    def create_tenant(self, tenant_id: str, *, database_schema: str | None = None, redis_db: int | None = None,
                      domain: str | None = None, max_concurrent_runs: int | None = None,
                      requests_per_minute: int | None = None, metadata: dict[str, Any] | None = None,
                      capabilities: Any = None, grant: Any = None, revoke: Any = None,
                      cpu_seconds: float | None = None, memory_limit: int | None = None,
                      run_timeout: float | None = None, database_role: str | None = None) -> tuple[Tenant, str]:
        """Create a tenant and its workspace; return ``(tenant, api_key)``.

        The key is returned only here; the registry keeps its digest. With PostgreSQL
        storage the tenant also gets a login role of its own (``database_role``, default
        ``kt_<schema>``) that may use and create objects only in its schema: the role
        its SQL nodes run as.

        Args:
            capabilities: what its nodes may touch (default
                :data:`~kailash.nodes.capabilities.DEFAULT_TENANT_CAPABILITIES`: no host
                processes, no host environment).
            grant: capabilities added to those; ``revoke``: capabilities removed.
            cpu_seconds: CPU (and wall-clock) seconds per sandboxed code call.
            memory_limit: bytes of memory per sandboxed code call.
            run_timeout: seconds a run of it may take before it is stopped.
            domain: the only host name its keys are served under (and the only tenant served there).
        """
        if not isinstance(tenant_id, str) or not _TENANT_ID.match(tenant_id):
            raise TenantError(f"tenant id {tenant_id!r} is not valid: use letters, digits, '-', '_' or '.' "
                              "(at most 63, starting with a letter or digit)", parameter="tenant_id",
                              expected="[A-Za-z0-9][A-Za-z0-9_.-]*", got=tenant_id)
        schema = database_schema or "t_" + re.sub(r"[^a-z0-9_]", "_", tenant_id.lower())
        if not _SCHEMA.match(schema):
            raise TenantError(f"database schema {schema!r} for tenant '{tenant_id}' is not valid: use lowercase "
                              "letters, digits and '_' (at most 63, not starting with a digit)",
                              parameter="database_schema", expected="[a-z_][a-z0-9_]*", got=schema)
        if redis_db is not None and (not isinstance(redis_db, int) or isinstance(redis_db, bool) or redis_db < 0):
            raise TenantError(f"redis_db must be a non-negative integer, got {redis_db!r}", parameter="redis_db")
        role, password = None, None
        if hasattr(self.storage, "create_tenant_role"):
            role, password = _role_name(database_role, schema), secrets.token_urlsafe(24)
        domain = normalise_domain(domain)
        if domain is not None and any(t.domain == domain for t in self.list_tenants()):
            raise TenantError(f"domain '{domain}' is already served for another tenant", parameter="domain",
                              got=domain)
        tenant = Tenant(tenant_id=tenant_id, database_schema=schema, redis_db=redis_db, domain=domain,
                        max_concurrent_runs=_positive("max_concurrent_runs", max_concurrent_runs),
                        requests_per_minute=_positive("requests_per_minute", requests_per_minute),
                        created_at=time.time(), metadata=dict(metadata or {}),
                        capabilities=_capabilities(capabilities, grant, revoke),
                        cpu_seconds=_seconds("cpu_seconds", cpu_seconds),
                        memory_limit=_positive("memory_limit", memory_limit),
                        run_timeout=_seconds("run_timeout", run_timeout), database_role=role,
                        database_password=password)
        if self._backend.get_tenant(tenant_id) is not None:
            raise TenantError(f"tenant '{tenant_id}' already exists", parameter="tenant_id", got=tenant_id)
        if self._backend.schema_in_use(schema):
            raise TenantError(f"database schema '{schema}' is already used by another tenant; "
                              "choose another with --database-schema", parameter="database_schema", got=schema)
        if not self._backend.insert_tenant(tenant._row()):
            raise TenantError(f"tenant '{tenant_id}' or schema '{schema}' already exists", parameter="tenant_id")
        try:
            self.storage.workspace_stores(schema)  # create the schema / files now, not on first request
            if role is not None:
                self.storage.create_tenant_role(role, schema, password)  # type: ignore[attr-defined]
        except Exception:
            self._backend.delete_tenant(tenant_id)
            raise
        self._changed(tenant_id)
        return tenant, self._new_key(tenant_id)

    def _new_key(self, tenant_id: str) -> str:
        key = "kt_" + secrets.token_urlsafe(32)
        self._backend.add_key(tenant_id, key_digest(key), key[:7])
        return key

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        """The tenant ``tenant_id``, or ``None``."""
        return _tenant(self._backend.get_tenant(tenant_id))

    def require_tenant(self, tenant_id: str) -> Tenant:
        tenant = self.get_tenant(tenant_id)
        if tenant is None:
            raise TenantError(f"no tenant '{tenant_id}'", parameter="tenant_id", got=tenant_id)
        return tenant

    def list_tenants(self) -> list[Tenant]:
        """Every tenant, by id."""
        return [t for t in map(_tenant, self._backend.list_tenants()) if t is not None]

    def has_tenants(self) -> bool:
        return bool(self._backend.list_tenants())

    def set_limits(self, tenant_id: str, *, max_concurrent_runs: int | None = None,
                   requests_per_minute: int | None = None, cpu_seconds: float | None = None,
                   memory_limit: int | None = None, run_timeout: float | None = None) -> Tenant:
        """Replace a tenant's limits (``None`` removes a limit)."""
        tenant = self.require_tenant(tenant_id)
        self._backend.update_limits(tenant_id, _positive("max_concurrent_runs", max_concurrent_runs),
                                    _positive("requests_per_minute", requests_per_minute))
        changed = dataclasses.replace(tenant, cpu_seconds=_seconds("cpu_seconds", cpu_seconds),
                                      memory_limit=_positive("memory_limit", memory_limit),
                                      run_timeout=_seconds("run_timeout", run_timeout))
        self._backend.update_policy(tenant_id, changed.policy())
        self._changed(tenant_id)
        return self.require_tenant(tenant_id)

    def add_database_role(self, tenant_id: str, database_role: str | None = None) -> Tenant:
        """Give a tenant made before database roles existed its own PostgreSQL role (PostgreSQL storage)."""
        tenant = self.require_tenant(tenant_id)
        if not hasattr(self.storage, "create_tenant_role"):
            raise TenantError("database roles exist only with PostgreSQL storage (KAILASH_DATABASE_URL)",
                              parameter="database_role")
        if tenant.database_role:
            raise TenantError(f"tenant '{tenant_id}' already has the database role '{tenant.database_role}'",
                              parameter="database_role", got=tenant.database_role)
        role, password = _role_name(database_role, tenant.database_schema), secrets.token_urlsafe(24)
        self.storage.create_tenant_role(role, tenant.database_schema, password)  # type: ignore[attr-defined]
        changed = dataclasses.replace(tenant, database_role=role, database_password=password)
        self._backend.update_policy(tenant_id, changed.policy())
        self._changed(tenant_id)
        return self.require_tenant(tenant_id)

    def set_capabilities(self, tenant_id: str, *, capabilities: Any = None, grant: Any = None,
                         revoke: Any = None) -> Tenant:
        """Replace (``capabilities``), extend (``grant``) or reduce (``revoke``) what a tenant's nodes may touch."""
        tenant = self.require_tenant(tenant_id)
        base = tenant.capabilities if capabilities is None else capabilities
        changed = dataclasses.replace(tenant, capabilities=_capabilities(base, grant, revoke))
        self._backend.update_policy(tenant_id, changed.policy())
        self._changed(tenant_id)
        return self.require_tenant(tenant_id)

    def rotate_key(self, tenant_id: str) -> str:
        """Revoke every key of the tenant and return a new one."""
        self.require_tenant(tenant_id)
        self._backend.revoke_keys(tenant_id)
        self._changed(tenant_id)
        return self._new_key(tenant_id)

    def delete_tenant(self, tenant_id: str, *, purge: bool = False) -> bool:
        """Remove a tenant, its keys and its schedules; with ``purge``, its workflows and runs too."""
        tenant = self.get_tenant(tenant_id)
        if tenant is None:
            return False
        self._backend.revoke_keys(tenant_id)
        self._backend.delete_tenant(tenant_id)
        self._changed(tenant_id)
        if hasattr(self.storage, "schedule_store"):  # nothing of a deleted tenant may fire again
            schedules = self.storage.schedule_store()
            try:
                schedules.delete_namespace(tenant_id)
            finally:
                schedules.close()
        if purge:
            self.storage.drop_workspace(tenant.database_schema)
        if tenant.database_role and hasattr(self.storage, "drop_tenant_role"):
            self.storage.drop_tenant_role(tenant.database_role, purge=purge)
        return True

    # -- host names ----------------------------------------------------------------------
    def domains_cached(self) -> bool:
        """Whether :meth:`domains` would answer without a database round trip."""
        return self._domains is not None and self._domains[0] >= time.monotonic()

    def domains(self) -> dict[str, str]:
        """``{host name: tenant id}`` of the tenants created with a domain (cached for 30 s)."""
        now = time.monotonic()
        cached = self._domains
        if cached is None or cached[0] < now:
            found = {t.domain: t.tenant_id for t in self.list_tenants() if t.domain}
            self._domains = cached = (now + 30.0, found)
        return cached[1]

    def host_refusal(self, tenant_id: str | None, host: str) -> str | None:
        """Why a key of ``tenant_id`` (``None``: the gateway's own) may not be used at ``host`` (``None``: it may).

        A tenant created with a domain is served only under that host name, and a
        tenant's host name serves only that tenant.
        """
        domains = self.domains()
        owner = domains.get(host)
        if owner is not None and owner != tenant_id:
            return f"host '{host}' serves another tenant; this API key is not valid here"
        if tenant_id is not None and owner is None and tenant_id in domains.values():
            return f"tenant '{tenant_id}' is served only under its own host name, not '{host}'"
        return None

    # -- requests ----------------------------------------------------------------------
    def authenticate_key(self, key: str) -> Principal | None:
        """The principal for a tenant key, or ``None`` (blocking; the gateway caches it)."""
        digest = key_digest(key)
        tenant = _tenant(self._backend.tenant_for_digest(digest))
        if tenant is None:
            return None
        return Principal(tenant_id=tenant.tenant_id, key_id=digest[:12],
                         requests_per_minute=tenant.requests_per_minute,
                         max_concurrent_runs=tenant.max_concurrent_runs, redis_db=tenant.redis_db)

    def workspace(self, tenant_id: str | None) -> Workspace:
        """The workspace of ``tenant_id`` (``None``: the gateway's own namespace)."""
        if tenant_id is None:
            workflows, runs = self.storage.workspace_stores(None)
            return Workspace(tenant_id=None, workflows=workflows, runs=runs)
        tenant = self.require_tenant(tenant_id)
        workflows, runs = self.storage.workspace_stores(tenant.database_schema)
        return Workspace(tenant_id=tenant_id, workflows=workflows, runs=runs,
                         max_concurrent_runs=tenant.max_concurrent_runs,
                         requests_per_minute=tenant.requests_per_minute, tenant=tenant,
                         scope=tenant_scope_of(tenant))


def create_tenant(tenant_id: str, **options: Any) -> tuple[Tenant, str]:
    """Create a tenant in the default registry (``KAILASH_DATABASE_URL`` or ``$KAILASH_HOME``).

    Same options as :meth:`TenantRegistry.create_tenant`; returns ``(tenant, api_key)``.
    """
    return TenantRegistry().create_tenant(tenant_id, **options)
