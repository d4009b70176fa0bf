"""The cross-site guard, header by header (in process; the browser test is test_cross_site.py)."""

from __future__ import annotations

import json

import pytest
from gateway_test_helpers import API_KEY, HEADERS, make_workflows
from starlette.testclient import TestClient

from kailash.api.crosssite import OriginPolicy, is_loopback_host, normalize_origin, refusal
from kailash.api.gateway import WorkflowGateway

BASE = "http://127.0.0.1:8000"
BODY = {"parameters": {"make": {"x": 1}}}


def _client(**options):
    options.setdefault("api_keys", [API_KEY])
    gw = WorkflowGateway(port=0, **options)
    gw.register_workflow("double", make_workflows()["double"])
    return TestClient(gw.app, base_url=BASE)


@pytest.mark.parametrize("headers", [
    {"Origin": "http://127.0.0.1:3000"},                                   # another port: same site, other origin
    {"Origin": "https://evil.example"},
    {"Origin": "null"},                                                    # sandboxed frames, file:// pages
    {"Sec-Fetch-Site": "cross-site"},                                      # no Origin, but the browser says so
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": BASE, "Sec-Fetch-Site": "cross-site"},                      # contradicting headers: refused
    {"Origin": "http://127.0.0.1:8000.evil.example"},
    {"Origin": "http://user@127.0.0.1:8000"},
])
@pytest.mark.parametrize("keyless", [False, True])
def test_state_changing_requests_from_other_origins_are_refused(headers, keyless):
    with _client(**({"auth": False, "api_keys": None} if keyless else {})) as c:
        for method, path in (("POST", "/workflows/double/execute"), ("POST", "/workflows"), ("POST", "/validate"),
                             ("DELETE", "/workflows/double"), ("PUT", "/workflows/double")):
            reply = c.request(method, path, json=BODY, headers={**HEADERS, **headers})
            assert reply.status_code == 403, (method, path, reply.text)
            assert reply.json()["error"]["code"] == "cross_site_request"
        assert c.get("/runs", headers=HEADERS).json()["runs"] == []


@pytest.mark.parametrize("headers", [
    {},                                                                    # not a browser
    {"Origin": BASE, "Sec-Fetch-Site": "same-origin"},                     # the gateway's own pages (the Studio)
    {"Origin": "http://127.0.0.1", "Sec-Fetch-Site": "same-origin"},       # default port on both sides
    {"Sec-Fetch-Site": "none"},                                            # typed by the user
])
def test_own_origin_and_non_browsers_are_served(headers):
    base = "http://127.0.0.1" if headers.get("Origin") == "http://127.0.0.1" else BASE
    gw = WorkflowGateway(port=0, api_keys=[API_KEY])
    gw.register_workflow("double", make_workflows()["double"])
    with TestClient(gw.app, base_url=base) as c:
        reply = c.post("/workflows/double/execute", json=BODY, headers={**HEADERS, **headers})
        assert reply.status_code == 200, reply.text


def test_reads_are_not_refused_cors_protects_them():
    with _client() as c:
        assert c.get("/workflows", headers={**HEADERS, "Origin": "https://evil.example",
                                            "Sec-Fetch-Site": "cross-site"}).status_code == 200


def test_listed_cors_origins_may_change_state_through_a_preflight():
    app_origin = "https://app.example"
    with _client(cors_origins=[app_origin]) as c:
        pre = c.options("/workflows/double/execute", headers={
            "Origin": app_origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-api-key"})
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == app_origin
        reply = c.post("/workflows/double/execute", json=BODY,
                       headers={**HEADERS, "Origin": app_origin, "Sec-Fetch-Site": "cross-site"})
        assert reply.status_code == 200
        assert reply.headers["access-control-allow-origin"] == app_origin
        other = c.post("/workflows/double/execute", json=BODY,
                       headers={**HEADERS, "Origin": "https://other.example", "Sec-Fetch-Site": "cross-site"})
        assert other.status_code == 403


def test_behind_a_tls_proxy_the_origin_matches_the_forwarded_host():
    gw = WorkflowGateway(port=0, api_keys=[API_KEY])
    gw.register_workflow("double", make_workflows()["double"])
    with TestClient(gw.app, base_url="http://gw.example") as c:  # the proxy keeps Host, speaks http inside
        reply = c.post("/workflows/double/execute", json=BODY,
                       headers={**HEADERS, "Origin": "https://gw.example", "Sec-Fetch-Site": "same-origin"})
        assert reply.status_code == 200, reply.text


def test_websocket_handshakes_from_other_origins_are_refused():
    with _client(auth=False, api_keys=None) as c:
        run_id = c.post("/workflows/double/execute", json=BODY).json()["run_id"]
        with c.websocket_connect(f"ws://127.0.0.1:8000/ws/runs/{run_id}", headers={"Origin": BASE}) as ws:
            assert ws.receive_json()["event"] == "run_started"
        with pytest.raises(Exception) as info:
            with c.websocket_connect(f"ws://127.0.0.1:8000/ws/runs/{run_id}", headers={"Origin": "https://evil.example"}):
                pass
        exc = info.value
        assert getattr(exc, "status_code", None) == 403 or getattr(exc, "code", None) == 4403
        if hasattr(exc, "content"):
            assert json.loads(exc.content)["error"]["code"] == "cross_site_request"


def test_multipart_upload_from_the_own_origin_still_works():
    doc = {"name": "up", "nodes": [{"id": "a", "type": "PythonCodeNode", "config": {"code": "result = 1"}}],
           "connections": []}
    with _client() as c:
        reply = c.post("/workflows", files={"workflow": ("up.json", json.dumps(doc))},
                       headers={**HEADERS, "Origin": BASE, "Sec-Fetch-Site": "same-origin"})
        assert reply.status_code == 201, reply.text
        refused = c.post("/workflows", files={"workflow": ("up.json", json.dumps(doc))},
                         headers={**HEADERS, "Origin": "http://localhost:5173", "Sec-Fetch-Site": "cross-site"})
        assert refused.status_code == 403


def test_the_policy_pieces():
    assert normalize_origin("HTTP://LocalHost") == "http://localhost:80"
    assert normalize_origin("http://[::1]:8000") == "http://[::1]:8000"
    assert normalize_origin("http://a.example/path") is None and normalize_origin("ftp://a.example") is None
    assert all(map(is_loopback_host, ["localhost", "127.0.0.1", "127.8.9.1", "::1", "[::1]", "app.localhost"]))
    assert not any(map(is_loopback_host, ["0.0.0.0", "::", "10.0.0.1", "localhost.evil.example", "example.com"]))
    policy = OriginPolicy.build(["https://app.example"], keyless=True)
    scope = {"type": "http", "method": "POST", "headers": [(b"host", b"app.example"), (b"origin", b"https://app.example")]}
    assert refusal(scope, policy) is None  # a listed origin's own host name is accepted without keys
    assert refusal({**scope, "headers": [(b"host", b"evil.example")]}, policy)[0] == "host_not_allowed"
    assert refusal({"type": "lifespan"}, policy) is None


def test_behind_a_trusted_proxy_that_rewrites_host_the_forwarded_host_counts():
    headers = {**HEADERS, "Origin": "https://gw.example", "Sec-Fetch-Site": "same-origin",
               "X-Forwarded-Host": "gw.example"}
    for trusted, expected in ((["10.0.0.5"], 200), (None, 403)):
        gw = WorkflowGateway(port=0, api_keys=[API_KEY], trusted_proxies=trusted)
        gw.register_workflow("double", make_workflows()["double"])
        with TestClient(gw.app, base_url=BASE, client=("10.0.0.5", 4000)) as c:
            assert c.post("/workflows/double/execute", json=BODY, headers=headers).status_code == expected
