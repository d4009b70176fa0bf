"""A caller runs a served workflow with data; it may not replace the workflow's program.

Before the fix, ``{"parameters": {"make": {"code": "..."}}}`` ran the caller's code in place
of a code-registered node's, and a top-level ``{"code": ...}`` did the same to every entry
node. Each test checks the refusal (422 naming node and parameter) and that nothing ran.
"""

from __future__ import annotations

import sqlite3

import pytest
from gateway_test_helpers import API_KEY, HEADERS
from starlette.testclient import TestClient

from kailash.api.gateway import WorkflowGateway
from kailash.nodes.base import Node, NodeParameter
from kailash.nodes.code.python import PythonCodeNode
from kailash.workflow import Workflow


def _gateway(*registrations):
    gw = WorkflowGateway(port=0, api_keys=[API_KEY])
    for name, wf, options in registrations:
        gw.register_workflow(name, wf, **options)
    return gw


def _double():
    wf = Workflow("double")
    wf.add_node("make", PythonCodeNode(code="result = x * 2"))
    return wf


def _refused(reply, node_id, parameter):
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert error["code"] == "parameter_not_overridable"
    assert error["node_id"] == node_id and error["parameter"] == parameter
    assert f"node '{node_id}': parameter '{parameter}' is fixed by the workflow" in error["message"]
    assert f"allow_overrides={{'{node_id}': ['{parameter}']}}" in error["message"]
    return error


@pytest.mark.parametrize("parameters", [
    {"make": {"x": 1, "code": "import os\nresult = os.getcwd()"}},
    {"x": 1, "code": "result = 'replaced'"},  # a workflow input offered to every entry node
    {"make": {"x": 1, "imports": ["os"]}},
])
def test_code_of_a_registered_workflow_cannot_be_replaced(parameters):
    with TestClient(_gateway(("double", _double(), {})).app) as c:
        reply = c.post("/workflows/double/execute", json={"parameters": parameters}, headers=HEADERS)
        _refused(reply, "make", next(k for k in ("code", "imports") if k in str(parameters)))
        assert c.get("/runs", headers=HEADERS).json()["runs"] == []
        assert c.post("/workflows/double/execute", json={"parameters": {"make": {"x": 4}}},
                      headers=HEADERS).json()["results"] == {"make": {"result": 8}}


def test_sql_query_and_connection_cannot_be_replaced_but_bound_values_can(tmp_path):
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("create table items (name text, price int)")
        conn.executemany("insert into items values (?, ?)", [("pen", 2), ("book", 9)])
        conn.execute("create table secrets (value text)")
        conn.execute("insert into secrets values ('hunter2')")
    wf = Workflow("cheap")
    wf.add_node("q", "SQLDatabaseNode", connection_string=f"sqlite:///{db}",
                query="select name from items where price < ?")
    with TestClient(_gateway(("cheap", wf, {})).app) as c:
        ok = c.post("/workflows/cheap/execute", json={"parameters": {"q": {"parameters": [5]}}}, headers=HEADERS)
        assert ok.status_code == 200, ok.text
        assert "pen" in ok.text and "book" not in ok.text
        stolen = c.post("/workflows/cheap/execute", json={"parameters": {"q": {"query": "select value from secrets"}}},
                        headers=HEADERS)
        _refused(stolen, "q", "query")
        assert "hunter2" not in stolen.text
        moved = c.post("/workflows/cheap/execute", headers=HEADERS, json={"parameters": {
            "q": {"connection_string": "sqlite:////etc/passwd", "query": "select 1"}}})
        error = _refused(moved, "q", "connection_string")
        assert {p["parameter"] for p in error["problems"]} == {"connection_string", "query"}  # every one, at once


def test_url_fixed_by_the_workflow_cannot_be_redirected_unless_allowed():
    fixed = Workflow("fetch")
    fixed.add_node("get", "HTTPRequestNode", url="http://127.0.0.1:9/api", method="GET")
    gw = _gateway(("fetch", fixed, {}))
    with TestClient(gw.app) as c:
        _refused(c.post("/workflows/fetch/execute", json={"parameters": {"get": {"url": "http://attacker.example/"}}},
                        headers=HEADERS), "get", "url")
    allowed = Workflow("fetch")
    allowed.add_node("get", "HTTPRequestNode", url="http://127.0.0.1:9/api", method="GET")
    gw = _gateway(("fetch", allowed, {"allow_overrides": {"get": ["url"]}}))
    running = gw.serve_in_thread()
    try:
        import httpx

        reply = httpx.post(f"{running.url}/workflows/fetch/execute", headers=HEADERS,
                           json={"parameters": {"get": {"url": f"{running.url}/health"}}})
        assert reply.status_code == 200, reply.text
        assert reply.json()["results"]["get"]["status_code"] == 200
    finally:
        running.stop()


def test_a_parameter_the_workflow_leaves_open_is_an_input():
    wf = Workflow("fetch_any")
    wf.add_node("get", "HTTPRequestNode", method="GET")  # url: required, nothing supplies it
    with TestClient(_gateway(("fetch_any", wf, {})).app) as c:
        reply = c.post("/workflows/fetch_any/execute", json={"parameters": {"get": {"url": "http://127.0.0.1:9/"}}},
                       headers=HEADERS)
        assert reply.json()["error"]["code"] == "run_failed"  # it ran (and could not connect): not refused


def test_switch_routing_and_subworkflows_are_protected():
    wf = Workflow("route")
    wf.add_node("src", PythonCodeNode(code="result = {'kind': 'a'}"))
    wf.add_node("switch", "SwitchNode", condition="kind", outputs=["a", "b"])
    wf.add_node("on_a", PythonCodeNode(code="result = 'a'"))
    wf.connect("src", "switch")
    wf.connect("switch", "on_a", "a")
    inner = Workflow("inner")
    inner.add_node("calc", PythonCodeNode(code="result = 1"))
    outer = Workflow("outer")
    outer.add_node("sub", "WorkflowNode", workflow=inner)
    evil = {"nodes": [{"id": "x", "type": "PythonCodeNode", "config": {"code": "result = 'pwned'"}}],
            "connections": []}
    with TestClient(_gateway(("route", wf, {}), ("outer", outer, {})).app) as c:
        _refused(c.post("/workflows/route/execute", json={"parameters": {"switch": {"outputs": ["b"]}}},
                        headers=HEADERS), "switch", "outputs")
        for values, parameter in (({"workflow": evil}, "workflow"), ({"code": "result = 'pwned'"}, "code"),
                                  ({"workflow_path": "/etc/passwd"}, "workflow_path")):
            reply = c.post("/workflows/outer/execute", json={"parameters": {"sub": values}}, headers=HEADERS)
            _refused(reply, "sub", parameter)
            assert "pwned" not in reply.text
        assert c.post("/workflows/outer/execute", json={}, headers=HEADERS).json()["results"] == {"sub": {"result": 1}}


class ShellNode(Node):
    """A custom node that runs a command: it marks the parameter protected itself."""

    protected_parameters = frozenset({"program"})

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"program": NodeParameter(type=str, default="true"), "arg": NodeParameter(type=str, default="")}

    def run(self, program: str, arg: str) -> dict[str, str]:
        return {"ran": f"{program} {arg}"}


def test_custom_nodes_declare_their_own_protected_parameters():
    wf = Workflow("shell")
    wf.add_node("sh", ShellNode())
    with TestClient(_gateway(("shell", wf, {})).app) as c:
        _refused(c.post("/workflows/shell/execute", json={"parameters": {"sh": {"program": "rm"}}}, headers=HEADERS),
                 "sh", "program")
        assert c.post("/workflows/shell/execute", json={"parameters": {"sh": {"arg": "-v"}}},
                      headers=HEADERS).json()["results"] == {"sh": {"ran": "true -v"}}


def _uploaded(allow=None):
    doc = {"name": "up", "nodes": [{"id": "make", "type": "PythonCodeNode", "config": {"code": "result = x + 1"}}],
           "connections": []}
    if allow is not None:
        doc["metadata"] = {"allow_overrides": allow}
    return doc


def test_uploaded_workflows_belong_to_their_uploaders():
    with TestClient(_gateway().app) as c:  # who may run it may replace it outright: nothing to protect
        assert c.post("/workflows", json={"workflow": _uploaded()}, headers=HEADERS).status_code == 201
        reply = c.post("/workflows/up/execute", json={"parameters": {"make": {"x": 1, "code": "result = -x"}}},
                       headers=HEADERS)
        assert reply.json()["results"] == {"make": {"result": -1}}
        bad = c.post("/workflows", json={"workflow": _uploaded({"nope": ["code"]})}, headers=HEADERS)
        assert bad.status_code == 422 and "no node 'nope'" in bad.json()["error"]["message"]


def test_a_saved_workflow_served_from_its_file_keeps_its_allowance(tmp_path):
    wf = Workflow("saved")
    wf.add_node("make", PythonCodeNode(code="result = x + 1"))
    wf.add_node("other", PythonCodeNode(code="result = 0"))
    wf.metadata["allow_overrides"] = {"make": ["code"]}
    wf.save(tmp_path / "saved.yaml", format="yaml")
    gw = _gateway(("saved", Workflow.load(tmp_path / "saved.yaml"), {}))
    with TestClient(gw.app) as c:
        reply = c.post("/workflows/saved/execute", json={"parameters": {"make": {"x": 1, "code": "result = -x"}}},
                       headers=HEADERS)
        assert reply.json()["results"]["make"] == {"result": -1}
        _refused(c.post("/workflows/saved/execute", json={"parameters": {"make": {"x": 1}, "other": {"code": "1"}}},
                        headers=HEADERS), "other", "code")


def test_register_workflow_checks_allow_overrides():
    gw = WorkflowGateway(port=0, api_keys=[API_KEY])
    with pytest.raises(ValueError, match=r"allow_overrides: no node 'nope' in workflow 'double'"):
        gw.register_workflow("double", _double(), allow_overrides={"nope": ["code"]})
    with pytest.raises(ValueError, match=r"node 'make': expected a list of parameter names, got str"):
        gw.register_workflow("double", _double(), allow_overrides={"make": "code"})
    wf = _double()
    wf.metadata["allow_overrides"] = {"make": ["code"]}
    gw.register_workflow("double", wf)
    with TestClient(gw.app) as c:
        assert c.post("/workflows/double/execute", json={"parameters": {"make": {"code": "result = 5"}}},
                      headers=HEADERS).json()["results"] == {"make": {"result": 5}}


def test_workflow_api_is_protected_too():
    from kailash.api.workflow_api import WorkflowAPI

    with TestClient(WorkflowAPI(_double(), api_keys=[API_KEY]).app) as c:
        _refused(c.post("/execute", json={"parameters": {"make": {"code": "result = 0"}}}, headers=HEADERS),
                 "make", "code")
