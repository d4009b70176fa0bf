"""What a gateway tenant's SQL may connect to: its own PostgreSQL role and schema, no attached files.

Used by :class:`~kailash.nodes.data.sql.SQLDatabaseNode` while a tenant scope is active
(:mod:`kailash.nodes.capabilities`). Nothing here opens a connection.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from kailash.errors import NodeConfigurationError, SecurityError
from kailash.nodes.capabilities import TenantScope
from kailash.security.secrets import reveal

__all__ = ["tenant_dsn", "no_attach"]


def _where(node: Any) -> str:
    return f"node '{node.name}' (SQLDatabaseNode)" if node.name else "SQLDatabaseNode"


def no_attach(action: int, *_: Any) -> int:
    """SQLite authorizer: refuse ``ATTACH`` (and ``VACUUM INTO``, which attaches), which would open any file."""
    return sqlite3.SQLITE_DENY if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH) else sqlite3.SQLITE_OK


_TENANT_KEEPS = ("host", "hostaddr", "port", "dbname", "sslmode", "connect_timeout")


def tenant_dsn(node: Any, dsn: str, scope: TenantScope) -> tuple[str, str]:
    """A tenant's connection: its own role and schema, whatever the connection string says.

    Only the server address, database and SSL mode are taken from the string; the user,
    password and ``search_path`` are the tenant's, and anything else (``options``,
    ``service``, ``passfile``, key files) is dropped, so a tenant can never log in as the
    gateway's storage role or make the driver read files on the gateway's machine.
    """
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    where = _where(node)
    if not scope.database_role or not scope.database_schema:
        raise SecurityError(
            f"{where}: tenant '{scope.tenant_id}' has no PostgreSQL role on this gateway (it is created by "
            "`kailash tenant create` when the gateway stores tenants in PostgreSQL)",
            node_id=node.name, parameter="connection_string", expected="a tenant with a database role")
    try:
        given = conninfo_to_dict(dsn)
    except Exception:
        raise NodeConfigurationError(f"{where}: parameter 'connection_string' is not a valid PostgreSQL URL",
                                     node_id=node.name, parameter="connection_string") from None
    kept = {k: str(v) for k, v in given.items() if k in _TENANT_KEEPS and v is not None}
    host = kept.get("host", "")
    if not host or any(h.startswith("/") or h.startswith("@") for h in host.split(",")):
        raise SecurityError(f"{where}: a tenant's PostgreSQL connection needs a TCP host name or address, not a "
                            "local socket", node_id=node.name, parameter="connection_string", got=host)
    if given.get("user") not in (None, "", scope.database_role):
        raise SecurityError(
            f"{where}: tenant '{scope.tenant_id}' connects to PostgreSQL only as its own role "
            f"'{scope.database_role}', not as '{given.get('user')}'; leave the user out of the connection string",
            node_id=node.name, parameter="connection_string", expected=scope.database_role, got=given.get("user"))
    password = reveal(scope.database_password)
    options = f"-c search_path={scope.database_schema}"
    if scope.run_timeout:  # a statement never outlives the run (the run's thread would be abandoned, still busy)
        options += f" -c statement_timeout={max(1, int(scope.run_timeout * 1000))}"
    forced = dict(kept, user=scope.database_role, options=options)
    if password:
        forced["password"] = str(password)
    shown = (f"postgresql://{scope.database_role}@{host}{':' + kept['port'] if 'port' in kept else ''}"
             f"/{kept.get('dbname', '')}")
    return make_conninfo("", **forced), shown
