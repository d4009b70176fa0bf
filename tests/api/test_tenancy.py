"""Tenants: keys, isolation (404, never 403), limits, and storage in SQLite and PostgreSQL."""

from __future__ import annotations

import time
import uuid

import pytest
from gateway_test_helpers import API_KEY, HEADERS, SIMPLE_DOC, make_workflows
from starlette.testclient import TestClient

from kailash.api.gateway import WorkflowGateway
from kailash.api.tenancy import TenantError, TenantRegistry

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _postgres_or_skip():
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except Exception as exc:  # pragma: no cover - the machine's PostgreSQL is expected to be up
        pytest.skip(f"no PostgreSQL at {PG_URL}: {exc}")
    return psycopg


@pytest.fixture(params=["sqlite", "postgres"])
def registry(request, tmp_path):
    if request.param == "sqlite":
        yield TenantRegistry(home=tmp_path / "tenants-home")
        return
    psycopg = _postgres_or_skip()
    tag = uuid.uuid4().hex[:10]
    reg = TenantRegistry(database_url=PG_URL, registry_schema=f"kreg_{tag}")
    reg.test_tag = tag  # type: ignore[attr-defined]
    try:
        yield reg
    finally:
        schemas = [t.database_schema for t in reg.list_tenants()]
        roles = [t.database_role for t in reg.list_tenants() if t.database_role]
        reg.storage.close()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            for schema in [f"kreg_{tag}", *schemas]:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            for role in roles:
                conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def _schema(registry, name):
    tag = getattr(registry, "test_tag", None)
    return f"{name}_{tag}" if tag else name


@pytest.fixture
def two_tenants(registry):
    acme, acme_key = registry.create_tenant("acme-corp", database_schema=_schema(registry, "acme"), redis_db=2)
    globex, globex_key = registry.create_tenant("globex", database_schema=_schema(registry, "globex"))
    gw = WorkflowGateway(port=0, tenants=registry, api_keys=[API_KEY])
    gw.register_workflow("double", make_workflows()["double"])
    with TestClient(gw.app) as client:
        yield client, {"X-API-Key": acme_key}, {"X-API-Key": globex_key}, gw


def test_create_returns_key_once_and_stores_only_its_digest(registry):
    tenant, key = registry.create_tenant("solo", database_schema=_schema(registry, "solo"), domain="solo.example",
                                         max_concurrent_runs=2, requests_per_minute=100)
    assert key.startswith("kt_") and len(key) > 40
    assert registry.authenticate_key(key).tenant_id == "solo"
    assert registry.authenticate_key(key + "x") is None
    assert [t.tenant_id for t in registry.list_tenants()] == ["solo"]
    got = registry.get_tenant("solo")
    assert got.domain == "solo.example" and got.max_concurrent_runs == 2 and got.requests_per_minute == 100
    assert key not in repr(got.to_dict())


@pytest.mark.parametrize("tenant_id,options,match", [
    ("bad id", {}, "tenant id 'bad id' is not valid"),
    ("ok", {"database_schema": "Bad-Schema"}, "database schema 'Bad-Schema'"),
    ("ok", {"redis_db": -1}, "redis_db must be a non-negative integer"),
    ("ok", {"max_concurrent_runs": 0}, "max_concurrent_runs must be a positive integer"),
])
def test_bad_tenant_options(registry, tenant_id, options, match):
    with pytest.raises(TenantError, match=match):
        registry.create_tenant(tenant_id, **options)


def test_duplicate_tenant_and_schema_are_refused(registry):
    registry.create_tenant("one", database_schema=_schema(registry, "shared"))
    with pytest.raises(TenantError, match="tenant 'one' already exists"):
        registry.create_tenant("one")
    with pytest.raises(TenantError, match="already used by another tenant"):
        registry.create_tenant("two", database_schema=_schema(registry, "shared"))


def test_tenants_cannot_see_each_other(two_tenants):
    client, acme, globex, _ = two_tenants
    assert client.post("/workflows", json={"name": "private", "workflow": SIMPLE_DOC}, headers=acme).status_code == 201
    run = client.post("/workflows/private/execute", json={"parameters": {"greet": {"who": "acme"}}}, headers=acme)
    assert run.status_code == 200 and run.json()["results"]["shout"] == {"result": "HELLO ACME"}
    run_id = run.json()["run_id"]

    # globex: the workflow and the run do not exist for it — 404 everywhere, never 403
    assert client.get("/workflows", headers=globex).json()["workflows"] == []
    for method, path in [("GET", "/workflows/private"), ("POST", "/workflows/private/execute"),
                         ("GET", "/workflows/private/export?format=json"), ("DELETE", "/workflows/private"),
                         ("GET", f"/runs/{run_id}"), ("GET", f"/runs/{run_id}/events"),
                         ("GET", f"/runs/{run_id[:8]}")]:
        reply = client.request(method, path, headers=globex, json={} if method == "POST" else None)
        assert reply.status_code == 404, (method, path, reply.status_code)
    assert client.get("/runs", headers=globex).json()["runs"] == []
    with pytest.raises(Exception) as info:
        with client.websocket_connect(f"/ws/runs/{run_id}", headers=globex):
            pass
    assert getattr(info.value, "status_code", None) == 404 or getattr(info.value, "code", None) == 4404

    # the same name is free for globex, and stays separate
    other = {**SIMPLE_DOC, "nodes": [{"id": "greet", "type": "PythonCodeNode", "config": {"code": "result = 'g'"}}],
             "connections": []}
    assert client.post("/workflows", json={"name": "private", "workflow": other}, headers=globex).status_code == 201
    assert client.post("/workflows/private/execute", json={}, headers=globex).json()["results"] == {
        "greet": {"result": "g"}}
    assert len(client.get("/workflows/private", headers=acme).json()["nodes"]) == 2
    assert [r["run_id"] for r in client.get("/runs", headers=acme).json()["runs"]] == [run_id]


def test_gateway_namespace_and_tenants_are_separate(two_tenants):
    client, acme, _, _ = two_tenants
    # code-registered workflows belong to the gateway's own keys
    assert client.get("/workflows/double", headers=acme).status_code == 404
    assert client.post("/workflows/double/execute", json={}, headers=acme).status_code == 404
    assert [w["name"] for w in client.get("/workflows", headers=HEADERS).json()["workflows"]] == ["double"]
    client.post("/workflows", json={"name": "mine", "workflow": SIMPLE_DOC}, headers=acme)
    assert client.get("/workflows/mine", headers=HEADERS).status_code == 404
    # a tenant may register the same name as a code-registered workflow: it is its own
    assert client.post("/workflows", json={"name": "double", "workflow": SIMPLE_DOC}, headers=acme).status_code == 201


def test_tenants_may_not_read_the_server_environment(two_tenants, monkeypatch):
    client, acme, _, _ = two_tenants
    monkeypatch.setenv("SERVER_SECRET", "s3cr3t-value")
    doc = {"nodes": [{"id": "leak", "type": "PythonCodeNode", "config": {"code": "result = data", "data":
                                                                         "${SERVER_SECRET}"}}], "connections": []}
    reply = client.post("/workflows", json={"name": "leak", "workflow": doc}, headers=acme)
    assert reply.status_code == 422
    assert "SERVER_SECRET" in reply.text and "s3cr3t-value" not in reply.text
    checked = client.post("/validate", json={"workflow": doc}, headers=acme).json()
    assert checked["valid"] is False


def test_rotated_and_deleted_keys_stop_working(registry):
    tenant, old = registry.create_tenant("rot", database_schema=_schema(registry, "rot"))
    gw = WorkflowGateway(port=0, tenants=registry)
    with TestClient(gw.app) as client:
        assert client.get("/workflows", headers={"X-API-Key": old}).status_code == 200
        new = registry.rotate_key("rot")  # the gateway hears of it: no 30 s grace here
        assert client.get("/workflows", headers={"X-API-Key": old}).status_code == 401
        assert client.get("/workflows", headers={"X-API-Key": new}).status_code == 200
        assert registry.delete_tenant("rot", purge=True)
        assert client.get("/workflows", headers={"X-API-Key": new}).status_code == 401
    assert registry.get_tenant("rot") is None
    assert not registry.delete_tenant("rot")


def test_tenant_request_limit(registry):
    _, key = registry.create_tenant("busy", database_schema=_schema(registry, "busy"), requests_per_minute=3)
    _, calm_key = registry.create_tenant("calm", database_schema=_schema(registry, "calm"))
    gw = WorkflowGateway(port=0, tenants=registry)
    with TestClient(gw.app) as client:
        codes = [client.get("/workflows", headers={"X-API-Key": key}).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        assert all(client.get("/workflows", headers={"X-API-Key": calm_key}).status_code == 200 for _ in range(6))


def test_tenant_concurrency_limit(registry, gate):
    _, key = registry.create_tenant("one-at-a-time", database_schema=_schema(registry, "oneatatime"),
                                    max_concurrent_runs=1)
    gw = WorkflowGateway(port=0, tenants=registry)
    doc = {"nodes": [{"id": "wait", "type": "GateNode", "config": {}}], "connections": []}
    headers = {"X-API-Key": key}
    with TestClient(gw.app) as client:
        assert client.post("/workflows", json={"name": "gated", "workflow": doc}, headers=headers).status_code == 201
        first = client.post("/workflows/gated/execute?async=true", json={}, headers=headers)
        assert first.status_code == 202 and gate.entered.acquire(timeout=10)
        second = client.post("/workflows/gated/execute?async=true", json={}, headers=headers)
        assert second.status_code == 429 and second.json()["error"]["code"] == "too_many_runs"
        gate.gate.set()
        deadline = time.monotonic() + 10
        while client.get(f"/runs/{first.json()['run_id']}", headers=headers).json()["status"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.02)


@pytest.mark.parametrize("registry", ["postgres"], indirect=True)
def test_postgres_keeps_each_tenant_in_its_schema(two_tenants, registry):
    psycopg = _postgres_or_skip()
    client, acme, globex, _ = two_tenants
    client.post("/workflows", json={"name": "wf-acme", "workflow": SIMPLE_DOC}, headers=acme)
    run_id = client.post("/workflows/wf-acme/execute", json={"parameters": {"greet": {"who": "a"}}},
                         headers=acme).json()["run_id"]
    tag = registry.test_tag
    with psycopg.connect(PG_URL) as conn:
        names = conn.execute(f'SELECT name FROM "acme_{tag}".workflows').fetchall()
        runs = conn.execute(f'SELECT run_id, tenant FROM "acme_{tag}".runs').fetchall()
        other = conn.execute(f'SELECT count(*) FROM "globex_{tag}".workflows').fetchone()
        digests = conn.execute(f'SELECT key_digest FROM "kreg_{tag}".api_keys').fetchall()
    assert names == [("wf-acme",)] and runs == [(run_id, "acme-corp")] and other == (0,)
    assert all(acme["X-API-Key"] not in d[0] for d in digests)


def test_redis_db_per_tenant(tmp_path):
    redis = pytest.importorskip("redis")
    try:
        redis.Redis(host="127.0.0.1", port=6379, db=3, socket_timeout=2).ping()
    except Exception as exc:  # pragma: no cover
        pytest.skip(f"no Redis: {exc}")
    registry = TenantRegistry(home=tmp_path)
    tenant_id = f"redis-{uuid.uuid4().hex[:8]}"
    _, key = registry.create_tenant(tenant_id, redis_db=3, requests_per_minute=2)
    gw = WorkflowGateway(port=0, tenants=registry, redis_url="redis://127.0.0.1:6379/0")
    db3 = redis.Redis(host="127.0.0.1", port=6379, db=3)
    try:
        with TestClient(gw.app) as client:
            codes = [client.get("/workflows", headers={"X-API-Key": key}).status_code for _ in range(3)]
            assert codes == [200, 200, 429]
        assert db3.exists(f"kailash:tenant:{tenant_id}")
        assert not redis.Redis(host="127.0.0.1", port=6379, db=0).exists(f"kailash:tenant:{tenant_id}")
    finally:
        db3.delete(f"kailash:tenant:{tenant_id}")


def test_gateway_namespace_in_postgres():
    psycopg = _postgres_or_skip()
    from kailash.api.postgres import PostgresStorage

    tag = uuid.uuid4().hex[:10]
    storage = PostgresStorage(PG_URL, registry_schema=f"kreg_{tag}", default_schema=f"kdef_{tag}")
    try:
        gw = WorkflowGateway(port=0, api_keys=[API_KEY], storage=storage)
        with TestClient(gw.app) as client:
            assert client.post("/workflows", json={"name": "pg", "workflow": SIMPLE_DOC}, headers=HEADERS).status_code == 201
            run = client.post("/workflows/pg/execute?async=true", json={"parameters": {"greet": {"who": "pg"}}},
                              headers=HEADERS).json()
            deadline = time.monotonic() + 10
            while client.get(f"/runs/{run['run_id']}", headers=HEADERS).json()["status"] == "running":
                assert time.monotonic() < deadline
                time.sleep(0.02)
        other = WorkflowGateway(port=0, api_keys=[API_KEY], storage=storage)  # nothing live: read from PostgreSQL
        with TestClient(other.app) as client:
            got = client.get(f"/runs/{run['run_id']}", headers=HEADERS).json()
            assert got["status"] == "completed" and got["results"]["shout"] == {"result": "HELLO PG"}
            assert client.get(f"/runs/{run['run_id'][:10]}", headers=HEADERS).json()["run_id"] == run["run_id"]
            assert [w["name"] for w in client.get("/workflows", headers=HEADERS).json()["workflows"]] == ["pg"]
            assert client.post("/workflows", json={"name": "pg", "workflow": SIMPLE_DOC},
                               headers=HEADERS).json()["revision"] == 2
            assert client.delete("/workflows/pg", headers=HEADERS).status_code == 204
    finally:
        storage.close()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            for schema in (f"kreg_{tag}", f"kdef_{tag}"):
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _code_doc(code: str) -> dict:
    return {"nodes": [{"id": "probe", "type": "PythonCodeNode", "config": {"code": code}}], "connections": []}


def test_a_tenants_code_runs_sandboxed_and_cannot_reach_other_tenants(two_tenants, tmp_path):
    client, acme, globex, _ = two_tenants
    # globex stores a workflow; acme's code must not be able to read the gateway's storage
    assert client.post("/workflows", json={"name": "secret-plan", "workflow": SIMPLE_DOC}, headers=globex).status_code == 201
    attempts = {
        "walk": "import os\nresult = os.listdir('/')",
        "read": "result = open('/etc/passwd').read()",
        "subclasses": "result = ().__class__.__base__.__subclasses__()",
    }
    for name, code in attempts.items():
        assert client.post("/workflows", json={"name": name, "workflow": _code_doc(code)}, headers=acme).status_code in (201, 422)
        reply = client.post(f"/workflows/{name}/execute", json={}, headers=acme)
        if reply.status_code == 404:  # refused at upload already (422 above): equally safe
            continue
        assert reply.status_code == 422, (name, reply.text)
        error = reply.json()["error"]
        assert error["node_id"] == "probe" and error["type"] in ("SecurityError", "NodeExecutionError"), error
    # plain computation still works for the tenant, in the sandbox
    assert client.post("/workflows", json={"name": "calc", "workflow": _code_doc("result = sum(range(10))")},
                       headers=acme).status_code == 201
    assert client.post("/workflows/calc/execute", json={}, headers=acme).json()["results"] == {"probe": {"result": 45}}


def test_a_tenants_file_nodes_are_confined_to_its_own_directory(two_tenants, tmp_path):
    client, acme, _, _ = two_tenants
    outside = tmp_path / "outside.csv"
    outside.write_text("a,b\n1,2\n")
    doc = {"nodes": [{"id": "read", "type": "CSVReaderNode", "config": {"file_path": str(outside)}}], "connections": []}
    assert client.post("/workflows", json={"name": "peek", "workflow": doc}, headers=acme).status_code == 201
    reply = client.post("/workflows/peek/execute", json={}, headers=acme)
    assert reply.status_code == 422 and reply.json()["error"]["type"] == "SecurityError", reply.text
    assert "outside tenant 'acme-corp''s own directory" in reply.json()["error"]["message"]
