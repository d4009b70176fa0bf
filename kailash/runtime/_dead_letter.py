"""Dead-letter sinks of stream runs: where an event that failed goes with its error.

A sink is an object with ``write(record)`` (which may return an awaitable), ``close()``
and, optionally, ``async aclose()``; :func:`dead_letter_sink`
makes one from what a user names: a JSON-lines file path, a writer node (called with
``data=record``: a broker writer node, ``JSONWriterNode``...), a SQL table
(``{"connection_string": ..., "table": ...}``, through ``SQLDatabaseNode``), or any
callable. A record is ``{run_id, workflow, node_id, error, event: {event_type, data,
id, key}, ts}``, already redacted and JSON-safe.
"""

from __future__ import annotations

import json
import os
import re
import threading
from typing import Any

from kailash.errors import NodeConfigurationError, SecurityError

__all__ = ["dead_letter_sink"]

_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class _JsonLines:
    """A JSON-lines file, opened like any node's file: a tenant's needs the 'files' capability and
    resolves inside its own directory; every one goes through :func:`safe_open` (the policy's
    allowed directories, no symlink races)."""

    def __init__(self, path: str) -> None:
        from kailash.nodes.capabilities import require, tenant_file
        from kailash.security.paths import safe_open

        who = "stream option 'dead_letter'"
        require("files", who=who, what="writing dead letters to a file", parameter="dead_letter")
        path = tenant_file(path, who=who, parameter="dead_letter")
        self.path = path
        try:
            self._f = safe_open(path, "a", encoding="utf-8")
        except SecurityError as exc:
            exc.parameter = "dead_letter"
            raise
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, default=repr) + "\n"
        with self._lock:
            self._f.write(line)
            self._f.flush()  # a dead letter is written before its event is acknowledged

    def close(self) -> None:
        self._f.close()


class _NodeSink:
    """A writer node. An async one (a broker writer) is awaited on the stream run's loop:
    ``write`` returns the awaitable, and one connection serves the whole run."""

    def __init__(self, node: Any) -> None:
        self.node = node

    def write(self, record: dict[str, Any]) -> Any:
        if self.node.is_async:
            return self.node.async_execute(data=record)
        self.node.execute(data=record)
        return None

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        closer = getattr(self.node, "aclose", None)
        if closer is not None:
            await closer()


class _CallSink:
    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def write(self, record: dict[str, Any]) -> None:
        self.fn(record)

    def close(self) -> None:
        pass


class _TableSink:
    """Rows ``(run_id, workflow, node_id, error, event, ts)`` in a SQL table (created if missing)."""

    def __init__(self, connection_string: str, table: str) -> None:
        from kailash.nodes.data.sql import SQLDatabaseNode

        self.node = SQLDatabaseNode(connection_string=connection_string)
        self.table = table
        self.node.execute(query=f"CREATE TABLE IF NOT EXISTS {table} (run_id TEXT, workflow TEXT, node_id TEXT, "
                                "error TEXT, event TEXT, ts REAL)")

    def write(self, record: dict[str, Any]) -> None:
        self.node.execute(
            query=f"INSERT INTO {self.table} (run_id, workflow, node_id, error, event, ts) "
                  "VALUES (:run_id, :workflow, :node_id, :error, :event, :ts)",
            parameters={**record, "event": json.dumps(record["event"], default=repr)})

    def close(self) -> None:
        pass


def dead_letter_sink(target: Any) -> Any:
    """A sink for ``target`` (see the module docstring)."""
    from kailash.nodes.base import Node

    if isinstance(target, (str, os.PathLike)):
        return _JsonLines(os.fspath(target))
    if isinstance(target, Node):
        return _NodeSink(target)
    if isinstance(target, dict) and set(target) == {"connection_string", "table"}:
        table = target["table"]
        if type(table) is not str or not _TABLE.fullmatch(table):
            raise NodeConfigurationError(f"stream option 'dead_letter': table must be a plain SQL name, got {table!r}",
                                         parameter="dead_letter", expected="a table name", got=table)
        return _TableSink(str(target["connection_string"]), table)
    if callable(target):
        return _CallSink(target)
    raise NodeConfigurationError(
        f"stream option 'dead_letter' must be a file path, a writer node, {{'connection_string', 'table'}} or a "
        f"callable, got {type(target).__name__}", parameter="dead_letter",
        expected="path | Node | {connection_string, table} | callable", got=type(target).__name__)
