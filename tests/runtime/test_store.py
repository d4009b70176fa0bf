"""The SQLite run store: records, queries, batched writes, persistence, JSON safety."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kailash.runtime.store import (
    NodeRecord,
    NodeRecords,
    RunRecord,
    RunStore,
    SQLiteRunStore,
    default_store,
    kailash_home,
    to_json_safe,
)
from kailash.security.secrets import Secret

ROOT = Path(__file__).resolve().parents[2]


def record(run_id: str, *, workflow: str = "wf", status: str = "completed", started: float = 100.0, **kw) -> RunRecord:
    return RunRecord(run_id=run_id, workflow=workflow, status=status, started_at=started, ended_at=started + 1, **kw)


def rows_on_disk(path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT run_id, status FROM runs ORDER BY run_id").fetchall()
    finally:
        conn.close()


@pytest.fixture
def store(tmp_path):
    s = SQLiteRunStore(tmp_path / "runs.db")
    yield s
    s.close()


def test_sqlite_store_implements_the_protocol(store):
    assert isinstance(store, RunStore)


def test_round_trip_of_a_full_record(store):
    run = record(
        "r1", status="failed", error="boom", error_node="b", outputs={"a": {"result": [1, 2]}},
        parameters={"a": {"x": 1}}, tenant="acme", runtime="local", parent_run_id="p0", extra={"k": "v"},
        # the recorder's compact rows: (id, status, start as an offset from the run's start, duration, error)
        nodes=NodeRecords((("a", "completed", 0.5, 0.01, None), ("b", "failed", 0.75, 0.02, "boom")), 100.0),
    )
    assert all(isinstance(n, NodeRecord) for n in run.nodes)  # never raw tuples
    assert run.nodes[1] == NodeRecord(node_id="b", status="failed", started_at=100.75, duration=0.02, error="boom")
    store.record(run)
    back = store.get_run("r1")
    assert back.nodes == (
        NodeRecord(node_id="a", status="completed", started_at=100.5, duration=0.01),
        NodeRecord(node_id="b", status="failed", started_at=100.75, duration=0.02, error="boom"),
    )
    assert (back.status, back.error, back.error_node, back.tenant, back.parent_run_id) == ("failed", "boom", "b", "acme", "p0")
    assert back.outputs == {"a": {"result": [1, 2]}} and back.parameters == {"a": {"x": 1}} and back.extra == {"k": "v"}
    assert back.duration == 1.0
    assert back.node("b").error == "boom" and back.node("zz") is None
    d = back.to_dict()
    assert d["nodes"][1] == {"node_id": "b", "status": "failed", "started_at": 100.75, "duration": 0.02, "error": "boom"}
    assert d["duration"] == 1.0 and d["extra"] == {"k": "v"}
    json.dumps(d)


def test_plain_node_records_are_accepted_too(store):
    store.record(record("r1", nodes=(NodeRecord(node_id="a", status="skipped"),)))
    assert store.get_run("r1").nodes[0].status == "skipped"


def test_get_run_unknown_and_by_unique_prefix(store):
    store.record(record("abc123"))
    store.record(record("abd456"))
    assert store.get_run("nope") is None
    assert store.get_run("abc").run_id == "abc123"
    assert store.get_run("ab") is None  # ambiguous
    assert store.get_run("%") is None


def test_list_runs_newest_first_with_filters_and_limit(store):
    store.record(record("r1", workflow="etl", started=1.0))
    store.record(record("r2", workflow="etl", status="failed", started=2.0))
    store.record(record("r3", workflow="report", started=3.0, tenant="acme"))
    assert [r.run_id for r in store.list_runs()] == ["r3", "r2", "r1"]
    assert [r.run_id for r in store.list_runs(limit=2)] == ["r3", "r2"]
    assert [r.run_id for r in store.list_runs(workflow="etl")] == ["r2", "r1"]
    assert [r.run_id for r in store.list_runs(status="failed")] == ["r2"]
    assert [r.run_id for r in store.list_runs(tenant="acme")] == ["r3"]
    assert store.list_runs(workflow="etl", status="running") == []


def test_recording_the_same_run_again_replaces_it(store):
    store.record(record("r1", status="running"))
    store.record(record("r1", status="completed"))
    assert store.get_run("r1").status == "completed"
    assert len(store.list_runs()) == 1


def test_completed_runs_are_buffered_and_flushed_in_batches(tmp_path):
    path = tmp_path / "runs.db"
    s = SQLiteRunStore(path)
    s.FLUSH_DELAY = 30  # only an explicit flush or a full buffer writes in this test
    for i in range(5):
        s.record(record(f"r{i}"))
    assert rows_on_disk(path) == []  # nothing written per run
    s.flush()
    assert len(rows_on_disk(path)) == 5
    s.FLUSH_SIZE = 3
    for i in range(5, 8):
        s.record(record(f"r{i}"))
    assert len(rows_on_disk(path)) == 8  # the full buffer was written at once
    s.close()


def test_pending_writes_are_flushed_after_a_short_delay(tmp_path):
    path = tmp_path / "runs.db"
    s = SQLiteRunStore(path)
    s.record(record("r1"))
    deadline = time.monotonic() + 10
    while not rows_on_disk(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rows_on_disk(path) == [("r1", "completed")]
    s.close()


def test_failed_runs_are_written_at_once(tmp_path):
    path = tmp_path / "runs.db"
    s = SQLiteRunStore(path)
    s.FLUSH_DELAY = 30
    s.record(record("ok"))
    s.record(record("bad", status="failed"))
    assert rows_on_disk(path) == [("bad", "failed"), ("ok", "completed")]
    s.close()


def test_records_persist_across_store_instances(tmp_path):
    path = tmp_path / "runs.db"
    s = SQLiteRunStore(path)
    s.record(record("r1"))
    s.close()
    reopened = SQLiteRunStore(path)
    assert reopened.get_run("r1").status == "completed"
    reopened.close()


def test_pending_records_are_flushed_when_the_process_exits(tmp_path):
    path = tmp_path / "runs.db"
    code = (
        "from kailash.runtime.store import SQLiteRunStore, RunRecord\n"
        f"s = SQLiteRunStore({str(path)!r})\n"
        "s.FLUSH_DELAY = 60\n"
        "s.record(RunRecord(run_id='exit-1', workflow='w', status='completed', started_at=1.0))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=ROOT)
    assert rows_on_disk(path) == [("exit-1", "completed")]


def test_concurrent_recording_from_threads(store):
    def worker(k):
        for i in range(50):
            store.record(record(f"t{k}-{i}", started=float(i)))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(store.list_runs(limit=1000)) == 200


def test_default_store_lives_under_kailash_home_and_is_shared(_isolated_home):
    assert kailash_home() == _isolated_home
    s = default_store()
    assert s.path == (_isolated_home / "runs.db").resolve()
    assert default_store() is s


def test_kailash_home_defaults_to_the_user_directory(monkeypatch):
    monkeypatch.delenv("KAILASH_HOME")
    assert kailash_home() == Path.home() / ".kailash"


def test_to_json_safe_redacts_secrets_and_marks_the_unserialisable():
    value = {"token": Secret("xyz-secret", env="TOKEN"), "anon": Secret("s3cr3t-value"), "t": (1, 2), "s": {3},
             "b": b"abc", "o": object()}
    safe = to_json_safe(value)
    assert safe["token"] == "${TOKEN}" and safe["anon"] == "***"
    assert safe["t"] == [1, 2] and safe["s"] == [3] and safe["b"] == {"$bytes": 3}
    assert safe["o"]["$unserializable"] == "object"
    assert "xyz-secret" not in json.dumps(safe) and "s3cr3t-value" not in json.dumps(safe)


def test_unserialisable_outputs_of_a_failed_run_are_still_recorded(store):
    store.record(record("r1", status="failed", outputs=to_json_safe({"a": {"result": object()}})))
    assert store.get_run("r1").outputs["a"]["result"]["$unserializable"] == "object"
