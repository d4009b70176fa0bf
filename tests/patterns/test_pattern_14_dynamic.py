"""Seed pattern 14 (Dynamic Workflow Generation), as written, then run on real records."""

from __future__ import annotations

import pytest

from kailash.nodes.code.python import PythonCodeNode  # the sample uses these without importing them
from kailash.runtime import LocalRuntime
from kailash.workflow import Workflow

PEOPLE = [
    {"name": "ada", "age": 36},
    {"name": "tim", "age": 12},
    {"name": "grace", "age": 85},
    {"name": "sam", "age": 18},
]


# --- the sample, as written ----------------------------------------------------------------------
def create_processing_workflow(steps):
    """Dynamically create workflow based on configuration"""
    workflow = Workflow()

    previous_node = None
    for i, step in enumerate(steps):
        node_id = f"step_{i}"

        # Create node based on step type
        if step["type"] == "transform":
            node = PythonCodeNode(config={"code": step["code"]})
        elif step["type"] == "filter":
            node = PythonCodeNode(
                config={"code": f"result = [r for r in data if {step['condition']}]"}
            )
        elif step["type"] == "aggregate":
            node = PythonCodeNode(
                config={"code": step["aggregation_code"]}
            )

        workflow.add_node(node_id, node)

        if previous_node:
            workflow.connect(previous_node, node_id)

        previous_node = node_id

    return workflow

# Create custom workflow
steps = [
    {"type": "filter", "condition": "r['age'] > 18"},
    {"type": "transform", "code": "result = [{'name': r['name'].upper()} for r in data]"},
    {"type": "aggregate", "aggregation_code": "result = len(data)"}
]

dynamic_workflow = create_processing_workflow(steps)
# --- end of sample -------------------------------------------------------------------------------


def test_generated_workflow_runs_each_step_in_order():
    assert [s.id for s in dynamic_workflow.compile().steps] == ["step_0", "step_1", "step_2"]
    results, _ = LocalRuntime().execute(dynamic_workflow, parameters={"step_0": {"data": PEOPLE}})
    assert results["step_0"] == {"result": [PEOPLE[0], PEOPLE[2]]}
    assert results["step_1"] == {"result": [{"name": "ADA"}, {"name": "GRACE"}]}
    assert results["step_2"] == {"result": 2}


def test_the_first_step_can_take_its_input_as_a_workflow_input():
    results, _ = LocalRuntime().execute(dynamic_workflow, parameters={"data": PEOPLE[:1]})
    assert results["step_2"] == {"result": 1}


@pytest.mark.parametrize("length", [1, 5, 40])
def test_longer_generated_pipelines(length):
    many = [{"type": "transform", "code": "result = [r + 1 for r in data]"}] * length
    many.append({"type": "aggregate", "aggregation_code": "result = sum(data)"})
    wf = create_processing_workflow(many)
    results, _ = LocalRuntime(store=None).execute(wf, parameters={"step_0": {"data": [0, 10]}})
    assert results[f"step_{length}"] == {"result": 10 + 2 * length}


def test_generated_workflow_survives_save_and_load(tmp_path):
    dynamic_workflow.save(tmp_path / "dynamic.json")
    loaded = Workflow.load(tmp_path / "dynamic.json")
    params = {"step_0": {"data": PEOPLE}}
    assert LocalRuntime().execute(loaded, parameters=params)[0] == LocalRuntime().execute(dynamic_workflow, parameters=params)[0]

