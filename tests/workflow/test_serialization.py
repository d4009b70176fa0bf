"""Saving and loading workflows: round trips, safe YAML, hostile files, versions, secrets."""

from __future__ import annotations

import json

import pytest

from kailash.errors import SerializationError, WorkflowValidationError
from kailash.nodes.code.python import PythonCodeNode
from kailash.nodes.data.readers import CSVReaderNode
from kailash.nodes.data.writers import JSONWriterNode
from kailash.nodes.logic.operations import MergeNode, SwitchNode
from kailash.runtime import LocalRuntime
from kailash.security.secrets import Secret
from kailash.workflow import Workflow
from kailash.workflow.serialization import SCHEMA_VERSION, dumps, loads


def etl(tmp_path) -> Workflow:
    (tmp_path / "in.csv").write_text("id,tier,amount\n1,gold,10\n2,silver,20\n3,gold,5\n")
    wf = Workflow("etl", "tiered totals", metadata={"owner": "data-team", "tags": ["nightly"]})
    wf.add_node("reader", CSVReaderNode(file_path=str(tmp_path / "in.csv"), delimiter=","))
    wf.add_node("router", SwitchNode(condition="tier", outputs=["gold", "silver"]))
    wf.add_node("gold", PythonCodeNode(code="""
# the code keeps its comments, indentation and blank lines

total = 0
for row in data:
    total += row['amount'] * factor
result = {'gold': total}
""", imports=["math"], factor=2))
    wf.add_node("silver", PythonCodeNode(code="result = {'silver': sum(r['amount'] for r in data)}"))
    wf.add_node("merge", MergeNode(merge_strategy="dict_merge"))
    wf.add_node("writer", JSONWriterNode(file_path=str(tmp_path / "out.json"), indent=None))
    wf.connect("reader", "router")
    wf.connect("router", "gold", "gold")
    wf.connect("router", "silver", mapping={"silver": "data"})
    wf.connect("gold", "merge")
    wf.connect("silver", "merge")
    wf.connect("merge", "writer")
    return wf


def run(wf):
    return dict(LocalRuntime(store=None).execute(wf)[0])


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_saved_and_loaded_workflow_runs_identically(tmp_path, fmt):
    wf = etl(tmp_path)
    path = wf.save(tmp_path / f"etl.{fmt}")
    original_out = run(wf)
    first = (tmp_path / "out.json").read_text()
    loaded = Workflow.load(path)
    assert run(loaded) == original_out
    assert (tmp_path / "out.json").read_text() == first
    assert original_out["merge"] == {"merged_data": {"gold": 30, "silver": 20}}


def test_to_dict_shape_and_from_dict_round_trip(tmp_path):
    wf = etl(tmp_path)
    d = wf.to_dict()
    assert d["schema_version"] == SCHEMA_VERSION == 1
    assert (d["name"], d["description"], d["version"]) == ("etl", "tiered totals", "1.0.0")
    assert d["metadata"] == {"owner": "data-team", "tags": ["nightly"]}
    assert d["nodes"][1] == {"id": "router", "type": "SwitchNode", "config": {"condition": "tier", "outputs": ["gold", "silver"]}}
    assert d["connections"][1] == {"from": "router", "to": "gold", "output_key": "gold"}
    assert d["connections"][2] == {"from": "router", "to": "silver", "mapping": {"silver": "data"}}
    back = Workflow.from_dict(d)
    assert back.to_dict() == d
    assert back.nodes["gold"].config == wf.nodes["gold"].config
    assert json.loads(json.dumps(d)) == d


def test_code_text_survives_exactly(tmp_path):
    wf = etl(tmp_path)
    for fmt in ("yaml", "json"):
        loaded = loads(dumps(wf, fmt), fmt)
        assert loaded.nodes["gold"].config["code"] == wf.nodes["gold"].config["code"]
        assert loaded.nodes["gold"].config["imports"] == ["math"]


def test_format_from_extension_or_argument(tmp_path):
    wf = etl(tmp_path)
    wf.save(tmp_path / "a.json")
    wf.save(tmp_path / "b.wf", format="json")
    wf.save(tmp_path / "c.yml")
    assert json.loads((tmp_path / "a.json").read_text())["name"] == "etl"
    assert json.loads((tmp_path / "b.wf").read_text())["name"] == "etl"
    assert (tmp_path / "c.yml").read_text().startswith("schema_version: 1\n")
    with pytest.raises(SerializationError, match=r"unknown format 'xml'; expected 'yaml' or 'json'"):
        wf.save(tmp_path / "d.xml", format="xml")


def test_save_creates_parent_directories(tmp_path):
    path = etl(tmp_path).save(tmp_path / "deep" / "er" / "wf.yaml")
    assert path.exists()


def test_config_that_is_not_plain_data_cannot_be_saved(tmp_path):
    wf = Workflow("w")
    wf.add_node("code", PythonCodeNode(code="result = fn()", fn=len))
    with pytest.raises(SerializationError, match=r"node 'code': config value of type builtin_function_or_method cannot be saved as YAML/JSON"):
        wf.save(tmp_path / "w.yaml")


def test_nodes_given_as_a_mapping_are_accepted():
    wf = loads("name: m\nnodes:\n  hello: {type: PythonCodeNode, config: {code: 'result = 1'}}\n")
    assert run(wf) == {"hello": {"result": 1}}


def test_secrets_are_saved_as_environment_references(tmp_path, monkeypatch):
    monkeypatch.setenv("KAILASH_TEST_TOKEN", "tok-12345")
    wf = Workflow("secret")
    wf.add_node("use", PythonCodeNode(code="result = token.reveal()[:3]", token=Secret("tok-12345", env="KAILASH_TEST_TOKEN")))
    text = dumps(wf, "yaml")
    assert "tok-12345" not in text
    assert "${KAILASH_TEST_TOKEN}" in text
    loaded = loads(text)
    token = loaded.nodes["use"].config["token"]
    assert isinstance(token, Secret) and token.reveal() == "tok-12345"
    assert run(loaded) == {"use": {"result": "tok"}}


def test_unset_environment_reference_stays_literal(monkeypatch):
    monkeypatch.delenv("KAILASH_TEST_UNSET", raising=False)
    wf = loads("name: e\nnodes:\n  - {id: a, type: PythonCodeNode, config: {code: 'result = v', v: '${KAILASH_TEST_UNSET}'}}\n")
    assert wf.nodes["a"].config["v"] == "${KAILASH_TEST_UNSET}"


# -- hostile and malformed files --------------------------------------------------------------
@pytest.mark.parametrize(
    "payload",
    [
        "!!python/object/apply:os.system ['touch {marker}']",
        "name: x\nnodes:\n  - id: a\n    type: PythonCodeNode\n    config: !!python/object/apply:os.system ['touch {marker}']\n",
        "name: !!python/object/new:subprocess.Popen [['touch', '{marker}']]\n",
        "name: x\nnodes: !!python/name:os.system\n",
        "name: !!python/module:os\n",
        "!!python/object:kailash.workflow.graph.Workflow {{name: evil}}\n",
    ],
)
def test_hostile_yaml_never_executes_anything(tmp_path, payload):
    marker = tmp_path / "pwned"
    path = tmp_path / "hostile.yaml"
    path.write_text(payload.format(marker=marker))
    with pytest.raises(SerializationError, match=r"malformed or unsafe YAML: could not determine a constructor for the tag 'tag:yaml.org,2002:python/"):
        Workflow.load(path)
    assert not marker.exists()


def _bomb(levels: int, width: int = 9, indent: str = "") -> list[str]:
    lines = [f"{indent}l0: &a0 [" + ",".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"{indent}l{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]")
    return lines


def test_alias_bomb_with_many_aliases_is_refused(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(_bomb(20)) + "\n")  # 171 aliases
    with pytest.raises(SerializationError, match=r"YAML document uses more than 100 aliases; refusing it \(possible alias bomb\)"):
        Workflow.load(path)


def test_alias_bomb_hidden_in_node_config_with_few_aliases_is_refused(tmp_path):
    # 63 aliases (under the alias cap) that expand to 9**8 = 43 million values.
    lines = ["name: bomb", "nodes:", "  - id: a", "    type: PythonCodeNode", "    config:",
             "      code: 'result = 1'", *_bomb(8, indent="      ")]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SerializationError, match=r"expands to more than 1,000,000 values through aliases; refusing it \(possible alias bomb\)"):
        Workflow.load(path)


def test_recursive_alias_is_refused(tmp_path):
    path = tmp_path / "rec.yaml"
    path.write_text("name: r\nnodes:\n  - id: a\n    type: PythonCodeNode\n    config: &c {code: 'result = 1', me: *c}\n")
    with pytest.raises(SerializationError, match="recursive alias"):
        Workflow.load(path)


def test_a_few_harmless_aliases_are_fine():
    text = ("name: anchors\nnodes:\n"
            "  - {id: a, type: PythonCodeNode, config: &cfg {code: 'result = data * 2', data: 2}}\n"
            "  - {id: b, type: PythonCodeNode, config: *cfg}\n")
    assert run(loads(text)) == {"a": {"result": 4}, "b": {"result": 4}}


def test_deeply_nested_documents_are_refused_cleanly():
    with pytest.raises(SerializationError, match="nested too deeply"):
        loads("[" * 2000 + "]" * 2000, "json")
    with pytest.raises(SerializationError):
        loads("a: " + "[" * 600 + "]" * 600)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: [unclosed\nnodes: :\n", r"malformed or unsafe YAML: while parsing a flow sequence"),
        ("just a string\n", r"a workflow document must be a mapping, got str"),
        ("- a\n- b\n", r"a workflow document must be a mapping, got list"),
        ("name: x\nnodes: 5\n", r"'nodes' must be a list of \{id, type, config\}"),
        ("name: x\nnodes:\n  - {id: a}\n", r"nodes\[0\] must be a mapping with 'id' and 'type'"),
        ("name: x\nnodes:\n  - {id: a, type: PythonCodeNode, config: [1]}\n", r"node 'a': config must be a mapping"),
        ("name: x\nnodes: []\nconnections:\n  - {from: a}\n", r"connections\[0\] must be a mapping with 'from' and 'to'"),
        ("schema_version: 2\nname: x\n", r"workflow schema_version 2 is not supported by this Kailash \(supports 1..1\); upgrade kailash to load it"),
        ("schema_version: 0\nname: x\n", r"workflow schema_version 0 is not supported"),
        ("schema_version: '1'\nname: x\n", r"workflow schema_version '1' is not supported"),
    ],
)
def test_malformed_documents(text, message):
    with pytest.raises(SerializationError, match=message):
        loads(text)


def test_malformed_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"name": "x", "nodes": [}')
    with pytest.raises(SerializationError, match=r"malformed JSON: Expecting value: line 1 column 25"):
        Workflow.load(path)


def test_unknown_node_types_are_listed_with_close_matches():
    text = ("name: x\nnodes:\n"
            "  - {id: r, type: CSVReadNode, config: {file_path: in.csv}}\n"
            "  - {id: w, type: JSONWritterNode, config: {file_path: out.json}}\n")
    with pytest.raises(SerializationError) as info:
        loads(text)
    msg = str(info.value)
    assert msg.startswith("cannot load workflow:\n")
    assert "node 'r': unknown node type 'CSVReadNode'; did you mean CSVReaderNode" in msg
    assert "node 'w': unknown node type 'JSONWritterNode'; did you mean JSONWriterNode" in msg


def test_bad_node_config_in_a_file_is_reported_by_validation(tmp_path):
    path = tmp_path / "w.yaml"
    path.write_text("name: x\nnodes:\n  - {id: r, type: CSVReaderNode, config: {file_pth: in.csv}}\n"
                    "connections:\n  - {from: r, to: missing}\n")
    wf = Workflow.load(path)
    with pytest.raises(WorkflowValidationError) as info:
        wf.validate()
    assert len(info.value.problems) == 2
    assert "did you mean 'file_path'?" in info.value.problems[0].message
    assert "no node 'missing'" in info.value.problems[1].message


def test_missing_and_oversized_files(tmp_path, monkeypatch):
    with pytest.raises(SerializationError, match=r"workflow file '.*nope.yaml' does not exist"):
        Workflow.load(tmp_path / "nope.yaml")
    from kailash.workflow import serialization

    big = tmp_path / "big.yaml"
    big.write_text("name: x\n" + "# padding\n" * 100)
    monkeypatch.setattr(serialization, "MAX_FILE_BYTES", 100)
    with pytest.raises(SerializationError, match=r"workflow file '.*big.yaml' is larger than 100 bytes"):
        Workflow.load(big)
