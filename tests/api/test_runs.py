"""Running workflows over HTTP: results, failures, async runs, history, live events, limits, secrets."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from gateway_test_helpers import API_KEY, HEADERS, make_workflows
from starlette.testclient import TestClient

from kailash.api.gateway import WorkflowGateway


def _wait_done(client, run_id, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/runs/{run_id}", headers=HEADERS).json()
        if run["status"] != "running":
            return run
        time.sleep(0.02)
    raise AssertionError(f"run {run_id} still running after {timeout} s")


def _sse(text):
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if "data" in fields:
            ev = json.loads(fields["data"])
            assert fields["event"] == ev["event"] and int(fields["id"]) == ev["seq"]
            events.append(ev)
    return events


def test_execute_returns_results(client):
    reply = client.post("/workflows/double/execute", json={"parameters": {"make": {"x": 20}}}, headers=HEADERS)
    assert reply.status_code == 200
    body = reply.json()
    assert body["status"] == "completed" and body["results"] == {"make": {"result": 40}, "plus": {"result": 41}}
    run = client.get(f"/runs/{body['run_id']}", headers=HEADERS).json()
    assert run["status"] == "completed"
    assert [n["node_id"] for n in run["nodes"]] == ["make", "plus"]
    assert all(n["status"] == "completed" and n["duration"] >= 0 for n in run["nodes"])


def test_skipped_branches_are_reported(client):
    body = client.post("/workflows/routed/execute", json={}, headers=HEADERS).json()
    assert body["results"]["on_a"] == {"result": "took a"}
    assert body["skipped"] == ["on_b"]
    run = client.get(f"/runs/{body['run_id']}", headers=HEADERS).json()
    assert {n["node_id"]: n["status"] for n in run["nodes"]}["on_b"] == "skipped"


def test_failing_node_is_named(client, caplog):
    reply = client.post("/workflows/failing/execute", json={}, headers=HEADERS)
    assert reply.status_code == 422
    body = reply.json()
    assert body["run_status"] == "failed" and body["status"] == 422 and body["code"] == "run_failed"
    assert reply.headers["content-type"] == "application/problem+json" and body["type"] == "urn:kailash:problem:run_failed"
    assert body["node_id"] == "explode" and body["error_type"] == "NodeExecutionError" and "the data is bad" in body["detail"]
    assert body["error"]["code"] == "run_failed" and body["error"]["node_id"] == "explode"
    assert "explode" in body["error"]["message"] and "the data is bad" in body["error"]["message"]
    assert body["results"] == {"ok": {"result": 1}}  # what finished before the failure
    assert reply.headers["location"] == f"/runs/{body['run_id']}"
    logged = [r.getMessage() for r in caplog.records if r.name == "kailash.api" and r.levelname == "WARNING"]
    assert [m for m in logged if body["run_id"] in m and "'explode'" in m and "the data is bad" in m]  # logged with its error
    run = client.get(f"/runs/{body['run_id']}", headers=HEADERS).json()
    assert run["status"] == "failed" and run["error"]["node_id"] == "explode"
    assert {n["node_id"]: n["status"] for n in run["nodes"]} == {"ok": "completed", "explode": "failed"}


def test_invalid_parameters_are_422_listing_every_problem(client):
    reply = client.post("/workflows/secret/execute", json={"parameters": {"chek": {"token": "x"},
                                                                          "check": {"fail": "no"}}},
                        headers=HEADERS)
    assert reply.status_code == 422
    err = reply.json()["error"]
    assert err["code"] == "invalid_parameters"
    messages = [p["message"] for p in err["problems"]]
    assert any("chek" in m and "check" in m for m in messages)  # unknown key, with the close match
    assert any("'fail'" in m and "bool" in m for m in messages)
    assert any("'token'" in m for m in messages)  # required, missing
    assert client.get("/runs", headers=HEADERS).json()["runs"] == []  # nothing ran


@pytest.mark.parametrize("body", [b"{oops", b'{"parameters": [1]}', b'{"x": 1}', b"[]"])
def test_bad_execute_bodies(client, body):
    reply = client.post("/workflows/double/execute", content=body,
                        headers={**HEADERS, "Content-Type": "application/json"})
    assert reply.status_code in (400, 422)
    assert reply.json()["error"]["code"] in ("malformed_json", "invalid_request")


def test_async_run_then_results_and_events(client):
    reply = client.post("/workflows/double/execute?async=true", json={"parameters": {"make": {"x": 1}}},
                        headers=HEADERS)
    assert reply.status_code == 202
    started = reply.json()
    assert started["status"] == "running" and reply.headers["location"] == f"/runs/{started['run_id']}"
    run = _wait_done(client, started["run_id"])
    assert run["results"] == {"make": {"result": 2}, "plus": {"result": 3}}
    with client.stream("GET", started["links"]["events"], headers=HEADERS) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = _sse(stream.read().decode())
    kinds = [e["event"] for e in events]
    assert kinds == ["run_started", "node_started", "node_completed", "node_started", "node_completed",
                     "run_completed"]
    assert [e["seq"] for e in events] == list(range(len(events)))


def test_live_events_arrive_while_the_run_runs(client, gate):
    started = client.post("/workflows/gated/execute?async=true", json={}, headers=HEADERS).json()
    assert gate.entered.acquire(timeout=10)
    running = client.get(f"/runs/{started['run_id']}", headers=HEADERS).json()
    assert running["status"] == "running" and running["nodes"][0]["status"] == "running"
    assert started["run_id"] in [r["run_id"] for r in client.get("/runs?status=running", headers=HEADERS).json()["runs"]]
    with client.websocket_connect(f"/ws/runs/{started['run_id']}", headers=HEADERS) as ws:
        assert ws.receive_json()["event"] == "run_started"  # replayed
        assert ws.receive_json()["event"] == "node_started"
        gate.gate.set()  # only now does the node finish: the next events are live
        done = ws.receive_json()
        assert done["event"] == "node_completed" and done["node_id"] == "wait"
        last = ws.receive_json()
        assert last["event"] == "run_completed"
        run = client.get(f"/runs/{started['run_id']}", headers=HEADERS).json()  # reacting to the event
        assert run["status"] == "completed" and run["results"] == {"wait": {"result": "passed"}}


def test_failed_run_events(client):
    run_id = client.post("/workflows/failing/execute", json={}, headers=HEADERS).json()["run_id"]
    with client.websocket_connect(f"/ws/runs/{run_id}?api_key={API_KEY}") as ws:
        events = []
        while not events or events[-1]["event"] not in ("run_completed", "run_failed"):
            events.append(ws.receive_json())
    assert [e["event"] for e in events][-2:] == ["node_failed", "run_failed"]
    assert events[-1]["error_node"] == "explode" and "the data is bad" in events[-2]["error"]


def test_events_of_a_run_recorded_before_this_gateway_started(gateway):
    first = TestClient(gateway.app)
    with first:
        run_id = first.post("/workflows/double/execute", json={"parameters": {"make": {"x": 3}}},
                            headers=HEADERS).json()["run_id"]
    other = WorkflowGateway(port=0, api_keys=[API_KEY])  # same KAILASH_HOME, nothing live
    with TestClient(other.app) as c:
        run = c.get(f"/runs/{run_id}", headers=HEADERS).json()
        assert run["status"] == "completed" and [n["status"] for n in run["nodes"]] == ["completed"] * 2
        events = _sse(c.get(f"/runs/{run_id}/events", headers=HEADERS).text)
        assert [e["event"] for e in events] == ["run_started", "node_completed", "node_completed", "run_completed"]
        assert c.get("/runs/doesnotexist/events", headers=HEADERS).status_code == 404


def test_unknown_run_is_404(client):
    reply = client.get("/runs/0123456789abcdef", headers=HEADERS)
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "run_not_found"
    with pytest.raises(Exception) as info:
        with client.websocket_connect("/ws/runs/0123456789abcdef", headers=HEADERS):
            pass
    assert getattr(info.value, "status_code", None) == 404 or getattr(info.value, "code", None) == 4404


def test_run_history_filters(client):
    for x in (1, 2):
        client.post("/workflows/double/execute", json={"parameters": {"make": {"x": x}}}, headers=HEADERS)
    client.post("/workflows/failing/execute", json={}, headers=HEADERS)
    runs = client.get("/runs", headers=HEADERS).json()["runs"]
    assert len(runs) == 3 and runs[0]["workflow"] == "failing"  # newest first
    assert [r["status"] for r in client.get("/runs?status=failed", headers=HEADERS).json()["runs"]] == ["failed"]
    assert len(client.get("/runs?workflow=double", headers=HEADERS).json()["runs"]) == 2
    assert len(client.get("/runs?limit=1", headers=HEADERS).json()["runs"]) == 1


def test_secret_parameters_never_come_back(client, _isolated_home):
    token = "sk-live-DO-NOT-LEAK-42"
    ok = client.post("/workflows/secret/execute", json={"parameters": {"check": {"token": token}}},
                     headers=HEADERS)
    assert ok.status_code == 200
    assert ok.json()["results"]["check"] == {"length": len(token), "token_is_secret": True}
    failed = client.post("/workflows/secret/execute", json={"parameters": {"check": {"token": token, "fail": True}}},
                         headers=HEADERS)
    assert failed.status_code == 422 and failed.json()["error"]["node_id"] == "check"
    assert token not in failed.text
    for run_id in (ok.json()["run_id"], failed.json()["run_id"]):
        assert token not in client.get(f"/runs/{run_id}", headers=HEADERS).text
        assert token not in client.get(f"/runs/{run_id}/events", headers=HEADERS).text
    assert token not in client.get("/runs", headers=HEADERS).text
    stored = b"".join(p.read_bytes() for p in _isolated_home.rglob("runs.db*"))
    assert token.encode() not in stored


def test_concurrent_run_limit(gate):
    gw = WorkflowGateway(port=0, api_keys=[API_KEY], max_concurrent_runs=1)
    gw.register_workflow("gated", make_workflows()["gated"])
    with TestClient(gw.app) as c:
        first = c.post("/workflows/gated/execute?async=true", json={}, headers=HEADERS)
        assert first.status_code == 202
        assert gate.entered.acquire(timeout=10)
        second = c.post("/workflows/gated/execute?async=true", json={}, headers=HEADERS)
        assert second.status_code == 429
        assert second.headers["retry-after"] == "1" and second.json()["error"]["code"] == "too_many_runs"
        gate.gate.set()
        _wait_done(c, first.json()["run_id"])
        deadline = time.monotonic() + 5
        while c.post("/workflows/gated/execute", json={}, headers=HEADERS).status_code == 429:
            assert time.monotonic() < deadline  # the slot frees once the first run's thread is done
            time.sleep(0.02)


async def test_in_process_async_client(gateway):
    transport = httpx.ASGITransport(app=gateway.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
        reply = await c.post("/workflows/double/execute", json={"parameters": {"make": {"x": 5}}}, headers=HEADERS)
        assert reply.status_code == 200 and reply.json()["results"]["plus"] == {"result": 11}
        assert (await c.get("/runs", headers=HEADERS)).json()["runs"][0]["run_id"] == reply.json()["run_id"]
    gateway.runs.shutdown()


def test_workflow_api_serves_one_workflow():
    from kailash.api.workflow_api import WorkflowAPI

    api = WorkflowAPI(make_workflows()["double"], api_keys=[API_KEY])
    with TestClient(api.app) as c:
        assert c.post("/execute", json={"parameters": {"make": {"x": 1}}}).status_code == 401
        body = c.post("/execute", json={"parameters": {"make": {"x": 1}}}, headers=HEADERS).json()
        assert body["results"]["plus"] == {"result": 3} and body["workflow"] == "double"
        assert c.get("/workflow", headers=HEADERS).json()["name"] == "double"
        assert [w["name"] for w in c.get("/workflows", headers=HEADERS).json()["workflows"]] == ["double"]
        assert "/execute" in c.get("/openapi.json").json()["paths"]
