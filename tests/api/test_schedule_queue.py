"""Schedules fire into the durable run queue (the gateway's default, ``queue=True``).

* Two real gateway processes on one PostgreSQL schedule a workflow every second: every
  fire's run executes exactly once across both (its nodes' side effects are counted), and
  every fire's run is in ``GET /runs`` of either gateway.
* One SQLite gateway: a fire becomes a queued run (a queue row under the fire's run id)
  and completes; ``/metrics`` shows queued runs; a fire whose parameters hold a plain
  secret is never queued and is recorded as a failed run.
"""

from __future__ import annotations

import collections
import time

import httpx
import pytest
from gateway_test_helpers import API_KEY, HEADERS, make_workflows
from starlette.testclient import TestClient
from test_queue_processes import PG_URL, STEPS, _effects, _records, _start, _stop, pg_schemas  # noqa: F401

from kailash.api.gateway import WorkflowGateway


def _wait(fetch, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fetch()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def test_two_gateway_processes_on_postgres_run_each_fire_once(tmp_path, pg_schemas):
    effects = tmp_path / "effects.txt"
    env = {"KAILASH_DATABASE_URL": PG_URL, "QUEUE_TEST_REGISTRY": pg_schemas[0], "QUEUE_TEST_SCHEMA": pg_schemas[1],
           "QUEUE_TEST_EFFECTS": str(effects), "QUEUE_TEST_DELAY": "0.02", "KAILASH_HOME": str(tmp_path / "home")}
    one, url_one = _start(env)
    two, url_two = _start(env)
    try:
        with httpx.Client(base_url=url_one, timeout=10) as http:
            r = http.post("/schedules", json={"workflow": "effects", "every": 1, "catchup": "all",
                                              "parameters": {s: {"token": "tick"} for s in STEPS}})
            assert r.status_code == 201, r.text
            sid = r.json()["id"]
            _wait(lambda: len(http.get(f"/schedules/{sid}/fires").json()["fires"]) >= 4)
            assert http.patch(f"/schedules/{sid}", json={"enabled": False}).status_code == 200
            time.sleep(1.5)  # a tick in flight when it was paused may still add a fire
            fire_ids = [f["run_id"] for f in http.get(f"/schedules/{sid}/fires").json()["fires"]]
        records = _records(url_two, fire_ids, 30)
        assert all(r["status"] == "completed" for r in records.values()), records
        counts = collections.Counter(step for _, step, _ in _effects(effects))
        assert counts == {s: len(fire_ids) for s in STEPS}  # every fire's nodes ran once: no fire ran twice
        for url in (url_one, url_two):
            listed = {r["run_id"] for r in httpx.get(f"{url}/runs?limit=500", timeout=10).json()["runs"]}
            assert set(fire_ids) <= listed
        psycopg = pytest.importorskip("psycopg")
        with psycopg.connect(PG_URL) as conn:
            rows = dict(conn.execute(f'SELECT run_id, status FROM "{pg_schemas[0]}".run_queue').fetchall())
        assert rows == dict.fromkeys(fire_ids, "completed")  # each fire went through the shared queue
    finally:
        _stop(one)
        _stop(two)


def _gateway(tmp_path, monkeypatch, **options):
    monkeypatch.setenv("KAILASH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KAILASH_DATABASE_URL", raising=False)
    gw = WorkflowGateway(port=0, api_keys=[API_KEY], **options)
    for name in ("double", "secret"):
        gw.register_workflow(name, make_workflows()[name])
    return gw


def test_a_fire_on_sqlite_becomes_a_queued_run_and_completes(tmp_path, monkeypatch):
    gw = _gateway(tmp_path, monkeypatch, schedule_tick=0.05)
    with TestClient(gw.app) as client:
        s = client.post("/schedules", headers=HEADERS,
                        json={"workflow": "double", "every": 1, "parameters": {"make": {"x": 20}}}).json()
        fires = _wait(lambda: client.get(f"/schedules/{s['id']}/fires", headers=HEADERS).json()["fires"])
        client.patch(f"/schedules/{s['id']}", headers=HEADERS, json={"enabled": False})
        run_id = fires[0]["run_id"]
        run = _wait(lambda: (r := client.get(f"/runs/{run_id}", headers=HEADERS).json()).get("status") == "completed"
                    and r)
        assert run["results"]["plus"]["result"] == 41
        row = gw.run_queue.get(run_id)
        assert (row.status, row.workflow, row.options.get("scheduled")) == ("completed", "double", True)
        assert run_id in {r["run_id"] for r in client.get("/runs", headers=HEADERS).json()["runs"]}


def test_queue_false_still_starts_fires_in_the_gateway(tmp_path, monkeypatch):
    gw = _gateway(tmp_path, monkeypatch, schedule_tick=0.05, queue=False)
    with TestClient(gw.app) as client:
        s = client.post("/schedules", headers=HEADERS,
                        json={"workflow": "double", "every": 1, "parameters": {"make": {"x": 1}}}).json()
        fires = _wait(lambda: client.get(f"/schedules/{s['id']}/fires", headers=HEADERS).json()["fires"])
        client.patch(f"/schedules/{s['id']}", headers=HEADERS, json={"enabled": False})
        run_id = fires[0]["run_id"]
        assert _wait(lambda: client.get(f"/runs/{run_id}", headers=HEADERS).json().get("status") == "completed")
        assert gw.run_queue is None


def test_metrics_queue_depth_counts_queued_runs(tmp_path, monkeypatch):
    gw = _gateway(tmp_path, monkeypatch, schedule_tick=None)
    with TestClient(gw.app) as client:
        worker = gw.queue_worker()
        worker.stop(0)  # nothing claims: what is enqueued stays queued
        for i in range(3):
            assert gw.run_queue.enqueue(run_id=f"waiting-{i}", workflow="double", parameters={"make": {"x": i}})
        text = client.get("/metrics", headers=HEADERS).text
        assert "kailash_queue_depth 3\n" in text


def test_a_fire_with_a_plain_secret_is_never_queued_and_a_reference_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("SCHED_TEST_TOKEN", "from-env-123")
    gw = _gateway(tmp_path, monkeypatch, schedule_tick=0.05)
    with TestClient(gw.app) as client:
        plain = client.post("/schedules", headers=HEADERS, json={
            "workflow": "secret", "every": 1, "parameters": {"check": {"token": "plain-value-1"}}})
        ref = client.post("/schedules", headers=HEADERS, json={
            "workflow": "secret", "every": 1, "parameters": {"check": {"token": "${SCHED_TEST_TOKEN}"}}})
        if plain.status_code != 201:  # refused up front is as good: it is never queued
            assert plain.status_code == 422
            plain_fires = []
        else:
            plain_fires = _wait(lambda: client.get(f"/schedules/{plain.json()['id']}/fires",
                                                   headers=HEADERS).json()["fires"])
            client.patch(f"/schedules/{plain.json()['id']}", headers=HEADERS, json={"enabled": False})
        ref_fires = _wait(lambda: client.get(f"/schedules/{ref.json()['id']}/fires", headers=HEADERS).json()["fires"])
        client.patch(f"/schedules/{ref.json()['id']}", headers=HEADERS, json={"enabled": False})
        for fire in plain_fires:
            run = _wait(lambda f=fire: (r := client.get(f"/runs/{f['run_id']}", headers=HEADERS).json())
                        .get("status") == "failed" and r)
            assert "secret_not_queueable" in run["error"]["message"] and "plain-value-1" not in str(run)
            assert gw.run_queue.get(fire["run_id"]) is None
        run_id = ref_fires[0]["run_id"]
        run = _wait(lambda: (r := client.get(f"/runs/{run_id}", headers=HEADERS).json()).get("status") == "completed"
                    and r)
        assert run["results"]["check"]["length"] == len("from-env-123")
