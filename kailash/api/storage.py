"""Where the gateway keeps uploaded workflows and run history, per namespace.

A *workspace* is one namespace's storage: its workflows (:class:`WorkflowStore`) and
its runs (a :class:`~kailash.runtime.store.RunStore`). The gateway's own namespace and
every tenant get one each; nothing here can reach another workspace's data, because
each workspace is a separate SQLite file pair (``$KAILASH_HOME/tenants/<schema>/``) or
a separate PostgreSQL schema (:mod:`kailash.api.postgres`). The SQLite tables of the
tenant registry (:class:`SQLiteTenantBackend`) live here too. This module decides
nothing about who may use which workspace — that is :mod:`kailash.api.tenancy`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = ["StoredWorkflow", "WorkflowStore", "SQLiteWorkflowStore", "Workspace", "Storage", "SQLiteStorage",
           "SQLiteTenantBackend", "open_storage"]


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredWorkflow:
    """An uploaded workflow document (the ``Workflow.to_dict()`` form)."""

    name: str
    document: dict[str, Any]
    revision: int
    created_at: float
    updated_at: float

    @property
    def description(self) -> str:
        return str(self.document.get("description") or "")


@runtime_checkable
class WorkflowStore(Protocol):
    """Uploaded workflows of one workspace, by name."""

    def put(self, name: str, document: dict[str, Any]) -> StoredWorkflow: ...

    def get(self, name: str) -> StoredWorkflow | None: ...

    def list(self) -> list[StoredWorkflow]: ...

    def delete(self, name: str) -> bool: ...


_WF_SCHEMA = """
CREATE TABLE IF NOT EXISTS workflows (
    name TEXT PRIMARY KEY,
    document TEXT NOT NULL,
    revision INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
"""


class SQLiteWorkflowStore:
    """Workflows in one SQLite file.

    Example:
        >>> import tempfile, os
        >>> store = SQLiteWorkflowStore(os.path.join(tempfile.mkdtemp(), "workflows.db"))
        >>> store.put("etl", {"name": "etl", "nodes": []}).revision
        1
        >>> [w.name for w in store.list()]
        ['etl']
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(_WF_SCHEMA)

    def put(self, name: str, document: dict[str, Any]) -> StoredWorkflow:
        now = time.time()
        text = json.dumps(document)
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT revision, created_at FROM workflows WHERE name = ?", (name,)).fetchone()
                revision, created = (row[0] + 1, row[1]) if row else (1, now)
                conn.execute("INSERT OR REPLACE INTO workflows VALUES (?,?,?,?,?)", (name, text, revision, created, now))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return StoredWorkflow(name=name, document=document, revision=revision, created_at=created, updated_at=now)

    def get(self, name: str) -> StoredWorkflow | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM workflows WHERE name = ?", (name,)).fetchone()
        return None if row is None else _stored(row)

    def list(self) -> list[StoredWorkflow]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM workflows ORDER BY name").fetchall()
        return [_stored(r) for r in rows]

    def delete(self, name: str) -> bool:
        with self._lock:
            cur = self._conn.execute("DELETE FROM workflows WHERE name = ?", (name,))
        return cur.rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _stored(row: tuple[Any, ...]) -> StoredWorkflow:
    name, text, revision, created, updated = row
    doc = json.loads(text) if isinstance(text, str) else text
    return StoredWorkflow(name=name, document=doc, revision=revision, created_at=created, updated_at=updated)


@dataclass(frozen=True, kw_only=True, slots=True)
class Workspace:
    """One namespace's storage and limits.

    Attributes:
        tenant_id: the tenant, or ``None`` for the gateway's own namespace.
        workflows: its uploaded workflows.
        runs: its run history.
        max_concurrent_runs: at most this many runs at once (``None``: no limit).
        requests_per_minute: at most this many requests per minute (``None``: no limit).
        tenant: the tenant's :class:`~kailash.api.tenancy.Tenant` record (its policy), if a tenant's.
        scope: the :class:`~kailash.nodes.capabilities.TenantScope` its runs execute in, if a tenant's.
    """

    tenant_id: str | None
    workflows: WorkflowStore
    runs: Any
    max_concurrent_runs: int | None = None
    requests_per_minute: int | None = None
    tenant: Any = None
    scope: Any = None


class Storage(Protocol):
    """A storage backend: opens workspaces and holds the tenant registry's tables."""

    def workspace_stores(self, schema: str | None) -> tuple[WorkflowStore, Any]: ...

    def drop_workspace(self, schema: str) -> None: ...

    def tenant_backend(self) -> Any: ...

    def describe(self) -> str: ...

    def schedule_store(self) -> Any: ...


class SQLiteStorage:
    """Workspaces as SQLite files under ``home`` (default ``$KAILASH_HOME``).

    The gateway's own namespace uses ``home/workflows.db`` and the default run store
    ``home/runs.db`` (shared with ``kailash run``); a tenant uses ``home/tenants/<schema>/``.
    """

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        from kailash.runtime.store import kailash_home

        self.home = Path(home) if home is not None else kailash_home()
        self._open: dict[str | None, tuple[WorkflowStore, Any]] = {}
        self._lock = threading.Lock()

    def workspace_stores(self, schema: str | None) -> tuple[WorkflowStore, Any]:
        with self._lock:
            stores = self._open.get(schema)
            if stores is None:
                from kailash.runtime.store import SQLiteRunStore, default_store

                if schema is None:
                    runs = default_store() if self.home.resolve() == _home_now() else SQLiteRunStore(
                        self.home / "runs.db")
                    stores = (SQLiteWorkflowStore(self.home / "workflows.db"), runs)
                else:
                    base = self.home / "tenants" / schema
                    stores = (SQLiteWorkflowStore(base / "workflows.db"), SQLiteRunStore(base / "runs.db"))
                self._open[schema] = stores
            return stores

    def drop_workspace(self, schema: str) -> None:
        import shutil

        with self._lock:
            stores = self._open.pop(schema, None)
        if stores is not None:
            stores[0].close()  # type: ignore[attr-defined]
            stores[1].close()
        shutil.rmtree(self.home / "tenants" / schema, ignore_errors=True)

    def tenant_backend(self) -> Any:
        return SQLiteTenantBackend(self.home / "tenants.db")

    def schedule_store(self) -> Any:
        """Every namespace's schedules, in ``home/schedules.db`` (:mod:`kailash.runtime.schedule_store`)."""
        from kailash.runtime.schedule_store import SQLiteScheduleStore

        return SQLiteScheduleStore(self.home / "schedules.db")

    def run_queue(self) -> Any:
        """The durable run queue (``home/queue.db``; one machine): every namespace's async runs."""
        from kailash.runtime.queue import SQLiteRunQueue

        return SQLiteRunQueue(self.home / "queue.db")

    def describe(self) -> str:
        return f"SQLite under {self.home}"


_SQLITE_DDL = """
CREATE TABLE IF NOT EXISTS tenants (
    tenant_id TEXT PRIMARY KEY, database_schema TEXT NOT NULL UNIQUE, redis_db INTEGER, domain TEXT,
    max_concurrent_runs INTEGER, requests_per_minute INTEGER, created_at REAL NOT NULL, metadata TEXT,
    policy TEXT);
CREATE TABLE IF NOT EXISTS api_keys (
    key_digest TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants ON DELETE CASCADE,
    key_prefix TEXT NOT NULL, created_at REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
"""


class SQLiteTenantBackend:
    """The tenant registry's tables in one SQLite file (rows as plain tuples)."""

    _TENANT = ("tenant_id, database_schema, redis_db, domain, max_concurrent_runs, requests_per_minute, "
               "created_at, metadata, policy")

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.executescript(_SQLITE_DDL)
        columns = {r[1] for r in self._conn.execute("PRAGMA table_info(tenants)")}
        if "policy" not in columns:  # a registry made before tenant policies
            self._conn.execute("ALTER TABLE tenants ADD COLUMN policy TEXT")

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        with self._lock:
            return self._conn.execute(sql, args).fetchone()

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        with self._lock:
            return self._conn.execute(sql, args).rowcount

    def insert_tenant(self, row: tuple[Any, ...]) -> bool:
        values = (*row[:7], json.dumps(row[7]) if row[7] else None, json.dumps(row[8]))
        try:
            self._exec(f"INSERT INTO tenants ({self._TENANT}) VALUES (?,?,?,?,?,?,?,?,?)", values)
        except sqlite3.IntegrityError:
            return False
        return True

    def get_tenant(self, tenant_id: str) -> tuple[Any, ...] | None:
        return self._one(f"SELECT {self._TENANT} FROM tenants WHERE tenant_id = ?", (tenant_id,))

    def list_tenants(self) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(f"SELECT {self._TENANT} FROM tenants ORDER BY tenant_id").fetchall()

    def schema_in_use(self, schema: str) -> bool:
        return self._one("SELECT 1 FROM tenants WHERE database_schema = ?", (schema,)) is not None

    def update_limits(self, tenant_id: str, max_concurrent_runs: int | None, requests_per_minute: int | None) -> None:
        self._exec("UPDATE tenants SET max_concurrent_runs = ?, requests_per_minute = ? WHERE tenant_id = ?",
                   (max_concurrent_runs, requests_per_minute, tenant_id))

    def update_policy(self, tenant_id: str, policy: dict[str, Any]) -> None:
        self._exec("UPDATE tenants SET policy = ? WHERE tenant_id = ?", (json.dumps(policy), tenant_id))

    def delete_tenant(self, tenant_id: str) -> bool:
        return self._exec("DELETE FROM tenants WHERE tenant_id = ?", (tenant_id,)) > 0

    def add_key(self, tenant_id: str, digest: str, prefix: str) -> None:
        self._exec("INSERT INTO api_keys (key_digest, tenant_id, key_prefix, created_at) VALUES (?,?,?,?)",
                   (digest, tenant_id, prefix, time.time()))

    def revoke_keys(self, tenant_id: str) -> int:
        return self._exec("UPDATE api_keys SET revoked = 1 WHERE tenant_id = ? AND revoked = 0", (tenant_id,))

    def tenant_for_digest(self, digest: str) -> tuple[Any, ...] | None:
        cols = ", ".join("t." + c for c in self._TENANT.split(", "))
        return self._one(f"SELECT {cols} FROM api_keys k JOIN tenants t ON t.tenant_id = k.tenant_id "
                         "WHERE k.key_digest = ? AND k.revoked = 0", (digest,))


def _home_now() -> Path:
    from kailash.runtime.store import kailash_home

    return kailash_home().resolve()


def open_storage(database_url: str | None = None, *, home: str | os.PathLike[str] | None = None,
                 registry_schema: str | None = None) -> Storage:
    """The storage backend: PostgreSQL when ``database_url`` (or ``KAILASH_DATABASE_URL``) is set, else SQLite."""
    url = database_url if database_url is not None else os.environ.get("KAILASH_DATABASE_URL") or None
    if url:
        from kailash.api.postgres import PostgresStorage

        return PostgresStorage(url, registry_schema=registry_schema)
    return SQLiteStorage(home)
