"""How the run log writes finished runs: compact final rows, packed node rows, batches.

The run's thread hands the log a compact tuple; the writer packs the node rows
(``runlog.pack_nodes``) and writes multi-row statements. These tests read what lands in
SQLite back through the store (and through a second connection) and compare it with
what the runs did.
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from kailash.errors import KailashError
from kailash.nodes.base import Node, NodeParameter
from kailash.runtime import LocalRuntime
from kailash.runtime.engine import new_run_id
from kailash.runtime.runlog import RunLog, pack_nodes
from kailash.runtime.store import NodeRecord, NodeRecords, RunRecord, SQLiteRunStore, unpack_nodes
from kailash.security.secrets import Secret
from kailash.workflow import Workflow


class AddNode(Node):
    """``data + step``; fails when ``fail`` is set (quoting ``token`` if given)."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"data": NodeParameter(type=int, default=0), "step": NodeParameter(type=int, default=1),
                "fail": NodeParameter(type=bool, default=False), "token": NodeParameter(default=None)}

    def run(self, data: int = 0, step: int = 1, fail: bool = False, token: Any = None) -> dict[str, Any]:
        if fail:
            raise ValueError(f"refused with {token.reveal() if isinstance(token, Secret) else token}")
        return {"result": data + step}


def chain(n: int, name: str = "chain", **last: Any) -> Workflow:
    wf = Workflow(name)
    for i in range(n):
        wf.add_node(f"n{i}", AddNode(), **(last if i == n - 1 else {}))
        if i:
            wf.connect(f"n{i - 1}", f"n{i}")
    return wf


@pytest.fixture
def store(tmp_path: Path):
    s = SQLiteRunStore(tmp_path / "runs.db")
    yield s
    s.close()


def test_packed_node_rows_read_back_as_the_recorder_saw_them() -> None:
    rows = (("a", "completed", 1000.25, 0.5, None), ("ünï-çødé ✓", "completed", 1001.0, 0.125, None),
            ("skipped one", "skipped", 0.0, 0.0, None), ("b", "failed", 1002.5, 0.25, "ValueError: no"))
    started, t0 = 1_733_300_000.123456, 1000.0
    back = unpack_nodes(pack_nodes(rows, t0), started)
    assert back == tuple(NodeRecords(rows, started, t0))  # exactly what the live record shows
    assert back[2] == NodeRecord(node_id="skipped one", status="skipped", started_at=None, duration=0.0)
    assert back[3].error == "ValueError: no" and back[1].node_id == "ünï-çødé ✓"
    assert unpack_nodes(pack_nodes((), t0), started) == ()
    plain = (("x", "completed", 1000.5, 0.1, None),)
    assert len(pack_nodes(plain, t0)) < len(pack_nodes(rows[:1] + (("y", "skipped", 0.0, 0.0, None),), t0))


def test_a_finished_run_reads_back_with_its_nodes_from_another_connection(store: SQLiteRunStore) -> None:
    runtime = LocalRuntime(store=store)
    results, run_id = runtime.execute(chain(5))
    assert results["n4"]["result"] == 5
    store.flush()
    other = SQLiteRunStore(store.path)  # a second connection: only what is on disk
    try:
        run = other.get_run(run_id)
    finally:
        other.close()
    assert run is not None and run.status == "completed" and run.workflow == "chain"
    assert [n.node_id for n in run.nodes] == [f"n{i}" for i in range(5)]
    assert all(n.status == "completed" and n.duration is not None and n.duration >= 0 for n in run.nodes)
    starts = [n.started_at for n in run.nodes]
    assert starts == sorted(starts) and run.started_at <= starts[0] and starts[-1] <= run.ended_at
    assert run.parameters is None and run.outputs is None and run.error is None and run.runtime == "local"


def test_optional_columns_survive_the_writer(store: SQLiteRunStore, tmp_path: Path) -> None:
    """Runs with parameters, a tenant, outputs kept or an error take the full row; runs
    without take the 7-value row; both kinds in one batch land intact."""
    plain_rt = LocalRuntime(store=store)
    tenant_rt = LocalRuntime(store=store, tenant="acme", record_outputs="always")
    ids = []
    for i in range(3):
        ids.append(("plain", plain_rt.execute(chain(2))[1]))
        ids.append(("tenant", tenant_rt.execute(chain(2), parameters={"n0": {"step": i}})[1]))
    with pytest.raises(KailashError) as failed:
        plain_rt.execute(chain(2, fail=True, token=Secret("tok-9f8e7d6c")))
    store.flush()
    for kind, run_id in ids:
        run = store.get_run(run_id)
        assert run is not None and run.status == "completed" and len(run.nodes) == 2
        if kind == "plain":
            assert (run.tenant, run.parameters, run.outputs, run.extra) == (None, None, None, {})
        else:
            assert run.tenant == "acme" and run.outputs["n1"] == {"result": run.parameters["n0"]["step"] + 1}
    bad = store.get_run(failed.value.run_id)
    assert bad.status == "failed" and bad.error_node == "n1"
    assert [n.status for n in bad.nodes] == ["completed", "failed"]
    assert "tok-9f8e7d6c" not in repr(bad) and "***" in bad.nodes[1].error
    assert bad.outputs == {"n0": {"result": 1}}  # a failed run keeps its outputs, for resume


def test_more_runs_than_one_statement_holds_are_all_written(tmp_path: Path) -> None:
    """Batches larger than one multi-row statement (and of sizes that need padding)."""
    store = SQLiteRunStore(tmp_path / "runs.db")
    store.run_log.max_values = 7 * 8  # 8 rows per statement: 1,237 runs need many, the last padded
    try:
        runtime = LocalRuntime(store=store, durability="off")
        wf = chain(1, "many")
        ids = {runtime.execute(wf)[1] for _ in range(1237)}
        store.flush()
        conn = sqlite3.connect(store.path)
        try:
            on_disk = {r[0] for r in conn.execute("SELECT run_id FROM runs WHERE workflow = 'many'")}
            assert conn.execute("SELECT count(*) FROM run_nodes").fetchone()[0] == 0
        finally:
            conn.close()
        assert on_disk == ids
    finally:
        store.close()


def test_the_writer_thread_writes_without_a_flush(store: SQLiteRunStore) -> None:
    runtime = LocalRuntime(store=store)
    _, run_id = runtime.execute(chain(3))
    log: RunLog = store.run_log
    assert log.thread is not None and log.thread.is_alive()
    conn = sqlite3.connect(store.path)  # nothing here flushes the store: only the writer can put it there
    try:
        deadline = time.monotonic() + 10.0
        row = None
        while row is None and time.monotonic() < deadline:
            row = conn.execute("SELECT status, typeof(nodes) FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            time.sleep(0.005)
    finally:
        conn.close()
    assert row == ("completed", "blob")
    assert not log.busy()


def test_records_written_before_packing_still_read(store: SQLiteRunStore) -> None:
    """Older records keep node rows as JSON text; plain NodeRecord sequences are stored so."""
    store.record(RunRecord(run_id="old", workflow="wf", status="completed", started_at=10.0, ended_at=11.0,
                           nodes=(NodeRecord(node_id="a", status="completed", started_at=10.5, duration=0.25),)))
    store.flush()
    assert store._conn.execute("SELECT typeof(nodes) FROM runs WHERE run_id = 'old'").fetchone() == ("text",)
    assert store.get_run("old").nodes == (NodeRecord(node_id="a", status="completed", started_at=10.5, duration=0.25),)


def test_run_ids_are_version_4_uuids_and_unique() -> None:
    ids = [new_run_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for run_id in ids:
        u = uuid.UUID(run_id)
        assert u.version == 4 and u.variant == uuid.RFC_4122 and u.hex == run_id


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_makes_ids_of_its_own() -> None:
    new_run_id()  # the parent has a batch of ids made ahead
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids, exit at once
        try:
            os.write(write, " ".join(new_run_id() for _ in range(5)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        child = set(f.read().split())
    os.waitpid(pid, 0)
    parent = {new_run_id() for _ in range(300)}
    assert len(child) == 5 and not child & parent


def test_durability_off_with_another_store_still_records_through_it(tmp_path: Path) -> None:
    class Collecting:
        def __init__(self) -> None:
            self.records: list[RunRecord] = []

        def record(self, run: RunRecord) -> None:
            self.records.append(run)

        def get_run(self, run_id: str) -> RunRecord | None:
            return next((r for r in self.records if r.run_id == run_id), None)

        def list_runs(self, **_: Any) -> list[RunRecord]:
            return list(self.records)

        def flush(self) -> None:
            pass

    store = Collecting()
    _, run_id = LocalRuntime(store=store, durability="off").execute(chain(2))
    [run] = store.records
    assert run.run_id == run_id and [n.node_id for n in run.nodes] == ["n0", "n1"]


def test_a_locked_store_keeps_what_it_could_not_write_for_the_next_drain(tmp_path: Path) -> None:
    """Another process holds the write lock: the drain fails, nothing is lost; once the
    lock is released the next drain writes every run (a real lock, not a stand-in)."""
    store = SQLiteRunStore(tmp_path / "runs.db")
    try:
        store._conn.execute("PRAGMA busy_timeout=50")
        blocker = sqlite3.connect(store.path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the write lock, as another process's writer holds it
        runtime = LocalRuntime(store=store)
        ids = [runtime.execute(chain(2, "locked"))[1] for _ in range(5)]
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            store.run_log.drain()
        assert len(store.run_log.pending) == 5
        blocker.execute("ROLLBACK")
        blocker.close()
        store.run_log.drain()
        for run_id in ids:
            run = store.get_run(run_id)
            assert run is not None and run.status == "completed" and len(run.nodes) == 2
    finally:
        store.close()
