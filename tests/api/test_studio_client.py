"""StudioClient against a real gateway served by uvicorn on 127.0.0.1 (ephemeral port)."""

from __future__ import annotations

import pytest

from kailash.errors import KailashError, NodeExecutionError, SecurityError, WorkflowValidationError
from kailash.nodes.code.python import PythonCodeNode
from kailash.workflow import Workflow

KEY = "studio-client-key-0123456789"


@pytest.fixture
def served():
    from kailash.api.gateway import WorkflowGateway

    failing = Workflow("failing")
    failing.add_node("ok", PythonCodeNode(code="result = 1"))
    failing.add_node("explode", PythonCodeNode(code="raise ValueError('the data is bad')"))
    failing.connect("ok", "explode")
    gw = WorkflowGateway(port=0, api_keys=[KEY], log_level="warning")
    gw.register_workflow("failing", failing)
    running = gw.serve_in_thread()
    yield running
    running.stop()


@pytest.fixture
def studio_client(served):
    from kailash.api.studio import StudioClient

    with StudioClient(served.url, api_key=KEY, timeout=30) as c:
        yield c


def numbers_workflow(name: str = "numbers") -> Workflow:
    wf = Workflow(name, description="squares the even numbers below n")
    wf.add_node("make", PythonCodeNode(code="result = list(range(n))"))
    wf.add_node("square", PythonCodeNode(code="result = [x * x for x in data if x % 2 == 0]"))
    wf.connect("make", "square")
    return wf


def test_upload_list_download_and_run_round_trip(studio_client):
    wf = numbers_workflow()
    answer = studio_client.upload_workflow(wf)
    assert answer["name"] == "numbers"

    names = [w["name"] for w in studio_client.list_workflows()]
    assert "numbers" in names and "failing" in names

    back = studio_client.download_workflow("numbers")
    assert isinstance(back, Workflow)
    assert back.to_dict()["nodes"] == wf.to_dict()["nodes"]
    assert back.to_dict()["connections"] == wf.to_dict()["connections"]
    assert back.description == "squares the even numbers below n"

    out = studio_client.run("numbers", {"make": {"n": 7}})
    assert out["status"] == "completed"
    assert out["results"]["square"]["result"] == [0, 4, 16, 36]
    record = studio_client.get_run(out["run_id"])
    assert record["status"] == "completed"
    assert {n["node_id"]: n["status"] for n in record["nodes"]} == {"make": "completed", "square": "completed"}


def test_upload_from_saved_yaml_file_under_another_name(studio_client, tmp_path):
    path = numbers_workflow("from_file").save(tmp_path / "wf.yaml")
    studio_client.upload_workflow(path, name="renamed")
    assert studio_client.download_workflow("renamed").name == "renamed"
    assert studio_client.run("renamed", {"make": {"n": 3}})["results"]["square"]["result"] == [0, 4]


def test_upload_replaces_a_workflow_of_the_same_name(studio_client):
    studio_client.upload_workflow(numbers_workflow("versioned"))
    wf = Workflow("versioned")
    wf.add_node("only", PythonCodeNode(code="result = 'v2'"))
    studio_client.upload_workflow(wf)
    assert list(studio_client.download_workflow("versioned").nodes) == ["only"]
    assert studio_client.run("versioned")["results"]["only"]["result"] == "v2"


def test_invalid_workflow_is_refused_with_every_problem(studio_client):
    doc = {
        "name": "broken",
        "nodes": [
            {"id": "a", "type": "PythonCodeNod", "config": {"code": "result = 1"}},
            {"id": "b", "type": "JSONWriterNode", "config": {"file_path": "out.json", "colour": "red"}},
        ],
        "connections": [{"from": "b", "to": "nowhere"}],
    }
    with pytest.raises(WorkflowValidationError, match="cannot upload workflow 'broken'") as info:
        studio_client.upload_workflow(doc)
    text = "\n".join(p.message for p in info.value.problems)
    assert "PythonCodeNod" in text and "PythonCodeNode" in text  # the close match is suggested
    assert "colour" in text
    assert len(info.value.problems) >= 2
    assert "broken" not in [w["name"] for w in studio_client.list_workflows()]


def test_validate_reports_problems_without_saving(studio_client):
    good = studio_client.validate(numbers_workflow())
    assert good["valid"] is True and good["problems"] == []
    bad = studio_client.validate({"name": "x", "nodes": [{"id": "w", "type": "JSONWriterNode", "config": {"indent": "two"}}]})
    assert bad["valid"] is False
    assert any("indent" in p["message"] for p in bad["problems"])


def test_failing_node_raises_naming_the_node_and_run(studio_client):
    with pytest.raises(NodeExecutionError, match="explode") as info:
        studio_client.run("failing")
    err = info.value
    assert err.node_id == "explode"
    assert err.run_id
    assert "the data is bad" in str(err)
    assert err.results.get("ok") == {"result": 1}
    assert studio_client.get_run(err.run_id)["status"] == "failed"


def test_missing_run_parameter_is_a_validation_error(studio_client, tmp_path):
    wf = Workflow("writes")
    wf.add_node("make", PythonCodeNode(code="result = [1, 2]"))
    wf.add_node("save", "JSONWriterNode")
    wf.connect("make", "save")
    studio_client.upload_workflow(wf)
    with pytest.raises(WorkflowValidationError, match="save") as info:
        studio_client.run("writes")
    assert any("file_path" in p.message for p in info.value.problems)
    target = tmp_path / "out.json"
    assert studio_client.run("writes", {"save": {"file_path": str(target)}})["status"] == "completed"
    assert target.read_text().replace(" ", "").replace("\n", "") == "[1,2]"


def test_unknown_workflow_is_a_clear_error(studio_client):
    with pytest.raises(KailashError, match="no workflow 'ghost'"):
        studio_client.download_workflow("ghost")
    with pytest.raises(KailashError, match="ghost"):
        studio_client.run("ghost")


def test_missing_or_wrong_key_is_refused(served):
    from kailash.api.studio import StudioClient

    for key in (None, "wrong-key"):
        with StudioClient(served.url, api_key=key) as c, pytest.raises(SecurityError, match="api_key"):
            c.list_workflows()


def test_defaults_come_from_the_environment(served, monkeypatch):
    from kailash.api.studio import StudioClient

    monkeypatch.setenv("KAILASH_GATEWAY_URL", served.url)
    monkeypatch.setenv("KAILASH_API_KEY", KEY)
    with StudioClient() as c:
        assert c.base_url == served.url
        assert any(w["name"] == "failing" for w in c.list_workflows())
        assert KEY not in repr(c)


def test_unreachable_gateway_names_the_address():
    import socket

    from kailash.api.studio import StudioClient

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with StudioClient(f"http://127.0.0.1:{port}", api_key=KEY, timeout=5) as c:
        with pytest.raises(KailashError, match=f"127.0.0.1:{port}"):
            c.list_workflows()


def test_wrong_argument_type_is_a_type_error(studio_client):
    with pytest.raises(TypeError, match="expects a Workflow"):
        studio_client.upload_workflow(42)  # type: ignore[arg-type]
