"""The durable run queue: runs waiting for a worker, claimed under a lease.

A queued run is a row: its id, workflow name, tenant, parameters (secret values never:
see below), options, and its state — ``queued``, ``running`` (claimed by a worker
until ``lease_until``), then ``completed``, ``failed`` or ``interrupted``. Workers
:meth:`~RunQueue.claim` rows atomically (PostgreSQL ``FOR UPDATE SKIP LOCKED``;
SQLite ``BEGIN IMMEDIATE``), so one queued run is started by one worker only, and
:meth:`~RunQueue.renew` their leases while they run. A row whose lease expired (its
worker was killed, or lost its database) is claimed again by another worker: the
``attempts`` counter says so, and is the fencing token every later write of the old
worker is checked against (its :meth:`~RunQueue.finish` then changes nothing).

:class:`SQLiteRunQueue` keeps the queue in one SQLite file (the gateway's default,
``$KAILASH_HOME/queue.db``, one machine); :class:`PostgresRunQueue` in a table of one
PostgreSQL schema, shared by any number of gateway processes on any hosts.

Stopping: :meth:`~RunQueue.request_stop` cancels a queued row (it ends ``interrupted``,
error :data:`CANCELLED`) or flags a running one ``stop_requested``, which its worker reads
with :meth:`~RunQueue.stop_requests` (``POST /runs/{id}/stop`` from any gateway).

Secrets: the queue is a database table like the run records, and the same guarantee
holds — no secret value is written. :func:`queueable_parameters` turns the values of a
workflow's secret parameters into ``${NAME}`` references (resolved from the worker's
environment when the run starts) and refuses a plain secret value.

Example:
    >>> import os, tempfile
    >>> q = SQLiteRunQueue(os.path.join(tempfile.mkdtemp(), "queue.db"))
    >>> q.enqueue(run_id="r1", workflow="etl", parameters={"load": {"n": 3}})
    True
    >>> q.enqueue(run_id="r1", workflow="etl", parameters={})  # idempotent on run_id
    False
    >>> q.depth()
    1
    >>> [run.run_id for run in q.claim("worker-1", limit=5, lease=30)]
    ['r1']
    >>> q.finish("r1", "worker-1", attempt=1, status="completed")
    True
    >>> q.get("r1").status, q.depth()
    ('completed', 0)
    >>> q.close()
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = ["QueuedRun", "RunQueue", "SQLiteRunQueue", "PostgresRunQueue", "worker_id", "queueable_parameters",
           "resolve_references", "default_lease", "QUEUE_STATES", "CANCELLED"]

QUEUE_STATES = ("queued", "running", "completed", "failed", "interrupted")
#: the error of a queued run cancelled (``request_stop``) before any worker started it
CANCELLED = "cancelled before it started (POST /runs/{id}/stop)"
_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def default_lease() -> float:
    """Seconds a claim lasts without renewal: ``KAILASH_QUEUE_LEASE`` or 30."""
    try:
        return max(0.2, float(os.environ.get("KAILASH_QUEUE_LEASE") or 30.0))
    except ValueError:
        return 30.0


def worker_id() -> str:
    """A new worker identity: ``host:pid:random`` (unique per worker, readable in the table)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, kw_only=True, slots=True)
class QueuedRun:
    """One row of the queue."""

    run_id: str
    workflow: str
    parameters: dict[str, Any]
    tenant_id: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    status: str = "queued"
    owner: str | None = None
    owner_info: dict[str, Any] | None = None
    previous_owner: str | None = None
    attempts: int = 0
    lease_until: float | None = None
    enqueued_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The run as ``GET /runs/{id}`` shows a run that has not started (no parameters)."""
        return {"run_id": self.run_id, "workflow": self.workflow, "status": self.status,
                "queued_at": self.enqueued_at, "started_at": self.started_at, "ended_at": self.ended_at,
                "attempts": self.attempts, "error": self.error}


class RunQueue(Protocol):
    """What the gateway's workers (and schedules) use; both backends implement it."""

    def enqueue(self, *, run_id: str, workflow: str, parameters: dict[str, Any], tenant_id: str | None = None,
                options: dict[str, Any] | None = None, owner: str | None = None,
                lease: float | None = None) -> bool: ...

    def claim(self, worker: str, *, limit: int = 1, lease: float | None = None) -> list[QueuedRun]: ...

    def renew(self, worker: str, *, lease: float | None = None, run_ids: list[str] | None = None) -> set[str]: ...

    def finish(self, run_id: str, worker: str, *, attempt: int, status: str, error: str | None = None) -> bool: ...

    def unclaim(self, run_id: str, worker: str, *, attempt: int, delay: float = 5.0) -> bool: ...

    def release(self, worker: str, run_ids: list[str] | None = None) -> int: ...

    def expire_dead_owners(self) -> int: ...

    def get(self, run_id: str) -> QueuedRun | None: ...

    def request_stop(self, run_id: str, tenant_id: str | None) -> str | None: ...

    def stop_requests(self, worker: str) -> set[str]: ...

    def depth(self, tenant_id: str | None = ..., *, status: str = "queued") -> int: ...

    def pending(self, tenant_id: str | None) -> int: ...

    def close(self) -> None: ...


def _owner_info() -> dict[str, Any]:
    from kailash.runtime.runlog import owner

    return dict(owner())


def _dumps(value: Any) -> str:
    from kailash.runtime.store import _json_default

    return json.dumps(value, default=_json_default)


def _check_enqueue(run_id: Any, workflow: Any, parameters: Any) -> None:
    from kailash.errors import WorkflowValidationError

    if not isinstance(run_id, str) or not run_id or len(run_id) > 200:
        raise WorkflowValidationError(f"enqueue: run_id must be a non-empty string (at most 200 characters), "
                                      f"got {run_id!r}", parameter="run_id", expected="str")
    if not isinstance(workflow, str) or not workflow:
        raise WorkflowValidationError(f"enqueue: workflow must be a workflow name, got {workflow!r}",
                                      parameter="workflow", expected="str")
    if not isinstance(parameters, dict):
        raise WorkflowValidationError(f"enqueue: parameters must be a dict {{node_id: {{name: value}}}}, "
                                      f"got {type(parameters).__name__}", parameter="parameters", expected="dict")


_COLUMNS = ("run_id, workflow, tenant_id, parameters, options, status, owner, owner_info, attempts, lease_until, "
            "enqueued_at, started_at, ended_at, error")


def _row_to_run(row: Any, previous: str | None = None) -> QueuedRun:
    (run_id, workflow, tenant_id, parameters, options, status, owner, info, attempts, lease_until, enqueued,
     started, ended, error) = row[:14]

    def load(v: Any) -> Any:
        return json.loads(v) if isinstance(v, str) else v

    return QueuedRun(run_id=run_id, workflow=workflow, tenant_id=tenant_id, parameters=load(parameters) or {},
                     options=load(options) or {}, status=status, owner=owner, owner_info=load(info),
                     previous_owner=previous, attempts=int(attempts or 0), lease_until=lease_until,
                     enqueued_at=enqueued, started_at=started, ended_at=ended, error=error)


def _dead(info: Any) -> bool:
    from kailash.runtime.runlog import owner_alive

    return owner_alive(info) is False


_SQLITE_DDL = """
CREATE TABLE IF NOT EXISTS run_queue (
    run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, tenant_id TEXT, parameters TEXT, options TEXT,
    status TEXT NOT NULL, owner TEXT, owner_info TEXT, attempts INTEGER NOT NULL DEFAULT 0, lease_until REAL,
    enqueued_at REAL NOT NULL, started_at REAL, ended_at REAL, error TEXT);
CREATE INDEX IF NOT EXISTS run_queue_ready ON run_queue (status, enqueued_at);
"""


class SQLiteRunQueue:
    """The queue in one SQLite file (WAL; claims under ``BEGIN IMMEDIATE``).

    Args:
        path: the database file (created if missing).
        lease: default seconds a claim lasts (default :func:`default_lease`).
    """

    def __init__(self, path: str | os.PathLike[str], *, lease: float | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lease = lease if lease is not None else default_lease()
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SQLITE_DDL)
        if "stop_requested" not in {r[1] for r in self._conn.execute("PRAGMA table_info(run_queue)")}:
            try:  # a queue file from before POST /runs/{id}/stop reached other gateways
                self._conn.execute("ALTER TABLE run_queue ADD COLUMN stop_requested INTEGER NOT NULL DEFAULT 0")
            except sqlite3.OperationalError:  # another process added it at the same moment
                pass

    def describe(self) -> str:
        return f"SQLite {self.path}"

    def _tx(self, fn: Any) -> Any:
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return out

    def enqueue(self, *, run_id: str, workflow: str, parameters: dict[str, Any], tenant_id: str | None = None,
                options: dict[str, Any] | None = None, owner: str | None = None,
                lease: float | None = None) -> bool:
        """Queue a run; ``False`` if ``run_id`` is already in the queue (nothing changes).

        With ``owner`` the run is queued already claimed by that worker (it starts it now).
        """
        _check_enqueue(run_id, workflow, parameters)
        now = time.time()
        claimed = owner is not None
        values = (run_id, workflow, tenant_id, _dumps(parameters), _dumps(options or {}),
                  "running" if claimed else "queued", owner, _dumps(_owner_info()) if claimed else None,
                  1 if claimed else 0, now + (lease or self.lease) if claimed else None, now,
                  now if claimed else None, None, None)
        with self._lock:
            cur = self._conn.execute(f"INSERT INTO run_queue ({_COLUMNS}) VALUES ({', '.join('?' * 14)}) "
                                     "ON CONFLICT (run_id) DO NOTHING", values)
        return cur.rowcount > 0

    def claim(self, worker: str, *, limit: int = 1, lease: float | None = None) -> list[QueuedRun]:
        """Claim up to ``limit`` runs: queued ones oldest first, then ones whose lease expired."""
        if limit <= 0:
            return []
        info = _dumps(_owner_info())

        def pick(conn: sqlite3.Connection) -> list[QueuedRun]:
            now = time.time()
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM run_queue WHERE (status = 'queued' AND (lease_until IS NULL OR "
                "lease_until < ?)) OR (status = 'running' AND lease_until < ?) ORDER BY enqueued_at LIMIT ?",
                (now, now, int(limit))).fetchall()
            out = []
            for row in rows:
                conn.execute("UPDATE run_queue SET status = 'running', owner = ?, owner_info = ?, "
                             "attempts = attempts + 1, lease_until = ?, started_at = COALESCE(started_at, ?) "
                             "WHERE run_id = ?", (worker, info, now + (lease or self.lease), now, row[0]))
                out.append(_row_to_run((*row[:5], "running", worker, info, row[8] + 1, now + (lease or self.lease),
                                         row[10], row[11] or now, None, None), previous=row[6]))
            return out

        result: list[QueuedRun] = self._tx(pick)
        return result

    def renew(self, worker: str, *, lease: float | None = None, run_ids: list[str] | None = None) -> set[str]:
        """Extend the lease of every run ``worker`` holds (of ``run_ids`` only, if given); the ids it still holds."""
        until = time.time() + (lease or self.lease)
        where = "owner = ? AND status = 'running'"
        args: list[Any] = [worker]
        if run_ids is not None:
            if not run_ids:
                return set()
            where += f" AND run_id IN ({', '.join('?' * len(run_ids))})"
            args += run_ids

        def go(conn: sqlite3.Connection) -> set[str]:
            conn.execute(f"UPDATE run_queue SET lease_until = ? WHERE {where}", (until, *args))
            return {r[0] for r in conn.execute(f"SELECT run_id FROM run_queue WHERE {where}", args)}

        held: set[str] = self._tx(go)
        return held

    def finish(self, run_id: str, worker: str, *, attempt: int, status: str, error: str | None = None) -> bool:
        """End a run ``worker`` holds (attempt ``attempt``); ``False`` if it lost the claim meanwhile."""
        if status not in ("completed", "failed", "interrupted"):
            raise ValueError(f"finish: status must be completed, failed or interrupted, got {status!r}")
        with self._lock:
            cur = self._conn.execute(
                "UPDATE run_queue SET status = ?, error = ?, ended_at = ?, lease_until = NULL WHERE run_id = ? "
                "AND owner = ? AND attempts = ? AND status = 'running'",
                (status, error, time.time(), run_id, worker, attempt))
        return cur.rowcount > 0

    def unclaim(self, run_id: str, worker: str, *, attempt: int, delay: float = 5.0) -> bool:
        """Put a claimed run back, unstarted, for another worker (this one cannot run it); nobody
        claims it for ``delay`` s. ``False`` if ``worker`` no longer holds it."""
        with self._lock:
            cur = self._conn.execute(
                "UPDATE run_queue SET status = 'queued', owner = NULL, owner_info = NULL, attempts = attempts - 1, "
                "lease_until = ? WHERE run_id = ? AND owner = ? AND attempts = ? AND status = 'running'",
                (time.time() + delay, run_id, worker, attempt))
        return cur.rowcount > 0

    def release(self, worker: str, run_ids: list[str] | None = None) -> int:
        """Let another worker take ``worker``'s runs (all, or ``run_ids``) at once: their leases end now."""
        sql = "UPDATE run_queue SET lease_until = 0 WHERE owner = ? AND status = 'running'"
        args: list[Any] = [worker]
        if run_ids is not None:
            if not run_ids:
                return 0
            sql += f" AND run_id IN ({', '.join('?' * len(run_ids))})"
            args += run_ids
        with self._lock:
            return self._conn.execute(sql, args).rowcount

    def expire_dead_owners(self) -> int:
        """End the leases of runs whose worker process on this host is gone (no waiting for the lease)."""
        with self._lock:
            rows = self._conn.execute("SELECT run_id, owner, owner_info FROM run_queue WHERE status = 'running' "
                                      "AND lease_until >= ?", (time.time(),)).fetchall()
        dead = [(r[0], r[1]) for r in rows if r[2] and _dead(json.loads(r[2]))]
        n = 0
        for run_id, who in dead:
            with self._lock:
                n += self._conn.execute("UPDATE run_queue SET lease_until = 0 WHERE run_id = ? AND owner = ? AND "
                                        "status = 'running'", (run_id, who)).rowcount
        return n

    def get(self, run_id: str) -> QueuedRun | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {_COLUMNS} FROM run_queue WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else _row_to_run(row)

    def request_stop(self, run_id: str, tenant_id: str | None) -> str | None:
        """Stop run ``run_id`` of ``tenant_id``: ``"cancelled"`` if it was still queued (it never starts;
        its row ends ``interrupted``), ``"stopping"`` if it is running (its worker sees the request with
        :meth:`stop_requests`), ``None`` if it is not queued or running."""
        def go(conn: sqlite3.Connection) -> str | None:
            if conn.execute("UPDATE run_queue SET status = 'interrupted', error = ?, ended_at = ?, lease_until = "
                            "NULL WHERE run_id = ? AND tenant_id IS ? AND status = 'queued'",
                            (CANCELLED, time.time(), run_id, tenant_id)).rowcount:
                return "cancelled"
            if conn.execute("UPDATE run_queue SET stop_requested = 1 WHERE run_id = ? AND tenant_id IS ? AND "
                            "status = 'running'", (run_id, tenant_id)).rowcount:
                return "stopping"
            return None

        out: str | None = self._tx(go)
        return out

    def stop_requests(self, worker: str) -> set[str]:
        """The runs ``worker`` holds whose stop was requested (:meth:`request_stop`)."""
        with self._lock:
            return {r[0] for r in self._conn.execute("SELECT run_id FROM run_queue WHERE owner = ? AND status = "
                                                     "'running' AND stop_requested <> 0", (worker,))}

    def depth(self, tenant_id: str | None = None, *, status: str = "queued", all_tenants: bool = True) -> int:
        """Runs in ``status`` (default: waiting for a worker); of one tenant with ``all_tenants=False``."""
        sql, args = "SELECT count(*) FROM run_queue WHERE status = ?", [status]
        if not all_tenants:
            sql += " AND tenant_id IS ?"
            args.append(tenant_id)  # type: ignore[arg-type]
        with self._lock:
            return int(self._conn.execute(sql, args).fetchone()[0])

    def pending(self, tenant_id: str | None) -> int:
        """Runs of ``tenant_id`` (``None``: the gateway's own) queued or running: the concurrency count."""
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM run_queue WHERE status IN ('queued', 'running') "
                                          "AND tenant_id IS ?", (tenant_id,)).fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


_PG_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.run_queue (
    run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, tenant_id TEXT, parameters JSONB, options JSONB,
    status TEXT NOT NULL, owner TEXT, owner_info JSONB, attempts INTEGER NOT NULL DEFAULT 0,
    lease_until DOUBLE PRECISION, enqueued_at DOUBLE PRECISION NOT NULL, started_at DOUBLE PRECISION,
    ended_at DOUBLE PRECISION, error TEXT);
CREATE INDEX IF NOT EXISTS run_queue_ready ON {schema}.run_queue (status, enqueued_at);
"""

_NOW = "extract(epoch from clock_timestamp())::double precision"  # the database's clock: hosts may disagree


class PostgresRunQueue:
    """The queue in ``<schema>.run_queue`` of a PostgreSQL database, shared by many gateways.

    Times are the database server's clock, so gateways on hosts whose clocks disagree
    still agree on when a lease expires.

    Args:
        pool: a ``psycopg_pool.ConnectionPool`` (autocommit connections), or a database URL.
        schema: the schema holding the table (created if missing).
        lease: default seconds a claim lasts (default :func:`default_lease`).
    """

    def __init__(self, pool: Any, schema: str, *, lease: float | None = None) -> None:
        from psycopg import sql

        if isinstance(pool, str):
            from psycopg_pool import ConnectionPool

            pool = ConnectionPool(pool, min_size=1, max_size=4, kwargs={"autocommit": True}, open=True,
                                  name="kailash-queue")
            self._owns_pool = True
        else:
            self._owns_pool = False
        self.pool = pool
        self.schema = schema
        self.lease = lease if lease is not None else default_lease()
        self._sql = sql
        with pool.connection() as conn:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            try:
                conn.execute(self.q(_PG_DDL))
            except Exception:  # another gateway created it at the same moment
                conn.execute(self.q(_PG_DDL))
            try:  # a table from before POST /runs/{id}/stop reached other gateways
                conn.execute(self.q("ALTER TABLE {schema}.run_queue ADD COLUMN IF NOT EXISTS stop_requested "
                                    "BOOLEAN NOT NULL DEFAULT false"))
            except Exception:  # another gateway added it at the same moment
                pass

    def q(self, text: str) -> Any:
        return self._sql.SQL(text).format(schema=self._sql.Identifier(self.schema))

    def describe(self) -> str:
        return f"PostgreSQL schema {self.schema}"

    def enqueue(self, *, run_id: str, workflow: str, parameters: dict[str, Any], tenant_id: str | None = None,
                options: dict[str, Any] | None = None, owner: str | None = None,
                lease: float | None = None) -> bool:
        """Queue a run; ``False`` if ``run_id`` is already in the queue (``INSERT ... ON CONFLICT DO NOTHING``).

        With ``owner`` the run is queued already claimed by that worker (it starts it now).
        """
        _check_enqueue(run_id, workflow, parameters)
        claimed = owner is not None
        lease_s = float(lease or self.lease)
        with self.pool.connection() as conn:
            cur = conn.execute(self.q(
                f"INSERT INTO {{schema}}.run_queue ({_COLUMNS}) VALUES (%s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, "
                f"%s::jsonb, %s, CASE WHEN %s THEN {_NOW} + %s END, {_NOW}, CASE WHEN %s THEN {_NOW} END, NULL, NULL) "
                "ON CONFLICT (run_id) DO NOTHING"),
                (run_id, workflow, tenant_id, _dumps(parameters), _dumps(options or {}),
                 "running" if claimed else "queued", owner, _dumps(_owner_info()) if claimed else None,
                 1 if claimed else 0, claimed, lease_s, claimed))
            return bool(cur.rowcount > 0)

    def claim(self, worker: str, *, limit: int = 1, lease: float | None = None) -> list[QueuedRun]:
        """Claim up to ``limit`` runs (``FOR UPDATE SKIP LOCKED``: concurrent claimers never get the same row)."""
        if limit <= 0:
            return []
        cols = ", ".join(f"q.{c}" for c in _COLUMNS.split(", "))
        with self.pool.connection() as conn:
            rows = conn.execute(self.q(
                f"WITH picked AS (SELECT run_id, owner AS previous FROM {{schema}}.run_queue "
                f"WHERE (status = 'queued' AND (lease_until IS NULL OR lease_until < {_NOW})) "
                f"OR (status = 'running' AND lease_until < {_NOW}) "
                "ORDER BY enqueued_at LIMIT %s FOR UPDATE SKIP LOCKED) "
                f"UPDATE {{schema}}.run_queue q SET status = 'running', owner = %s, owner_info = %s::jsonb, "
                f"attempts = q.attempts + 1, lease_until = {_NOW} + %s, started_at = COALESCE(q.started_at, {_NOW}) "
                f"FROM picked WHERE q.run_id = picked.run_id RETURNING {cols}, picked.previous"),
                (int(limit), worker, _dumps(_owner_info()), float(lease or self.lease))).fetchall()
        rows.sort(key=lambda r: r[10])
        return [_row_to_run(r, previous=r[14]) for r in rows]

    def renew(self, worker: str, *, lease: float | None = None, run_ids: list[str] | None = None) -> set[str]:
        """Extend the lease of every run ``worker`` holds (of ``run_ids`` only, if given); the ids it still holds."""
        if run_ids is not None and not run_ids:
            return set()
        text = (f"UPDATE {{schema}}.run_queue SET lease_until = {_NOW} + %s WHERE owner = %s AND status = 'running'"
                + (" AND run_id = ANY(%s)" if run_ids is not None else "") + " RETURNING run_id")
        args: list[Any] = [float(lease or self.lease), worker]
        if run_ids is not None:
            args.append(list(run_ids))
        with self.pool.connection() as conn:
            rows = conn.execute(self.q(text), args).fetchall()
        return {r[0] for r in rows}

    def finish(self, run_id: str, worker: str, *, attempt: int, status: str, error: str | None = None) -> bool:
        """End a run ``worker`` holds (attempt ``attempt``); ``False`` if it lost the claim meanwhile."""
        if status not in ("completed", "failed", "interrupted"):
            raise ValueError(f"finish: status must be completed, failed or interrupted, got {status!r}")
        with self.pool.connection() as conn:
            cur = conn.execute(self.q(
                f"UPDATE {{schema}}.run_queue SET status = %s, error = %s, ended_at = {_NOW}, lease_until = NULL "
                "WHERE run_id = %s AND owner = %s AND attempts = %s AND status = 'running'"),
                (status, error, run_id, worker, attempt))
            return bool(cur.rowcount > 0)

    def unclaim(self, run_id: str, worker: str, *, attempt: int, delay: float = 5.0) -> bool:
        """Put a claimed run back, unstarted, for another worker (this one cannot run it); nobody
        claims it for ``delay`` s. ``False`` if ``worker`` no longer holds it."""
        with self.pool.connection() as conn:
            cur = conn.execute(self.q(
                "UPDATE {schema}.run_queue SET status = 'queued', owner = NULL, owner_info = NULL, "
                f"attempts = attempts - 1, lease_until = {_NOW} + %s WHERE run_id = %s AND owner = %s "
                "AND attempts = %s AND status = 'running'"), (float(delay), run_id, worker, attempt))
            return bool(cur.rowcount > 0)

    def release(self, worker: str, run_ids: list[str] | None = None) -> int:
        """Let another worker take ``worker``'s runs (all, or ``run_ids``) at once: their leases end now."""
        if run_ids is not None and not run_ids:
            return 0
        text = "UPDATE {schema}.run_queue SET lease_until = 0 WHERE owner = %s AND status = 'running'"
        args: list[Any] = [worker]
        if run_ids is not None:
            text += " AND run_id = ANY(%s)"
            args.append(list(run_ids))
        with self.pool.connection() as conn:
            return int(conn.execute(self.q(text), args).rowcount)

    def expire_dead_owners(self) -> int:
        """End the leases of runs whose worker process on this host is gone (no waiting for the lease)."""
        with self.pool.connection() as conn:
            rows = conn.execute(self.q(f"SELECT run_id, owner, owner_info FROM {{schema}}.run_queue WHERE status = "
                                       f"'running' AND lease_until >= {_NOW} AND owner_info->>'host' = %s"),
                                (socket.gethostname(),)).fetchall()
            n = 0
            for run_id, who, info in rows:
                if info and _dead(info):
                    n += conn.execute(self.q("UPDATE {schema}.run_queue SET lease_until = 0 WHERE run_id = %s AND "
                                             "owner = %s AND status = 'running'"), (run_id, who)).rowcount
        return n

    def get(self, run_id: str) -> QueuedRun | None:
        with self.pool.connection() as conn:
            row = conn.execute(self.q(f"SELECT {_COLUMNS} FROM {{schema}}.run_queue WHERE run_id = %s"),
                               (run_id,)).fetchone()
        return None if row is None else _row_to_run(row)

    def request_stop(self, run_id: str, tenant_id: str | None) -> str | None:
        """Stop run ``run_id`` of ``tenant_id``: ``"cancelled"`` if it was still queued (it never starts;
        its row ends ``interrupted``), ``"stopping"`` if it is running (its worker sees the request with
        :meth:`stop_requests`), ``None`` if it is not queued or running."""
        with self.pool.connection() as conn:
            if conn.execute(self.q(f"UPDATE {{schema}}.run_queue SET status = 'interrupted', error = %s, ended_at = "
                                   f"{_NOW}, lease_until = NULL WHERE run_id = %s AND tenant_id IS NOT DISTINCT "
                                   "FROM %s AND status = 'queued'"), (CANCELLED, run_id, tenant_id)).rowcount:
                return "cancelled"
            if conn.execute(self.q("UPDATE {schema}.run_queue SET stop_requested = true WHERE run_id = %s AND "
                                   "tenant_id IS NOT DISTINCT FROM %s AND status = 'running'"),
                            (run_id, tenant_id)).rowcount:
                return "stopping"
        return None

    def stop_requests(self, worker: str) -> set[str]:
        """The runs ``worker`` holds whose stop was requested (:meth:`request_stop`)."""
        with self.pool.connection() as conn:
            rows = conn.execute(self.q("SELECT run_id FROM {schema}.run_queue WHERE owner = %s AND status = "
                                       "'running' AND stop_requested"), (worker,)).fetchall()
        return {r[0] for r in rows}

    def depth(self, tenant_id: str | None = None, *, status: str = "queued", all_tenants: bool = True) -> int:
        """Runs in ``status`` (default: waiting for a worker); of one tenant with ``all_tenants=False``."""
        text, args = "SELECT count(*) FROM {schema}.run_queue WHERE status = %s", [status]
        if not all_tenants:
            text += " AND tenant_id IS NOT DISTINCT FROM %s"
            args.append(tenant_id)  # type: ignore[arg-type]
        with self.pool.connection() as conn:
            return int(conn.execute(self.q(text), args).fetchone()[0])

    def pending(self, tenant_id: str | None) -> int:
        """Runs of ``tenant_id`` (``None``: the gateway's own) queued or running: the concurrency count."""
        with self.pool.connection() as conn:
            return int(conn.execute(self.q("SELECT count(*) FROM {schema}.run_queue WHERE status IN ('queued', "
                                           "'running') AND tenant_id IS NOT DISTINCT FROM %s"),
                                    (tenant_id,)).fetchone()[0])

    def close(self) -> None:
        if self._owns_pool:
            self.pool.close()


# -- secrets ------------------------------------------------------------------------------------
def queueable_parameters(workflow: Any, parameters: dict[str, Any], *, allow_env: bool = True) -> dict[str, Any]:
    """``parameters`` as the queue (or a schedule) may store them: no secret value at all.

    The values of secret parameters must be ``${NAME}`` references given under their
    node id (resolved from the worker's environment when the run starts); a secret
    parameter given as a workflow input, and any value holding a URL's password or a
    credential query value (``postgresql://u:pw@h/db``, ``?api_key=...``, which run
    records mask), are refused too.

    Raises:
        SecurityError: a parameter would put a secret value in the database — naming the
            node and parameter; or a reference where ``allow_env`` is off (a tenant cannot
            read the gateway's environment).
    """
    from kailash.errors import SecurityError
    from kailash.security.credentials import url_credentials

    nodes = getattr(workflow, "nodes", {})
    how = ("pass it as a ${NAME} reference to a variable set on every gateway, or " if allow_env else "")

    def refuse(node_id: str, name: str, what: str) -> SecurityError:
        return SecurityError(
            f"parameter '{name}' of node '{node_id}' {what} and an async or scheduled run is kept in the gateway's "
            f"database, where secret values are never written: {how}run it synchronously (without ?async=true)",
            node_id=node_id, parameter=name, expected="a ${NAME} reference" if allow_env else "a synchronous run")

    def secret_names(node: Any) -> set[str]:
        try:
            return {n for n, p in node.parameters.items() if p.secret}
        except Exception:
            return set()

    def has_credential(value: Any, depth: int = 0) -> bool:
        if depth > 50:
            return False
        if type(value) is str:
            return "://" in value and bool(url_credentials(value))
        if isinstance(value, dict):
            return any(has_credential(v, depth + 1) for v in value.values())
        if isinstance(value, (list, tuple)):
            return any(has_credential(v, depth + 1) for v in value)
        return False

    for key, values in parameters.items():
        node = nodes.get(key)
        if node is not None and isinstance(values, dict):
            secret = secret_names(node)
            for name, value in values.items():
                if value is None:
                    continue
                if name in secret:
                    if isinstance(value, str) and _ENV_REF.match(value) and allow_env:
                        continue
                    raise refuse(key, name, "is secret")
                if has_credential(value):
                    raise refuse(key, name, "holds a URL with a password or a credential")
            continue
        # a workflow input: offered to every entry node that takes it (references are not resolved there)
        takers = [node_id for node_id, n in nodes.items() if key in secret_names(n)]
        if takers and values is not None:
            raise refuse(takers[0], key, f"is secret (give it under its node id, {{\"{takers[0]}\": "
                         f"{{\"{key}\": ...}}}})")
        if has_credential(values):
            taker = next((node_id for node_id, n in nodes.items() if key in _names(n)), key)
            raise refuse(taker, key, "holds a URL with a password or a credential")
    return parameters


def _names(node: Any) -> Any:
    try:
        return node.parameters
    except Exception:
        return ()


def resolve_references(workflow: Any, parameters: dict[str, Any], *, allow_env: bool = True) -> dict[str, Any]:
    """The worker's side of :func:`queueable_parameters`: ``${NAME}`` values of secret
    parameters replaced by the variable's value from this process's environment.

    ``allow_env=False`` (a tenant's run) resolves nothing: a reference that reached the
    queue by any path is refused, never read from the gateway's environment.

    Raises:
        SecurityError: the variable is not set here (naming node, parameter and variable),
            or a reference in a run that may not read the environment.
    """
    from kailash.errors import SecurityError
    from kailash.security.secrets import Secret

    out = dict(parameters)
    for node_id, node in getattr(workflow, "nodes", {}).items():
        values = out.get(node_id)
        if not isinstance(values, dict):
            continue
        try:
            secret = {n for n, p in node.parameters.items() if p.secret}
        except Exception:
            continue
        fixed = dict(values)
        for name in secret & set(values):
            value = values[name]
            m = _ENV_REF.match(value) if isinstance(value, str) else None
            if m is None:
                continue
            if not allow_env:
                raise SecurityError(f"parameter '{name}' of node '{node_id}' refers to ${{{m.group(1)}}}: a tenant's "
                                    "run cannot read the gateway's environment", node_id=node_id, parameter=name,
                                    expected="a value given by the run")
            env = os.environ.get(m.group(1))
            if env is None:
                raise SecurityError(f"parameter '{name}' of node '{node_id}' refers to ${{{m.group(1)}}}, which is "
                                    "not set in this gateway's environment", node_id=node_id, parameter=name,
                                    expected=f"environment variable {m.group(1)}")
            fixed[name] = Secret(env, env=m.group(1))
        out[node_id] = fixed
    return out
