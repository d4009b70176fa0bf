"""Run records and the embedded SQLite run store.

Every run is recorded: id, workflow, status, start/end, per-node status, timing and
error, the failing node, what each node printed and logged (``output``), and (for failed runs, so they can be resumed) the outputs of
the nodes that finished. Writes are buffered and flushed in batches — after a short
delay, when the buffer fills, at once for a failed run, before any read, and at exit —
so recording costs the engine microseconds, not an fsync per node. Durable runs are
written ahead as they run (:mod:`kailash.runtime.runlog`): a ``running`` row whose
owner process is gone reads as ``interrupted``, with the nodes that finished. A
finished run's node rows are stored packed (:func:`~kailash.runtime.runlog.pack_nodes`;
JSON text in records written before, which still read).

The store location is ``$KAILASH_HOME/runs.db`` (default ``~/.kailash``). Other
backends implement the :class:`RunStore` protocol.
"""

from __future__ import annotations

import atexit
import json
import os
import sqlite3
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, overload, runtime_checkable

from kailash.runtime.runlog import _HEAD, LOG_SCHEMA, RunLog, _packer, live_view, pack_nodes
from kailash.runtime.types import NodeStatus, RunStatus
from kailash.security.secrets import Secret

__all__ = ["RunRecord", "NodeRecord", "NodeRecords", "NodeStatus", "RunStatus", "RunStore", "SQLiteRunStore", "default_store", "store_at", "node_rows", "close_stores", "kailash_home", "to_json_safe",
           "unpack_nodes"]


@dataclass(frozen=True, kw_only=True, slots=True)
class NodeRecord:
    """What happened to one node in a run."""

    node_id: str
    status: NodeStatus
    started_at: float | None = None
    duration: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "status": self.status, "started_at": self.started_at,
                "duration": self.duration, "error": self.error}


class NodeRecords(Sequence[NodeRecord]):
    """The :class:`NodeRecord` of each node of a run, made from the recorder's compact rows
    on first access (recording a run costs no object per node until someone reads it).

    Each row is ``(node_id, status, start, duration, error)`` where ``start`` is a
    ``time.perf_counter()`` reading (0.0 = none) and ``t0`` the reading at ``started_at``.
    """

    __slots__ = ("_compact", "_at", "_t0", "_records")

    def __init__(self, rows: tuple[tuple[str, NodeStatus, float, float, str | None], ...], started_at: float,
                 t0: float = 0.0) -> None:
        self._compact = rows
        self._at = started_at - t0
        self._t0 = t0
        self._records: tuple[NodeRecord, ...] | None = None

    def _all(self) -> tuple[NodeRecord, ...]:
        if self._records is None:
            at = self._at
            self._records = tuple(NodeRecord(node_id=r[0], status=r[1], started_at=(at + r[2]) if r[2] else None,
                                             duration=r[3], error=r[4]) for r in self._compact)
        return self._records

    def storage_rows(self) -> list[list[Any]]:
        """``[node_id, status, started_at, duration, error]`` lists for storage."""
        at = self._at
        return [[r[0], r[1], (at + r[2]) if r[2] else None, r[3], r[4]] for r in self._compact]

    @overload
    def __getitem__(self, index: int) -> NodeRecord: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[NodeRecord, ...]: ...

    def __getitem__(self, index: int | slice) -> NodeRecord | tuple[NodeRecord, ...]:
        return self._all()[index]

    def __iter__(self) -> Iterator[NodeRecord]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._compact)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (NodeRecords, tuple, list)):
            return tuple(self) == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"NodeRecords({list(self)!r})"


@dataclass(frozen=True, kw_only=True, slots=True)
class RunRecord:
    """One recorded run of a workflow."""

    run_id: str
    workflow: str
    status: RunStatus
    started_at: float
    ended_at: float | None = None
    nodes: Sequence[NodeRecord] = ()
    error: str | None = None
    error_node: str | None = None
    outputs: dict[str, Any] | None = None
    parameters: dict[str, Any] | None = None
    tenant: str | None = None
    runtime: str | None = None
    parent_run_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        return None if self.ended_at is None else self.ended_at - self.started_at

    def node(self, node_id: str) -> NodeRecord | None:
        return next((n for n in self.nodes if n.node_id == node_id), None)

    @property
    def output(self) -> dict[str, str]:
        """What each node printed and logged, ``{node_id: text}`` (bounded, secrets masked;
        see :mod:`kailash.runtime.capture`). Empty when no node wrote anything."""
        out = self.extra.get("output")
        return out if isinstance(out, dict) else {}

    @property
    def calls(self) -> list[dict[str, Any]]:
        """The model and tool calls the run's agents made, in order: ``{"event": "model_call" |
        "tool_call", "node_id", "latency_ms", "ok", "error"?...}`` (see :mod:`kailash.nodes.calls`;
        secrets masked, the first :data:`~kailash.runtime.engine.CALL_LIMIT`: ``calls_truncated``
        counts the rest). Empty when no agent called anything."""
        out = self.extra.get("calls")
        return out if isinstance(out, list) else []

    @property
    def calls_truncated(self) -> int:
        """How many more calls were made than :attr:`calls` holds (0: all of them)."""
        n = self.extra.get("calls_truncated")
        return n if isinstance(n, int) else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "workflow": self.workflow, "status": self.status,
            "started_at": self.started_at, "ended_at": self.ended_at, "duration": self.duration,
            "nodes": [n.to_dict() for n in self.nodes], "error": self.error, "error_node": self.error_node,
            "outputs": self.outputs, "parameters": self.parameters, "tenant": self.tenant,
            "runtime": self.runtime, "parent_run_id": self.parent_run_id, "output": self.output,
            "calls": self.calls, **({"calls_truncated": n} if (n := self.calls_truncated) else {}),
            **({"extra": extra} if (extra := {k: v for k, v in self.extra.items()
                                              if k not in ("output", "calls", "calls_truncated")}) else {}),
        }


def unpack_nodes(data: bytes, started_at: float) -> tuple[NodeRecord, ...]:
    """The :class:`NodeRecord` tuple of a value made by :func:`~kailash.runtime.runlog.pack_nodes`."""
    _, n, size, t0 = _HEAD.unpack_from(data)
    if not n:
        return ()
    timing = _packer(n)
    values = timing.unpack_from(data)[4:]
    pos = timing.size
    lengths = struct.unpack_from(f"<{n}I", data, pos)
    pos += 4 * n
    text = data[pos:pos + size].decode()
    tail = data[pos + size:]
    statuses, errors = json.loads(tail) if tail else (("completed",) * n, (None,) * n)
    at = started_at - t0
    out = []
    k = 0
    for i in range(n):
        start = values[i]
        out.append(NodeRecord(node_id=text[k:k + lengths[i]], status=statuses[i],
                              started_at=(at + start) if start else None, duration=values[n + i], error=errors[i]))
        k += lengths[i]
    return tuple(out)


def node_rows(run: RunRecord) -> list[list[Any]]:
    """``run.nodes`` as ``[node_id, status, started_at, duration, error]`` lists for storage."""
    if isinstance(run.nodes, NodeRecords):
        return run.nodes.storage_rows()
    return [[n.node_id, n.status, n.started_at, n.duration, n.error] for n in run.nodes]


@runtime_checkable
class RunStore(Protocol):
    """Where runs are recorded. ``record`` must be cheap; reads see every earlier record."""

    def record(self, run: RunRecord) -> None: ...

    def get_run(self, run_id: str) -> RunRecord | None: ...

    def list_runs(self, *, limit: int = 50, workflow: str | None = None, status: str | None = None,
                  tenant: str | None = None, since: float | None = None, until: float | None = None,
                  before: tuple[float, str] | None = None) -> list[RunRecord]: ...

    def flush(self) -> None: ...


def _json_default(value: Any) -> Any:
    if isinstance(value, Secret):
        return value.to_reference()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return {"$bytes": len(value)}
    return {"$unserializable": type(value).__name__, "repr": repr(value)[:200]}


_encode = json.JSONEncoder(separators=(", ", ": ")).encode  # json.dumps' defaults, one layer fewer


def to_json_safe(value: Any) -> Any:
    """``value`` made JSON-safe: secrets redacted, unserialisable objects marked."""
    return json.loads(json.dumps(value, default=_json_default))


_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    error TEXT,
    error_node TEXT,
    nodes TEXT,
    outputs TEXT,
    parameters TEXT,
    tenant TEXT,
    runtime TEXT,
    parent_run_id TEXT,
    extra TEXT
);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at);
CREATE INDEX IF NOT EXISTS runs_workflow ON runs(workflow, started_at);
"""


class SQLiteRunStore:
    """The embedded run store (SQLite, WAL mode, batched writes).

    Example:
        >>> import tempfile, os
        >>> store = SQLiteRunStore(os.path.join(tempfile.mkdtemp(), "runs.db"))
        >>> store.record(RunRecord(run_id="r1", workflow="wf", status="completed", started_at=0.0, ended_at=1.0))
        >>> store.get_run("r1").status
        'completed'
    """

    FLUSH_DELAY = 0.2
    FLUSH_SIZE = 500

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # the connection
        self._buf_lock = threading.Lock()  # the buffer: never held during I/O, so record() never waits on a flush
        self._buffer: list[RunRecord] = []
        self._timer: threading.Timer | None = None
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA + LOG_SCHEMA)
        self.run_log = RunLog(self)
        _open_stores.add(self)

    def record(self, run: RunRecord) -> None:
        with self._buf_lock:
            self._buffer.append(run)
            size = len(self._buffer)
        if run.status != "completed" or size >= self.FLUSH_SIZE:
            self.flush()
        elif self._timer is None:
            with self._buf_lock:
                if self._timer is None:
                    t = threading.Timer(self.FLUSH_DELAY, self.flush)
                    t.daemon = True
                    self._timer = t
                    t.start()

    def flush(self) -> None:
        if self.run_log.busy():
            self.run_log.drain()
        with self._buf_lock:
            timer, self._timer = self._timer, None
            batch, self._buffer = self._buffer, []
        if timer is not None:
            timer.cancel()
        if not batch:
            return
        with self._lock:
            rows = [self._row(r) for r in batch]
            conn = self._conn
            conn.execute("BEGIN")
            try:
                conn.executemany(
                    "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    @staticmethod
    def _row(r: RunRecord) -> tuple[Any, ...]:
        dumps = json.dumps
        nodes: str | bytes
        if isinstance(r.nodes, NodeRecords):  # a recorder's rows: packed as they are
            nodes = pack_nodes(r.nodes._compact, r.nodes._t0) if r.nodes._at == r.started_at - r.nodes._t0 \
                else _encode(node_rows(r))
        else:
            nodes = _encode(node_rows(r))
        return (
            r.run_id, r.workflow, r.status, r.started_at, r.ended_at, r.error, r.error_node, nodes,
            None if r.outputs is None else dumps(r.outputs, default=_json_default),
            None if r.parameters is None else dumps(r.parameters, default=_json_default),
            r.tenant, r.runtime, r.parent_run_id, dumps(r.extra, default=_json_default) if r.extra else None,
        )

    @staticmethod
    def _from_row(row: tuple[Any, ...]) -> RunRecord:
        (run_id, workflow, status, started, ended, error, error_node, nodes, outputs, parameters,
         tenant, runtime, parent, extra) = row
        return RunRecord(
            run_id=run_id, workflow=workflow, status=status, started_at=started, ended_at=ended,
            error=error, error_node=error_node,
            nodes=unpack_nodes(nodes, started) if type(nodes) is bytes else
            tuple(NodeRecord(node_id=n[0], status=n[1], started_at=n[2], duration=n[3], error=n[4])
                  for n in json.loads(nodes or "[]")),
            outputs=None if outputs is None else json.loads(outputs),
            parameters=None if parameters is None else json.loads(parameters),
            tenant=tenant, runtime=runtime, parent_run_id=parent, extra=json.loads(extra) if extra else {},
        )

    def get_run(self, run_id: str) -> RunRecord | None:
        self.flush()
        with self._lock:
            row = self._conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:  # allow a unique prefix, as git does for commits
            with self._lock:
                rows = self._conn.execute(
                    "SELECT * FROM runs WHERE substr(run_id, 1, ?) = ? LIMIT 2", (len(run_id), run_id)
                ).fetchall()
            row = rows[0] if len(rows) == 1 else None
        if row is None:
            return None
        run = self._from_row(row)
        return live_view(self, run) if run.status == "running" else run

    def list_runs(self, *, limit: int = 50, workflow: str | None = None, status: str | None = None,
                  tenant: str | None = None, since: float | None = None, until: float | None = None,
                  before: tuple[float, str] | None = None) -> list[RunRecord]:
        """Runs newest first (by start time, then id); ``running`` ones whose owner is gone read
        (and filter) as ``interrupted``.

        ``since``/``until``: runs started at or after / before these times (``time.time()``
        seconds); ``before``: runs after ``(started_at, run_id)`` in this order (the last run
        of the previous page, for paging).
        """
        self.flush()
        live = status in ("running", "interrupted")
        where, args = [], []
        for col, val in (("workflow", workflow), ("status", "running" if live else status), ("tenant", tenant)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        where_args: list[Any] = list(args)
        where, where_args = _time_filters(where, where_args, since, until, before, "?")
        args = where_args
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY started_at DESC, run_id DESC LIMIT ?"
        with self._lock:
            rows = self._conn.execute(sql, (*args, -1 if live else int(limit))).fetchall()
        runs = [self._from_row(r) for r in rows]
        runs = [live_view(self, r) if r.status == "running" else r for r in runs]
        return [r for r in runs if r.status == status][:int(limit)] if live else runs

    def count_runs(self, *, workflow: str | None = None, status: str | None = None) -> int:
        """How many runs :meth:`list_runs` would list without a limit (same ``workflow``/``status`` filters)."""
        if status in ("running", "interrupted"):  # which running runs read as interrupted is decided per run
            return len(self.list_runs(limit=1 << 30, workflow=workflow, status=status))
        self.flush()
        where = [f"{col} = ?" for col, val in (("workflow", workflow), ("status", status)) if val is not None]
        args = [val for val in (workflow, status) if val is not None]
        sql = "SELECT count(*) FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        with self._lock:
            return int(self._conn.execute(sql, args).fetchone()[0])

    def close(self) -> None:
        self.flush()
        self.run_log.active.clear()  # runs still going on here are written no more
        self.run_log.running.clear()
        with self._lock:
            self._conn.close()
        _open_stores.discard(self)


def _time_filters(where: list[str], args: list[Any], since: float | None, until: float | None,
                  before: tuple[float, str] | None, mark: str) -> tuple[list[str], list[Any]]:
    """``where`` and ``args`` with the start-time and paging conditions of ``list_runs`` added
    (``mark``: the driver's parameter marker)."""
    if since is not None:
        where.append(f"started_at >= {mark}")
        args.append(float(since))
    if until is not None:
        where.append(f"started_at < {mark}")
        args.append(float(until))
    if before is not None:
        where.append(f"(started_at < {mark} OR (started_at = {mark} AND run_id < {mark}))")
        args += [float(before[0]), float(before[0]), str(before[1])]
    return where, args


_open_stores: set[SQLiteRunStore] = set()
_defaults: dict[Path, SQLiteRunStore] = {}
_defaults_lock = threading.Lock()


def kailash_home() -> Path:
    """``$KAILASH_HOME`` or ``~/.kailash``."""
    return Path(os.environ.get("KAILASH_HOME") or Path.home() / ".kailash")


def default_store() -> SQLiteRunStore:
    """The SQLite store under :func:`kailash_home` (one instance per path per process)."""
    return store_at(kailash_home() / "runs.db")


def store_at(path: str | os.PathLike[str]) -> SQLiteRunStore:
    """The SQLite store at ``path``, shared by every runtime in this process that names it."""
    path = Path(path).resolve()
    store = _defaults.get(path)
    if store is None:
        with _defaults_lock:
            store = _defaults.get(path)
            if store is None:
                store = _defaults[path] = SQLiteRunStore(path)
    return store


def close_stores(under: str | os.PathLike[str] | None = None) -> None:
    """Flush and close the shared stores (those whose file lies below ``under``, if given).

    A long-lived process that points ``KAILASH_HOME`` at many directories (a test suite)
    calls this so each store's database connection is released.
    """
    root = Path(under).resolve() if under is not None else None
    with _defaults_lock:
        for path in list(_defaults):
            if root is None or root == path or root in path.parents:
                _defaults.pop(path).close()


@atexit.register
def _flush_all() -> None:
    for store in list(_open_stores):
        try:
            store.flush()
        except Exception:  # exiting: nothing better to do than keep going
            pass


def now() -> float:
    return time.time()
