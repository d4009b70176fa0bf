"""Gateway runs on a real Dask cluster: WorkflowGateway(dask_address=...) sends sync and queued runs there."""

from __future__ import annotations

import logging
import os
import time

import pytest
from gateway_test_helpers import API_KEY, HEADERS
from starlette.testclient import TestClient

from kailash.api.gateway import WorkflowGateway
from kailash.nodes.code.python import PythonCodeNode
from kailash.workflow import Workflow

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    """A scheduler on 127.0.0.1 (any free port) with one worker process."""
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  scheduler_port=0, dashboard_address=None, silence_logs=logging.CRITICAL) as c, \
            distributed.Client(c, set_as_default=False) as client:
        yield c.scheduler_address, set(client.run(os.getpid).values())


def _gateway(**options) -> WorkflowGateway:
    gw = WorkflowGateway(port=0, api_keys=[API_KEY], **options)
    wf = Workflow("where")
    wf.add_node("where", PythonCodeNode(imports=["os"], code="result = os.getpid()"))
    wf.add_node("plus", PythonCodeNode(code="result = data + 0"))
    wf.connect("where", "plus")
    gw.register_workflow("where", wf)
    return gw


def _wait_done(client, run_id, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/runs/{run_id}", headers=HEADERS).json()
        if run["status"] not in ("running", "queued"):
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} still running after {timeout} s")


def test_sync_and_queued_runs_execute_on_the_cluster(cluster):
    address, worker_pids = cluster
    gw = _gateway(dask_address=address)
    with TestClient(gw.app) as client:
        body = client.post("/workflows/where/execute", json={}, headers=HEADERS).json()
        assert body["status"] == "completed", body
        assert body["results"]["where"]["result"] in worker_pids and body["results"]["where"]["result"] != os.getpid()
        run = client.get(f"/runs/{body['run_id']}", headers=HEADERS).json()
        assert [n["status"] for n in run["nodes"]] == ["completed", "completed"]  # recorded as a local run is

        reply = client.post("/workflows/where/execute?async=true", json={}, headers=HEADERS)
        assert reply.status_code == 202
        assert gw.runs.worker is not None  # the durable queue took it
        done = _wait_done(client, reply.json()["run_id"])
        assert done["status"] == "completed", done
        assert done["results"]["where"]["result"] in worker_pids


def test_default_gateway_runs_in_its_own_process():
    with TestClient(_gateway().app) as client:
        body = client.post("/workflows/where/execute", json={}, headers=HEADERS).json()
        assert body["results"]["where"]["result"] == os.getpid()


def test_unreachable_scheduler_fails_the_run_naming_the_address():
    gw = _gateway(dask_address="tcp://127.0.0.1:9")
    gw.runs.runtime_factory.connect_timeout = 1.0
    with TestClient(gw.app) as client:
        reply = client.post("/workflows/where/execute", json={}, headers=HEADERS)
        body = reply.json()
        assert reply.status_code >= 400 and "tcp://127.0.0.1:9" in body["error"]["message"], body


def test_runtime_factory_and_dask_address_are_exclusive():
    with pytest.raises(ValueError, match="not both"):
        WorkflowGateway(port=0, api_keys=[API_KEY], dask_address="tcp://127.0.0.1:9",
                        runtime_factory=lambda **kw: None)
