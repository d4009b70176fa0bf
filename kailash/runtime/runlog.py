"""The write-ahead run log: runs recorded as ``running`` while they run, node by node.

A durable run (``durability="default"`` or ``"strict"``) is written to its store's
``run_nodes`` table as it goes: the ``running`` row (workflow, redacted parameters,
owner host + pid + process start time, start time), then one row per finished node
(status, timing, error, and the JSON of its outputs, which is what a resume reuses).
When the run ends its final record replaces the ``running`` row and its node rows
are deleted. This module owns that log, its writer thread, and the liveness check that
turns a ``running`` row whose owner process is gone into ``interrupted``.

* ``default`` — the engine appends rows to the recorder's in-memory list (no syscall
  per node); a writer thread drains every active run at least every
  :data:`RunLog.INTERVAL` seconds and commits them in one SQLite transaction (group
  commit, WAL, ``synchronous=NORMAL``). A run that ends before the writer sees it writes
  only its final record.
* ``strict`` — the run's start and each completion are committed (``synchronous=FULL``,
  an fsync) before the next node starts.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kailash.runtime.engine import RunRecorder
    from kailash.runtime.store import RunRecord, SQLiteRunStore

__all__ = ["RunLog", "owner", "owner_alive", "LOG_SCHEMA", "DURABILITY"]

DURABILITY = ("default", "strict", "off")

LOG_SCHEMA = """
CREATE TABLE IF NOT EXISTS run_nodes (
    run_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at REAL,
    duration REAL,
    error TEXT,
    outputs TEXT,
    PRIMARY KEY (run_id, node_id)
);
"""

_INSERT_NODE = "INSERT OR REPLACE INTO run_nodes VALUES (?,?,?,?,?,?,?)"
_INSERT_RUN = "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"


def _start_ticks(pid: int) -> int | None:
    """Process ``pid``'s start time in clock ticks since boot (Linux ``/proc``), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2:].split()
    if fields[0] == b"Z":  # a zombie: killed, not yet reaped
        return -1
    return int(fields[19])


_owner: dict[str, Any] | None = None


def owner() -> dict[str, Any]:
    """Who owns runs started in this process: ``{"host", "pid", "since"}`` (since: start ticks)."""
    global _owner
    pid = os.getpid()
    if _owner is None or _owner["pid"] != pid:  # recomputed after a fork
        _owner = {"host": socket.gethostname(), "pid": pid, "since": _start_ticks(pid)}
    return _owner


def owner_alive(who: Any) -> bool | None:
    """Whether the process that owns a ``running`` run is alive: None when it cannot be told
    from here (another host; runs owned elsewhere need a lease)."""
    if not isinstance(who, dict) or who.get("host") != socket.gethostname():
        return None
    pid = who.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return None
    if pid == os.getpid():
        return True
    since = _start_ticks(pid)
    if since is None:  # no /proc entry: gone (or no /proc at all: ask the kernel)
        if os.path.isdir("/proc/self"):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    if since == -1:
        return False
    recorded = who.get("since")
    return recorded is None or recorded == since  # another start time: the pid was reused


class RunLog:
    """The write-ahead log of one SQLite store and its writer thread."""

    INTERVAL = 0.010

    def __init__(self, store: SQLiteRunStore) -> None:
        self.store = store
        self.pending: deque[tuple[RunRecorder | None, RunRecord | None]] = deque()
        self.active: dict[str, list[Any]] = {}  # run_id -> [recorder, rows written]
        self.lock = threading.Lock()  # one drain at a time
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.pid = os.getpid()

    # -- the recorder's side ----------------------------------------------------------------
    def begin(self, recorder: RunRecorder) -> None:
        """``recorder``'s run started (written as ``running`` unless it ends first)."""
        self.pending.append((recorder, None))
        if not self.wake.is_set():
            self._awake()

    def end(self, record: RunRecord, *, now: bool = False) -> None:
        """The run's final record (``now``: committed before returning)."""
        self.pending.append((None, record))
        if now:
            self.drain()
        elif not self.wake.is_set():
            self._awake()

    def forget(self, recorder: RunRecorder) -> None:
        """Write what ``recorder`` has recorded, then stop following it (a run without an end)."""
        self.drain()
        with self.lock:
            self.active.pop(recorder.run_id, None)

    def _awake(self) -> None:
        if self.thread is None or self.pid != os.getpid() or not self.thread.is_alive():
            self.pid = os.getpid()
            self.thread = threading.Thread(target=self._loop, name="kailash-runlog", daemon=True)
            self.thread.start()
        self.wake.set()

    def _loop(self) -> None:
        interval = self.INTERVAL
        pause = threading.Event()  # never set: its wait() is the writer's sleep
        while True:
            self.wake.wait()
            t = time.perf_counter()
            while True:  # the first drain one interval after waking: a run shorter than that writes once
                pause.wait(max(0.0, interval - (time.perf_counter() - t)))  # not time.sleep: tests patch it
                t = time.perf_counter()
                try:
                    self.drain()
                except Exception:  # a full disk or a closed store must not kill the writer
                    pass
                if not (self.pending or self.active):
                    break
            self.wake.clear()
            if self.pending:
                self.wake.set()

    # -- writing ----------------------------------------------------------------------------
    def drain(self, *, sync: bool = False) -> None:
        """Commit what is pending and every active run's new node rows, in one transaction
        (``sync``: with an fsync, for strict durability)."""
        with self.lock:
            pending, active = self.pending, self.active
            starts: list[RunRecorder] = []
            ends: dict[str, RunRecord] = {}
            while pending:
                rec, record = pending.popleft()
                if rec is not None:
                    starts.append(rec)
                elif record is not None:
                    ends[record.run_id] = record
            runs: list[tuple[Any, ...]] = []
            for rec in starts:
                if rec.run_id not in ends:  # a run that already ended writes only its final record
                    runs.append(self._running_row(rec))
                    active[rec.run_id] = [rec, 0]
            nodes: list[tuple[Any, ...]] = []
            for run_id, state in active.items():
                if run_id not in ends:
                    self._node_rows(state, nodes)
            done = [(run_id,) for run_id in ends if active.pop(run_id, None) is not None]
            row = self.store._row
            runs.extend(row(r) for r in ends.values())
            if not (runs or nodes):
                return
            self._commit(runs, nodes, done, sync)

    def _commit(self, runs: list[tuple[Any, ...]], nodes: list[tuple[Any, ...]], done: list[tuple[str]],
                sync: bool) -> None:
        store = self.store
        with store._lock:
            conn = store._conn
            if sync:
                conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN")
            try:
                if runs:
                    conn.executemany(_INSERT_RUN, runs)
                if nodes:
                    conn.executemany(_INSERT_NODE, nodes)
                if done:
                    conn.executemany("DELETE FROM run_nodes WHERE run_id = ?", done)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            finally:
                if sync:
                    conn.execute("PRAGMA synchronous=NORMAL")

    @staticmethod
    def _running_row(rec: RunRecorder) -> tuple[Any, ...]:
        from kailash.runtime.store import _json_default, to_json_safe

        params = None
        if rec.parameters:
            params = json.dumps(to_json_safe(rec.secrets.redact(rec.parameters)), default=_json_default)
        extra = json.dumps({"owner": owner()})
        return (rec.run_id, rec.workflow, "running", rec.started_at, None, None, None, "[]", None, params,
                rec.tenant, rec.runtime_name, rec.parent_run_id, extra)

    @staticmethod
    def _node_rows(state: list[Any], out: list[tuple[Any, ...]]) -> None:
        from kailash.runtime.store import _json_default

        rec, written = state
        rows = rec.rows_after(written)
        if not rows:
            return
        state[1] = written + len(rows)
        at = rec.started_at - rec.t0
        results = rec.results if rec.record_outputs != "never" else None
        for node_id, status, start, duration, error in rows:
            outputs = None
            if status == "completed" and results is not None:
                value = results.get(node_id)
                if value is not None:
                    for _ in range(3):  # a node may still be changing a value it received: try again
                        try:
                            outputs = json.dumps(rec.secrets.redact(value), default=_json_default)
                            break
                        except (RuntimeError, ValueError, TypeError):
                            outputs = None
            if error is not None:
                error = rec.secrets.redact(error)
            out.append((rec.run_id, node_id, status, (at + start) if start else None, duration, error, outputs))


def live_view(store: SQLiteRunStore, record: RunRecord) -> RunRecord:
    """A ``running`` record with the nodes logged so far, as ``interrupted`` if its owner is gone."""
    from kailash.runtime.store import NodeRecord

    with store._lock:
        rows = store._conn.execute(
            "SELECT node_id, status, started_at, duration, error, outputs FROM run_nodes WHERE run_id = ? "
            "ORDER BY rowid", (record.run_id,)).fetchall()
    nodes = tuple(NodeRecord(node_id=r[0], status=r[1], started_at=r[2], duration=r[3], error=r[4]) for r in rows)
    outputs = {r[0]: json.loads(r[5]) for r in rows if r[5] is not None}
    alive = owner_alive(record.extra.get("owner"))
    status = "interrupted" if alive is False else record.status
    return replace(record, status=status, nodes=nodes, outputs=outputs)
