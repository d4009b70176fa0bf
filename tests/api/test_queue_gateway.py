"""Async runs through the gateway's durable queue, in process: slots, queued status,
secrets (references only), the in-memory fallback."""

from __future__ import annotations

import json
import threading
import time

from starlette.testclient import TestClient

from kailash.api.gateway import WorkflowGateway
from gateway_test_helpers import API_KEY, HEADERS, make_workflows


def _gateway(**options):
    gw = WorkflowGateway(port=0, api_keys=[API_KEY], **options)
    for name, wf in make_workflows().items():
        gw.register_workflow(name, wf)
    return gw


def _wait(client, run_id, done=("completed", "failed"), timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/runs/{run_id}", headers=HEADERS).json()
        if run["status"] in done:
            return run
        time.sleep(0.02)
    raise AssertionError(f"run {run_id} not {done} after {timeout} s: {run}")


def test_runs_beyond_the_slots_wait_queued_then_run(gate):
    gw = _gateway(queue_slots=1)
    with TestClient(gw.app) as c:
        first = c.post("/workflows/gated/execute?async=true", json={}, headers=HEADERS)
        assert first.status_code == 202 and first.json()["status"] == "running"
        assert gate.entered.acquire(timeout=10)
        second = c.post("/workflows/double/execute?async=true", json={"parameters": {"make": {"x": 4}}},
                        headers=HEADERS)
        assert second.status_code == 202 and second.json()["status"] == "queued"
        waiting = c.get(f"/runs/{second.json()['run_id']}", headers=HEADERS).json()
        assert waiting["status"] == "queued" and waiting["workflow"] == "double"
        assert gw.run_queue.depth() == 1 and gw.run_queue.depth(status="running") == 1
        threading.Timer(0.5, gate.gate.set).start()  # opens while the event stream of the queued run is read
        stream = c.get(f"/runs/{second.json()['run_id']}/events", headers=HEADERS)
        assert stream.status_code == 200
        events = [json.loads(line[6:]) for line in stream.text.splitlines() if line.startswith("data: ")]
        assert [e["event"] for e in events] == ["run_started", "node_completed", "node_completed", "run_completed"]
        assert [e["seq"] for e in events] == [0, 1, 2, 3]
        assert _wait(c, first.json()["run_id"])["status"] == "completed"
        done = _wait(c, second.json()["run_id"])
        assert done["status"] == "completed" and done["results"]["plus"] == {"result": 9}
        assert gw.run_queue.depth() == 0 and gw.run_queue.get(second.json()["run_id"]).status == "completed"


def test_a_plain_secret_is_never_queued_a_reference_is(_isolated_home, monkeypatch):
    token = "sk-live-QUEUE-NEVER-42"
    gw = _gateway()
    with TestClient(gw.app) as c:
        refused = c.post("/workflows/secret/execute?async=true", json={"parameters": {"check": {"token": token}}},
                         headers=HEADERS)
        assert refused.status_code == 422, refused.text
        err = refused.json()["error"]
        assert err["code"] == "secret_not_queueable" and err["node_id"] == "check" and err["parameter"] == "token"
        assert token not in refused.text
        monkeypatch.setenv("CHECK_TOKEN", token)
        ok = c.post("/workflows/secret/execute?async=true", json={"parameters": {"check": {"token": "${CHECK_TOKEN}"}}},
                    headers=HEADERS)
        assert ok.status_code == 202, ok.text
        run = _wait(c, ok.json()["run_id"])
        assert run["status"] == "completed"
        assert run["results"]["check"] == {"length": len(token), "token_is_secret": True}  # resolved on the worker
        sync = c.post("/workflows/secret/execute", json={"parameters": {"check": {"token": token}}}, headers=HEADERS)
        assert sync.status_code == 200  # a synchronous run may carry the value: it is never queued
    stored = b"".join(p.read_bytes() for p in _isolated_home.rglob("*.db*"))
    assert token.encode() not in stored and b"${CHECK_TOKEN}" in stored


def test_queue_off_runs_async_in_memory():
    gw = _gateway(queue=False)
    with TestClient(gw.app) as c:
        started = c.post("/workflows/double/execute?async=true", json={"parameters": {"make": {"x": 1}}},
                         headers=HEADERS)
        assert started.status_code == 202 and started.json()["status"] == "running"
        assert _wait(c, started.json()["run_id"])["results"]["plus"] == {"result": 3}
        assert gw.run_queue is None and gw.queue_worker() is None


def test_enqueued_directly_runs_and_a_workflow_served_elsewhere_waits_for_its_gateway():
    """What schedules do: ``enqueue`` a run by workflow name. A gateway that does not serve
    that workflow puts the run back for one that does, instead of failing it."""
    here = _gateway()
    with TestClient(here.app) as c:
        queue = here.run_queue
        here.queue_worker().UNKNOWN_RETRY = 0.2
        assert queue.enqueue(run_id="sched-1", workflow="double", parameters={"make": {"x": 5}}) is True
        assert queue.enqueue(run_id="sched-1", workflow="double", parameters={"make": {"x": 5}}) is False
        assert queue.enqueue(run_id="sched-2", workflow="elsewhere", parameters={"make": {"x": 1}}) is True
        here.queue_worker().wake()
        assert _wait(c, "sched-1")["results"]["plus"] == {"result": 11}
        time.sleep(0.6)  # offered to this gateway again and again: never failed here
        row = queue.get("sched-2")
        assert row.status == "queued" and row.attempts == 0
        other = WorkflowGateway(port=0, api_keys=[API_KEY])
        other.register_workflow("elsewhere", make_workflows()["double"])
        with TestClient(other.app) as c2:
            assert _wait(c2, "sched-2")["results"]["plus"] == {"result": 3}
        assert queue.get("sched-2").attempts == 1
