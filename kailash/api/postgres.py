"""PostgreSQL storage: one schema per tenant, the tenant registry in its own schema.

Used when ``KAILASH_DATABASE_URL`` is set (``postgresql://user@host:5432/db``). A
tenant's workflows and runs live in tables of its schema (``--database-schema``);
the gateway's own namespace uses the schema ``kailash_default``; the registry of
tenants and key digests lives in ``KAILASH_REGISTRY_SCHEMA`` (default ``kailash``).
Every statement names its schema explicitly (quoted with ``psycopg.sql``), so a
store can only ever touch its own schema. Each tenant also gets a PostgreSQL login role
of its own (:meth:`PostgresStorage.create_tenant_role`), granted nothing but its own
schema: tenants' SQL nodes run as it, never as the storage role this module connects
with. Requires ``pip install 'kailash[postgres]'``.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

from kailash.api.storage import StoredWorkflow
from kailash.runtime.runlog import RunLog
from kailash.runtime.store import NodeRecord, RunRecord, SQLiteRunStore, _json_default, node_rows

__all__ = ["PostgresStorage", "PostgresWorkflowStore", "PostgresRunStore", "PostgresRunLog", "PostgresTenantBackend"]

DEFAULT_SCHEMA = "kailash_default"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _psycopg() -> Any:
    try:
        import psycopg
        import psycopg_pool  # noqa: F401
    except ImportError:
        raise ImportError("PostgreSQL storage needs psycopg 3: pip install 'kailash[postgres]'") from None
    return psycopg


def check_schema_name(schema: str) -> str:
    if not isinstance(schema, str) or not _SCHEMA_NAME.match(schema):
        raise ValueError(f"database schema '{schema}' is not valid: use lowercase letters, digits and '_' "
                         "(at most 63, not starting with a digit)")
    return schema


class PostgresStorage:
    """Workspaces as PostgreSQL schemas in one database (a pooled connection).

    Args:
        url: the database URL.
        registry_schema: where the tenant registry lives (default ``KAILASH_REGISTRY_SCHEMA`` or ``kailash``).
        default_schema: the gateway's own namespace (default ``kailash_default``).
        max_connections: the pool's size.
    """

    def __init__(self, url: str, *, registry_schema: str | None = None, default_schema: str = DEFAULT_SCHEMA,
                 max_connections: int = 8) -> None:
        _psycopg()
        from psycopg_pool import ConnectionPool

        self.url = url
        self.registry_schema = check_schema_name(
            registry_schema or os.environ.get("KAILASH_REGISTRY_SCHEMA") or "kailash")
        self.default_schema = check_schema_name(default_schema)
        self.pool = ConnectionPool(url, min_size=1, max_size=max_connections, kwargs={"autocommit": True},
                                   open=True, name="kailash")
        self._open: dict[str | None, tuple[Any, Any]] = {}

    def ensure_schema(self, schema: str, ddl: str) -> None:
        psycopg = _psycopg()
        from psycopg import sql

        for attempt in range(3):  # concurrent CREATE ... IF NOT EXISTS can still collide
            try:
                with self.pool.connection() as conn:
                    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
                    conn.execute(sql.SQL(ddl).format(schema=sql.Identifier(schema)))
                return
            except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject,
                    psycopg.errors.DuplicateSchema, psycopg.errors.DuplicateTable):
                if attempt == 2:
                    raise
                time.sleep(0.05)

    def workspace_stores(self, schema: str | None) -> tuple[Any, Any]:
        stores = self._open.get(schema)
        if stores is None:
            name = check_schema_name(schema or self.default_schema)
            self.ensure_schema(name, _WORKSPACE_DDL)
            stores = (PostgresWorkflowStore(self.pool, name), PostgresRunStore(self.pool, name))
            self._open[schema] = stores
        return stores

    def drop_workspace(self, schema: str) -> None:
        from psycopg import sql

        self._open.pop(schema, None)
        with self.pool.connection() as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(check_schema_name(schema))))

    def tenant_backend(self) -> PostgresTenantBackend:
        self.ensure_schema(self.registry_schema, _REGISTRY_DDL)
        return PostgresTenantBackend(self.pool, self.registry_schema)

    def schedule_store(self) -> Any:
        """Every namespace's schedules, in the registry schema (shared by all gateways on this database)."""
        from kailash.runtime.schedule_store import PostgresScheduleStore

        return PostgresScheduleStore(self.pool, self.registry_schema)

    def run_queue(self) -> Any:
        """The durable run queue: ``<registry schema>.run_queue``, shared by every gateway on this database
        (out of reach of tenants' roles, like the registry)."""
        from kailash.runtime.queue import PostgresRunQueue

        return PostgresRunQueue(self.pool, self.registry_schema)

    def create_tenant_role(self, role: str, schema: str, password: str) -> None:
        """Create the login role a tenant's SQL runs as: it may use and create objects in ``schema`` only.

        The role is no superuser, cannot create databases or roles, inherits nothing
        and is granted nothing but ``USAGE, CREATE`` on its own schema, so the gateway's
        storage tables, the registry and other tenants' schemas stay out of its reach.
        """
        psycopg = _psycopg()
        from psycopg import sql

        role = check_schema_name(role)
        try:
            with self.pool.connection() as conn:
                with conn.transaction():
                    conn.execute(sql.SQL(
                        "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS "
                        "CONNECTION LIMIT 16 PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
                    conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(sql.Identifier(schema)))
                    conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(
                        sql.Identifier(schema), sql.Identifier(role)))
        except psycopg.errors.DuplicateObject:
            from kailash.errors import TenantError

            raise TenantError(f"PostgreSQL role '{role}' already exists; choose another with --database-role",
                              parameter="database_role", got=role) from None
        except psycopg.errors.InsufficientPrivilege as exc:
            from kailash.errors import TenantError

            raise TenantError(f"cannot create PostgreSQL role '{role}' for the tenant: the storage role needs "
                              f"CREATEROLE ({str(exc).strip()})", parameter="database_role", got=role) from None

    def drop_tenant_role(self, role: str, *, purge: bool) -> None:
        """Drop a deleted tenant's role (with ``purge``), else only take its login away."""
        from psycopg import sql

        ident = sql.Identifier(check_schema_name(role))
        with self.pool.connection() as conn:
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                return
            conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(ident))
            if purge:
                conn.execute(sql.SQL("DROP OWNED BY {}").format(ident))
                conn.execute(sql.SQL("DROP ROLE {}").format(ident))

    def describe(self) -> str:
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(self.url)
        return f"PostgreSQL {info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"

    def close(self) -> None:
        self.pool.close()


_WORKSPACE_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.workflows (
    name TEXT PRIMARY KEY, document JSONB NOT NULL, revision INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS {schema}.runs (
    run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, status TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL, ended_at DOUBLE PRECISION, error TEXT, error_node TEXT,
    nodes JSONB, outputs JSONB, parameters JSONB, tenant TEXT, runtime TEXT, parent_run_id TEXT, extra JSONB);
CREATE INDEX IF NOT EXISTS runs_started ON {schema}.runs (started_at);
CREATE TABLE IF NOT EXISTS {schema}.run_nodes (
    run_id TEXT NOT NULL, node_id TEXT NOT NULL, status TEXT NOT NULL, started_at DOUBLE PRECISION,
    duration DOUBLE PRECISION, error TEXT, outputs JSONB, PRIMARY KEY (run_id, node_id));
"""

_REGISTRY_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.tenants (
    tenant_id TEXT PRIMARY KEY, database_schema TEXT NOT NULL UNIQUE, redis_db INTEGER, domain TEXT,
    max_concurrent_runs INTEGER, requests_per_minute INTEGER, created_at DOUBLE PRECISION NOT NULL,
    metadata JSONB, policy JSONB);
ALTER TABLE {schema}.tenants ADD COLUMN IF NOT EXISTS policy JSONB;
CREATE TABLE IF NOT EXISTS {schema}.api_keys (
    key_digest TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES {schema}.tenants ON DELETE CASCADE,
    key_prefix TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL, revoked BOOLEAN NOT NULL DEFAULT FALSE);
"""


class _SchemaStore:
    def __init__(self, pool: Any, schema: str) -> None:
        from psycopg import sql

        self.pool = pool
        self.schema = schema
        self._sql = sql

    def q(self, text: str) -> Any:
        return self._sql.SQL(text).format(schema=self._sql.Identifier(self.schema))


class PostgresWorkflowStore(_SchemaStore):
    """Workflows in ``<schema>.workflows``."""

    def put(self, name: str, document: dict[str, Any]) -> StoredWorkflow:
        from psycopg.types.json import Jsonb

        now = time.time()
        with self.pool.connection() as conn:
            row = conn.execute(self.q(
                "INSERT INTO {schema}.workflows VALUES (%s, %s, 1, %s, %s) ON CONFLICT (name) DO UPDATE SET "
                "document = EXCLUDED.document, revision = workflows.revision + 1, updated_at = EXCLUDED.updated_at "
                "RETURNING revision, created_at"), (name, Jsonb(document), now, now)).fetchone()
        return StoredWorkflow(name=name, document=document, revision=row[0], created_at=row[1], updated_at=now)

    def get(self, name: str) -> StoredWorkflow | None:
        with self.pool.connection() as conn:
            row = conn.execute(self.q("SELECT name, document, revision, created_at, updated_at "
                                      "FROM {schema}.workflows WHERE name = %s"), (name,)).fetchone()
        return None if row is None else StoredWorkflow(name=row[0], document=row[1], revision=row[2],
                                                       created_at=row[3], updated_at=row[4])

    def list(self) -> list[StoredWorkflow]:
        with self.pool.connection() as conn:
            rows = conn.execute(self.q("SELECT name, document, revision, created_at, updated_at "
                                       "FROM {schema}.workflows ORDER BY name")).fetchall()
        return [StoredWorkflow(name=r[0], document=r[1], revision=r[2], created_at=r[3], updated_at=r[4])
                for r in rows]

    def delete(self, name: str) -> bool:
        with self.pool.connection() as conn:
            cur = conn.execute(self.q("DELETE FROM {schema}.workflows WHERE name = %s"), (name,))
            return cur.rowcount > 0


def _jsonb(value: Any) -> Any:
    from psycopg.types.json import Jsonb

    return None if value is None else Jsonb(json.loads(json.dumps(value, default=_json_default)))


class PostgresRunLog(RunLog):
    """The write-ahead run log (:mod:`kailash.runtime.runlog`) of a PostgreSQL run store.

    The same writer thread and group commit as SQLite's; each drain is one transaction
    on ``<schema>.runs`` and ``<schema>.run_nodes``. This is what lets a run taken over
    from a gateway that died be resumed by another: the nodes it finished are here.
    """

    def _write(self, plain: list[tuple[Any, ...]], runs: list[tuple[Any, ...]], nodes: list[tuple[Any, ...]],
               done: list[tuple[str]], sync: bool) -> None:
        store: Any = self.store
        cols = PostgresRunStore._COLUMNS
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols.split(", ")[1:])
        rows = [(r[0], r[1], r[2], r[3], r[4], None, None, r[5], None, None, None, r[6], None, None) for r in plain]
        rows += runs
        rows = [r if type(r[7]) is not bytes else (*r[:7], _json_nodes(r[7], r[3]), *r[8:]) for r in rows]
        with store.pool.connection() as conn:
            with conn.transaction():
                with conn.cursor() as cur:
                    if rows:
                        cur.executemany(store.q(
                            f"INSERT INTO {{schema}}.runs ({cols}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb, "
                            "%s::jsonb, %s::jsonb, %s, %s, %s, %s::jsonb) "
                            f"ON CONFLICT (run_id) DO UPDATE SET {updates}"), rows)
                    if nodes:
                        cur.executemany(store.q(
                            "INSERT INTO {schema}.run_nodes VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb) "
                            "ON CONFLICT (run_id, node_id) DO UPDATE SET status = EXCLUDED.status, "
                            "started_at = EXCLUDED.started_at, duration = EXCLUDED.duration, "
                            "error = EXCLUDED.error, outputs = EXCLUDED.outputs"), nodes)
                    if done:
                        cur.executemany(store.q("DELETE FROM {schema}.run_nodes WHERE run_id = %s"), done)


def _json_nodes(packed: bytes, started_at: float) -> str:
    """A packed node value (:func:`kailash.runtime.runlog.pack_nodes`) as the JSON list PostgreSQL keeps."""
    from kailash.runtime.store import unpack_nodes

    return json.dumps([[n.node_id, n.status, n.started_at, n.duration, n.error]
                       for n in unpack_nodes(packed, started_at)])


class PostgresRunStore(_SchemaStore):
    """Run records in ``<schema>.runs`` (the :class:`~kailash.runtime.store.RunStore` protocol).

    Durable runs are written ahead as they run (:class:`PostgresRunLog`): a ``running``
    record with the nodes finished so far, read as ``interrupted`` once its owner
    process is known to be gone.
    """

    _row = staticmethod(SQLiteRunStore._row)  # the run log's row form (JSON as text)

    def __init__(self, pool: Any, schema: str) -> None:
        super().__init__(pool, schema)
        self.run_log = PostgresRunLog(self)  # type: ignore[arg-type]

    _COLUMNS = ("run_id, workflow, status, started_at, ended_at, error, error_node, nodes, outputs, parameters, "
                "tenant, runtime, parent_run_id, extra")

    def record(self, run: RunRecord) -> None:
        nodes = node_rows(run)
        values = (run.run_id, run.workflow, run.status, run.started_at, run.ended_at, run.error, run.error_node,
                  _jsonb(nodes), _jsonb(run.outputs), _jsonb(run.parameters), run.tenant, run.runtime,
                  run.parent_run_id, _jsonb(run.extra) if run.extra else None)
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in self._COLUMNS.split(", ")[1:])
        with self.pool.connection() as conn:
            conn.execute(self.q(f"INSERT INTO {{schema}}.runs ({self._COLUMNS}) VALUES "
                                f"({', '.join(['%s'] * 14)}) ON CONFLICT (run_id) DO UPDATE SET {updates}"), values)

    @staticmethod
    def _from_row(row: tuple[Any, ...]) -> RunRecord:
        (run_id, workflow, status, started, ended, error, error_node, nodes, outputs, parameters,
         tenant, runtime, parent, extra) = row
        return RunRecord(
            run_id=run_id, workflow=workflow, status=status, started_at=started, ended_at=ended, error=error,
            error_node=error_node, outputs=outputs, parameters=parameters, tenant=tenant, runtime=runtime,
            parent_run_id=parent, extra=extra or {},
            nodes=tuple(NodeRecord(node_id=n[0], status=n[1], started_at=n[2], duration=n[3], error=n[4])
                        for n in (nodes or [])),
        )

    def get_run(self, run_id: str) -> RunRecord | None:
        self.flush()
        with self.pool.connection() as conn:
            row = conn.execute(self.q(f"SELECT {self._COLUMNS} FROM {{schema}}.runs WHERE run_id = %s"),
                               (run_id,)).fetchone()
            if row is None:  # a unique prefix, as SQLiteRunStore allows
                rows = conn.execute(self.q(f"SELECT {self._COLUMNS} FROM {{schema}}.runs WHERE run_id LIKE %s "
                                           "LIMIT 2"), (_like_prefix(run_id),)).fetchall()
                row = rows[0] if len(rows) == 1 else None
        if row is None:
            return None
        run = self._from_row(row)
        return self._live(run) if run.status == "running" else run

    def _live(self, record: RunRecord) -> RunRecord:
        """A ``running`` record with the nodes logged so far, ``interrupted`` if its owner is known gone."""
        import dataclasses

        from kailash.runtime.runlog import owner_alive

        with self.pool.connection() as conn:
            rows = conn.execute(self.q("SELECT node_id, status, started_at, duration, error, outputs FROM "
                                       "{schema}.run_nodes WHERE run_id = %s ORDER BY started_at NULLS LAST"),
                                (record.run_id,)).fetchall()
        nodes = tuple(NodeRecord(node_id=r[0], status=r[1], started_at=r[2], duration=r[3], error=r[4]) for r in rows)
        outputs = {r[0]: r[5] for r in rows if r[5] is not None}
        status = "interrupted" if owner_alive(record.extra.get("owner")) is False else record.status
        return dataclasses.replace(record, status=status, nodes=nodes, outputs=outputs)

    def list_runs(self, *, limit: int = 50, workflow: str | None = None, status: str | None = None,
                  tenant: str | None = None, since: float | None = None, until: float | None = None,
                  before: tuple[float, str] | None = None) -> list[RunRecord]:
        from kailash.runtime.store import _time_filters

        self.flush()
        where: list[str] = []
        args: list[Any] = []
        for col, val in (("workflow", workflow), ("status", status), ("tenant", tenant)):
            if val is not None:
                where.append(f"{col} = %s")
                args.append(val)
        where, args = _time_filters(where, args, since, until, before, "%s")
        text = f"SELECT {self._COLUMNS} FROM {{schema}}.runs" + (" WHERE " + " AND ".join(where) if where else "")
        with self.pool.connection() as conn:
            rows = conn.execute(self.q(text + " ORDER BY started_at DESC, run_id DESC LIMIT %s"),
                                (*args, int(limit))).fetchall()
        runs = [self._from_row(r) for r in rows]
        return [self._live(r) if r.status == "running" else r for r in runs]

    def flush(self) -> None:
        """Write what the run log holds (other writes are immediate)."""
        if self.run_log.busy():
            self.run_log.drain()

    def close(self) -> None:
        """The pool belongs to :class:`PostgresStorage`."""


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class PostgresTenantBackend(_SchemaStore):
    """The tenant registry's tables in the registry schema (rows as plain tuples)."""

    _TENANT = ("tenant_id, database_schema, redis_db, domain, max_concurrent_runs, requests_per_minute, "
               "created_at, metadata, policy")

    def insert_tenant(self, row: tuple[Any, ...]) -> bool:
        psycopg = _psycopg()
        values = (*row[:7], _jsonb(row[7]), _jsonb(row[8]))
        try:
            with self.pool.connection() as conn:
                conn.execute(self.q(f"INSERT INTO {{schema}}.tenants ({self._TENANT}) VALUES "
                                    "(%s, %s, %s, %s, %s, %s, %s, %s, %s)"), values)
        except psycopg.errors.UniqueViolation:
            return False
        return True

    def get_tenant(self, tenant_id: str) -> tuple[Any, ...] | None:
        with self.pool.connection() as conn:
            return conn.execute(self.q(f"SELECT {self._TENANT} FROM {{schema}}.tenants WHERE tenant_id = %s"),
                                (tenant_id,)).fetchone()

    def list_tenants(self) -> list[tuple[Any, ...]]:
        with self.pool.connection() as conn:
            return conn.execute(self.q(f"SELECT {self._TENANT} FROM {{schema}}.tenants ORDER BY tenant_id")).fetchall()

    def schema_in_use(self, schema: str) -> bool:
        with self.pool.connection() as conn:
            return conn.execute(self.q("SELECT 1 FROM {schema}.tenants WHERE database_schema = %s"),
                                (schema,)).fetchone() is not None

    def update_limits(self, tenant_id: str, max_concurrent_runs: int | None, requests_per_minute: int | None) -> None:
        with self.pool.connection() as conn:
            conn.execute(self.q("UPDATE {schema}.tenants SET max_concurrent_runs = %s, requests_per_minute = %s "
                                "WHERE tenant_id = %s"), (max_concurrent_runs, requests_per_minute, tenant_id))

    def update_policy(self, tenant_id: str, policy: dict[str, Any]) -> None:
        with self.pool.connection() as conn:
            conn.execute(self.q("UPDATE {schema}.tenants SET policy = %s WHERE tenant_id = %s"),
                         (_jsonb(policy), tenant_id))

    def delete_tenant(self, tenant_id: str) -> bool:
        with self.pool.connection() as conn:
            cur = conn.execute(self.q("DELETE FROM {schema}.tenants WHERE tenant_id = %s"), (tenant_id,))
            return cur.rowcount > 0

    def add_key(self, tenant_id: str, digest: str, prefix: str) -> None:
        with self.pool.connection() as conn:
            conn.execute(self.q("INSERT INTO {schema}.api_keys (key_digest, tenant_id, key_prefix, created_at) "
                                "VALUES (%s, %s, %s, %s)"), (digest, tenant_id, prefix, time.time()))

    def revoke_keys(self, tenant_id: str) -> int:
        with self.pool.connection() as conn:
            cur = conn.execute(self.q("UPDATE {schema}.api_keys SET revoked = TRUE WHERE tenant_id = %s "
                                      "AND NOT revoked"), (tenant_id,))
            return cur.rowcount

    def tenant_for_digest(self, digest: str) -> tuple[Any, ...] | None:
        cols = ", ".join("t." + c for c in self._TENANT.split(", "))
        with self.pool.connection() as conn:
            return conn.execute(self.q(f"SELECT {cols} FROM {{schema}}.api_keys k JOIN {{schema}}.tenants t "
                                       "ON t.tenant_id = k.tenant_id WHERE k.key_digest = %s AND NOT k.revoked"),
                                (digest,)).fetchone()
