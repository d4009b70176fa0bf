"""Workflow endpoints: catalog, upload (JSON, YAML, multipart), validate, describe, export, delete."""

from __future__ import annotations

import json

import pytest
import yaml
from gateway_test_helpers import HEADERS, SIMPLE_DOC


def test_health(client):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["version"]


def test_node_catalog_lists_every_type_with_parameters(client):
    from kailash.nodes.registry import list_node_types

    nodes = client.get("/nodes").json()["nodes"]
    by_name = {n["name"]: n for n in nodes}
    assert set(list_node_types()) <= set(by_name)
    code = by_name["PythonCodeNode"]
    assert code["category"] == "code" and code["primary_output"] == "result" and code["outputs"] == ["result"]
    assert {"name": "code", "type": "str"}.items() <= code["parameters"][0].items()
    reader = by_name["CSVReaderNode"]
    assert any(p["name"] == "file_path" and p["required"] for p in reader["parameters"])
    assert client.get("/nodes/CSVReaderNode").json()["name"] == "CSVReaderNode"


def test_unknown_node_type_suggests_close_matches(client):
    reply = client.get("/nodes/CSVReadNode")
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "unknown_node_type"
    assert "CSVReaderNode" in reply.json()["error"]["suggestions"]


def test_list_and_describe_registered(client):
    listed = {w["name"]: w for w in client.get("/workflows", headers=HEADERS).json()["workflows"]}
    assert listed["double"]["source"] == "registered" and listed["double"]["nodes"] == 2
    assert listed["double"]["description"] == "Doubles x"
    d = client.get("/workflows/double", headers=HEADERS).json()
    assert [n["id"] for n in d["nodes"]] == ["make", "plus"]
    assert d["connections"] == [{"from": "make", "to": "plus"}]
    assert d["definition"]["nodes"][0]["config"] == {"code": "result = x * 2"}
    schema = d["parameters_schema"]
    assert schema["properties"]["make"]["additionalProperties"] is True  # code nodes take any input


def test_describe_marks_required_run_time_inputs(client):
    d = client.get("/workflows/secret", headers=HEADERS).json()
    check = d["parameters_schema"]["properties"]["check"]
    assert check["required"] == ["token"]
    assert check["properties"]["token"]["writeOnly"] is True
    assert d["parameters_schema"]["required"] == ["check"]


def test_unknown_workflow_is_404(client):
    for method, path in [("GET", "/workflows/nope"), ("POST", "/workflows/nope/execute"),
                         ("GET", "/workflows/nope/export"), ("DELETE", "/workflows/nope")]:
        reply = client.request(method, path, headers=HEADERS, json={} if method == "POST" else None)
        assert reply.status_code == 404, (method, path)
        assert reply.json()["error"]["code"] == "workflow_not_found"


def test_upload_json_then_run_then_replace_then_delete(client):
    reply = client.post("/workflows", json={"name": "hello", "workflow": SIMPLE_DOC}, headers=HEADERS)
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert body["created"] is True and body["revision"] == 1 and reply.headers["location"] == "/workflows/hello"
    listed = {w["name"]: w for w in client.get("/workflows", headers=HEADERS).json()["workflows"]}
    assert listed["hello"]["source"] == "uploaded"
    run = client.post("/workflows/hello/execute", json={"parameters": {"greet": {"who": "ann"}}}, headers=HEADERS)
    assert run.json()["results"]["shout"] == {"result": "HELLO ANN"}

    changed = json.loads(json.dumps(SIMPLE_DOC))
    changed["nodes"][1]["config"]["code"] = "result = data[::-1]"
    again = client.post("/workflows", json={"name": "hello", "workflow": changed}, headers=HEADERS).json()
    assert again["created"] is False and again["revision"] == 2
    run = client.post("/workflows/hello/execute", json={"parameters": {"greet": {"who": "bo"}}}, headers=HEADERS)
    assert run.json()["results"]["shout"] == {"result": "ob olleh"}

    assert client.delete("/workflows/hello", headers=HEADERS).status_code == 204
    assert client.get("/workflows/hello", headers=HEADERS).status_code == 404
    assert client.delete("/workflows/hello", headers=HEADERS).status_code == 404


def test_upload_multipart_yaml_file_at_import_alias(client):
    text = yaml.safe_dump({**SIMPLE_DOC, "name": "from-yaml"})
    reply = client.post("/api/workflows/import", files={"workflow": ("wf.yaml", text, "application/yaml")},
                        headers={"Authorization": HEADERS["X-API-Key"].join(["Bearer ", ""])})
    assert reply.status_code == 201, reply.text
    assert reply.json()["name"] == "from-yaml"
    named = client.post("/workflows", files={"workflow": ("wf.json", json.dumps(SIMPLE_DOC))},
                        data={"name": "renamed"}, headers=HEADERS)
    assert named.status_code == 201 and named.json()["name"] == "renamed"


def test_upload_bare_document_and_yaml_text(client):
    assert client.post("/workflows", json={**SIMPLE_DOC, "name": "bare"}, headers=HEADERS).status_code == 201
    text = yaml.safe_dump(SIMPLE_DOC)
    reply = client.post("/workflows", json={"name": "texty", "workflow": text}, headers=HEADERS)
    assert reply.status_code == 201


def test_malformed_upload_lists_every_problem(client):
    doc = {
        "name": "broken",
        "nodes": [
            {"id": "a", "type": "PythonCodNode", "config": {"code": "result = 1"}},
            {"id": "b", "type": "CSVReaderNode", "config": {"file_path": 12, "bogus": True}},
            {"id": "c", "type": "PythonCodeNode", "config": {"code": "result = 1"}},
            {"type": "PythonCodeNode"},
        ],
        "connections": [{"from": "c", "to": "ghost"}, {"from": "c"}],
    }
    reply = client.post("/workflows", json={"workflow": doc}, headers=HEADERS)
    assert reply.status_code == 422
    err = reply.json()["error"]
    assert err["code"] == "invalid_workflow"
    text = "\n".join(p["message"] for p in err["problems"])
    assert "PythonCodNode" in text and "PythonCodeNode" in text  # with the close match
    assert "bogus" in text
    assert "file_path" in text
    assert "ghost" in text
    assert "nodes[3]" in text
    assert "connections[1]" in text
    assert {p["node_id"] for p in err["problems"]} >= {"a", "b"}
    assert client.get("/workflows/broken", headers=HEADERS).status_code == 404


def test_cycle_is_reported(client):
    doc = {"name": "loop", "nodes": [{"id": "a", "type": "PythonCodeNode", "config": {"code": "result = data"}},
                                     {"id": "b", "type": "PythonCodeNode", "config": {"code": "result = data"}}],
           "connections": [{"from": "a", "to": "b"}, {"from": "b", "to": "a"}]}
    reply = client.post("/workflows", json={"workflow": doc}, headers=HEADERS)
    assert reply.status_code == 422
    assert any("cycle" in p["message"] for p in reply.json()["error"]["problems"])


@pytest.mark.parametrize("body,code", [
    (b"{not json", 400), (b"", 400), (b"[1, 2]", 422), (b'{"name": "x"}', 422),
])
def test_bad_upload_bodies(client, body, code):
    reply = client.post("/workflows", content=body, headers={**HEADERS, "Content-Type": "application/json"})
    assert reply.status_code == code
    assert "error" in reply.json()


def test_bad_yaml_file_is_422(client):
    reply = client.post("/workflows", files={"workflow": ("x.yaml", "nodes: [unclosed")}, headers=HEADERS)
    assert reply.status_code == 422
    assert reply.json()["error"]["problems"][0]["message"]
    reply = client.post("/workflows", data={"name": "x"}, files={"other": ("x", "y")}, headers=HEADERS)
    assert reply.status_code == 422


def test_yaml_upload_is_read_safely(client, tmp_path):
    marker = tmp_path / "pwned"
    text = f"!!python/object/apply:os.system ['touch {marker}']"
    reply = client.post("/workflows", files={"workflow": ("evil.yaml", text)}, headers=HEADERS)
    assert reply.status_code == 422
    assert not marker.exists()


def test_invalid_names(client):
    reply = client.post("/workflows", json={"name": "../etc", "workflow": SIMPLE_DOC}, headers=HEADERS)
    assert reply.status_code == 422
    assert reply.json()["error"]["problems"][0]["parameter"] == "name"


def test_registered_names_cannot_be_replaced_or_deleted(client):
    reply = client.post("/workflows", json={"name": "double", "workflow": SIMPLE_DOC}, headers=HEADERS)
    assert reply.status_code == 409
    assert client.delete("/workflows/double", headers=HEADERS).status_code == 409


def test_validate(client):
    ok = client.post("/validate", json={"workflow": SIMPLE_DOC}, headers=HEADERS).json()
    assert ok["valid"] is True and ok["problems"] == []
    bare = client.post("/validate", json=SIMPLE_DOC, headers=HEADERS).json()
    assert bare["valid"] is True
    doc = {"nodes": [{"id": "r", "type": "CSVReaderNode", "config": {}},
                     {"id": "w", "type": "JSONWriterNode", "config": {"file_path": "o.json", "nope": 1}}],
           "connections": [{"from": "r", "to": "w"}, {"from": "r", "to": "zz"}]}
    bad = client.post("/validate", json={"workflow": doc}, headers=HEADERS).json()
    assert bad["valid"] is False
    assert len(bad["problems"]) >= 2
    assert any(p["node_id"] == "w" and p["parameter"] == "nope" for p in bad["problems"])
    fixed = {**doc, "connections": doc["connections"][:1]}
    fixed["nodes"][1]["config"].pop("nope")
    warned = client.post("/validate", json={"workflow": fixed}, headers=HEADERS).json()
    assert warned["valid"] is True
    assert warned["warnings"] and warned["warnings"][0]["node_id"] == "r"
    assert warned["warnings"][0]["parameter"] == "file_path"
    assert client.post("/validate", content=b"{", headers={**HEADERS, "Content-Type": "application/json"}).status_code == 400
    assert client.post("/validate", content=b"{", headers=HEADERS).status_code == 415  # not declared JSON
    assert client.post("/validate", json={"workflow": SIMPLE_DOC}).status_code == 401


def test_export_formats(client, tmp_path):
    client.post("/workflows", json={"name": "hello", "workflow": SIMPLE_DOC}, headers=HEADERS)
    y = client.get("/workflows/hello/export?format=yaml", headers=HEADERS)
    assert y.status_code == 200 and y.headers["content-type"].startswith("application/yaml")
    assert 'filename="hello.yaml"' in y.headers["content-disposition"]
    from kailash.runtime import LocalRuntime
    from kailash.workflow import Workflow

    path = tmp_path / "hello.yaml"
    path.write_text(y.text)
    assert LocalRuntime(store=None).execute(Workflow.load(path), {"greet": {"who": "x"}})[0]["shout"] == {
        "result": "HELLO X"}
    j = client.get("/workflows/double/export?format=json", headers=HEADERS)
    assert json.loads(j.text)["name"] == "double"
    p = client.get("/workflows/hello/export?format=python", headers=HEADERS)
    assert p.headers["content-type"].startswith("text/x-python")
    namespace: dict = {"__name__": "exported"}
    exec(compile(p.text, "hello.py", "exec"), namespace)
    rebuilt = namespace["workflow"]
    assert LocalRuntime(store=None).execute(rebuilt, {"greet": {"who": "py"}})[0]["shout"] == {"result": "HELLO PY"}
    bad = client.get("/workflows/hello/export?format=xml", headers=HEADERS)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_format"


def test_export_refuses_unplain_registered_config(gateway, client):
    from kailash.nodes.code.python import PythonCodeNode
    from kailash.workflow import Workflow

    wf = Workflow("fn")
    wf.add_node("f", PythonCodeNode(code="result = 1", imports=["math"]))
    wf.nodes["f"].config["weird"] = object()
    gateway.registered.clear()
    wf.nodes["f"].config.pop("weird")
    gateway.register_workflow("fn", wf)
    wf.nodes["f"].config["weird"] = object()  # after registration: as a code-built workflow might hold
    reply = client.get("/workflows/fn/export?format=yaml", headers=HEADERS)
    assert reply.status_code == 422 and reply.json()["error"]["code"] == "not_exportable"
    assert client.get("/workflows/fn", headers=HEADERS).json()["definition"] is None


def test_oversized_bodies_get_413(gateway):
    from starlette.testclient import TestClient

    gateway.max_body_size = 1000
    with TestClient(gateway.app) as c:
        big = {"name": "big", "workflow": {**SIMPLE_DOC, "description": "x" * 5000}}
        reply = c.post("/workflows", json=big, headers=HEADERS)
        assert reply.status_code == 413
        assert reply.json()["error"]["code"] == "body_too_large"

        def chunks():  # no Content-Length: counted as it streams
            yield b'{"parameters": {"make": {"x": "'
            for _ in range(20):
                yield b"y" * 100
            yield b'"}}}'

        streamed = c.post("/workflows/double/execute", content=chunks(), headers=HEADERS)
        assert streamed.status_code == 413
        assert c.post("/workflows/double/execute", json={"parameters": {"make": {"x": 1}}},
                      headers=HEADERS).status_code == 200


def test_openapi_describes_each_registered_workflow(client):
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/workflows/double/execute"]["post"]
    assert op["description"] == "Doubles x"
    params = op["requestBody"]["content"]["application/json"]["schema"]["properties"]["parameters"]
    assert set(params["properties"]) == {"make", "plus"}
    secret_op = spec["paths"]["/workflows/secret/execute"]["post"]
    token = secret_op["requestBody"]["content"]["application/json"]["schema"]["properties"]["parameters"][
        "properties"]["check"]["properties"]["token"]
    assert token["format"] == "password"
    assert "ApiKeyHeader" in spec["components"]["securitySchemes"]
    assert "/runs/{run_id}/events" in spec["paths"]


def test_openapi_never_shows_uploaded_workflows(client):
    client.post("/workflows", json={"name": "private-one", "workflow": SIMPLE_DOC}, headers=HEADERS)
    assert "private-one" not in client.get("/openapi.json").text


def test_studio_is_served_without_key(client):
    from kailash.api.routes import STUDIO_DIR

    if not (STUDIO_DIR / "index.html").is_file():
        pytest.skip("Studio assets not present in this checkout")
    page = client.get("/studio")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assets = [p.name for p in STUDIO_DIR.iterdir() if p.suffix in (".js", ".css")]
    for name in assets:
        reply = client.get(f"/studio/static/{name}")
        assert reply.status_code == 200, name
    assert client.get("/studio/static/../gateway.py").status_code == 404
    assert client.get("/studio/static/%2e%2e/gateway.py").status_code == 404
