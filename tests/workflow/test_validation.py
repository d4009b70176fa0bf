"""Workflow validation: every problem gathered into one error, raised before any node runs."""

from __future__ import annotations

import pytest

from kailash.errors import KailashError, NodeConfigurationError, WorkflowValidationError
from kailash.nodes.base import Node, NodeParameter
from kailash.nodes.code.python import PythonCodeNode
from kailash.nodes.data.readers import CSVReaderNode
from kailash.nodes.data.writers import JSONWriterNode
from kailash.nodes.logic.operations import MergeNode, SwitchNode
from kailash.runtime import LocalRuntime
from kailash.workflow import Workflow


class NeedsTwo(Node):
    def get_parameters(self):
        return {"left": NodeParameter(type=int, required=True, description="left operand"),
                "right": NodeParameter(type=int, required=True, description="right operand")}

    def run(self, left, right):
        return {"result": left + right}


def code(src="result = 1"):
    return PythonCodeNode(code=src)


def test_every_problem_is_reported_at_once():
    wf = Workflow("messy")
    wf.add_node("reader", CSVReaderNode(file_pth="in.csv", delimiter=5))
    wf.add_node("a", code())
    wf.add_node("b", code())
    wf.connect("a", "nowhere")
    wf.connect("a", "b", "reslt")
    wf.connect("b", "a")
    with pytest.raises(WorkflowValidationError) as info:
        wf.validate()
    err = info.value
    assert str(err).startswith("workflow 'messy' is invalid (")
    text = "\n".join(p.message for p in err.problems)
    assert "node 'reader' (CSVReaderNode): unknown parameter 'file_pth' (known parameters: batch_size, delimiter, encoding, file_path, has_header, infer_types); did you mean 'file_path'?" in text
    assert "node 'reader' (CSVReaderNode): parameter 'delimiter' expects str, got int" in text
    assert "connection a -> nowhere: no node 'nowhere' in the workflow (nodes: reader, a, b)" in text
    assert "connection a -> b: node 'a' (PythonCodeNode) has no output 'reslt' (outputs: result); did you mean 'result'?" in text
    assert "the workflow has a cycle: " in text
    assert len(err.problems) == 5
    assert err.node_id == "reader" and err.parameter == "file_pth"


@pytest.mark.parametrize(
    ("edges", "cycle"),
    [
        ([("a", "a")], "a -> a"),
        ([("a", "b"), ("b", "a")], "a -> b -> a"),
        ([("a", "b"), ("b", "c"), ("c", "a")], "a -> b -> c -> a"),
        ([("x", "a"), ("a", "b"), ("b", "c"), ("c", "b")], "b -> c -> b"),
    ],
)
def test_cycles_are_reported_with_their_path(edges, cycle):
    wf = Workflow("loop")
    for n in sorted({n for e in edges for n in e}):
        wf.add_node(n, code())
    for s, t in edges:
        wf.connect(s, t)
    with pytest.raises(WorkflowValidationError, match=rf"the workflow has a cycle: {cycle}$"):
        wf.validate()


def test_unknown_node_in_connection_suggests_close_ids():
    wf = Workflow("w")
    wf.add_node("transformer", code())
    wf.add_node("writer", code())
    wf.connect("transformer", "writr")
    with pytest.raises(WorkflowValidationError, match=r"connection transformer -> writr: no node 'writr' in the workflow \(nodes: transformer, writer\); did you mean 'writer'\?"):
        wf.validate()


def test_port_that_does_not_exist_on_a_switch_lists_its_ports():
    wf = Workflow("w")
    wf.add_node("router", SwitchNode(condition="tier", outputs=["gold", "silver"]))
    wf.add_node("p", code("result = data"))
    wf.connect("router", "p", "golden")
    with pytest.raises(WorkflowValidationError, match=r"connection router -> p: node 'router' \(SwitchNode\) has no output 'golden' \(outputs: gold, silver, default\); did you mean 'gold'\?"):
        wf.validate()


def test_mapping_to_an_input_the_target_does_not_take():
    wf = Workflow("w")
    wf.add_node("a", code())
    wf.add_node("w", JSONWriterNode(file_path="o.json"))
    wf.connect("a", "w", mapping={"result": "payload"})
    with pytest.raises(WorkflowValidationError, match=r"connection a -> w: node 'w' \(JSONWriterNode\): unknown parameter 'payload' \(known parameters: append, data, encoding, file_path, indent, lines\)"):
        wf.validate()


def test_port_into_a_node_without_primary_input():
    wf = Workflow("w")
    wf.add_node("a", code())
    wf.add_node("two", NeedsTwo())
    wf.connect("a", "two", "result")
    with pytest.raises(WorkflowValidationError, match=r"node 'two' \(NeedsTwo\) has no primary input for port 'result'; use mapping=\{'result': '<input name>'\}"):
        wf.validate()


def test_two_upstreams_on_one_input_is_ambiguous():
    wf = Workflow("w")
    wf.add_node("a", code())
    wf.add_node("b", code())
    wf.add_node("c", code("result = data"))
    wf.connect("a", "c")
    wf.connect("b", "c")
    with pytest.raises(WorkflowValidationError, match=r"node 'c': input 'data' is fed by 2 connections \(a, b\); feed it once, map the others to other inputs, or use a MergeNode"):
        wf.validate()


def test_two_upstreams_mapped_to_different_inputs_are_fine():
    wf = Workflow("w")
    wf.add_node("a", code("result = 2"))
    wf.add_node("b", code("result = 3"))
    wf.add_node("sum", NeedsTwo())
    wf.connect("a", "sum", mapping={"result": "left"})
    wf.connect("b", "sum", mapping={"result": "right"})
    assert LocalRuntime(store=None).execute(wf)[0]["sum"] == {"result": 5}


def test_merge_node_may_be_fed_many_times():
    wf = Workflow("w")
    for n in "abc":
        wf.add_node(n, code(f"result = ['{n}']"))
    wf.add_node("m", MergeNode())
    for n in "abc":
        wf.connect(n, "m")
    wf.validate()
    assert LocalRuntime(store=None).execute(wf)[0]["m"] == {"merged_data": ["a", "b", "c"]}


def test_missing_required_input_is_reported_before_anything_runs(tmp_path):
    marker = tmp_path / "ran.txt"
    wf = Workflow("w")
    wf.add_node("side_effect", PythonCodeNode(code=f"open({str(marker)!r}, 'w').write('x')\nresult = 1"))
    wf.add_node("sum", NeedsTwo(left=1))
    wf.validate()  # inputs may still come at run time
    with pytest.raises(WorkflowValidationError, match=r"node 'sum' \(NeedsTwo\) requires parameter 'right' \(int\): set it in the node's config, connect an upstream node, or pass parameters=\{'sum': \{'right': ...\}\}"):
        wf.validate(require_inputs=True)
    with pytest.raises(WorkflowValidationError, match=r"requires parameter 'right'"):
        LocalRuntime().execute(wf)
    assert not marker.exists()
    assert LocalRuntime(store=None).execute(wf, parameters={"sum": {"right": 2}})[0]["sum"] == {"result": 3}


def test_runtime_parameter_problems_are_gathered():
    wf = Workflow("w")
    wf.add_node("sum", NeedsTwo())
    wf.add_node("echo", code("result = data"))
    wf.connect("sum", "echo")
    with pytest.raises(WorkflowValidationError) as info:
        LocalRuntime().execute(wf, parameters={
            "sum": {"left": "1", "rigth": 2},
            "ech": {"data": 1},
            "echo": 5,
        })
    problems = [p.message for p in info.value.problems]
    assert "node 'sum': parameter 'left' expects int, got str" in problems
    assert any(p.startswith("node 'sum': unknown parameter 'rigth'") and "did you mean 'right'" in p for p in problems)
    assert any("parameter 'ech' names no node" in p and "did you mean node 'echo'" in p for p in problems)
    assert "parameters['echo'] must be a dict of input values for node 'echo', got int" in problems
    assert any("node 'sum' (NeedsTwo) requires parameter 'right'" in p for p in problems)


def test_parameters_must_be_a_dict():
    wf = Workflow("w")
    wf.add_node("a", code())
    with pytest.raises(WorkflowValidationError, match=r"parameters must be a dict of \{node_id: \{name: value\}\}, got list"):
        LocalRuntime().execute(wf, parameters=[1])


def test_workflow_level_inputs_go_to_entry_nodes_that_take_them():
    wf = Workflow("w")
    wf.add_node("sum", NeedsTwo())
    wf.add_node("echo", code("result = data"))
    wf.connect("sum", "echo")
    results, _ = LocalRuntime(store=None).execute(wf, parameters={"left": 1, "right": 2})
    assert results["echo"] == {"result": 3}
    # a node-specific value beats the workflow-level one, whatever the order
    results, _ = LocalRuntime(store=None).execute(wf, parameters={"sum": {"left": 10}, "left": 1, "right": 2})
    assert results["sum"] == {"result": 12}


def test_wrong_type_from_upstream_is_caught_when_the_node_is_reached():
    wf = Workflow("w")
    wf.add_node("a", code("result = 'not a number'"))
    wf.add_node("sum", NeedsTwo(right=1))
    wf.connect("a", "sum", mapping={"result": "left"})
    with pytest.raises(NodeConfigurationError, match=r"node 'sum' \(NeedsTwo\): parameter 'left' expects int, got str") as info:
        LocalRuntime().execute(wf)
    assert info.value.node_id == "sum" and info.value.parameter == "left" and info.value.run_id


def test_required_input_that_upstream_left_empty():
    wf = Workflow("w")
    wf.add_node("a", code("result = None"))
    wf.add_node("sum", NeedsTwo(right=1))
    wf.connect("a", "sum", mapping={"result": "left"})
    with pytest.raises(NodeConfigurationError, match=r"node 'sum' \(NeedsTwo\): required parameter 'left' received no value"):
        LocalRuntime().execute(wf)


def test_validation_errors_are_value_errors_and_kailash_errors():
    wf = Workflow("w")
    wf.add_node("a", code())
    wf.connect("a", "a")
    with pytest.raises(ValueError):
        wf.validate()
    with pytest.raises(KailashError):
        wf.validate()


# -- the bad-input list of issue 2, in one place ----------------------------------------------
def _unknown_type(tmp_path):
    Workflow("w").add_node("reader", "CSVReaderNod")


def _unknown_parameter(tmp_path):
    wf = Workflow("w")
    wf.add_node("reader", CSVReaderNode(file_path="x.csv", delimter=";"))
    LocalRuntime().execute(wf)


def _wrong_type(tmp_path):
    wf = Workflow("w")
    wf.add_node("reader", CSVReaderNode(file_path="x.csv", has_header="yes"))
    LocalRuntime().execute(wf)


def _missing_file(tmp_path):
    wf = Workflow("w")
    wf.add_node("reader", CSVReaderNode(file_path=str(tmp_path / "missing.csv")))
    LocalRuntime().execute(wf)


def _malformed_csv(tmp_path):
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n3\n")
    wf = Workflow("w")
    wf.add_node("reader", CSVReaderNode(file_path=str(tmp_path / "bad.csv")))
    LocalRuntime().execute(wf)


def _hostile_yaml(tmp_path):
    (tmp_path / "evil.yaml").write_text(f"!!python/object/apply:os.system ['touch {tmp_path / 'pwned'}']\n")
    Workflow.load(tmp_path / "evil.yaml")


def _cycle(tmp_path):
    wf = Workflow("w")
    wf.add_node("a", code())
    wf.add_node("b", code("result = data"))
    wf.connect("a", "b")
    wf.connect("b", "a")
    LocalRuntime().execute(wf)


def _missing_port(tmp_path):
    wf = Workflow("w")
    wf.add_node("router", SwitchNode(condition="tier", outputs=["gold"]))
    wf.add_node("p", code("result = data"))
    wf.connect("router", "p", "platinum")
    LocalRuntime().execute(wf)


@pytest.mark.parametrize(
    ("make", "error", "message", "node_id", "parameter"),
    [
        (_unknown_type, "UnknownNodeTypeError", r"add_node\('reader', 'CSVReaderNod'\): unknown node type 'CSVReaderNod'; did you mean CSVReaderNode", "reader", "node"),
        (_unknown_parameter, "WorkflowValidationError", r"node 'reader' \(CSVReaderNode\): unknown parameter 'delimter' \(known parameters: .*\); did you mean 'delimiter'\?", "reader", "delimter"),
        (_wrong_type, "WorkflowValidationError", r"node 'reader' \(CSVReaderNode\): parameter 'has_header' expects bool, got str", "reader", "has_header"),
        (_missing_file, "NodeExecutionError", r"node 'reader' \(CSVReaderNode\): file '.*missing.csv' does not exist", "reader", "file_path"),
        (_malformed_csv, "NodeExecutionError", r"node 'reader' \(CSVReaderNode\): malformed CSV line 3 in '.*bad.csv': expected 2 fields \(a, b\), got 1", "reader", "file_path"),
        (_hostile_yaml, "SerializationError", r"malformed or unsafe YAML: could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'", None, None),
        (_cycle, "WorkflowValidationError", r"the workflow has a cycle: a -> b -> a", None, None),
        (_missing_port, "WorkflowValidationError", r"connection router -> p: node 'router' \(SwitchNode\) has no output 'platinum' \(outputs: gold, default\)", "router", None),
    ],
)
def test_bad_input_gives_a_clear_kailash_error(tmp_path, make, error, message, node_id, parameter):
    from kailash import errors

    with pytest.raises(getattr(errors, error), match=message) as info:
        make(tmp_path)
    assert isinstance(info.value, KailashError)
    assert info.value.node_id == node_id
    assert info.value.parameter == parameter
    assert not (tmp_path / "pwned").exists()


def test_problems_are_values_whose_fields_say_where():
    from kailash.errors import Problem

    wf = Workflow("messy")
    wf.add_node("reader", CSVReaderNode(file_pth="in.csv", delimiter=5))
    wf.add_node("a", code())
    wf.add_node("b", code("result = (1"))
    wf.add_node("m", MergeNode(merge_strategy="nope"))
    wf.connect("a", "nowhere")
    wf.connect("a", "b", "reslt")
    wf.add_node("n", NeedsTwo(left=1, right=2))
    wf.connect("a", "n", mapping={"result": "zzz"})
    with pytest.raises(WorkflowValidationError) as info:
        wf.validate()
    problems = info.value.problems
    assert isinstance(problems, tuple) and all(type(p) is Problem for p in problems)
    fields = {(p.node_id, p.parameter, p.expected, p.got, p.connection) for p in problems}
    assert ("reader", "file_pth", "a declared parameter", None, None) in fields
    assert ("reader", "delimiter", "str", "int", None) in fields
    assert ("b", "code", "valid Python", "a syntax error", None) in fields
    assert any(f[:2] == ("m", "merge_strategy") and f[3] == "nope" for f in fields)
    assert ("a", None, "an existing node id", "nowhere", ("a", "nowhere")) in fields
    assert ("a", None, "a declared output", "reslt", ("a", "b")) in fields
    assert ("n", "zzz", "a declared parameter", None, ("a", "n")) in fields
    # the text is unchanged: one line per problem, the problem's message
    assert str(info.value).split("\n  - ")[1:] == [p.message for p in problems]
    with pytest.raises(AttributeError):
        problems[0].node_id = "other"  # frozen


def test_runtime_parameter_problems_are_values_too():
    wf = Workflow("w")
    wf.add_node("sum", NeedsTwo())
    with pytest.raises(WorkflowValidationError) as info:
        LocalRuntime(store=None).execute(wf, parameters={"sum": {"left": 1}})
    (p,) = info.value.problems
    assert (p.node_id, p.parameter, p.expected, p.got) == ("sum", "right", "int", "no value")
    assert (info.value.node_id, info.value.parameter) == ("sum", "right")


def test_a_validation_error_keeps_its_problems_across_processes():
    import pickle

    wf = Workflow("w")
    wf.add_node("a", code())
    wf.connect("a", "ghost")
    with pytest.raises(WorkflowValidationError) as info:
        wf.validate()
    again = pickle.loads(pickle.dumps(info.value))
    assert again.problems == info.value.problems and again.problems[0].connection == ("a", "ghost")
