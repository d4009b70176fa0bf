"""Schedules over REST: create, read, pause/resume, delete, fires; checked fields; tenants see only their own; runs fire."""

from __future__ import annotations

import threading
import time

import pytest
from gateway_test_helpers import API_KEY, HEADERS, SIMPLE_DOC, make_workflows
from starlette.testclient import TestClient

from kailash.api.gateway import WorkflowGateway
from kailash.api.tenancy import TenantRegistry


def _gateway(**options):
    gw = WorkflowGateway(port=0, api_keys=[API_KEY], **options)
    for name in ("double", "secret"):
        gw.register_workflow(name, make_workflows()[name])
    return gw


@pytest.fixture
def client():
    with TestClient(_gateway(schedule_tick=None).app) as c:
        yield c


def _wait(fetch, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fetch()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def test_create_read_pause_resume_delete(client):
    r = client.post("/schedules", headers=HEADERS, json={"workflow": "double", "cron": "*/5 * * * *",
                                                          "parameters": {"make": {"x": 2}}, "catchup": "all"})
    assert r.status_code == 201, r.text
    s = r.json()
    assert r.headers["location"] == f"/schedules/{s['id']}"
    assert (s["workflow"], s["cron"], s["every"], s["timezone"], s["catchup"], s["enabled"]) == (
        "double", "*/5 * * * *", None, "UTC", "all", True)
    assert s["next_fire_at"] % 300 == 0 and s["next_fire_at"] > time.time()
    assert "tenant_id" not in s
    assert client.get(f"/schedules/{s['id']}", headers=HEADERS).json()["parameters"] == {"make": {"x": 2}}
    assert [x["id"] for x in client.get("/schedules", headers=HEADERS).json()["schedules"]] == [s["id"]]

    paused = client.patch(f"/schedules/{s['id']}", headers=HEADERS, json={"enabled": False}).json()
    assert paused["enabled"] is False and paused["next_fire_at"] is None
    resumed = client.patch(f"/schedules/{s['id']}", headers=HEADERS, json={"enabled": True, "every": "90s"}).json()
    assert (resumed["enabled"], resumed["cron"], resumed["every"]) == (True, None, 90)
    assert resumed["next_fire_at"] > time.time()

    assert client.get(f"/schedules/{s['id']}/fires", headers=HEADERS).json() == {"fires": []}
    assert client.delete(f"/schedules/{s['id']}", headers=HEADERS).status_code == 204
    assert client.get(f"/schedules/{s['id']}", headers=HEADERS).json()["error"]["code"] == "schedule_not_found"
    assert client.delete(f"/schedules/{s['id']}", headers=HEADERS).status_code == 404


@pytest.mark.parametrize(("body", "code", "parameter"), [
    ({"workflow": "double", "cron": "*/5 * * *"}, "invalid_schedule", "cron"),
    ({"workflow": "double", "cron": "99 * * * *"}, "invalid_schedule", "cron"),
    ({"workflow": "double", "every": "soon"}, "invalid_schedule", "every"),
    ({"workflow": "double", "every": 60, "timezone": "Atlantis/Capital"}, "invalid_schedule", "timezone"),
    ({"workflow": "double", "every": 60, "catchup": "maybe"}, "invalid_schedule", "catchup"),
    ({"workflow": "double"}, "invalid_schedule", "cron"),
    ({"workflow": "nope", "every": 60}, "invalid_schedule", "workflow"),
    ({"every": 60}, "invalid_schedule", "workflow"),
    ({"workflow": "double", "every": 60, "when": "now"}, "invalid_schedule", "when"),
    ({"workflow": "double", "every": 60, "enabled": "yes"}, "invalid_schedule", "enabled"),
    ({"workflow": "secret", "every": 60, "parameters": {"check": {"fail": "no"}}}, "invalid_parameters", "parameters"),
    ({"workflow": "double", "every": 60, "parameters": {"make": {"code": "import os"}}},
     "parameter_not_overridable", "code"),
])
def test_invalid_schedules_are_refused_naming_the_field(client, body, code, parameter):
    r = client.post("/schedules", headers=HEADERS, json=body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert (error["code"], error["parameter"]) == (code, parameter)
    assert client.get("/schedules", headers=HEADERS).json()["schedules"] == []


def test_a_bad_change_is_refused_and_changes_nothing(client):
    s = client.post("/schedules", headers=HEADERS, json={"workflow": "double", "every": 60}).json()
    r = client.patch(f"/schedules/{s['id']}", headers=HEADERS, json={"cron": "not cron"})
    assert r.status_code == 422 and r.json()["error"]["parameter"] == "cron"
    assert client.get(f"/schedules/{s['id']}", headers=HEADERS).json()["every"] == 60


def test_schedules_need_a_key_and_are_in_openapi(client):
    assert client.get("/schedules").status_code == 401
    paths = client.get("/openapi.json").json()["paths"]
    assert {"get", "post"} <= set(paths["/schedules"])
    assert {"get", "patch", "delete"} <= set(paths["/schedules/{schedule_id}"])
    assert "cron" in paths["/schedules"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]


def test_a_due_schedule_runs_its_workflow_and_lists_the_fire():
    with TestClient(_gateway(schedule_tick=0.05).app) as client:
        s = client.post("/schedules", headers=HEADERS,
                        json={"workflow": "double", "every": 1, "parameters": {"make": {"x": 20}}}).json()
        fires = _wait(lambda: client.get(f"/schedules/{s['id']}/fires", headers=HEADERS).json()["fires"])
        run_id = fires[-1]["run_id"]
        assert run_id == f"sched-{s['id']}-{int(fires[-1]['fire_at'])}"
        run = _wait(lambda: (r := client.get(f"/runs/{run_id}", headers=HEADERS).json()).get("status") == "completed"
                    and r)
        assert run["results"]["plus"]["result"] == 41
        client.patch(f"/schedules/{s['id']}", headers=HEADERS, json={"enabled": False})


def test_fires_go_to_the_injected_queue():
    queued, got_one = [], threading.Event()

    def enqueue(*, run_id, workflow, parameters, tenant_id=None, options=None):
        queued.append((run_id, workflow, parameters, tenant_id))
        got_one.set()
        return True

    with TestClient(_gateway(schedule_tick=0.05, schedule_enqueue=enqueue).app) as client:
        s = client.post("/schedules", headers=HEADERS, json={"workflow": "double", "every": 1,
                                                              "parameters": {"make": {"x": 1}}}).json()
        assert got_one.wait(10)
        client.delete(f"/schedules/{s['id']}", headers=HEADERS)
        runs = client.get("/runs", headers=HEADERS).json()["runs"]
    run_id, workflow, parameters, tenant = queued[0]
    assert run_id.startswith(f"sched-{s['id']}-") and (workflow, parameters, tenant) == (
        "double", {"make": {"x": 1}}, None)
    assert runs == []  # nothing ran in the gateway itself: the queue took the fire


@pytest.fixture
def tenants(tmp_path):
    registry = TenantRegistry(home=tmp_path / "tenants-home")
    _, acme = registry.create_tenant("acme", database_schema="acme")
    _, globex = registry.create_tenant("globex", database_schema="globex")
    gw = WorkflowGateway(port=0, tenants=registry, api_keys=[API_KEY], schedule_tick=0.05)
    with TestClient(gw.app) as client:
        yield client, {"X-API-Key": acme}, {"X-API-Key": globex}


def test_tenants_see_and_change_only_their_own_schedules_and_runs(tenants):
    client, acme, globex = tenants
    assert client.post("/workflows", headers=acme, json={"name": "hello", "workflow": SIMPLE_DOC}).status_code == 201
    r = client.post("/schedules", headers=globex, json={"workflow": "hello", "every": 60})
    assert r.status_code == 422 and r.json()["error"]["parameter"] == "workflow"  # not globex's workflow
    s = client.post("/schedules", headers=acme, json={"workflow": "hello", "every": 1,
                                                       "parameters": {"greet": {"who": "acme"}}}).json()
    assert client.get("/schedules", headers=globex).json()["schedules"] == []
    assert client.get("/schedules", headers=HEADERS).json()["schedules"] == []
    for method in ("get", "delete"):
        assert getattr(client, method)(f"/schedules/{s['id']}", headers=globex).status_code == 404
    assert client.patch(f"/schedules/{s['id']}", headers=globex, json={"enabled": False}).status_code == 404
    assert client.get(f"/schedules/{s['id']}/fires", headers=globex).status_code == 404
    assert client.get(f"/schedules/{s['id']}", headers=acme).json()["enabled"] is True

    fires = _wait(lambda: client.get(f"/schedules/{s['id']}/fires", headers=acme).json()["fires"])
    run_id = fires[-1]["run_id"]
    run = _wait(lambda: (r := client.get(f"/runs/{run_id}", headers=acme).json()).get("status") == "completed"
                and r)
    assert run["results"]["shout"]["result"] == "HELLO ACME"  # ran in acme's namespace, under its policy
    assert client.get(f"/runs/{run_id}", headers=globex).status_code == 404
    client.patch(f"/schedules/{s['id']}", headers=acme, json={"enabled": False})


PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_registry():
    import uuid

    psycopg = pytest.importorskip("psycopg")
    tag = uuid.uuid4().hex[:10]
    registry = TenantRegistry(database_url=PG_URL, registry_schema=f"ksched_{tag}")
    registry.test_tag = tag
    try:
        yield registry
    finally:
        tenants = registry.list_tenants()
        registry.storage.close()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            for schema in [f"ksched_{tag}", *(t.database_schema for t in tenants)]:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            for role in (t.database_role for t in tenants if t.database_role):
                conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_two_gateways_on_one_postgres_start_each_fire_once(pg_registry):
    """Two serving gateways share the schedules; every fire becomes one run, in one of them."""
    tag = pg_registry.test_tag
    _, key = pg_registry.create_tenant(f"acme-{tag}", database_schema=f"acme_{tag}")
    acme = {"X-API-Key": key}
    gateways = [WorkflowGateway(port=0, tenants=pg_registry, api_keys=[API_KEY], schedule_tick=0.02)
                for _ in range(2)]
    with TestClient(gateways[0].app) as one, TestClient(gateways[1].app) as two:
        assert one.post("/workflows", headers=acme, json={"name": "hello", "workflow": SIMPLE_DOC}).status_code == 201
        s = two.post("/schedules", headers=acme, json={"workflow": "hello", "every": 1, "catchup": "all",
                                                        "parameters": {"greet": {"who": "x"}}}).json()
        fires = _wait(lambda: (f := one.get(f"/schedules/{s['id']}/fires", headers=acme).json()["fires"])
                      and len(f) >= 3 and f)
        one.patch(f"/schedules/{s['id']}", headers=acme, json={"enabled": False})
        time.sleep(0.2)
        fires = one.get(f"/schedules/{s['id']}/fires", headers=acme).json()["fires"]
        started = [[r for r in gw.runs.live if r.startswith("sched-")] for gw in gateways]
        runs = [r["run_id"] for r in one.get("/runs", headers=acme).json()["runs"]]
    assert not set(started[0]) & set(started[1])  # no fire started in both gateways
    assert sorted(started[0] + started[1]) == sorted(f["run_id"] for f in fires)
    assert sorted(runs) == sorted(f["run_id"] for f in fires)


def test_deleting_a_tenant_deletes_its_schedules(tmp_path):
    registry = TenantRegistry(home=tmp_path / "home")
    _, key = registry.create_tenant("acme", database_schema="acme")
    gw = WorkflowGateway(port=0, tenants=registry, api_keys=[API_KEY], schedule_tick=None)
    with TestClient(gw.app) as client:
        client.post("/workflows", headers={"X-API-Key": key}, json={"name": "hello", "workflow": SIMPLE_DOC})
        assert client.post("/schedules", headers={"X-API-Key": key},
                           json={"workflow": "hello", "every": 60}).status_code == 201
        assert len(gw.schedules.list(tenant_id="acme")) == 1
        registry.delete_tenant("acme")
        assert gw.schedules.list(any_tenant=True) == []
