"""Workflow documents: gathering every problem, parameter schemas, Python export."""

from __future__ import annotations

import pytest

from kailash.api.documents import check_document, json_schema_for, parameters_schema, problem, python_source


def test_problems_point_at_real_nodes_from_fields_not_wording():
    doc = {"nodes": [{"id": "c", "type": "PythonCodeNode", "config": {"code": "result = 1"}},
                     {"id": "w", "type": "JSONWriterNode", "config": {"file_path": "o.json", "nope": 1}}],
           "connections": [{"from": "c", "to": "ghost"}, {"from": "ghost", "to": "c"}]}
    workflow, problems = check_document(doc)
    assert workflow is None
    by_text = {p["message"].split(":")[0]: p for p in problems}
    assert by_text["connection c -> ghost"]["node_id"] == "c"
    assert by_text["connection ghost -> c"]["node_id"] == "c"
    assert by_text["connection c -> ghost"]["got"] == "ghost"
    assert by_text["connection ghost -> c"]["connection"] == ["ghost", "c"]
    unknown = next(p for p in problems if "unknown parameter 'nope'" in p["message"])
    assert (unknown["node_id"], unknown["parameter"], unknown["expected"]) == ("w", "nope", "a declared parameter")


def test_problem_text_is_not_parsed():
    # the wording names a node and a parameter, but only fields count
    assert problem("node 'w' (X): unknown parameter 'nope'") == {
        "message": "node 'w' (X): unknown parameter 'nope'", "node_id": None, "parameter": None,
        "expected": None, "got": None, "connection": None}


def test_a_type_problem_carries_expected_and_got():
    doc = {"nodes": [{"id": "r", "type": "CSVReaderNode", "config": {"file_path": "in.csv", "delimiter": 5}}]}
    _, problems = check_document(doc)
    assert problems == [{"message": "node 'r' (CSVReaderNode): parameter 'delimiter' expects str, got int",
                         "node_id": "r", "parameter": "delimiter", "expected": "str", "got": "int",
                         "connection": None}]


@pytest.mark.parametrize("doc", [None, [], "text", {"nodes": "x"}, {"nodes": [], "connections": "x"}])
def test_malformed_documents_give_problems_not_exceptions(doc):
    workflow, problems = check_document(doc)
    assert workflow is None and problems and all(p["message"] for p in problems)


def test_env_references_can_be_refused(monkeypatch):
    monkeypatch.setenv("SOME_TOKEN", "abc")
    doc = {"nodes": [{"id": "a", "type": "PythonCodeNode", "config": {"code": "result = 1", "t": "${SOME_TOKEN}"}}]}
    assert check_document(doc)[1] == []
    workflow, problems = check_document(doc, allow_env=False)
    assert workflow is None and "SOME_TOKEN" in problems[0]["message"] and problems[0]["node_id"] == "a"


@pytest.mark.parametrize("name,schema", [
    ("str", {"type": "string"}), ("int", {"type": "integer"}), ("float", {"type": "number"}),
    ("bool", {"type": "boolean"}), ("list", {"type": "array"}), ("dict", {"type": "object"}), ("any", {}),
    ("str | Secret", {"anyOf": [{"type": "string"}, {"x-kailash-type": "Secret"}]}),
])
def test_json_schema_for(name, schema):
    assert json_schema_for(name) == schema


def test_parameters_schema_requires_what_nothing_supplies():
    from kailash.nodes.data.readers import CSVReaderNode
    from kailash.workflow import Workflow

    wf = Workflow("r")
    wf.add_node("read", CSVReaderNode())
    schema = parameters_schema(wf)
    assert schema["required"] == ["read"] and schema["properties"]["read"]["required"] == ["file_path"]
    assert schema["properties"]["read"]["properties"]["file_path"]["type"] == "string"
    wf.nodes["read"].config["file_path"] = "x.csv"
    wf._touch()
    assert "required" not in parameters_schema(wf)


def test_python_export_round_trips(tmp_path):
    from kailash.runtime import LocalRuntime
    from kailash.workflow import Workflow

    wf = Workflow("multi", description="line\nbreaks")
    wf.add_node("a", "PythonCodeNode", code="total = 0\nfor v in [1, 2, 3]:\n    total += v\nresult = total")
    wf.add_node("b", "PythonCodeNode", code="result = {'twice': data * 2}")
    wf.add_node("c", "PythonCodeNode", code="result = value + 1")
    wf.connect("a", "b")
    wf.connect("b", "c", mapping={"result.twice": "value"})
    src = python_source(wf.to_dict())
    namespace: dict = {"__name__": "exported"}
    exec(compile(src, "multi.py", "exec"), namespace)
    rebuilt = namespace["workflow"]
    assert rebuilt.to_dict() == wf.to_dict()
    assert LocalRuntime(store=None).execute(rebuilt)[0]["c"] == {"result": 13}
