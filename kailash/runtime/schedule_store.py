"""Where schedules and their fires are kept: SQLite (one file) or PostgreSQL (one schema).

Two tables: ``schedules`` (one row per schedule, with its ``next_fire_at``) and
``schedule_fires`` (one row per fire, primary key ``(schedule_id, fire_at)``).
:meth:`claim_due` opens the transaction a :class:`~kailash.runtime.schedules.Scheduler`
tick works in: it locks one due schedule — ``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
so another gateway takes the next one instead of waiting; ``BEGIN IMMEDIATE`` on SQLite,
one writer at a time — and commits the recorded fires together with the advanced
``next_fire_at``. The fires' primary key is the last guard: a fire already recorded is
never recorded (nor enqueued) again. The gateway's own namespace is stored with tenant
``''``; reads filter by tenant unless asked for every tenant (the operator's CLI).
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kailash.runtime.schedules import Fire, Schedule, check_schedule, new_schedule_id, next_fire_after

__all__ = ["SQLiteScheduleStore", "PostgresScheduleStore", "Claim", "KEEP_FIRES"]

#: fires kept per schedule (the history ``fires()`` shows); older ones are deleted as new ones come
KEEP_FIRES = 1000

_COLUMNS = ("id, workflow, tenant, cron, every, timezone, parameters, catchup, enabled, next_fire_at, "
            "created_at, updated_at")
_DDL = """
CREATE TABLE IF NOT EXISTS {s} (
    id TEXT PRIMARY KEY, workflow TEXT NOT NULL, tenant TEXT NOT NULL, cron TEXT, every INTEGER,
    timezone TEXT NOT NULL, parameters TEXT NOT NULL, catchup TEXT NOT NULL, enabled BOOLEAN NOT NULL,
    next_fire_at DOUBLE PRECISION, created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL);
CREATE INDEX IF NOT EXISTS {idx} ON {s} (next_fire_at);
CREATE TABLE IF NOT EXISTS {f} (
    schedule_id TEXT NOT NULL, fire_at DOUBLE PRECISION NOT NULL, run_id TEXT NOT NULL,
    enqueued_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (schedule_id, fire_at));
"""
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _schedule(row: Any) -> Schedule:
    (sid, workflow, tenant, cron, every, tz, params, catchup, enabled, next_at, created, updated) = row
    return Schedule(id=sid, workflow=workflow, tenant_id=tenant or None, cron=cron, every=every, timezone=tz,
                    parameters=json.loads(params) if isinstance(params, str) else (params or {}), catchup=catchup,
                    enabled=bool(enabled), next_fire_at=next_at, created_at=created, updated_at=updated)


class Claim:
    """One due schedule, locked for the length of the transaction (``schedule`` is ``None`` when none is due)."""

    def __init__(self, db: Any, schedule: Schedule | None) -> None:
        self._db = db
        self.schedule = schedule

    def record_fire(self, fire_at: float, run_id: str, now: float) -> bool:
        """Record a fire; ``False`` when it was already recorded (then it must not be enqueued)."""
        assert self.schedule is not None
        return bool(self._db.insert_fire(self.schedule.id, fire_at, run_id, now))

    def advance(self, next_fire_at: float) -> None:
        """Set the schedule's next fire time, and forget its fires beyond the latest :data:`KEEP_FIRES`."""
        assert self.schedule is not None
        sid = self.schedule.id
        self._db.run("UPDATE {s} SET next_fire_at = ? WHERE id = ?", (next_fire_at, sid))
        # an old fire can never be due again (next_fire_at only moves forward), so its guard row may go
        self._db.run("DELETE FROM {f} WHERE schedule_id = ? AND fire_at < (SELECT fire_at FROM {f} "
                     "WHERE schedule_id = ? ORDER BY fire_at DESC LIMIT 1 OFFSET ?)", (sid, sid, KEEP_FIRES - 1))


class _Store:
    """The schedule operations, written once over a small SQL dialect (``?`` placeholders, ``{s}``/``{f}`` tables)."""

    _lock_clause = ""

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Any]:  # pragma: no cover - each backend defines it
        raise NotImplementedError
        yield

    def _scope(self, tenant_id: str | None, any_tenant: bool) -> tuple[str, tuple[Any, ...]]:
        return ("", ()) if any_tenant else (" AND tenant = ?", (tenant_id or "",))

    def add(self, *, workflow: str, cron: str | None = None, every: Any = None, timezone: str = "UTC",
            parameters: dict[str, Any] | None = None, catchup: str = "skip", enabled: bool = True,
            tenant_id: str | None = None, now: float | None = None) -> Schedule:
        """Create a schedule (checked: :class:`~kailash.errors.ScheduleError` names a bad field); its first fire is after ``now``."""
        fields = check_schedule(workflow=workflow, cron=cron, every=every, timezone=timezone, parameters=parameters,
                                catchup=catchup)
        now = time.time() if now is None else now
        schedule = Schedule(id=new_schedule_id(), tenant_id=tenant_id or None, enabled=bool(enabled),
                            created_at=now, updated_at=now, **fields)
        if schedule.enabled:
            schedule = _replace(schedule, next_fire_at=next_fire_after(schedule, now))
        with self._tx() as db:
            db.run(f"INSERT INTO {{s}} ({_COLUMNS}) VALUES ({', '.join('?' * 12)})", _row(schedule))
        return schedule

    def get(self, schedule_id: str, *, tenant_id: str | None = None, any_tenant: bool = False) -> Schedule | None:
        """The schedule, if it exists in ``tenant_id``'s namespace (or anywhere, with ``any_tenant``)."""
        where, args = self._scope(tenant_id, any_tenant)
        with self._tx() as db:
            row = db.one(f"SELECT {_COLUMNS} FROM {{s}} WHERE id = ?{where}", (schedule_id, *args))
        return None if row is None else _schedule(row)

    def list(self, *, tenant_id: str | None = None, any_tenant: bool = False) -> list[Schedule]:
        """The schedules of ``tenant_id``'s namespace (or of all, with ``any_tenant``), oldest first."""
        where, args = self._scope(tenant_id, any_tenant)
        with self._tx() as db:
            rows = db.all(f"SELECT {_COLUMNS} FROM {{s}} WHERE 1 = 1{where} ORDER BY created_at, id", args)
        return [_schedule(r) for r in rows]

    def update(self, schedule_id: str, *, tenant_id: str | None = None, any_tenant: bool = False,
               now: float | None = None, **changes: Any) -> Schedule | None:
        """Change fields (``cron``, ``every``, ``timezone``, ``parameters``, ``catchup``, ``enabled``).

        Pausing clears ``next_fire_at``; resuming, or changing when it fires, sets it to
        the first fire after ``now`` (fires missed while paused are not caught up).
        """
        unknown = set(changes) - {"cron", "every", "timezone", "parameters", "catchup", "enabled"}
        if unknown:
            from kailash.errors import ScheduleError

            name = sorted(unknown)[0]
            raise ScheduleError(f"a schedule has no field '{name}' that can be changed", parameter=name)
        now = time.time() if now is None else now
        where, args = self._scope(tenant_id, any_tenant)
        with self._tx() as db:
            row = db.one(f"SELECT {_COLUMNS} FROM {{s}} WHERE id = ?{where}{self._lock_clause}", (schedule_id, *args))
            if row is None:
                return None
            old = _schedule(row)
            timing = dict(cron=old.cron, every=old.every)
            if "cron" in changes or "every" in changes:  # switching kinds: the other one is cleared
                timing = {"cron": changes.get("cron"), "every": changes.get("every")}
            fields = check_schedule(workflow=old.workflow, timezone=changes.get("timezone", old.timezone),
                                    parameters=changes.get("parameters", old.parameters),
                                    catchup=changes.get("catchup", old.catchup), **timing)
            enabled = bool(changes.get("enabled", old.enabled))
            new = _replace(old, **fields, enabled=enabled, updated_at=now)
            retimed = (new.cron, new.every, new.timezone) != (old.cron, old.every, old.timezone)
            if not enabled:
                new = _replace(new, next_fire_at=None)
            elif not old.enabled or retimed or old.next_fire_at is None:
                new = _replace(new, next_fire_at=next_fire_after(new, now))
            db.run("UPDATE {s} SET cron = ?, every = ?, timezone = ?, parameters = ?, catchup = ?, enabled = ?, "
                   "next_fire_at = ?, updated_at = ? WHERE id = ?",
                   (new.cron, new.every, new.timezone, json.dumps(new.parameters), new.catchup, new.enabled,
                    new.next_fire_at, new.updated_at, new.id))
        return new

    def delete(self, schedule_id: str, *, tenant_id: str | None = None, any_tenant: bool = False) -> bool:
        """Delete a schedule and its fire history; ``False`` if there was none."""
        where, args = self._scope(tenant_id, any_tenant)
        with self._tx() as db:
            gone = bool(db.run(f"DELETE FROM {{s}} WHERE id = ?{where}", (schedule_id, *args)) > 0)
            if gone:
                db.run("DELETE FROM {f} WHERE schedule_id = ?", (schedule_id,))
        return gone

    def delete_namespace(self, tenant_id: str | None) -> int:
        """Delete every schedule of one namespace (a deleted tenant's) with its fires; return how many."""
        with self._tx() as db:
            db.run("DELETE FROM {f} WHERE schedule_id IN (SELECT id FROM {s} WHERE tenant = ?)", (tenant_id or "",))
            return int(db.run("DELETE FROM {s} WHERE tenant = ?", (tenant_id or "",)))

    def fires(self, schedule_id: str, *, limit: int = 50) -> builtins.list[Fire]:
        """The schedule's most recent fires, newest first."""
        with self._tx() as db:
            rows = db.all("SELECT schedule_id, fire_at, run_id, enqueued_at FROM {f} WHERE schedule_id = ? "
                          "ORDER BY fire_at DESC LIMIT ?", (schedule_id, int(limit)))
        return [Fire(schedule_id=r[0], fire_at=r[1], run_id=r[2], enqueued_at=r[3]) for r in rows]

    @contextlib.contextmanager
    def claim_due(self, now: float, *, exclude: set[str] | frozenset[str] = frozenset()) -> Iterator[Claim]:
        """Lock one enabled schedule with ``next_fire_at <= now`` (not in ``exclude``) for one transaction.

        The transaction commits when the block ends and rolls back if it raises.
        """
        skip = f" AND id NOT IN ({', '.join('?' * len(exclude))})" if exclude else ""
        with self._tx() as db:
            row = db.one(f"SELECT {_COLUMNS} FROM {{s}} WHERE enabled = ? AND next_fire_at <= ?{skip} "
                         f"ORDER BY next_fire_at LIMIT 1{self._lock_clause}", (True, now, *sorted(exclude)))
            yield Claim(db, None if row is None else _schedule(row))


def _replace(schedule: Schedule, **changes: Any) -> Schedule:
    import dataclasses

    return dataclasses.replace(schedule, **changes)


def _row(s: Schedule) -> tuple[Any, ...]:
    return (s.id, s.workflow, s.tenant_id or "", s.cron, s.every, s.timezone, json.dumps(s.parameters), s.catchup,
            s.enabled, s.next_fire_at, s.created_at, s.updated_at)


class _SQLiteDb:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def _sql(self, text: str) -> str:
        return text.replace("{s}", "schedules").replace("{f}", "schedule_fires")

    def one(self, text: str, args: tuple[Any, ...] = ()) -> Any:
        return self.conn.execute(self._sql(text), args).fetchone()

    def all(self, text: str, args: tuple[Any, ...] = ()) -> list[Any]:
        return self.conn.execute(self._sql(text), args).fetchall()

    def run(self, text: str, args: tuple[Any, ...] = ()) -> int:
        return self.conn.execute(self._sql(text), args).rowcount

    def insert_fire(self, schedule_id: str, fire_at: float, run_id: str, now: float) -> int:
        return self.run("INSERT OR IGNORE INTO {f} VALUES (?, ?, ?, ?)", (schedule_id, fire_at, run_id, now))


class SQLiteScheduleStore(_Store):
    """Schedules in one SQLite file; processes sharing the file take turns (``BEGIN IMMEDIATE``).

    Example:
        >>> import tempfile, os
        >>> store = SQLiteScheduleStore(os.path.join(tempfile.mkdtemp(), "schedules.db"))
        >>> s = store.add(workflow="etl", cron="0 * * * *", now=0.0)
        >>> s.next_fire_at, [x.id for x in store.list()] == [s.id]
        (3600.0, True)
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(_DDL.format(s="schedules", f="schedule_fires", idx="schedules_due"))

    @contextlib.contextmanager
    def _tx(self) -> Iterator[_SQLiteDb]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield _SQLiteDb(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class _PostgresDb:
    def __init__(self, conn: Any, schema: str) -> None:
        self.conn = conn
        self.schema = schema

    def _sql(self, text: str) -> Any:
        from psycopg import sql

        quoted = f'"{self.schema}"'  # checked against [a-z_][a-z0-9_]* at construction
        text = text.replace("%", "%%").replace("?", "%s")
        return sql.SQL(text.replace("{s}", quoted + ".schedules").replace("{f}", quoted + ".schedule_fires"))

    def one(self, text: str, args: tuple[Any, ...] = ()) -> Any:
        return self.conn.execute(self._sql(text), args).fetchone()

    def all(self, text: str, args: tuple[Any, ...] = ()) -> list[Any]:
        return list(self.conn.execute(self._sql(text), args).fetchall())

    def run(self, text: str, args: tuple[Any, ...] = ()) -> int:
        return int(self.conn.execute(self._sql(text), args).rowcount)

    def insert_fire(self, schedule_id: str, fire_at: float, run_id: str, now: float) -> int:
        return self.run("INSERT INTO {f} VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        (schedule_id, fire_at, run_id, now))


class PostgresScheduleStore(_Store):
    """Schedules in one PostgreSQL schema; gateways share it, each due schedule locked by one of them at a time.

    Args:
        pool: a ``psycopg_pool.ConnectionPool`` of autocommit connections (the gateway's storage pool).
        schema: the schema holding the two tables (created if missing).
    """

    _lock_clause = " FOR UPDATE SKIP LOCKED"

    def __init__(self, pool: Any, schema: str = "kailash") -> None:
        if not _SCHEMA_NAME.match(schema):
            raise ValueError(f"database schema '{schema}' is not valid: use lowercase letters, digits and '_'")
        self.pool = pool
        self.schema = schema
        self._owns_pool = False
        self._create()

    @classmethod
    def connect(cls, url: str, schema: str = "kailash") -> PostgresScheduleStore:
        """A store with a connection pool of its own (closed by :meth:`close`)."""
        try:
            from psycopg_pool import ConnectionPool
        except ImportError:
            raise ImportError("PostgreSQL schedules need psycopg 3: pip install 'kailash[postgres]'") from None
        pool = ConnectionPool(url, min_size=1, max_size=4, kwargs={"autocommit": True}, open=True,
                              name="kailash-schedules")
        store = cls(pool, schema)
        store._owns_pool = True
        return store

    def _create(self) -> None:
        import psycopg

        ddl = _DDL.format(s=f'"{self.schema}".schedules', f=f'"{self.schema}".schedule_fires', idx="schedules_due")
        for attempt in range(3):  # concurrent CREATE ... IF NOT EXISTS can still collide
            try:
                with self.pool.connection() as conn:
                    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                    conn.execute(ddl)
                return
            except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject,
                    psycopg.errors.DuplicateSchema, psycopg.errors.DuplicateTable):
                if attempt == 2:
                    raise
                time.sleep(0.05)

    @contextlib.contextmanager
    def _tx(self) -> Iterator[_PostgresDb]:
        with self.pool.connection() as conn, conn.transaction():
            yield _PostgresDb(conn, self.schema)

    def close(self) -> None:
        if self._owns_pool:
            self.pool.close()
