"""Seed deployment pattern 17 (Studio), the ``workflow.save(...)`` part.

The Studio upload and ``StudioClient`` parts belong to the gateway/Studio tests; here the
saved file must be what they upload: loadable, complete, and running identically.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kailash.nodes.code.python import PythonCodeNode
from kailash.nodes.logic.operations import MergeNode, SwitchNode
from kailash.runtime import LocalRuntime
from kailash.workflow import Workflow


def create_data_processing_workflow() -> Workflow:
    workflow = Workflow("data_processing", description="score, route and merge")
    workflow.add_node("score", PythonCodeNode(code="result = [dict(r, score=r['value'] * 3) for r in records]"))
    workflow.add_node("route", SwitchNode(condition="score", outputs={"high": "score >= 30", "low": "score < 30"}))
    workflow.add_node("high", PythonCodeNode(code="result = [dict(r, label='high') for r in data]"))
    workflow.add_node("low", PythonCodeNode(code="result = [dict(r, label='low') for r in data]"))
    workflow.add_node("merge", MergeNode(merge_strategy="concat"))
    workflow.connect("score", "route")
    workflow.connect("route", "high", "high")
    workflow.connect("route", "low", "low")
    workflow.connect("high", "merge")
    workflow.connect("low", "merge")
    return workflow


PARAMS = {"score": {"records": [{"id": 1, "value": 4}, {"id": 2, "value": 15}, {"id": 3, "value": 9}]}}


def test_save_for_studio_import(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    # --- the sample, as written (up to the upload) ----------------------------------------------
    # Export workflow from Python for visual editing
    from kailash.utils.export import WorkflowExporter  # noqa: F401

    # Create workflow programmatically
    workflow = create_data_processing_workflow()

    # Export for Studio import
    workflow.save("workflow.yaml", format="yaml")
    # ------------------------------------------------------------------------------------------

    with open("workflow.yaml", "rb") as f:  # what the sample uploads
        doc = yaml.safe_load(f.read())
    assert doc["schema_version"] == 1 and doc["name"] == "data_processing"
    assert [n["id"] for n in doc["nodes"]] == ["score", "route", "high", "low", "merge"]
    assert {"from": "route", "to": "high", "output_key": "high"} in doc["connections"]

    loaded = Workflow.load("workflow.yaml")
    expected, _ = LocalRuntime(store=None).execute(workflow, parameters=PARAMS)
    results, _ = LocalRuntime(store=None).execute(loaded, parameters=PARAMS)
    assert results == expected
    assert [(r["id"], r["label"]) for r in results["merge"]["merged_data"]] == [(2, "high"), (1, "low"), (3, "low")]


@pytest.mark.parametrize(
    ("name", "fmt", "first"), [("wf.json", None, "{"), ("wf.txt", "json", "{"), ("wf.yml", None, "schema_version")]
)
def test_save_format_by_argument_or_extension(tmp_path, name, fmt, first):
    workflow = create_data_processing_workflow()
    path = workflow.save(tmp_path / name, format=fmt) if fmt else workflow.save(tmp_path / name)
    assert path.read_text().startswith(first)
    results, _ = LocalRuntime(store=None).execute(
        Workflow.load(path) if fmt is None else Workflow.from_dict(yaml.safe_load(path.read_text())), parameters=PARAMS
    )
    assert len(results["merge"]["merged_data"]) == 3


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)


def _no_env_ref(value) -> bool:  # "${NAME}" strings are environment references by design
    if isinstance(value, str):
        return not re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", value)
    if isinstance(value, list):
        return all(_no_env_ref(v) for v in value)
    if isinstance(value, dict):
        return all(_no_env_ref(v) for v in value.values())
    return True


@settings(max_examples=100, deadline=None)
@given(payload=_values.filter(_no_env_ref), fmt=st.sampled_from(["yaml", "json"]))
def test_saved_config_values_survive_exactly(payload, fmt):
    workflow = Workflow("values")
    workflow.add_node("echo", PythonCodeNode(code="result = payload", payload=payload))
    with tempfile.TemporaryDirectory() as d:
        loaded = Workflow.load(workflow.save(Path(d) / f"wf.{fmt}", format=fmt))
    assert loaded.nodes["echo"].config["payload"] == payload


def test_line_separator_characters_survive_yaml(tmp_path):
    workflow = Workflow("breaks")
    value = {"k\x85": "a\x85b\u2028c\u2029 é"}
    workflow.add_node("echo", PythonCodeNode(code="result = payload", payload=value))
    assert Workflow.load(workflow.save(tmp_path / "wf.yaml")).nodes["echo"].config["payload"] == value
