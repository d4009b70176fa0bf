"""``POST /runs/{id}/stop`` for runs this gateway does not hold: a stream run executing on
another gateway on the same PostgreSQL stops gracefully (through its queue row); a run
still waiting in the durable queue is cancelled and never starts."""

from __future__ import annotations

import time
import uuid

import pytest
from gateway_test_helpers import API_KEY, HEADERS, make_workflows
from starlette.testclient import TestClient

from kailash.api.gateway import WorkflowGateway
from kailash.nodes.code.python import PythonCodeNode
from kailash.nodes.data.streaming import EventStreamNode
from kailash.workflow import Workflow
from tests.servers import fixtures as servers

ws_server = servers.ws_server
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _wait(client, run_id, check, timeout=20.0):
    deadline = time.monotonic() + timeout
    run = None
    while time.monotonic() < deadline:
        run = client.get(f"/runs/{run_id}", headers=HEADERS).json()
        if check(run):
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id}: condition not met in {timeout} s: {run}")


def _ticks(url):
    wf = Workflow("ticks")
    wf.add_node("source", EventStreamNode(stream_url=f"{url}/endless?interval=0.005"))
    wf.add_node("process", PythonCodeNode(code="result = data['seq']"))
    wf.connect("source", "process")
    return wf


@pytest.fixture
def pg_storages():
    psycopg = pytest.importorskip("psycopg")
    from kailash.api.postgres import PostgresStorage

    tag = uuid.uuid4().hex[:10]
    names = (f"kstop_reg_{tag}", f"kstop_def_{tag}")
    storages = [PostgresStorage(PG_URL, registry_schema=names[0], default_schema=names[1]) for _ in range(2)]
    try:
        yield storages
    finally:
        for storage in storages:
            storage.close()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def test_a_stream_run_on_another_gateway_stops_through_the_queue(ws_server, pg_storages):
    gateways = [WorkflowGateway(port=0, api_keys=[API_KEY], storage=s, schedule_tick=None) for s in pg_storages]
    for gw in gateways:
        gw.register_workflow("ticks", _ticks(ws_server.url))
        gw.register_workflow("double", make_workflows()["double"])
    with TestClient(gateways[0].app) as one, TestClient(gateways[1].app) as two:
        reply = one.post("/workflows/ticks/execute?async=true", json={}, headers=HEADERS)
        assert reply.status_code == 202
        run_id = reply.json()["run_id"]
        _wait(one, run_id, lambda r: (r.get("stream") or {}).get("events", 0) >= 20)
        assert gateways[1].runs.find(run_id, None) is None  # it executes in the first gateway only
        stop = two.post(f"/runs/{run_id}/stop", headers=HEADERS)
        assert stop.status_code == 202 and stop.json()["status"] == "stopping"
        done = _wait(two, run_id, lambda r: r["status"] != "running")
        assert done["status"] == "completed"
        assert done["results"]["source"]["stopped_by"] == "stop"
        again = two.post(f"/runs/{run_id}/stop", headers=HEADERS)
        assert again.status_code == 409 and again.json()["error"]["code"] == "run_not_running"
        # an ordinary run is not stoppable from elsewhere either
        gateways[0].runs.worker.stop(0)
        gateways[1].runs.worker.stop(0)  # nothing claims from now on: what is enqueued waits
        queue = gateways[0].run_queue
        assert queue.enqueue(run_id="waiting-1", workflow="double", parameters={"make": {"x": 1}})
        cancel = two.post("/runs/waiting-1/stop", headers=HEADERS)
        assert cancel.status_code == 202 and cancel.json()["status"] == "cancelled"
        assert queue.get("waiting-1").status == "interrupted"
        run = one.get("/runs/waiting-1", headers=HEADERS).json()
        assert run["status"] == "interrupted" and "cancelled" in run["error"]["message"]
        assert one.post("/runs/waiting-1/stop", headers=HEADERS).status_code == 409


def test_a_queued_run_is_cancelled_and_a_running_ordinary_one_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("KAILASH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KAILASH_DATABASE_URL", raising=False)
    gw = WorkflowGateway(port=0, api_keys=[API_KEY], schedule_tick=None)
    gw.register_workflow("double", make_workflows()["double"])
    with TestClient(gw.app) as client:
        gw.queue_worker().stop(0)
        queue = gw.run_queue
        assert queue.enqueue(run_id="q-1", workflow="double", parameters={"make": {"x": 1}})
        assert queue.enqueue(run_id="q-2", workflow="double", parameters={"make": {"x": 1}}, owner="elsewhere:1:x")
        assert client.post("/runs/q-2/stop", headers=HEADERS).json()["error"]["code"] == "not_a_stream_run"
        reply = client.post("/runs/q-1/stop", headers=HEADERS)
        assert reply.status_code == 202 and reply.json()["status"] == "cancelled"
        assert client.get("/runs/q-1", headers=HEADERS).json()["status"] == "interrupted"
        assert queue.get("q-1").status == "interrupted" and queue.depth() == 0
        assert client.post("/runs/nope/stop", headers=HEADERS).status_code == 404


def test_a_queue_file_from_before_stop_requests_gains_the_column(tmp_path):
    import sqlite3

    from kailash.runtime.queue import SQLiteRunQueue

    path = tmp_path / "queue.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE run_queue (run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, tenant_id TEXT, parameters "
            "TEXT, options TEXT, status TEXT NOT NULL, owner TEXT, owner_info TEXT, attempts INTEGER NOT NULL "
            "DEFAULT 0, lease_until REAL, enqueued_at REAL NOT NULL, started_at REAL, ended_at REAL, error TEXT);")
    queue = SQLiteRunQueue(path)
    try:
        assert queue.enqueue(run_id="r", workflow="w", parameters={}, owner="me:1:a")
        assert queue.request_stop("r", "other-tenant") is None  # not that tenant's run
        assert queue.request_stop("r", None) == "stopping" and queue.stop_requests("me:1:a") == {"r"}
        assert queue.stop_requests("someone-else") == set()
    finally:
        queue.close()
