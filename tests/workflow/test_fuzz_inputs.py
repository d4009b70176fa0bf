"""Fuzzed inputs give SDK errors only: ``Workflow.from_dict``, ``loads``/``Workflow.load`` of
arbitrary bytes, and runtime ``parameters`` never raise anything but a KailashError."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kailash.errors import KailashError
from kailash.nodes.code.python import PythonCodeNode
from kailash.runtime import LocalRuntime
from kailash.workflow import Workflow
from kailash.workflow.serialization import loads

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=8))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)), max_leaves=12)
NODE_TYPES = st.sampled_from(["PythonCodeNode", "SwitchNode", "MergeNode", "CSVReaderNode", "NoSuchNode", "", 5])
KEYS = ["schema_version", "name", "description", "version", "metadata", "nodes", "connections", "policies"]


@st.composite
def node_specs(draw):
    spec = draw(st.dictionaries(st.sampled_from(["id", "type", "config"]), json_values, max_size=3))
    if draw(st.booleans()):
        spec["type"] = draw(NODE_TYPES)
    if draw(st.booleans()):
        spec["config"] = draw(st.one_of(json_values, st.dictionaries(
            st.sampled_from(["code", "condition", "outputs", "merge_strategy", "file_path", "name", "x"]),
            json_values, max_size=3)))
    return spec


@st.composite
def documents(draw):
    doc = draw(st.dictionaries(st.sampled_from(KEYS), json_values, max_size=5))
    if draw(st.booleans()):
        nodes = draw(st.lists(node_specs(), max_size=3))
        if draw(st.booleans()):
            doc["nodes"] = nodes
        else:
            doc["nodes"] = {draw(st.one_of(st.text(max_size=4), st.integers())): draw(st.one_of(json_values, node_specs()))
                            for _ in nodes}
    if draw(st.booleans()):
        doc["connections"] = draw(st.one_of(json_values, st.lists(st.dictionaries(
            st.sampled_from(["from", "to", "output_key", "port", "mapping"]), json_values, max_size=5), max_size=3)))
    if draw(st.booleans()):
        doc["policies"] = draw(st.one_of(json_values, st.dictionaries(st.text(max_size=4), json_values, max_size=2)))
    return doc


def only_sdk_errors(fn, *args):
    try:
        fn(*args)
    except KailashError:
        pass


def test_known_crashers_are_sdk_errors(tmp_path):
    for doc in ({"nodes": {"": None}}, {"nodes": {"a": 5}}, {"policies": 5}, {"connections": 5},
                {"connections": [{"from": "a", "to": "b"}]}, {"nodes": [{"id": [], "type": "PythonCodeNode"}]}):
        only_sdk_errors(Workflow.from_dict, doc)
    for suffix in (".yaml", ".json", ".txt"):
        path = tmp_path / f"latin1{suffix}"
        path.write_bytes(b"\xff\xfe\x00nodes: \x81")
        only_sdk_errors(Workflow.load, path)
    only_sdk_errors(Workflow.load, tmp_path)  # a directory


@SETTINGS
@given(documents())
def test_from_dict_of_any_document_raises_only_sdk_errors(doc):
    only_sdk_errors(Workflow.from_dict, doc)


@SETTINGS
@given(documents())
def test_loads_of_the_json_and_yaml_text_of_any_document_raises_only_sdk_errors(doc):
    import yaml

    text = json.dumps(doc, allow_nan=True)
    only_sdk_errors(loads, text, "json")
    only_sdk_errors(loads, yaml.safe_dump(doc))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_load_of_any_bytes_raises_only_sdk_errors(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("fuzz") / "wf.yaml"
    path.write_bytes(raw)
    only_sdk_errors(Workflow.load, path)
    json_path = path.with_suffix(".json")
    json_path.write_bytes(raw)
    only_sdk_errors(Workflow.load, json_path)


WF = Workflow("params")
WF.add_node("a", PythonCodeNode(code="result = x"))
RUNTIME = LocalRuntime(store=None)


@SETTINGS
@given(st.one_of(json_values, st.dictionaries(st.one_of(st.text(max_size=3), st.sampled_from(["a", "b"])),
                                              st.one_of(json_values, st.dictionaries(st.sampled_from(["x", "y", ""]),
                                                                                     json_values)), max_size=3)))
def test_runtime_parameters_of_any_shape_raise_only_sdk_errors(parameters):
    only_sdk_errors(RUNTIME.execute, WF, parameters)
