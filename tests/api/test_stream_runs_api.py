"""Stream runs through the gateway: an async run consumes the real websocket server, shows live
counts in its events, and stops gracefully through ``POST /runs/{id}/stop``."""

from __future__ import annotations

import time

import pytest
from gateway_test_helpers import API_KEY, HEADERS, make_workflows
from starlette.testclient import TestClient

from kailash.api.gateway import WorkflowGateway
from kailash.nodes.code.python import PythonCodeNode
from kailash.nodes.data.streaming import EventStreamNode
from kailash.workflow import Workflow
from tests.servers import fixtures as servers

ws_server = servers.ws_server


@pytest.fixture
def stream_client(ws_server):
    gw = WorkflowGateway(port=0, api_keys=[API_KEY])
    wf = Workflow("ticks")
    wf.add_node("source", EventStreamNode(stream_url=f"{ws_server.url}/endless?interval=0.005"))
    wf.add_node("process", PythonCodeNode(code="result = data['seq']"))
    wf.connect("source", "process")
    gw.register_workflow("ticks", wf)
    gw.register_workflow("double", make_workflows()["double"])
    with TestClient(gw.app) as client:
        yield client


def _wait(client, run_id, check, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/runs/{run_id}", headers=HEADERS).json()
        if check(run):
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id}: condition not met in {timeout} s: {run}")


def test_async_stream_run_has_live_counts_and_stops_through_the_api(stream_client):
    client = stream_client
    reply = client.post("/workflows/ticks/execute?async=true", json={}, headers=HEADERS)
    assert reply.status_code == 202
    run_id = reply.json()["run_id"]
    live = _wait(client, run_id, lambda r: (r.get("stream") or {}).get("events", 0) >= 20)
    assert live["status"] == "running" and live["stream"]["failures"] == 0
    stop = client.post(f"/runs/{run_id}/stop", headers=HEADERS)
    assert stop.status_code == 202 and stop.json()["status"] == "stopping"
    done = _wait(client, run_id, lambda r: r["status"] != "running")
    assert done["status"] == "completed"
    summary = done["results"]["source"]
    assert summary["stopped_by"] == "stop" and summary["events"] >= 20
    events = client.get(f"/runs/{run_id}/events", headers=HEADERS).text
    assert "stream_progress" in events and "stream_stop_requested" in events
    again = client.post(f"/runs/{run_id}/stop", headers=HEADERS)
    assert again.status_code == 409 and again.json()["error"]["code"] == "run_not_running"


def test_only_stream_runs_can_be_stopped(stream_client):
    client = stream_client
    assert client.post("/runs/0123456789abcdef0123456789abcdef/stop", headers=HEADERS).status_code == 404
    body = client.post("/workflows/double/execute", json={"parameters": {"make": {"x": 1}}}, headers=HEADERS).json()
    reply = client.post(f"/runs/{body['run_id']}/stop", headers=HEADERS)
    assert reply.status_code == 409
