"""POST /runs/{id}/resume over real HTTP: a failed run re-runs from its failed node, reusing the rest."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from kailash.nodes.base import Node, NodeParameter

KEY = "resume-route-key-0123456789"
H = {"X-API-Key": KEY}


class Flaky(Node):
    """Fails while ``Flaky.broken`` is set; counts its runs."""

    broken = True
    calls = 0

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"data": NodeParameter(default=None)}

    def run(self, data: Any) -> dict[str, Any]:
        Flaky.calls += 1
        if Flaky.broken:
            raise RuntimeError("the service is down")
        return {"result": f"fixed {data}"}


class Counted(Node):
    calls = 0

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"n": NodeParameter(type=int, default=1)}

    def run(self, n: int) -> dict[str, Any]:
        Counted.calls += 1
        return {"result": n * 10}


@pytest.fixture
def gateway():
    from kailash.api.gateway import WorkflowGateway
    from kailash.workflow import Workflow

    wf = Workflow("flaky")
    wf.add_node("load", Counted())
    wf.add_node("call", Flaky())
    wf.connect("load", "call")
    gw = WorkflowGateway(port=0, api_keys=[KEY], log_level="warning")
    gw.register_workflow("flaky", wf)
    Flaky.broken, Flaky.calls, Counted.calls = True, 0, 0
    running = gw.serve_in_thread()
    yield running
    running.stop()


def wait_done(url: str, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        body = httpx.get(f"{url}/runs/{run_id}", headers=H).json()
        if body["status"] not in ("running", "queued"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish")


def test_resume_reuses_finished_nodes_and_reruns_the_failed_one(gateway):
    url = gateway.url
    r = httpx.post(f"{url}/workflows/flaky/execute", headers=H, json={"parameters": {"load": {"n": 4}}})
    assert r.status_code == 422 and r.json()["run_status"] == "failed"
    failed = r.json()["run_id"]
    assert (Counted.calls, Flaky.calls) == (1, 1)

    Flaky.broken = False
    r = httpx.post(f"{url}/runs/{failed}/resume", headers=H)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["parent_run_id"] == failed and body["reused"] == ["load"]
    done = wait_done(url, body["run_id"])
    assert done["status"] == "completed", done
    assert done["results"]["call"] == {"result": "fixed 40"}  # the recorded output of 'load' was reused
    assert (Counted.calls, Flaky.calls) == (1, 2)
    record = httpx.get(f"{url}/runs/{body['run_id']}", headers=H).json()
    assert record["parent_run_id"] == failed and record["reused"] == ["load"]

    again = httpx.post(f"{url}/runs/{body['run_id']}/resume", headers=H)  # completed: nothing to resume
    assert again.status_code == 409 and again.json()["code"] == "run_not_resumable"


def test_resume_refuses_unknown_runs_other_keys_and_bad_rerun(gateway):
    url = gateway.url
    assert httpx.post(f"{url}/runs/nope/resume", headers=H).status_code == 404
    assert httpx.post(f"{url}/runs/nope/resume").status_code == 401
    r = httpx.post(f"{url}/workflows/flaky/execute", headers=H, json={})
    failed = r.json()["run_id"]
    bad = httpx.post(f"{url}/runs/{failed}/resume", headers=H, json={"rerun": "load"})
    assert bad.status_code == 422 and bad.json()["parameter"] == "rerun"
    unknown = httpx.post(f"{url}/runs/{failed}/resume", headers=H, json={"rerun": ["ghost"]})
    assert unknown.status_code == 422 and "ghost" in unknown.json()["detail"]
    Flaky.broken = False
    r = httpx.post(f"{url}/runs/{failed}/resume", headers=H, json={"rerun": ["load"]})
    assert r.status_code == 202 and r.json()["reused"] == []
    assert wait_done(url, r.json()["run_id"])["status"] == "completed"
    assert Counted.calls == 2  # asked to run 'load' again


def test_resume_stays_in_the_tenant_that_ran_it(tmp_path):
    from starlette.testclient import TestClient

    from kailash.api.gateway import WorkflowGateway
    from kailash.api.tenancy import TenantRegistry

    registry = TenantRegistry(home=tmp_path / "tenants-home")
    _, acme_key = registry.create_tenant("acme-resume")
    _, globex_key = registry.create_tenant("globex-resume")
    acme, globex = {"X-API-Key": acme_key}, {"X-API-Key": globex_key}
    doc = {"name": "breaks", "nodes": [
        {"id": "first", "type": "PythonCodeNode", "config": {"code": "result = 2"}},
        {"id": "second", "type": "PythonCodeNode", "config": {"code": "result = data / 0"}}],
        "connections": [{"from": "first", "to": "second"}]}
    gw = WorkflowGateway(port=0, tenants=registry, api_keys=[KEY])
    with TestClient(gw.app) as client:
        assert client.post("/workflows", headers=acme, json={"name": "breaks", "workflow": doc}).status_code == 201
        failed = client.post("/workflows/breaks/execute", headers=acme, json={})
        assert failed.status_code == 422, failed.text
        run_id = failed.json()["run_id"]
        for other in (globex, H):  # another tenant, and the gateway's own namespace: no such run
            r = client.post(f"/runs/{run_id}/resume", headers=other)
            assert r.status_code == 404 and r.json()["code"] == "run_not_found"
        r = client.post(f"/runs/{run_id}/resume", headers=acme)
        assert r.status_code == 202 and r.json()["reused"] == ["first"]
