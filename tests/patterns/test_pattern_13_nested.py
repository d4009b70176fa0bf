"""Seed pattern 13 (Nested Workflow), as written: the two sub-workflows are real saved
YAML files (``workflows/data_preparation.yaml``, ``workflows/ml_pipeline.yaml``)."""

from __future__ import annotations

import pytest

from kailash.errors import NodeExecutionError
from kailash.nodes.base import Node, NodeParameter
from kailash.nodes.code.python import PythonCodeNode
from kailash.runtime import LocalRuntime
from kailash.workflow import Workflow


class DropIncompleteRowsNode(Node):
    """Keeps the rows that have every required field; outputs them as ``data``.

    A user's own node: defining it registers it under its class name, so the saved
    sub-workflow can name it.
    """

    def get_parameters(self):
        return {
            "data": NodeParameter(type=list, required=True, description="rows"),
            "fields": NodeParameter(type=list, default=None, description="fields every row must have"),
        }

    def run(self, data, fields):
        return {"data": [r for r in data if all(r.get(f) is not None for f in fields or [])]}


RAW = [
    {"x": 1.0, "y": 2.1},
    {"x": 2.0, "y": None},
    {"x": 3.0, "y": 6.2},
    {"x": None, "y": 1.0},
    {"x": 4.0, "y": 7.9},
]


def write_sub_workflows(root):
    prep = Workflow("data_preparation")
    prep.add_node("normalise", PythonCodeNode(code="result = [{k: (float(v) if v is not None else None) for k, v in r.items()} for r in data]"))
    prep.add_node("drop_incomplete", "DropIncompleteRowsNode", fields=["x", "y"])
    prep.connect("normalise", "drop_incomplete")
    prep.save(root / "workflows" / "data_preparation.yaml")

    ml = Workflow("ml_pipeline")
    ml.add_node("fit", PythonCodeNode(code="""
n = len(data)
mx = sum(r['x'] for r in data) / n
my = sum(r['y'] for r in data) / n
slope = sum((r['x'] - mx) * (r['y'] - my) for r in data) / sum((r['x'] - mx) ** 2 for r in data)
result = {'slope': round(slope, 3), 'intercept': round(my - slope * mx, 3), 'rows': n}
"""))
    ml.add_node("predict", PythonCodeNode(code="result = round(data['intercept'] + data['slope'] * 5.0, 3)"))
    ml.connect("fit", "predict")
    ml.save(root / "workflows" / "ml_pipeline.yaml")


def build():
    # --- the sample, as written ------------------------------------------------------------------
    from kailash.workflow import Workflow  # noqa: I001 - the sample's import order
    from kailash.nodes.logic.workflow import WorkflowNode

    # Main workflow
    main_workflow = Workflow()

    # Sub-workflow as a node
    data_prep_node = WorkflowNode(
        config={
            "workflow_path": "workflows/data_preparation.yaml",
            "input_mapping": {
                "raw_data": "data"
            },
            "output_mapping": {
                "cleaned_data": "data"
            }
        }
    )

    ml_pipeline_node = WorkflowNode(
        config={
            "workflow_path": "workflows/ml_pipeline.yaml"
        }
    )

    # Compose workflows
    main_workflow.add_node("data_prep", data_prep_node)
    main_workflow.add_node("ml_pipeline", ml_pipeline_node)
    main_workflow.connect("data_prep", "ml_pipeline")
    # --- end of sample ---------------------------------------------------------------------------
    return main_workflow


def test_nested_workflows_from_yaml_files(tmp_path, monkeypatch):
    write_sub_workflows(tmp_path)
    monkeypatch.chdir(tmp_path)  # the sample's relative workflow paths resolve here
    main_workflow = build()
    results, run_id = LocalRuntime().execute(main_workflow, parameters={"data_prep": {"raw_data": RAW}})
    assert results["data_prep"] == {"cleaned_data": [RAW[0], RAW[2], RAW[4]]}
    # no output mapping: the inner exit node's outputs
    assert results["ml_pipeline"] == {"result": 9.95}  # least squares through (1, 2.1), (3, 6.2), (4, 7.9): y = 0.2 + 1.95 x
    record = LocalRuntime().get_run(run_id)
    assert [(n.node_id, n.status) for n in record.nodes] == [("data_prep", "completed"), ("ml_pipeline", "completed")]


def test_failure_inside_a_sub_workflow_names_the_inner_node(tmp_path, monkeypatch):
    write_sub_workflows(tmp_path)
    monkeypatch.chdir(tmp_path)
    main_workflow = build()
    with pytest.raises(NodeExecutionError, match=r"node 'ml_pipeline' \(WorkflowNode\): inner node 'fit' of workflow "
                       r"'ml_pipeline' failed: node 'fit' \(PythonCodeNode\) failed at line 3 of its code: ZeroDivisionError") as info:
        LocalRuntime().execute(main_workflow, parameters={"data_prep": {"raw_data": [{"x": None, "y": 1}]}})
    assert info.value.node_id == "ml_pipeline"
    assert info.value.inner_node_id == "fit"
    assert info.value.results == {"data_prep": {"cleaned_data": []}}


def test_the_composed_workflow_survives_save_and_load(tmp_path, monkeypatch):
    write_sub_workflows(tmp_path)
    monkeypatch.chdir(tmp_path)
    build().save(tmp_path / "main.yaml")
    loaded = Workflow.load(tmp_path / "main.yaml")
    results, _ = LocalRuntime().execute(loaded, parameters={"data_prep": {"raw_data": RAW}})
    assert results["ml_pipeline"] == {"result": 9.95}  # least squares through (1, 2.1), (3, 6.2), (4, 7.9): y = 0.2 + 1.95 x
