"""API keys: where they are read from, what is public, and that they never leak."""

from __future__ import annotations

import logging
import os
import stat

import pytest
from gateway_test_helpers import API_KEY, HEADERS, make_workflows
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from kailash.api.gateway import WorkflowGateway
from kailash.api.middleware import AuthenticationMiddleware


@pytest.mark.parametrize("path", ["/workflows", "/runs", "/workflows/double", "/runs/abc"])
def test_protected_paths_need_a_key(client, path):
    reply = client.get(path)
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "missing_api_key"
    assert reply.headers["www-authenticate"].startswith("Bearer")


def test_execute_without_key_is_401_and_nothing_runs(client):
    assert client.post("/workflows/double/execute", json={"parameters": {"make": {"x": 1}}}).status_code == 401
    assert client.get("/runs", headers=HEADERS).json()["runs"] == []


def test_invalid_key_is_401_and_never_echoed(client):
    guess = "guess-abcdef-123456"
    reply = client.get("/workflows", headers={"X-API-Key": guess})
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "invalid_api_key"
    assert guess not in reply.text


@pytest.mark.parametrize("how", ["header", "bearer"])
def test_key_forms(client, how):
    if how == "header":
        reply = client.get("/workflows", headers={"X-API-Key": API_KEY})
    else:
        reply = client.get("/workflows", headers={"Authorization": f"Bearer {API_KEY}"})
    assert reply.status_code == 200
    assert "double" in [w["name"] for w in reply.json()["workflows"]]


@pytest.mark.parametrize("method,path", [("GET", "/workflows"), ("GET", "/runs"), ("POST", "/workflows/double/execute"),
                                         ("DELETE", "/workflows/x"), ("GET", "/workflows/double/export")])
def test_query_key_is_refused_outside_event_streams(client, method, path):
    reply = client.request(method, f"{path}?api_key={API_KEY}", json={} if method == "POST" else None)
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "missing_api_key"
    assert client.get("/runs", headers=HEADERS).json()["runs"] == []  # nothing ran


def test_query_key_is_accepted_on_event_streams_and_websockets(client):
    run_id = client.post("/workflows/double/execute", json={"parameters": {"make": {"x": 1}}},
                         headers=HEADERS).json()["run_id"]
    with client.stream("GET", f"/runs/{run_id}/events?api_key={API_KEY}") as events:
        assert events.status_code == 200
        assert "run_completed" in events.read().decode()
    with client.websocket_connect(f"/ws/runs/{run_id}?api_key={API_KEY}") as ws:
        assert ws.receive_json()["event"] == "run_started"


def test_basic_auth_scheme_is_not_a_key(client):
    assert client.get("/workflows", headers={"Authorization": f"Basic {API_KEY}"}).status_code == 401


@pytest.mark.parametrize("path", ["/health", "/nodes", "/nodes/PythonCodeNode", "/openapi.json", "/docs"])
def test_public_paths_need_no_key(client, path):
    assert client.get(path).status_code == 200


def test_keys_from_environment(monkeypatch):
    monkeypatch.setenv("KAILASH_API_KEYS", "env-key-one, env-key-two")
    gw = WorkflowGateway(port=0)
    gw.register_workflow("double", make_workflows()["double"])
    with TestClient(gw.app) as c:
        assert c.get("/workflows", headers={"X-API-Key": "env-key-two"}).status_code == 200
        assert c.get("/workflows", headers={"X-API-Key": "env-key-three"}).status_code == 401


def test_added_middleware_replaces_default_and_merges_env(monkeypatch):
    monkeypatch.setenv("KAILASH_API_KEYS", "from-env")
    gw = WorkflowGateway(port=0)
    gw.add_middleware(AuthenticationMiddleware(api_keys=["given"]))
    with TestClient(gw.app) as c:
        assert c.get("/workflows", headers={"X-API-Key": "given"}).status_code == 200
        assert c.get("/workflows", headers={"X-API-Key": "from-env"}).status_code == 200


def test_no_key_configured_generates_one_privately(_isolated_home, monkeypatch, caplog):
    monkeypatch.delenv("KAILASH_API_KEYS", raising=False)
    gw = WorkflowGateway(port=0)
    gw.add_middleware(AuthenticationMiddleware())  # as in the pattern library: no arguments
    with caplog.at_level(logging.WARNING, logger="kailash.api"), TestClient(gw.app) as c:
        assert c.get("/workflows").status_code == 401
        key_file = _isolated_home / "gateway_api_key"
        key = key_file.read_text().strip()
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        assert c.get("/workflows", headers={"X-API-Key": key}).status_code == 200
    assert str(key_file) in caplog.text
    assert key not in caplog.text
    # a second gateway on the same home reuses the key
    gw2 = WorkflowGateway(port=0)
    with TestClient(gw2.app) as c:
        assert c.get("/workflows", headers={"X-API-Key": key}).status_code == 200


def test_auth_false_serves_without_keys_to_localhost_names_only():
    gw = WorkflowGateway(port=0, auth=False)
    gw.register_workflow("double", make_workflows()["double"])
    for base in ("http://127.0.0.1:8000", "http://localhost", "http://[::1]:9"):
        with TestClient(gw.app, base_url=base) as c:
            reply = c.post("/workflows/double/execute", json={"parameters": {"make": {"x": 2}}})
            assert reply.status_code == 200
            assert reply.json()["results"]["plus"] == {"result": 5}
    with TestClient(gw.app, base_url="http://rebound.example:8000") as c:  # DNS rebinding looks like this
        for reply in (c.get("/workflows"), c.post("/workflows/double/execute", json={})):
            assert reply.status_code == 403
            assert reply.json()["error"]["code"] == "host_not_allowed"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "gateway.example"])
def test_auth_false_refuses_a_non_loopback_host(host):
    with pytest.raises(ValueError, match="auth=False on host .* insecure_no_auth_on_network=True"):
        WorkflowGateway(port=0, host=host, auth=False)
    gw = WorkflowGateway(port=0, auth=False)
    gw.host = host  # changed after construction: still refused when serving starts
    with pytest.raises(ValueError, match="would let anyone who can reach it run code"):
        gw.serve_in_thread()


def test_auth_false_on_the_network_needs_the_loud_override(caplog):
    with caplog.at_level(logging.WARNING, logger="kailash.api"):
        gw = WorkflowGateway(port=0, host="0.0.0.0", auth=False, insecure_no_auth_on_network=True)
    assert "INSECURE" in caplog.text
    with pytest.raises(ValueError, match=r"cors_origins=\['\*'\] with auth=False"):
        WorkflowGateway(port=0, auth=False, cors_origins=["*"])
    assert gw.keyless


def test_keyed_gateway_may_listen_anywhere():
    assert not WorkflowGateway(port=0, host="0.0.0.0", api_keys=[API_KEY]).keyless


def test_websocket_without_key_is_refused_with_401(client):
    with pytest.raises(Exception) as info:
        with client.websocket_connect("/ws/runs/whatever"):
            pass
    exc = info.value
    status = getattr(exc, "status_code", None)
    if status is not None:  # the denial response extension: a real HTTP 401
        assert status == 401
    else:
        assert isinstance(exc, WebSocketDisconnect) and exc.code == 4401


def test_authentication_middleware_on_a_plain_starlette_app():
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request):
        principal = request.scope["state"]["kailash_principal"]
        return PlainTextResponse(f"hello {principal.key_id}")

    app = Starlette(routes=[Route("/hello", hello)])
    app.add_middleware(AuthenticationMiddleware, api_keys=["plain-key"])
    with TestClient(app) as c:
        assert c.get("/hello").status_code == 401
        reply = c.get("/hello", headers={"Authorization": "Bearer plain-key"})
        assert reply.status_code == 200 and reply.text.startswith("hello ")
        assert "plain-key" not in reply.text


def test_access_log_redacts_query_keys():
    from kailash.api.serving import _RedactKeys

    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", f"/runs/x/events?api_key={API_KEY}&a=1", "1.1", 200), None)
    _RedactKeys().filter(record)
    text = record.getMessage()
    assert API_KEY not in text and "api_key=***&a=1" in text
