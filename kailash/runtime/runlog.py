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

Every run of a SQLite store ends here, durable or not (``"off"`` has no ``running`` row):
the run's thread hands :meth:`RunLog.end` a compact tuple (node rows as the recorder's
list, parameters and kept outputs already redacted JSON) and the writer makes the row —
node rows packed by :func:`pack_nodes`, runs without optional columns bound as 7
values, every batch in a few multi-row statements (each releases the GIL once, not once
per row). The hot path holds no lock and makes no system call.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import struct
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache
from itertools import chain
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kailash.runtime.engine import RunRecorder
    from kailash.runtime.store import RunRecord, SQLiteRunStore

__all__ = ["RunLog", "owner", "owner_alive", "LOG_SCHEMA", "DURABILITY", "pack_nodes", "record_of"]

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


# a `runs` row whose optional columns (error, error_node, outputs, parameters, tenant,
# parent_run_id, extra) are all empty: its 7 other columns, NULL literals for the rest
_PLAIN_GROUP = "(?,?,?,?,?,NULL,NULL,?,NULL,NULL,NULL,?,NULL,NULL)"


@lru_cache(maxsize=128)
def _sql(head: str, group: str, rows: int) -> str:
    """``head`` followed by ``rows`` times ``group`` (``"?"``: one list of values, for ``IN``)."""
    if group == "?":
        return head + "(" + ",".join("?" * rows) + ")"
    return head + ",".join([group] * rows)


def _group(width: int) -> str:
    return "(" + ",".join("?" * width) + ")"


def record_of(final: tuple[Any, ...]) -> RunRecord:
    """The :class:`RunRecord` of a recorder's compact final tuple (see :meth:`RunLog.end`)."""
    from kailash.runtime.store import NodeRecords, RunRecord

    if len(final) == 8:
        run_id, workflow, status, started, ended, rows, t0, runtime = final
        error = error_node = outputs = params = tenant = parent = None
    else:
        (run_id, workflow, status, started, ended, rows, t0, error, error_node, outputs, params, tenant, runtime,
         parent) = final
    return RunRecord(run_id=run_id, workflow=workflow, status=status, started_at=started, ended_at=ended,
                     nodes=NodeRecords(tuple(rows), started, t0), error=error, error_node=error_node,
                     outputs=json.loads(outputs) if outputs else None, parameters=json.loads(params) if params else None,
                     runtime=runtime, tenant=tenant, parent_run_id=parent)


def _store_row(record: RunRecord) -> tuple[Any, ...]:
    from kailash.runtime.store import SQLiteRunStore

    return SQLiteRunStore._row(record)


# -- the stored form of a run's node rows --------------------------------------------------
# SQLite keeps a finished run's nodes as one packed value made from the recorder's compact
# rows without a Python step per node (JSON text of 500 nodes' floats costs ~0.5 ms):
#   b"\0KN1", n, byte length of the ids, t0      (little-endian: 4s I I d)
#   n starts (perf_counter readings; 0.0 = none), n durations (d), n id lengths (I)
#   the ids, concatenated (UTF-8), then - only if some node is not "completed" (a completed
#   row has no error) - the JSON text of [statuses, errors].
# A node's started_at is the run's started_at + (start - t0), exactly as NodeRecords computes it.
# Older records (and any store's record() of plain NodeRecord sequences) keep the JSON list form.
_PACKED = b"\0KN1"
_HEAD = struct.Struct("<4sIId")
_packers: dict[int, struct.Struct] = {}  # n -> the head, starts and durations of n rows
_shapes: dict[tuple[str, ...], tuple[bytes, int]] = {}  # node ids -> (their lengths + text, text size)


def _packer(n: int) -> struct.Struct:
    """The head, the starts and the durations of ``n`` rows, as one struct."""
    fmt = _packers.get(n)
    if fmt is None:
        if len(_packers) > 256:
            _packers.clear()
        fmt = _packers[n] = struct.Struct(f"<4sIId{n}d{n}d")
    return fmt


def _shape(ids: tuple[str, ...]) -> tuple[bytes, int]:
    """The id lengths and the ids (UTF-8) of a run's rows: the same for every run of a workflow."""
    text = "".join(ids).encode()
    if len(_shapes) > 1024:
        _shapes.clear()
    shape = _shapes[ids] = (struct.pack(f"<{len(ids)}I", *map(len, ids)) + text, len(text))
    return shape


def pack_nodes(rows: Sequence[tuple[str, str, float, float, str | None]], t0: float) -> bytes:
    """The stored form of a run's compact node rows ``(node_id, status, start, duration, error)``."""
    n = len(rows)
    if not n:
        return _HEAD.pack(_PACKED, 0, 0, t0)
    ids, statuses, starts, durations, errors = zip(*rows)  # noqa: B905  # the recorder's rows: all 5 long
    tail, size = _shapes.get(ids) or _shape(ids)
    out = (_packers.get(n) or _packer(n)).pack(_PACKED, n, size, t0, *starts, *durations) + tail
    if statuses.count("completed") != n:  # a completed row never has an error
        out += json.dumps([statuses, errors]).encode()
    return out


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
    """The write-ahead log of one SQLite store and its writer thread.

    The run's side costs no lock and no syscall: :meth:`begin` puts the recorder in
    ``running`` (a dict), :meth:`end` appends the run's final row, still in compact form,
    to ``pending`` (a deque). The writer thread turns both into SQL rows (JSON, redaction,
    packed node rows) and commits them in a few multi-row statements: each statement
    releases the GIL once, so the run's thread and SQLite work side by side, and a batch
    of any size costs the writer only a few GIL hand-overs.
    """

    INTERVAL = 0.010
    RETRY: tuple[type[BaseException], ...] = (sqlite3.OperationalError,)  # a drain that raises these is retried

    def __init__(self, store: SQLiteRunStore) -> None:
        self.store = store
        self.running: dict[str, RunRecorder] = {}  # runs begun and not ended
        self.pending: deque[tuple[Any, ...] | RunRecord] = deque()  # final rows to write (see RunRecorder)
        self.active: dict[str, list[Any]] = {}  # runs whose `running` row is written: run_id -> [recorder, rows written]
        self.lock = threading.Lock()  # one drain at a time
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.pid = os.getpid()
        try:
            limit = store._conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        except (AttributeError, sqlite3.Error):
            limit = 999
        self.max_values = limit  # values one statement may bind

    def busy(self) -> bool:
        """Whether anything is waiting to be written (or followed)."""
        return bool(self.pending or self.running or self.active)

    # -- the recorder's side ----------------------------------------------------------------
    def begin(self, recorder: RunRecorder) -> None:
        """``recorder``'s run started (written as ``running`` unless it ends first)."""
        self.running[recorder.run_id] = recorder
        if not self.wake.is_set():
            self._awake()

    def end(self, final: tuple[Any, ...] | RunRecord, *, now: bool = False) -> None:
        """The run's final record (``now``: committed before returning): a :class:`RunRecord`
        or the recorder's compact tuple (see :meth:`_final_row`)."""
        self.pending.append(final)
        self.running.pop(final[0] if type(final) is tuple else final.run_id, None)  # type: ignore[union-attr]
        if now:
            self.drain()
        elif not self.wake.is_set():
            self._awake()

    def forget(self, recorder: RunRecorder) -> None:
        """Write what ``recorder`` has recorded, then stop following it (a run without an end)."""
        self.drain()
        with self.lock:
            self.running.pop(recorder.run_id, None)
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
                if not self.busy():
                    break
            self.wake.clear()
            if self.busy():
                self.wake.set()

    # -- writing ----------------------------------------------------------------------------
    def drain(self, *, sync: bool = False) -> None:
        """Commit the final rows waiting, the ``running`` rows of runs not written yet and every
        active run's new node rows, in one transaction (``sync``: with an fsync, for strict
        durability)."""
        with self.lock:
            pending, active = self.pending, self.active
            plain: list[tuple[Any, ...]] = []  # finished runs with nothing in the optional columns
            runs: list[tuple[Any, ...]] = []  # any other `runs` row
            ended: list[str] = []
            taken: list[tuple[Any, ...] | RunRecord] = []
            saved = [(run_id, state, state[1], state[2]) for run_id, state in active.items()] if active else None
            pack = pack_nodes
            while pending:
                f = pending.popleft()
                taken.append(f)
                if not isinstance(f, tuple):  # a RunRecord
                    runs.append(_store_row(f))
                    ended.append(f.run_id)
                elif len(f) == 8:  # (run_id, workflow, status, started_at, ended_at, rows, t0, runtime)
                    plain.append((f[0], f[1], f[2], f[3], f[4], pack(f[5], f[6]), f[7]))
                    ended.append(f[0])
                else:
                    runs.append(self._final_row(f))
                    ended.append(f[0])
            nodes: list[tuple[Any, ...]] = []
            for run_id, rec in self.running.copy().items():  # after the finals were taken
                if rec.ended_at is not None:  # ended: its final row is written now or next time
                    continue
                state = active.get(run_id)
                calls = rec.calls
                if state is None:
                    state = active[run_id] = [rec, 0, 0]
                    runs.append(self._running_row(rec, state))
                elif calls is not None and len(calls[0]) + calls[1] != state[2]:  # agents called since: write again
                    runs.append(self._running_row(rec, state))
                self._node_rows(state, nodes)
            done = [(run_id,) for run_id in ended if active.pop(run_id, None) is not None] if active else []
            if not (plain or runs or nodes):
                return
            try:
                self._write(plain, runs, nodes, done, sync)
            except self.RETRY:  # locked by another process, disk full, I/O: try again next time
                pending.extendleft(reversed(taken))
                active.clear()
                for run_id, state, written, calls_written in saved or ():
                    state[1], state[2] = written, calls_written
                    active[run_id] = state
                raise

    def _write(self, plain: list[tuple[Any, ...]], runs: list[tuple[Any, ...]], nodes: list[tuple[Any, ...]],
               done: list[tuple[str]], sync: bool) -> None:
        """Write one drain's rows: ``plain`` (7 values), ``runs`` (14, the ``runs`` columns in
        order), ``nodes`` (7, ``run_nodes``) and ``done`` (runs whose node rows go). Another
        store's log overrides this (:class:`kailash.api.postgres.PostgresRunLog`)."""
        self._commit(self._statements(plain, runs, nodes, done), sync or bool(nodes or done), sync)

    def _commit(self, statements: list[tuple[str, list[Any]]], together: bool, sync: bool) -> None:
        """Execute ``statements``, in one transaction if ``together`` (``sync``: with an fsync).

        Rows of finished runs need no common transaction (each statement is atomic, and every
        GIL hand-over costs the run's thread a context switch): a crash between two of them
        is a crash a moment earlier. Node rows and their deletion go together with the rest.
        """
        store = self.store
        with store._lock:
            conn = store._conn
            if sync:
                conn.execute("PRAGMA synchronous=FULL")
            try:
                if len(statements) == 1 or not together:  # one statement is its own transaction
                    for sql, args in statements:
                        conn.execute(sql, args)
                    return
                conn.execute("BEGIN")
                try:
                    for sql, args in statements:
                        conn.execute(sql, args)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            finally:
                if sync:
                    conn.execute("PRAGMA synchronous=NORMAL")

    def _statements(self, plain: list[tuple[Any, ...]], runs: list[tuple[Any, ...]], nodes: list[tuple[Any, ...]],
                    done: list[tuple[str]]) -> list[tuple[str, list[Any]]]:
        """Multi-row statements for the rows: each releases the GIL once while SQLite works
        (``executemany`` releases and re-takes it per row: behind a busy thread, ~1 ms a row).
        Batches are padded to a few sizes by repeating their last row (writing a row twice is
        harmless), so a handful of prepared statements serve every batch. A ``plain`` row (7
        values) leaves its empty optional columns to NULL literals: binding ``None`` goes
        through sqlite3's adapter lookup and costs about as much as inserting the row."""
        out: list[tuple[str, list[Any]]] = []
        self._chunks(out, plain, "INSERT OR REPLACE INTO runs VALUES ", _PLAIN_GROUP, 7)
        self._chunks(out, runs, "INSERT OR REPLACE INTO runs VALUES ", _group(14), 14)
        self._chunks(out, nodes, "INSERT OR REPLACE INTO run_nodes VALUES ", _group(7), 7)
        self._chunks(out, done, "DELETE FROM run_nodes WHERE run_id IN ", "?", 1)
        return out

    def _chunks(self, out: list[tuple[str, list[Any]]], rows: list[tuple[Any, ...]], head: str, group: str,
                width: int) -> None:
        most = max(1, min(self.max_values // width, 512))  # a prepared 512-row statement holds ~1 MiB
        i, n = 0, len(rows)
        while i < n:
            size = most if n - i >= most else 1 << (n - i - 1).bit_length()
            part = rows[i:i + size]
            if len(part) < size:
                part = part + [part[-1]] * (size - len(part))
            out.append((_sql(head, group, size), list(chain.from_iterable(part))))
            i += size

    @staticmethod
    def _running_row(rec: RunRecorder, state: list[Any]) -> tuple[Any, ...]:
        """The ``running`` row of ``rec``'s run, with the agent calls made so far (``state[2]``:
        how many that is), so a run killed mid-way keeps them."""
        from kailash.runtime.engine import _calls_lock
        from kailash.runtime.store import _json_default, to_json_safe

        params = None
        if rec.parameters:
            params = json.dumps(to_json_safe(rec.secrets.redact(rec.parameters)), default=_json_default)
        info: dict[str, Any] = {"owner": owner()}
        if rec.calls is not None:
            with _calls_lock:  # nodes may be calling from other threads meanwhile
                entries, dropped = rec.calls
                entries = list(entries)
            state[2] = len(entries) + dropped
            info.update(rec._calls_extra(entries, dropped))
        extra = json.dumps(info, default=_json_default)
        return (rec.run_id, rec.workflow, "running", rec.started_at, None, None, None, "[]", None, params,
                rec.tenant, rec.runtime_name, rec.parent_run_id, extra)

    @staticmethod
    def _final_row(final: tuple[Any, ...]) -> tuple[Any, ...]:
        """The ``runs`` row of a recorder's compact final tuple ``(run_id, workflow, status,
        started_at, ended_at, node rows, t0, error, error_node, outputs JSON, parameters JSON,
        tenant, runtime, parent_run_id)`` (everything already redacted; JSON already encoded)."""
        (run_id, workflow, status, started, ended, rows, t0, error, error_node, outputs, params,
         tenant, runtime, parent) = final
        return (run_id, workflow, status, started, ended, error, error_node, pack_nodes(rows, t0), outputs, params,
                tenant, runtime, parent, None)

    @staticmethod
    def _node_rows(state: list[Any], out: list[tuple[Any, ...]]) -> None:
        from kailash.runtime.store import _json_default

        rec, written = state[0], state[1]
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
