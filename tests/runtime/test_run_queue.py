"""The durable run queue on SQLite and PostgreSQL: idempotent enqueue, exclusive claims,
leases, takeover with fencing, dead local owners, depth, and the secrets rule."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from kailash.errors import SecurityError, WorkflowValidationError
from kailash.runtime.queue import (
    PostgresRunQueue,
    SQLiteRunQueue,
    queueable_parameters,
    resolve_references,
)

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _pg_or_skip() -> None:
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except Exception as exc:
        pytest.skip(f"no PostgreSQL at {PG_URL}: {exc}")


@pytest.fixture(params=["sqlite", "postgres"])
def make_queue(request, tmp_path):
    """A factory of queue objects on one store (each its own connection, as separate gateways have)."""
    made = []
    if request.param == "sqlite":
        def make(lease: float = 30.0):
            q = SQLiteRunQueue(tmp_path / "queue.db", lease=lease)
            made.append(q)
            return q
        yield make
    else:
        _pg_or_skip()
        schema = f"kq_test_{uuid.uuid4().hex[:10]}"

        def make(lease: float = 30.0):
            q = PostgresRunQueue(PG_URL, schema, lease=lease)
            made.append(q)
            return q
        yield make
        import psycopg

        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    for q in made:
        q.close()


def test_enqueue_is_idempotent_on_run_id(make_queue):
    q = make_queue()
    assert q.enqueue(run_id="r1", workflow="etl", parameters={"load": {"n": 1}}, tenant_id="acme",
                     options={"x": 1}) is True
    assert q.enqueue(run_id="r1", workflow="other", parameters={"load": {"n": 2}}) is False
    row = q.get("r1")
    assert (row.workflow, row.parameters, row.tenant_id, row.options, row.status) == (
        "etl", {"load": {"n": 1}}, "acme", {"x": 1}, "queued")
    assert q.depth() == 1 and q.pending("acme") == 1 and q.pending(None) == 0
    with pytest.raises(WorkflowValidationError, match="run_id"):
        q.enqueue(run_id="", workflow="etl", parameters={})
    with pytest.raises(WorkflowValidationError, match="parameters must be a dict"):
        q.enqueue(run_id="r2", workflow="etl", parameters=[1])  # type: ignore[arg-type]


def test_concurrent_claimers_never_get_the_same_run(make_queue):
    first = make_queue()
    for i in range(200):
        first.enqueue(run_id=f"r{i:03d}", workflow="w", parameters={})
    queues = [make_queue() for _ in range(4)]
    got: dict[int, list[str]] = {i: [] for i in range(4)}
    start = threading.Barrier(4)

    def worker(i: int) -> None:
        start.wait()
        while True:
            claimed = queues[i].claim(f"w{i}", limit=3)
            if not claimed:
                return
            got[i] += [c.run_id for c in claimed]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    every = [r for ids in got.values() for r in ids]
    assert len(every) == 200 and set(every) == {f"r{i:03d}" for i in range(200)}  # each exactly once
    assert first.depth() == 0 and first.depth(status="running") == 200


def test_expired_lease_is_taken_over_and_the_old_owner_is_fenced_off(make_queue):
    q = make_queue(lease=0.5)
    q.enqueue(run_id="r1", workflow="w", parameters={})
    (mine,) = q.claim("old", limit=5)
    assert mine.attempts == 1 and q.claim("new", limit=5) == []  # leased: nobody else gets it
    assert q.renew("old") == {"r1"}
    time.sleep(0.8)  # no renewal: the lease runs out
    (theirs,) = q.claim("new", limit=5)
    assert (theirs.attempts, theirs.previous_owner, theirs.owner) == (2, "old", "new")
    assert q.renew("old") == set()  # the old owner learns it lost the run
    assert q.finish("r1", "old", attempt=1, status="completed") is False  # and cannot settle it
    assert q.finish("r1", "new", attempt=2, status="failed", error="boom") is True
    row = q.get("r1")
    assert (row.status, row.error, row.attempts) == ("failed", "boom", 2)


def test_release_hands_runs_over_at_once(make_queue):
    q = make_queue(lease=60)
    q.enqueue(run_id="a", workflow="w", parameters={}, owner="gw1")  # enqueued already claimed
    q.enqueue(run_id="b", workflow="w", parameters={}, owner="gw1")
    assert q.get("a").status == "running" and q.claim("gw2", limit=5) == []
    assert q.release("gw1", ["a"]) == 1
    assert [r.run_id for r in q.claim("gw2", limit=5)] == ["a"]
    assert q.release("gw1") == 1 and [r.run_id for r in q.claim("gw2", limit=5)] == ["b"]


def test_runs_of_a_dead_process_on_this_host_are_freed_without_waiting(make_queue, tmp_path):
    q = make_queue(lease=600)
    q.enqueue(run_id="r1", workflow="w", parameters={})
    q.enqueue(run_id="r2", workflow="w", parameters={})
    assert len(q.claim("alive-here", limit=1)) == 1  # this process: alive, kept
    # another process claims r2 and dies (its lease would last 10 minutes)
    if isinstance(q, SQLiteRunQueue):
        code = f"from kailash.runtime.queue import SQLiteRunQueue as Q; print(Q({str(q.path)!r}).claim('dead', limit=1))"
    else:
        code = (f"from kailash.runtime.queue import PostgresRunQueue as Q; "
                f"print(Q({PG_URL!r}, {q.schema!r}).claim('dead', limit=1))")
    root = str(Path(__file__).resolve().parents[2])
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, cwd=root,
                   env={"PYTHONPATH": root, "PATH": "/usr/bin:/bin"})
    assert q.get("r2").owner == "dead" and q.claim("me", limit=5) == []
    assert q.expire_dead_owners() == 1
    (again,) = q.claim("me", limit=5)
    assert (again.run_id, again.previous_owner, again.attempts) == ("r2", "dead", 2)


def test_depth_counts_waiting_runs_per_tenant(make_queue):
    q = make_queue()
    for i, tenant in enumerate([None, None, "acme"]):
        q.enqueue(run_id=f"r{i}", workflow="w", parameters={}, tenant_id=tenant)
    assert q.depth() == 3
    assert q.depth(None, all_tenants=False) == 2 and q.depth("acme", all_tenants=False) == 1
    q.claim("w", limit=1)
    assert q.depth() == 2 and q.depth(status="running") == 1 and q.pending(None) == 2


def _secret_workflow():
    from kailash.nodes.base import Node, NodeParameter
    from kailash.security.secrets import Secret
    from kailash.workflow import Workflow

    class Call(Node):
        def get_parameters(self):
            return {"token": NodeParameter(type=(str, Secret), required=True, secret=True),
                    "n": NodeParameter(type=int, default=1)}

        def run(self, token, n):
            return {"ok": True}

    wf = Workflow("calls")
    wf.add_node("call", Call())
    return wf


def test_secret_values_are_never_queued_only_references(monkeypatch):
    wf = _secret_workflow()
    with pytest.raises(SecurityError) as info:
        queueable_parameters(wf, {"call": {"token": "sk-live-123456", "n": 2}})
    assert info.value.node_id == "call" and info.value.parameter == "token"
    assert "sk-live-123456" not in str(info.value) and "${NAME}" in str(info.value)
    params = {"call": {"token": "${CALL_TOKEN}", "n": 2}}
    assert queueable_parameters(wf, params) is params
    with pytest.raises(SecurityError, match="synchronously"):  # a tenant cannot name the gateway's environment
        queueable_parameters(wf, params, allow_env=False)
    with pytest.raises(SecurityError, match=r"\$\{CALL_TOKEN\}, which is not set"):
        resolve_references(wf, params)
    monkeypatch.setenv("CALL_TOKEN", "sk-from-env-999")
    resolved = resolve_references(wf, params)
    assert resolved["call"]["token"].reveal() == "sk-from-env-999" and resolved["call"]["n"] == 2
    assert params["call"]["token"] == "${CALL_TOKEN}"  # the queued form is untouched


def test_unclaim_puts_a_run_back_unstarted_after_a_pause(make_queue):
    q = make_queue()
    q.enqueue(run_id="r1", workflow="w", parameters={})
    (item,) = q.claim("cannot-run-it", limit=1)
    assert q.unclaim("r1", "someone-else", attempt=1) is False  # only the holder may
    assert q.unclaim("r1", "cannot-run-it", attempt=1, delay=0.4) is True
    row = q.get("r1")
    assert (row.status, row.owner, row.attempts) == ("queued", None, 0)
    assert q.claim("other", limit=1) == []  # not offered again at once
    time.sleep(0.6)
    (again,) = q.claim("other", limit=1)
    assert again.attempts == 1
