"""A deeply nested document or config is a SerializationError, never a bare RecursionError."""

from __future__ import annotations

import json

import pytest

from kailash.errors import SerializationError
from kailash.workflow import Workflow
from kailash.workflow.serialization import MAX_DEPTH, loads


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def document(depth: int) -> dict:
    return {"nodes": [{"id": "code", "type": "PythonCodeNode", "config": {"code": "result = 1", "extra": nested(depth)}}]}


@pytest.mark.parametrize("depth", [MAX_DEPTH + 5, 5_000, 100_000])
def test_from_dict_refuses_a_deep_config(depth):
    with pytest.raises(SerializationError, match=rf"nested too deeply \(more than {MAX_DEPTH} levels\)") as info:
        Workflow.from_dict(document(depth))
    assert not isinstance(info.value.__context__, RecursionError)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 5, 900, 50_000])
def test_loads_refuses_deep_json(depth):
    text = '{"nodes": [{"id": "c", "type": "PythonCodeNode", "config": {"code": "result = 1", "x": ' \
        + "[" * depth + "]" * depth + "}}]}"
    with pytest.raises(SerializationError, match="nested"):
        loads(text, "json")


@pytest.mark.parametrize("depth", [MAX_DEPTH + 5, 5_000])
def test_loads_refuses_deep_yaml(depth):
    text = "nodes:\n- id: c\n  type: PythonCodeNode\n  config: {code: 'result = 1', x: " + "[" * depth + "]" * depth + "}\n"
    with pytest.raises(SerializationError, match="nested"):
        loads(text)


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_to_dict_and_save_refuse_a_deep_config(tmp_path, fmt):
    from kailash.nodes.code.python import PythonCodeNode

    wf = Workflow("deep")
    wf.add_node("code", PythonCodeNode(code="result = 1"))
    wf.nodes["code"].config["extra"] = nested(10_000)
    with pytest.raises(SerializationError, match=rf"node 'code': config is nested too deeply \(more than {MAX_DEPTH} levels\)"):
        wf.to_dict()
    with pytest.raises(SerializationError, match="nested too deeply"):
        wf.save(tmp_path / f"deep.{fmt}", format=fmt)
    assert not (tmp_path / f"deep.{fmt}").exists()


def test_a_reasonably_nested_config_round_trips():
    wf = Workflow.from_dict(document(50))
    again = Workflow.from_dict(json.loads(json.dumps(wf.to_dict())))
    assert again.nodes["code"].config["extra"] == nested(50)
