"""The gateway's one error→status table: every exception leaving a route is answered from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from gateway_test_helpers import API_KEY

from kailash.errors import (
    KailashError,
    NodeExecutionError,
    NodeTimeoutError,
    Problem,
    SecurityError,
    UnknownNodeTypeError,
    WorkflowValidationError,
)


class _HostileRefusal(SecurityError):
    """A subclass without a row of its own answers like its nearest parent that has one."""


RAISED = {
    "security": (SecurityError("file access outside the tenant directory", node_id="read", parameter="path"),
                 403, "security_refused"),
    "subclass": (_HostileRefusal("refused"), 403, "security_refused"),
    "invalid": (WorkflowValidationError("bad", problems=[Problem(node_id="a", parameter="x", message="x missing")]),
                422, "invalid_workflow"),
    "unknown": (UnknownNodeTypeError("no node type 'Foo'", suggestions=["FooNode"]), 422, "unknown_node_type"),
    "timeout": (NodeTimeoutError("node 'slow' took too long", node_id="slow"), 504, "node_timeout"),
    "node": (NodeExecutionError("node 'n' failed", node_id="n"), 422, "node_failed"),
    "kailash": (KailashError("secret-detail-1"), 500, "internal_error"),
    "bug": (RuntimeError("secret-detail-2"), 500, "internal_error"),
}


@pytest.fixture
def raising_client(gateway):
    from starlette.testclient import TestClient

    async def boom(kind: str) -> None:
        raise RAISED[kind][0]

    gateway.app.add_api_route("/boom/{kind}", boom, methods=["GET"])
    with TestClient(gateway.app, raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("kind", sorted(RAISED))
def test_each_exception_gets_its_tables_status_and_code(raising_client, kind):
    from kailash.api.failures import status_of

    exc, status, code = RAISED[kind]
    assert (status_of(exc).status, status_of(exc).code) == (status, code)
    reply = raising_client.get(f"/boom/{kind}", headers={"X-API-Key": API_KEY})
    assert reply.status_code == status
    assert reply.headers["content-type"] == "application/problem+json"
    doc = reply.json()  # RFC 9457: type, title, status, detail, instance; the code and fields as members
    assert (doc["type"], doc["status"], doc["instance"], doc["code"]) == (
        f"urn:kailash:problem:{code}", status, f"/boom/{kind}", code)
    assert doc["title"] and doc["detail"] == doc["error"]["message"]
    error = doc["error"]
    assert error["code"] == code
    if code == "internal_error":  # the cause goes to the log by type only, never to the caller
        assert "secret-detail" not in reply.text and error["message"] == "internal error; see the gateway's log"
    else:
        assert error["message"] == exc.message and error["node_id"] == exc.node_id


def test_the_fields_of_a_kailash_error_travel(raising_client):
    invalid = raising_client.get("/boom/invalid", headers={"X-API-Key": API_KEY}).json()["error"]
    assert invalid["problems"][0] == {**invalid["problems"][0], "node_id": "a", "parameter": "x",
                                      "message": "x missing"}
    unknown = raising_client.get("/boom/unknown", headers={"X-API-Key": API_KEY}).json()["error"]
    assert unknown["suggestions"] == ["FooNode"]
    security = raising_client.get("/boom/security", headers={"X-API-Key": API_KEY}).json()["error"]
    assert security["parameter"] == "path"


def test_framework_errors_keep_their_shape(client):
    key = {"X-API-Key": API_KEY}
    assert client.get("/no/such/path", headers=key).json()["error"]["code"] == "not_found"
    assert client.put("/health", headers=key).json()["error"]["code"] == "method_not_allowed"
    bad = client.get("/runs", params={"limit": "many"}, headers={"X-API-Key": API_KEY})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"


def test_every_row_of_the_table_is_documented():
    from kailash.api.failures import ERROR_STATUSES

    docs = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    section = docs.split("### Error statuses", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| (\d{3}|own)", section, re.M))
    for cls, row in ERROR_STATUSES.items():
        assert cls.__name__ in rows, f"{cls.__name__} missing from docs/api.md's error statuses"
        assert rows[cls.__name__] == (str(row.status) if row.status else "own"), cls.__name__


def test_middleware_and_framework_errors_are_problem_documents_too(client):
    for reply, status, code in ((client.get("/runs"), 401, "missing_api_key"),  # raw ASGI middleware
                                (client.get("/no/such/path", headers={"X-API-Key": API_KEY}), 404, "not_found"),
                                (client.get("/runs/nope", headers={"X-API-Key": API_KEY}), 404, "run_not_found")):
        assert reply.status_code == status
        assert reply.headers["content-type"] == "application/problem+json"
        doc = reply.json()
        assert doc["type"] == f"urn:kailash:problem:{code}" and doc["status"] == status and doc["code"] == code
        assert doc["instance"] == reply.request.url.path and doc["detail"] == doc["error"]["message"]
    ok = client.get("/health")
    assert ok.headers["content-type"] == "application/json"  # successes stay plain JSON


def test_the_openapi_document_describes_errors_as_problem_documents(client):
    doc = client.get("/openapi.json").json()
    execute = doc["paths"]["/workflows/failing/execute"]["post"]["responses"]
    assert "500" not in execute and "run_failed" in execute["422"]["description"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for code, answer in op.get("responses", {}).items():
                if code.startswith(("4", "5")) and "content" in answer:
                    assert list(answer["content"]) == ["application/problem+json"], (path, method, code)
