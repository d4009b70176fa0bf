"""WorkflowExporter.to_yaml / to_json: the document, round trips, secrets, dependencies, bad input."""

from __future__ import annotations

import json
import os
from importlib import metadata

import pytest
import yaml

from kailash.errors import SerializationError, WorkflowValidationError
from kailash.nodes.code.python import PythonCodeNode
from kailash.nodes.logic.operations import MergeNode, SwitchNode
from kailash.nodes.logic.workflow import WorkflowNode
from kailash.runtime import LocalRuntime
from kailash.security.secrets import Secret
from kailash.utils.export import CONFIG_KEYS, WorkflowExporter
from kailash.workflow import Workflow
from kailash.workflow.serialization import SCHEMA_VERSION


def routed_workflow() -> Workflow:
    wf = Workflow("routed", description="scores -> route -> merge", version="0.3.0", metadata={"team": "data"})
    wf.add_node("make", PythonCodeNode(code="result = [{'v': i, 'tier': 'hi' if i > 2 else 'lo'} for i in range(n)]"))
    wf.add_node("route", SwitchNode(condition="tier", outputs=["hi", "lo"]))
    wf.add_node("hi", PythonCodeNode(code="total = 0\nfor r in data:\n    total += r['v'] * 10\nresult = total\n"))
    wf.add_node("lo", PythonCodeNode(code="result = -len(data)"))
    wf.add_node("merge", MergeNode(merge_strategy="concat"))
    wf.connect("make", "route")
    wf.connect("route", "hi", "hi")
    wf.connect("route", "lo", "lo")
    wf.connect("hi", "merge")
    wf.connect("lo", "merge")
    return wf


def run(wf: Workflow, params=None):
    return LocalRuntime(store=None).execute(wf, parameters=params)[0]


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_export_loads_back_and_runs_identically(tmp_path, fmt):
    wf = routed_workflow()
    path = tmp_path / f"wf.{fmt}"
    getattr(WorkflowExporter(wf), f"to_{fmt}")(path)
    loaded = Workflow.load(path)
    assert loaded.to_dict() == wf.to_dict()
    assert loaded.nodes["hi"].config["code"] == wf.nodes["hi"].config["code"]
    params = {"make": {"n": 6}}
    assert run(loaded, params) == run(wf, params)
    assert run(loaded, params)["merge"]["merged_data"] == [120, -3]


def test_yaml_writes_code_as_a_literal_block(tmp_path):
    path = WorkflowExporter(routed_workflow()).to_yaml(tmp_path / "wf.yaml")
    text = path.read_text()
    assert "code: |" in text
    assert "    total += r['v'] * 10\n" in text
    assert "&id" not in text


def test_config_sets_version_metadata_and_dependencies(tmp_path):
    wf = routed_workflow()
    config = {
        "include_dependencies": True,
        "version": "1.0.0",
        "metadata": {"author": "team@example.com", "description": "Data processing pipeline"},
    }
    path = WorkflowExporter(wf).to_yaml(tmp_path / "wf.yaml", config=config)
    doc = yaml.safe_load(path.read_text())
    assert doc["schema_version"] == SCHEMA_VERSION
    assert doc["version"] == "1.0.0"
    assert doc["metadata"] == {"team": "data", "author": "team@example.com", "description": "Data processing pipeline"}
    deps = doc["dependencies"]
    assert deps["extras"] == []
    assert deps["kailash"] == "kailash==0.1.0"
    assert deps["node_types"] == ["MergeNode", "PythonCodeNode", "SwitchNode"]
    loaded = Workflow.load(path)
    assert loaded.version == "1.0.0" and loaded.metadata["author"] == "team@example.com"
    assert wf.version == "0.3.0"  # the workflow itself is not changed by exporting


def test_without_config_no_dependencies_and_the_workflow_version(tmp_path):
    doc = json.loads(WorkflowExporter(routed_workflow()).to_json(tmp_path / "wf.json").read_text())
    assert "dependencies" not in doc and doc["version"] == "0.3.0"


def test_exporter_level_config_is_merged_with_the_call_config():
    exporter = WorkflowExporter(routed_workflow(), config={"version": "9.9.9", "metadata": {"a": 1}})
    doc = exporter.to_dict({"metadata": {"b": 2}})
    assert doc["version"] == "9.9.9" and doc["metadata"] == {"team": "data", "b": 2}


def test_dependencies_come_from_node_modules_and_code_imports():
    from kailash.nodes.api.http import HTTPRequestNode
    from kailash.nodes.data.sql import SQLDatabaseNode

    wf = Workflow("deps")
    wf.add_node("fetch", HTTPRequestNode(url="http://127.0.0.1:9/x"))
    wf.add_node("pg", SQLDatabaseNode(connection_string="postgresql://postgres@127.0.0.1:5432/test", query="SELECT 1"))
    wf.add_node("lite", SQLDatabaseNode(connection_string="sqlite:///:memory:", query="SELECT 1"))
    wf.add_node(
        "code",
        PythonCodeNode(
            code="import yaml\nfrom hypothesis import strategies\nimport json\nresult = 1", imports=["os.path"]
        ),
    )
    deps = WorkflowExporter(wf).dependencies()
    assert deps.extras == ["http", "postgres"]
    assert deps.kailash_requirement == "kailash[http,postgres]==0.1.0"
    assert deps.packages == [f"hypothesis=={metadata.version('hypothesis')}", f"PyYAML=={metadata.version('PyYAML')}"]

    lite_only = Workflow("lite")
    lite_only.add_node("lite", SQLDatabaseNode(connection_string="sqlite:///:memory:", query="SELECT 1"))
    assert WorkflowExporter(lite_only).dependencies().extras == []


def test_dependencies_of_mcp_ai_and_sub_workflows():
    from kailash.nodes.mcp import MCPClientNode

    inner = Workflow("inner")
    inner.add_node("tools", MCPClientNode(server_config={"name": "t", "command": "true"}))
    wf = Workflow("outer")
    wf.add_node("sub", WorkflowNode(workflow=inner))
    wf.add_node("code", PythonCodeNode(code="result = data"))
    wf.connect("sub", "code")
    deps = WorkflowExporter(wf).dependencies()
    assert deps.extras == ["mcp"]
    assert "MCPClientNode" in deps.node_types


def test_custom_node_module_is_reported(custom_nodes):
    wf = Workflow("custom")
    wf.add_node("scale", custom_nodes.ScaleNode(factor=3))
    deps = WorkflowExporter(wf).dependencies()
    assert deps.node_modules == ["kx_export_nodes"]
    assert deps.to_dict()["node_modules"] == ["kx_export_nodes"]
    assert deps.custom_nodes[0].source.name == "kx_export_nodes.py"


# -- secrets -------------------------------------------------------------------------------


def secret_workflow(custom_nodes, token):
    wf = Workflow("secrets")
    wf.add_node("digest", custom_nodes.TokenDigestNode(token=token))
    return wf


def test_secret_with_an_env_name_is_written_as_a_reference(tmp_path, custom_nodes, monkeypatch):
    wf = secret_workflow(custom_nodes, Secret("tok-AAAA-1111-zzzz", env="SERVICE_TOKEN"))
    path = WorkflowExporter(wf).to_yaml(tmp_path / "wf.yaml")
    text = path.read_text()
    assert "tok-AAAA-1111-zzzz" not in text
    doc = yaml.safe_load(text)
    assert doc["nodes"][0]["config"]["token"] == "${SERVICE_TOKEN}"
    assert doc["environment"] == ["SERVICE_TOKEN"]
    monkeypatch.setenv("SERVICE_TOKEN", "tok-AAAA-1111-zzzz")
    assert run(Workflow.load(path)) == run(wf)


def test_plain_value_of_a_secret_parameter_taken_from_the_environment(tmp_path, custom_nodes, monkeypatch):
    monkeypatch.setenv("MY_API_TOKEN", "plain-from-env-98765")
    wf = Workflow("env")
    node = custom_nodes.TokenDigestNode(token=os.environ["MY_API_TOKEN"])  # a plain str, declared secret
    wf.add_node("digest", node)
    text = WorkflowExporter(wf).to_json(tmp_path / "wf.json").read_text()
    assert "plain-from-env-98765" not in text
    assert json.loads(text)["nodes"][0]["config"]["token"] == "${MY_API_TOKEN}"


def test_secret_without_env_name_gets_a_generated_reference(tmp_path, custom_nodes, monkeypatch, caplog):
    wf = secret_workflow(custom_nodes, Secret("no-env-secret-5555"))
    with caplog.at_level("WARNING"):
        path = WorkflowExporter(wf).to_yaml(tmp_path / "wf.yaml")
    text = path.read_text()
    assert "no-env-secret-5555" not in text and "***" not in text
    assert yaml.safe_load(text)["nodes"][0]["config"]["token"] == "${DIGEST_TOKEN}"
    assert "DIGEST_TOKEN" in caplog.text and "no-env-secret-5555" not in caplog.text
    monkeypatch.setenv("DIGEST_TOKEN", "no-env-secret-5555")
    assert run(Workflow.load(path)) == run(wf)


def test_secret_value_leaking_into_another_field_is_refused(tmp_path, custom_nodes):
    wf = secret_workflow(custom_nodes, Secret("leaky-value-4242", env="LEAKY"))
    wf.nodes["digest"].config["salt"] = "prefix-leaky-value-4242"
    with pytest.raises(SerializationError, match=r"node 'digest' config value 'salt' contains the value of a secret"):
        WorkflowExporter(wf).to_yaml(tmp_path / "wf.yaml")
    assert not (tmp_path / "wf.yaml").exists()


def test_secrets_inside_a_sub_workflow_are_references(tmp_path, custom_nodes):
    inner = secret_workflow(custom_nodes, Secret("inner-secret-7777"))
    wf = Workflow("outer")
    wf.add_node("sub", WorkflowNode(workflow=inner))
    text = WorkflowExporter(wf).to_yaml(tmp_path / "wf.yaml").read_text()
    assert "inner-secret-7777" not in text
    assert "${SUB_DIGEST_TOKEN}" in text


# -- bad input --------------------------------------------------------------------------------


def test_invalid_workflow_is_refused_with_every_problem(tmp_path):
    wf = Workflow("broken")
    wf.add_node("a", PythonCodeNode(code="result = (1"))
    wf.add_node("b", SwitchNode(condition="x", outputs=["p"]))
    wf.connect("a", "nowhere")
    with pytest.raises(WorkflowValidationError, match=r"cannot export workflow 'broken'") as info:
        WorkflowExporter(wf).to_yaml(tmp_path / "wf.yaml")
    text = str(info.value)
    assert "syntax error" in text and "no node 'nowhere'" in text
    assert len(info.value.problems) == 2
    assert not (tmp_path / "wf.yaml").exists()


class Opaque:
    pass


def test_unserialisable_config_value_names_the_node_and_value(tmp_path):
    wf = Workflow("objects")
    wf.add_node("code", PythonCodeNode(code="result = 1", helper=Opaque()))
    wf.add_node("other", PythonCodeNode(code="result = 2", options={"deep": [1, Opaque()]}))
    with pytest.raises(SerializationError) as info:
        WorkflowExporter(wf).to_json(tmp_path / "wf.json")
    msg = str(info.value)
    assert "node 'code' (PythonCodeNode): config value 'helper' is a Opaque object" in msg
    assert "node 'other' (PythonCodeNode): config value 'options.deep.1' is a Opaque object" in msg
    assert info.value.node_id == "code"
    assert not (tmp_path / "wf.json").exists()


def test_non_string_keys_and_nan_in_json_are_refused(tmp_path):
    wf = Workflow("keys")
    wf.add_node("code", PythonCodeNode(code="result = 1", table={1: "one"}))
    with pytest.raises(SerializationError, match=r"config value 'table' has the key 1 \(int\)"):
        WorkflowExporter(wf).to_yaml(tmp_path / "wf.yaml")
    wf2 = Workflow("nan")
    wf2.add_node("code", PythonCodeNode(code="result = 1", limit=float("nan")))
    with pytest.raises(SerializationError, match="NaN or infinite"):
        WorkflowExporter(wf2).to_json(tmp_path / "wf.json")
    WorkflowExporter(wf2).to_yaml(tmp_path / "wf.yaml")  # YAML holds .nan
    assert "nan" in str(Workflow.load(tmp_path / "wf.yaml").nodes["code"].config["limit"])


def test_unwritable_target_is_a_clear_error(tmp_path, immutable_dir):
    wf = routed_workflow()
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(SerializationError, match=r"cannot write the export to '.*file.txt'.*not a directory"):
        WorkflowExporter(wf).to_yaml(blocker / "wf.yaml")
    with pytest.raises(
        SerializationError, match=r"cannot write '.*locked/wf.yaml': (Operation not permitted|Permission denied)"
    ):
        WorkflowExporter(wf).to_yaml(immutable_dir / "wf.yaml")
    with pytest.raises(SerializationError, match=r"cannot write the export to '.*locked/sub'"):
        WorkflowExporter(wf).to_docker(immutable_dir / "sub")


def test_export_honours_the_security_policy(tmp_path):
    from kailash.errors import SecurityError
    from kailash.security.config import SecurityConfig, set_security_config

    allowed = tmp_path / "allowed"
    allowed.mkdir()
    set_security_config(SecurityConfig(allowed_directories=[str(allowed)]))
    WorkflowExporter(routed_workflow()).to_yaml(allowed / "ok.yaml")
    with pytest.raises(SecurityError, match="outside the allowed directories"):
        WorkflowExporter(routed_workflow()).to_yaml(tmp_path / "elsewhere" / "wf.yaml")


def test_unknown_or_mistyped_config_options_are_refused():
    with pytest.raises(
        SerializationError, match=r"unknown export option 'include_dependency'.*did you mean 'include_dependencies'"
    ):
        WorkflowExporter(routed_workflow(), config={"include_dependency": True})
    with pytest.raises(SerializationError, match=r"export option 'metadata' expects dict, got str"):
        WorkflowExporter(routed_workflow()).to_dict({"metadata": "me"})
    assert "include_dependencies" in CONFIG_KEYS


def test_exporter_needs_a_workflow():
    with pytest.raises(SerializationError, match="WorkflowExporter expects a Workflow, got dict"):
        WorkflowExporter({"nodes": []})


# -- schema versions ----------------------------------------------------------------------------


def test_newer_schema_version_is_refused_clearly(tmp_path):
    path = WorkflowExporter(routed_workflow()).to_yaml(tmp_path / "wf.yaml")
    doc = yaml.safe_load(path.read_text())
    doc["schema_version"] = SCHEMA_VERSION + 1
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(
        SerializationError, match=rf"schema_version {SCHEMA_VERSION + 1} is not supported.*upgrade kailash"
    ):
        Workflow.load(path)


@pytest.mark.parametrize("bad", [0, -1, "1", 1.5])
def test_malformed_schema_versions_are_refused(tmp_path, bad):
    doc = WorkflowExporter(routed_workflow()).to_dict()
    doc["schema_version"] = bad
    with pytest.raises(SerializationError, match="schema_version .* is not supported"):
        Workflow.from_dict(doc)


def test_document_without_schema_version_loads_as_version_1(tmp_path):
    doc = WorkflowExporter(routed_workflow()).to_dict()
    del doc["schema_version"]
    (tmp_path / "old.json").write_text(json.dumps(doc))
    params = {"make": {"n": 4}}
    assert run(Workflow.load(tmp_path / "old.json"), params) == run(routed_workflow(), params)


def test_default_parameters_must_be_plain_json(tmp_path):
    from kailash.security.secrets import Secret

    with pytest.raises(SerializationError, match="export option 'parameters' must be plain JSON data"):
        WorkflowExporter(routed_workflow()).to_docker(
            tmp_path / "d", config={"parameters": {"make": {"n": Secret("x")}}}
        )
    assert not (tmp_path / "d").exists()


def test_failure_policies_survive_the_export(tmp_path):
    wf = routed_workflow()
    wf.set_policy("make", retries=2, timeout=5.0, circuit_breaker={"failure_threshold": 3, "reset_timeout": 10})
    loaded = Workflow.load(WorkflowExporter(wf).to_yaml(tmp_path / "wf.yaml"))
    assert loaded.to_dict()["policies"] == wf.to_dict()["policies"]
    assert loaded.policies["make"].retry.retries == 2


def test_ai_and_embedding_extras():
    from kailash.nodes.ai.cache import IntelligentCacheNode

    wf = Workflow("cache")
    wf.add_node("plain", IntelligentCacheNode())
    assert WorkflowExporter(wf).dependencies().extras == ["ai"]
    wf.add_node("semantic", IntelligentCacheNode(embedder="minilm"))
    assert WorkflowExporter(wf).dependencies().extras == ["ai", "embeddings"]
