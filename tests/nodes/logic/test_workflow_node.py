"""WorkflowNode: a sub-workflow as one node (inline or from a file), mappings, failures."""

from __future__ import annotations

import pytest

from kailash.errors import NodeConfigurationError, NodeExecutionError, WorkflowValidationError
from kailash.nodes.code.python import PythonCodeNode
from kailash.nodes.logic.workflow import WorkflowNode
from kailash.runtime import LocalRuntime
from kailash.workflow import Workflow


def cleaning_workflow() -> Workflow:
    inner = Workflow("cleaning")
    inner.add_node("clean", PythonCodeNode(code="result = [x for x in data if x is not None]"))
    inner.add_node("stats", PythonCodeNode(code="result = {'count': len(data), 'total': sum(data)}"))
    inner.connect("clean", "stats")
    return inner


def run(wf, parameters=None):
    return LocalRuntime(store=None).execute(wf, parameters=parameters)[0]


def test_input_and_output_mapping():
    node = WorkflowNode(workflow=cleaning_workflow(), input_mapping={"raw": "data"},
                        output_mapping={"cleaned": "clean.result", "summary": "stats.result"})
    assert node.execute(raw=[1, None, 2]) == {"cleaned": [1, 2], "summary": {"count": 2, "total": 3}}


def test_bare_output_name_means_the_single_exit_nodes_output():
    node = WorkflowNode(workflow=cleaning_workflow(), input_mapping={"raw": "data"},
                        output_mapping={"summary": "result"})
    assert node.execute(raw=[3, None]) == {"summary": {"count": 1, "total": 3}}


def test_without_mappings_inputs_pass_by_name_and_outputs_are_the_exit_outputs():
    node = WorkflowNode(workflow=cleaning_workflow())
    assert node.execute(data=[5, None, 5]) == {"result": {"count": 2, "total": 10}}


def test_several_exits_without_mapping_give_outputs_per_exit_node():
    inner = Workflow("two-exits")
    inner.add_node("a", PythonCodeNode(code="result = data + 1"))
    inner.add_node("b", PythonCodeNode(code="result = data * 10"))
    assert WorkflowNode(workflow=inner).execute(data=2) == {"a": {"result": 3}, "b": {"result": 20}}


def test_input_mapping_to_node_param():
    inner = Workflow("inner")
    inner.add_node("mul", PythonCodeNode(code="result = data * k"))
    node = WorkflowNode(workflow=inner, input_mapping={"values": "mul.data", "factor": "mul.k"})
    assert node.execute(values=[1], factor=3) == {"result": [1, 1, 1]}


def test_inside_a_workflow_the_primary_ports_are_the_mapped_ones():
    outer = Workflow("outer")
    outer.add_node("source", PythonCodeNode(code="result = [1, None, 4]"))
    outer.add_node("sub", WorkflowNode(workflow=cleaning_workflow(), input_mapping={"raw_data": "data"},
                                       output_mapping={"cleaned_data": "clean.result"}))
    outer.add_node("after", PythonCodeNode(code="result = sum(data)"))
    outer.connect("source", "sub")
    outer.connect("sub", "after")
    results = run(outer)
    assert results["sub"] == {"cleaned_data": [1, 4]}
    assert results["after"] == {"result": 5}


def test_workflow_path_yaml_and_json(tmp_path):
    cleaning_workflow().save(tmp_path / "clean.yaml")
    cleaning_workflow().save(tmp_path / "clean.json", format="json")
    for name in ("clean.yaml", "clean.json"):
        node = WorkflowNode(workflow_path=str(tmp_path / name), input_mapping={"raw": "data"},
                            output_mapping={"n": "stats.result"})
        assert node.execute(raw=[1, 2, None]) == {"n": {"count": 2, "total": 3}}


def test_file_is_loaded_once_per_node(tmp_path):
    path = tmp_path / "clean.yaml"
    cleaning_workflow().save(path)
    node = WorkflowNode(workflow_path=str(path))
    node.execute(data=[1])
    first = node._loaded
    node.execute(data=[2])
    assert node._loaded is first


def test_inner_failure_names_the_inner_node():
    inner = Workflow("fragile")
    inner.add_node("ok", PythonCodeNode(code="result = data"))
    inner.add_node("divide", PythonCodeNode(code="result = 1 / data"))
    inner.connect("ok", "divide")
    outer = Workflow("outer")
    outer.add_node("sub", WorkflowNode(workflow=inner))
    with pytest.raises(NodeExecutionError, match=r"node 'sub' \(WorkflowNode\): inner node 'divide' of workflow "
                       r"'fragile' failed: node 'divide' \(PythonCodeNode\) failed at line 1") as info:
        LocalRuntime().execute(outer, parameters={"sub": {"data": 0}})
    err = info.value
    assert err.node_id == "sub"
    assert err.inner_node_id == "divide"
    assert err.run_id is not None


def test_missing_inner_workflow_is_a_validation_problem(tmp_path):
    wf = Workflow("w")
    wf.add_node("none", WorkflowNode())
    wf.add_node("missing", WorkflowNode(workflow_path=str(tmp_path / "nope.yaml")))
    with pytest.raises(WorkflowValidationError) as info:
        wf.validate()
    assert "node 'none' (WorkflowNode): give the inner workflow as workflow=... or workflow_path='x.yaml'" in str(info.value)
    assert f"node 'missing' (WorkflowNode): parameter 'workflow_path': file '{tmp_path / 'nope.yaml'}' does not exist" in str(info.value)


def test_direct_execution_with_a_missing_file_names_the_parameter(tmp_path):
    with pytest.raises(NodeConfigurationError, match=r"node <unnamed> \(WorkflowNode\): workflow_path '.*nope.yaml' does not exist"):
        WorkflowNode(workflow_path=str(tmp_path / "nope.yaml")).execute()


def test_input_mapping_to_an_input_nobody_takes():
    inner = Workflow("inner")
    inner.add_node("r", "CSVReaderNode", file_path="x.csv")
    node = WorkflowNode(name="sub", workflow=inner, input_mapping={"raw": "nothing"})
    with pytest.raises(NodeConfigurationError, match=r"input_mapping sends 'raw' to 'nothing', but no entry node of "
                       r"workflow 'inner' takes an input 'nothing' \(entry nodes: r\); use 'node_id.param'"):
        node.execute(raw=1)


def test_output_mapping_of_an_output_not_produced():
    node = WorkflowNode(name="sub", workflow=cleaning_workflow(), output_mapping={"x": "stats.nope"})
    with pytest.raises(NodeExecutionError, match=r"output_mapping 'x': inner output 'stats.nope' was not produced \(available: result\)"):
        node.execute(data=[1])


def test_ambiguous_bare_output_name_with_several_exits():
    inner = Workflow("two")
    inner.add_node("a", PythonCodeNode(code="result = 1"))
    inner.add_node("b", PythonCodeNode(code="result = 2"))
    node = WorkflowNode(name="sub", workflow=inner, output_mapping={"x": "result"})
    with pytest.raises(NodeConfigurationError, match=r"output_mapping 'x': 'result' is ambiguous; the inner workflow has exit nodes a, b"):
        node.execute()


def test_inline_inner_workflow_survives_save_and_load(tmp_path):
    outer = Workflow("outer")
    outer.add_node("sub", WorkflowNode(workflow=cleaning_workflow(), input_mapping={"raw": "data"},
                                       output_mapping={"summary": "stats.result"}))
    outer.save(tmp_path / "outer.yaml")
    loaded = Workflow.load(tmp_path / "outer.yaml")
    params = {"sub": {"raw": [1, None, 2]}}
    assert run(loaded, params) == run(outer, params) == {"sub": {"summary": {"count": 2, "total": 3}}}


def test_nested_three_levels_with_skipped_branch_inside():
    level2 = Workflow("level2")
    level2.add_node("route", "SwitchNode", condition="data > 0")
    level2.add_node("pos", PythonCodeNode(code="result = 'positive'"))
    level2.add_node("neg", PythonCodeNode(code="result = 'not positive'"))
    level2.add_node("merge", "MergeNode", merge_strategy="first")
    level2.connect("route", "pos", "true")
    level2.connect("route", "neg", "false")
    level2.connect("pos", "merge")
    level2.connect("neg", "merge")
    level1 = Workflow("level1")
    level1.add_node("inner", WorkflowNode(workflow=level2, output_mapping={"label": "merge.merged_data"}))
    top = Workflow("top")
    top.add_node("outer", WorkflowNode(workflow=level1))
    assert run(top, {"outer": {"data": 5}}) == {"outer": {"label": "positive"}}
    assert run(top, {"outer": {"data": -5}}) == {"outer": {"label": "not positive"}}


def test_a_workflow_file_that_includes_itself_is_refused_before_running(tmp_path):
    path = tmp_path / "loop.yaml"
    wf = Workflow("loop")
    wf.add_node("again", WorkflowNode(workflow_path=str(path)))
    wf.save(path)
    with pytest.raises(WorkflowValidationError, match="includes itself"):
        LocalRuntime(store=None).execute(Workflow.load(path))


def test_the_outer_validation_reports_problems_of_the_inner_workflow():
    inner = Workflow("inner")
    inner.add_node("clean", PythonCodeNode(code="result = data"))
    inner.connect("clean", "missing")
    outer = Workflow("outer")
    outer.add_node("prep", WorkflowNode(workflow=inner))
    with pytest.raises(WorkflowValidationError, match=r"node 'prep' \(WorkflowNode\): inner workflow: connection clean -> missing: no node 'missing'"):
        outer.validate()


def test_a_workflow_that_includes_itself_is_refused_before_running():
    wf = Workflow("loop")
    wf.add_node("me", WorkflowNode(workflow=wf))
    with pytest.raises(WorkflowValidationError, match="includes itself"):
        wf.validate()
