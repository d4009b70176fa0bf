"""Request bodies: deeply nested JSON is a 400 (never a 500 or a reset), JSON endpoints take JSON only.

Spoken to over real sockets (uvicorn on 127.0.0.1), because a crash in the server shows
there as a reset connection rather than as an exception in the test.
"""

from __future__ import annotations

import json

import httpx
import pytest
from gateway_test_helpers import API_KEY, HEADERS, make_workflows

JSON = {**HEADERS, "Content-Type": "application/json"}


@pytest.fixture
def served():
    from kailash.api.gateway import WorkflowGateway

    gw = WorkflowGateway(port=0, api_keys=[API_KEY], log_level="warning")
    gw.register_workflow("double", make_workflows()["double"])
    running = gw.serve_in_thread()
    yield running
    running.stop()


def _nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def _bodies(depth: int) -> dict[str, tuple[str, str]]:
    inner = '{"a": ' * depth + "1" + "}" * depth
    return {
        "execute": ("/workflows/double/execute", '{"parameters": {"make": {"x": ' + _nested(depth) + "}}}"),
        "execute-input": ("/workflows/double/execute", '{"parameters": {"x": ' + inner + "}}"),
        "upload": ("/workflows", '{"name": "deep", "workflow": {"nodes": [{"id": "a", "type": "PythonCodeNode", '
                                 '"config": {"code": "result = 1", "extra": ' + inner + "}}], \"connections\": []}}"),
        "upload-text": ("/workflows", json.dumps({"name": "deep", "workflow": '{"nodes": ' + _nested(depth) + "}"})),
        "validate": ("/validate", '{"workflow": ' + inner + "}"),
        "bare": ("/validate", _nested(depth)),
    }


@pytest.mark.parametrize("depth", [150, 990, 5_000, 200_000])
@pytest.mark.parametrize("endpoint", list(_bodies(1)))
def test_deeply_nested_json_is_a_clear_400(served, endpoint, depth):
    path, body = _bodies(depth)[endpoint]
    reply = httpx.post(served.url + path, content=body, headers=JSON, timeout=30)
    assert reply.status_code == 400, reply.text[:300]
    error = reply.json()["error"]
    assert error["code"] == "too_deeply_nested"
    assert "more than 100 levels" in error["message"]
    assert httpx.get(served.url + "/health").status_code == 200  # the server is still there


@pytest.mark.parametrize("endpoint", list(_bodies(1)))
def test_nesting_up_to_the_limit_is_fine(served, endpoint):
    path, body = _bodies(90)[endpoint]
    reply = httpx.post(served.url + path, content=body, headers=JSON, timeout=30)
    code = reply.json().get("error", {}).get("code")
    assert code not in ("internal_error", "too_deeply_nested"), reply.text[:300]  # run_failed: list + 1 in 'plus'
    assert reply.status_code < 500 or code == "run_failed"


def test_deep_multipart_workflow_file_is_a_400(served):
    text = '{"name": "deep", "nodes": ' + _nested(3_000) + ', "connections": []}'
    reply = httpx.post(served.url + "/workflows", files={"workflow": ("deep.json", text)}, headers=HEADERS)
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "too_deeply_nested"
    yaml_text = "nodes: " + _nested(150) + "\nconnections: []\n"
    reply = httpx.post(served.url + "/workflows", files={"workflow": ("deep.yaml", yaml_text)}, headers=HEADERS)
    assert reply.status_code in (400, 422) and "nest" in reply.json()["error"]["message"] + json.dumps(
        reply.json()["error"].get("problems"))


@pytest.mark.parametrize("ctype", [None, "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x"])
def test_json_endpoints_take_json_only(served, ctype):
    body = json.dumps({"parameters": {"make": {"x": 1}}})
    headers = {**HEADERS, **({"Content-Type": ctype} if ctype else {})}
    for path in ("/workflows/double/execute", "/validate"):
        reply = httpx.post(served.url + path, content=body, headers=headers)
        assert reply.status_code in (400, 415), (path, reply.text)
    reply = httpx.post(served.url + "/workflows/double/execute", content=body, headers=headers)
    assert reply.status_code == 415 or ctype and ctype.startswith("multipart")
    assert httpx.get(served.url + "/runs", headers=HEADERS).json()["runs"] == []  # nothing ran


def test_json_with_a_charset_or_a_json_suffix_is_json(served):
    body = json.dumps({"parameters": {"make": {"x": 1}}})
    for ctype in ("application/json; charset=utf-8", "application/vnd.kailash+json", "Application/JSON"):
        reply = httpx.post(served.url + "/workflows/double/execute", content=body, headers={**HEADERS, "Content-Type": ctype})
        assert reply.status_code == 200, (ctype, reply.text)


def test_an_empty_execute_body_needs_no_content_type(served):
    reply = httpx.post(served.url + "/workflows/double/execute", headers=HEADERS)
    assert reply.json()["error"]["code"] == "run_failed"  # it ran: x is not defined, no content-type complaint
    assert "name 'x' is not defined" in reply.json()["error"]["message"]


def test_url_encoded_forms_are_not_uploads(served):
    doc = json.dumps({"name": "form", "nodes": [{"id": "a", "type": "PythonCodeNode", "config": {"code": "result = 1"}}],
                      "connections": []})
    reply = httpx.post(served.url + "/workflows", data={"workflow": doc}, headers=HEADERS)
    assert reply.status_code == 415
    names = [w["name"] for w in httpx.get(served.url + "/workflows", headers=HEADERS).json()["workflows"]]
    assert "form" not in names
