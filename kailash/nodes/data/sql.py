"""SQLDatabaseNode: parameterised SQL on SQLite (sqlite3) or PostgreSQL (psycopg 3 + pool).

Queries are always sent with bound parameters, never formatted into the SQL text; the
placeholder style (``?``, ``:name``, ``%s``, ``%(name)s``) is translated to the target
database's. Connections are pooled per connection string, process-wide, so every node
(and every run) using one database shares its pool. psycopg is imported only for
``postgresql://`` strings (``pip install 'kailash[postgres]'``). PostgreSQL queries are
sent as prepared statements, so a query holds exactly one statement, as with SQLite.

For a gateway tenant, a SQLite file resolves inside the tenant's own directory, pools
are never shared with another tenant, and a PostgreSQL connection always logs in as the
tenant's own role with its schema as ``search_path`` (see :func:`_tenant_dsn`).
"""

from __future__ import annotations

import atexit
import queue
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from kailash.errors import NodeConfigurationError, NodeExecutionError
from kailash.nodes.base import Node, NodeParameter, register_node
from kailash.nodes.capabilities import current_tenant, require, tenant_file
from kailash.nodes.data._sql_tenant import no_attach, tenant_dsn
from kailash.security.paths import validate_path
from kailash.security.secrets import Secret, as_secret, plain_secret_values, redact, reveal

__all__ = ["SQLDatabaseNode", "close_pools"]

_pools: dict[tuple[str, str], Any] = {}
_pools_lock = threading.Lock()
_PG_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")


def _where(node: Node) -> str:
    return f"node '{node.name}' (SQLDatabaseNode)" if node.name else "SQLDatabaseNode"


class _SQLitePool:
    """A few sqlite3 connections, each used by one thread at a time (``:memory:`` has one)."""

    def __init__(self, path: str, size: int, timeout: float, *, confined: bool = False) -> None:
        self.path, self.timeout, self.confined = path, timeout, confined
        self.memory = path == ":memory:"
        self.size = 1 if self.memory else max(1, size)
        self._idle: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._created = 0
        self._lock = threading.Lock()

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        conn = self._take()
        try:
            yield conn
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            self._idle.put(conn)

    def _take(self) -> sqlite3.Connection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._created < self.size:
                self._created += 1
                conn = sqlite3.connect(self.path, timeout=self.timeout, check_same_thread=False)
                if self.confined:  # ATTACH and VACUUM INTO would open any file on the host
                    conn.set_authorizer(no_attach)
                return conn
        return self._idle.get(timeout=self.timeout)

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def close_pools() -> None:
    """Close every pooled database connection (also done at interpreter exit)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        try:
            pool.close()
        except Exception:  # noqa: BLE001 - closing on the way out must not fail
            pass


atexit.register(close_pools)


_TOKEN = re.compile(
    r"""('(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|/\*.*?\*/|::|%\((\w+)\)s|%s|%%|%|\?|(?<![:\w]):([A-Za-z_]\w*))""",
    re.S,
)


def translate_placeholders(query: str, target: str) -> str:
    """Rewrite placeholders for ``target``: ``"sqlite"`` (``?``, ``:name``) or ``"postgres"`` (``%s``, ``%(name)s``).

    A query already in the target's style is returned unchanged. Quoted text and
    comments are never rewritten, except that psycopg needs every literal ``%`` doubled
    (and SQLite needs them single again).

    Example:
        >>> translate_placeholders("SELECT * FROM t WHERE a = ? AND b LIKE 'x?%'", "postgres")
        "SELECT * FROM t WHERE a = %s AND b LIKE 'x?%%'"
        >>> translate_placeholders("SELECT %(id)s::int", "sqlite")
        'SELECT :id::int'
    """
    matches = list(_TOKEN.finditer(query))
    pyformat = any(m.group(0) == "%s" or m.group(2) for m in matches)
    if pyformat == (target == "postgres"):
        return query

    def to_postgres(m: re.Match[str]) -> str:
        tok = m.group(0)
        if tok[0] in "'\"" or tok.startswith(("--", "/*")):
            return tok.replace("%", "%%")
        if m.group(3):
            return f"%({m.group(3)})s"
        return {"?": "%s", "%%": "%%%%", "%": "%%", "::": "::"}[tok]

    def to_sqlite(m: re.Match[str]) -> str:
        tok = m.group(0)
        if tok[0] in "'\"" or tok.startswith(("--", "/*")):
            return tok.replace("%%", "%")
        if m.group(2):
            return f":{m.group(2)}"
        if m.group(3):
            return tok
        return {"?": "?", "%s": "?", "%%": "%", "%": "%", "::": "::"}[tok]

    return _TOKEN.sub(to_postgres if target == "postgres" else to_sqlite, query)


@register_node(category="data")
class SQLDatabaseNode(Node):
    """Run one parameterised SQL statement on SQLite or PostgreSQL; rows come out as dicts.

    ``connection_string``: ``sqlite:///relative.db``, ``sqlite:////absolute.db``,
    ``sqlite:///:memory:`` or ``postgresql://user@host:5432/db`` (a password in it, or the
    ``password`` parameter, is kept secret). ``parameters`` binds values: a list/tuple
    for positional placeholders, a dict for named ones, or with ``execute_many=True`` a
    list of those. Outputs ``data`` (list of row dicts; one dict or ``None`` with
    ``fetch="one"``), ``row_count`` (rows returned, or affected for writes) and
    ``columns``. Each run is one transaction: committed on success, rolled back on error.

    Example:
        >>> db = "sqlite:///:memory:"
        >>> _ = SQLDatabaseNode(connection_string=db, query="CREATE TABLE IF NOT EXISTS doc_t (x INT)").execute()
        >>> _ = SQLDatabaseNode(connection_string=db, query="INSERT INTO doc_t VALUES (?)",
        ...                     parameters=[[1], [2]], execute_many=True).execute()
        >>> SQLDatabaseNode(connection_string=db, query="SELECT SUM(x) AS s FROM doc_t").execute()["data"]
        [{'s': 3}]
    """

    capabilities = frozenset({"database"})

    primary_input = "parameters"
    primary_output = "data"

    def __init__(self, config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        cs = self.config.get("connection_string")
        if isinstance(cs, str) and urlsplit(cs).password:
            self.config["connection_string"] = as_secret(cs)
        if self.config.get("password") is not None:
            self.config["password"] = as_secret(self.config["password"])

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "connection_string": NodeParameter(
                type=(str, Secret), required=True, description="sqlite:///file.db or postgresql://user@host/db"
            ),
            "query": NodeParameter(type=str, required=True, description="one SQL statement with placeholders"),
            "parameters": NodeParameter(
                type=(list, tuple, dict), default=None, description="values bound to the placeholders"
            ),
            "execute_many": NodeParameter(
                type=bool, default=False, description="'parameters' is a list of parameter sets"
            ),
            "fetch": NodeParameter(type=str, default="all", description="'all' rows, 'one' row, or 'none'"),
            "password": NodeParameter(type=(str, Secret), default=None, secret=True, description="database password"),
            "pool_size": NodeParameter(type=int, default=5, minimum=1, description="most pooled connections per database"),
            "timeout": NodeParameter(type=float, default=30.0, minimum=0, description="seconds to wait for a connection/lock"),
        }

    def get_outputs(self) -> dict[str, NodeParameter]:
        return {
            "data": NodeParameter(type=list, description="the rows as dicts"),
            "row_count": NodeParameter(type=int, description="rows returned, or affected by a write"),
            "columns": NodeParameter(type=list, description="the result's column names"),
        }

    def run(self, **inputs: Any) -> dict[str, Any]:
        fetch = inputs.get("fetch") or "all"
        if fetch not in ("all", "one", "none"):
            raise NodeConfigurationError(
                f"{_where(self)}: parameter 'fetch' must be 'all', 'one' or 'none', got {fetch!r}",
                node_id=self.name, parameter="fetch", expected="all | one | none", got=fetch,
            )
        conn_str = str(reveal(inputs["connection_string"]))
        params = inputs.get("parameters")
        many = bool(inputs.get("execute_many"))
        if many and (not isinstance(params, (list, tuple)) or not all(isinstance(p, (list, tuple, dict)) for p in params)):
            raise NodeConfigurationError(
                f"{_where(self)}: with execute_many=True, 'parameters' must be a list of lists or dicts",
                node_id=self.name, parameter="parameters", expected="a list of parameter sets",
                got=type(params).__name__,
            )
        require("database", who=_where(self), what="running SQL", node_id=self.name)
        scheme = urlsplit(conn_str).scheme.lower()
        secrets = plain_secret_values(inputs.get("connection_string"), inputs.get("password"))
        if scheme == "sqlite":
            return self._sqlite(conn_str, inputs, params, many, fetch)
        if scheme in _PG_SCHEMES:
            return self._postgres(conn_str, inputs, params, many, fetch, secrets)
        raise NodeConfigurationError(
            f"{_where(self)}: parameter 'connection_string' must start with sqlite:/// or postgresql://, "
            f"got scheme {scheme or 'none'!r}",
            node_id=self.name, parameter="connection_string", expected="sqlite:///... or postgresql://...",
        )

    # -- SQLite ----------------------------------------------------------------------------
    def _sqlite(self, conn_str: str, v: dict[str, Any], params: Any, many: bool, fetch: str) -> dict[str, Any]:
        raw = conn_str[len("sqlite:"):]
        path = raw[3:] if raw.startswith("///") else raw.lstrip("/")
        if path in ("", ":memory:"):
            path = ":memory:"
        else:  # a tenant's file lives in its own directory (relative paths start there)
            path = tenant_file(path, who=_where(self), parameter="connection_string", node_id=self.name)
            path = str(validate_path(path, node_id=self.name))
        timeout = float(v.get("timeout") or 30.0)
        confined = current_tenant() is not None
        pool = self._pool("sqlite", path, lambda: _SQLitePool(path, int(v.get("pool_size") or 5), timeout,
                                                              confined=confined))
        query = translate_placeholders(v["query"], "sqlite") if params is not None else v["query"]
        try:
            with pool.connection() as conn:
                cur = conn.cursor()
                if many:
                    cur.executemany(query, [list(p) if isinstance(p, tuple) else p for p in params])
                elif params is None:
                    cur.execute(query)
                else:
                    cur.execute(query, _bindable(params))
                return self._collect(cur, fetch, lambda row, cols: dict(zip(cols, row, strict=True)))
        except sqlite3.Error as exc:
            raise NodeExecutionError(
                f"{_where(self)}: SQLite error ({type(exc).__name__}: {exc}) in query {_short(v['query'])!r} "
                f"on {path}; check the SQL and the parameters",
                node_id=self.name, parameter="query", expected="valid SQL for SQLite",
            ) from exc
        except queue.Empty:
            raise NodeExecutionError(
                f"{_where(self)}: no free SQLite connection for {path} within {timeout} s",
                node_id=self.name, parameter="timeout",
            ) from None

    # -- PostgreSQL --------------------------------------------------------------------------
    def _postgres(self, conn_str: str, v: dict[str, Any], params: Any, many: bool, fetch: str,
                  secrets: frozenset[str]) -> dict[str, Any]:
        try:
            import psycopg
            from psycopg.conninfo import make_conninfo
            from psycopg.rows import dict_row
            from psycopg_pool import ConnectionPool
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("PostgreSQL needs psycopg and psycopg-pool: pip install 'kailash[postgres]'") from exc
        dsn = conn_str.replace("postgresql+psycopg://", "postgresql://", 1)
        if v.get("password") is not None:
            dsn = make_conninfo(dsn, password=str(reveal(v["password"])))
        timeout = float(v.get("timeout") or 30.0)
        shown = _display_dsn(conn_str)
        scope = current_tenant()
        if scope is not None:
            dsn, shown = tenant_dsn(self, dsn, scope)
            secrets = secrets | plain_secret_values(scope.database_password)

        def make_pool() -> Any:
            try:  # one direct attempt first: a pool would only report a timeout
                psycopg.connect(dsn, connect_timeout=max(1, int(min(timeout, 10)))).close()
            except psycopg.Error as exc:
                raise NodeExecutionError(
                    redact(f"{_where(self)}: cannot connect to PostgreSQL at {shown}: {str(exc).strip()}", secrets),
                    node_id=self.name, parameter="connection_string", expected="a reachable PostgreSQL database",
                ) from None
            return ConnectionPool(dsn, min_size=1, max_size=max(1, int(v.get("pool_size") or 5)),
                                  timeout=timeout, open=True, name=f"kailash-{shown}",
                                  reset=_reset_session if scope is not None else None)

        pool = self._pool("postgres", dsn, make_pool)
        query = translate_placeholders(v["query"], "postgres") if params is not None else v["query"]
        try:
            with pool.connection() as conn:  # commits on success, rolls back on error
                with conn.cursor(row_factory=dict_row) as cur:
                    if many:
                        cur.executemany(query, list(params))
                    else:  # prepared: exactly one statement, like SQLite ("SELECT 1; DROP ..." is refused)
                        cur.execute(query, _bindable(params), prepare=True)
                    return self._collect(cur, fetch, lambda row, cols: dict(row))
        except psycopg.Error as exc:
            diag = getattr(exc, "diag", None)
            detail = (getattr(diag, "message_primary", None) or str(exc)).strip()
            state = getattr(exc, "sqlstate", None)
            raise NodeExecutionError(
                redact(
                    f"{_where(self)}: PostgreSQL error{f' {state}' if state else ''} ({type(exc).__name__}: "
                    f"{detail}) in query {_short(v['query'])!r} on {shown}; check the SQL and the parameters",
                    secrets,
                ),
                node_id=self.name, parameter="query", expected="valid SQL for PostgreSQL",
            ) from None

    # -- shared ------------------------------------------------------------------------------
    def _pool(self, kind: str, key: str, make: Any) -> Any:
        scope = current_tenant()  # never share a pool (an in-memory database, say) between tenants
        full = (kind, key if scope is None else f"{scope.tenant_id}\x00{key}")
        with _pools_lock:
            pool = _pools.get(full)
            if pool is None:
                pool = _pools[full] = make()
            return pool

    @staticmethod
    def _collect(cur: Any, fetch: str, to_dict: Any) -> dict[str, Any]:
        if cur.description is None or fetch == "none":
            count = cur.rowcount if cur.rowcount is not None and cur.rowcount >= 0 else 0
            cols = [d[0] for d in cur.description] if cur.description else []
            return {"data": None if fetch == "one" else [], "row_count": count, "columns": cols}
        cols = [d[0] for d in cur.description]
        if fetch == "one":
            row = cur.fetchone()
            return {"data": to_dict(row, cols) if row is not None else None,
                    "row_count": 0 if row is None else 1, "columns": cols}
        rows = [to_dict(r, cols) for r in cur.fetchall()]
        return {"data": rows, "row_count": len(rows), "columns": cols}


def _bindable(params: Any) -> Any:
    if params is None:
        return None
    if isinstance(params, dict):
        return params
    return list(params)


def _short(query: str, limit: int = 200) -> str:
    q = " ".join(query.split())
    return q if len(q) <= limit else q[:limit] + "..."


def _display_dsn(dsn: str) -> str:
    parts = urlsplit(dsn)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def _reset_session(conn: Any) -> None:
    """Back to the session's start for the next use (a tenant's ``SET statement_timeout = 0`` or
    ``SET search_path`` never outlives its statement's connection lease)."""
    conn.execute("RESET ALL")
    conn.commit()
