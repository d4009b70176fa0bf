"""Building workflows: every add_node / connect form of SPEC §2, the builder, the plan cache."""

from __future__ import annotations

import pytest

from kailash.errors import NodeConfigurationError, UnknownNodeTypeError, WorkflowValidationError
from kailash.nodes.base import Node, NodeParameter
from kailash.nodes.code.python import PythonCodeNode
from kailash.nodes.data.readers import CSVReaderNode
from kailash.runtime import LocalRuntime
from kailash.workflow import Connection, Workflow, WorkflowBuilder


class AddNode(Node):
    def get_parameters(self):
        return {"a": NodeParameter(type=int, required=True), "b": NodeParameter(type=int, default=0)}

    def run(self, a, b):
        return {"sum": a + b, "diff": a - b}


def run(wf, parameters=None):
    return LocalRuntime(store=None).execute(wf, parameters=parameters)[0]


def test_workflow_constructor_forms():
    assert Workflow().name == "workflow"
    assert Workflow("etl").name == "etl"
    wf = Workflow(name="etl", description="nightly load")
    assert (wf.name, wf.description) == ("etl", "nightly load")
    assert repr(wf) == "Workflow(name='etl', nodes=0, connections=0)"


def test_add_node_with_instance_returns_it_and_sets_the_id():
    wf = Workflow()
    node = PythonCodeNode(code="result = 1")
    assert wf.add_node("one", node) is node
    assert node.name == "one"
    assert wf.get_node("one") is node


def test_add_node_with_instance_and_config_merges_config():
    wf = Workflow()
    node = wf.add_node("reader", CSVReaderNode(delimiter=";"), file_path="in.csv")
    assert node.config == {"delimiter": ";", "file_path": "in.csv"}


def test_add_node_with_class_and_with_type_name():
    wf = Workflow()
    by_class = wf.add_node("r1", CSVReaderNode, file_path="a.csv")
    by_name = wf.add_node("r2", "CSVReaderNode", file_path="b.csv")
    assert type(by_class) is type(by_name) is CSVReaderNode
    assert by_class.config == {"file_path": "a.csv"} and by_class.name == "r1"
    assert by_name.config == {"file_path": "b.csv"} and by_name.name == "r2"


def test_add_node_with_named_instance_only():
    wf = Workflow()
    node = wf.add_node(PythonCodeNode(name="solo", code="result = 2"))
    assert wf.nodes == {"solo": node}
    assert run(wf) == {"solo": {"result": 2}}


def test_add_node_without_any_id_is_refused():
    with pytest.raises(WorkflowValidationError, match=r"add_node\(PythonCodeNode\(...\)\) needs a node id"):
        Workflow().add_node(PythonCodeNode(code="result = 1"))


def test_duplicate_node_id_is_refused():
    wf = Workflow("w")
    wf.add_node("a", PythonCodeNode(code="result = 1"))
    with pytest.raises(WorkflowValidationError, match=r"duplicate node id 'a': a node with that id is already in workflow 'w'"):
        wf.add_node("a", PythonCodeNode(code="result = 2"))


def test_add_node_with_unknown_type_name_suggests_close_matches():
    with pytest.raises(UnknownNodeTypeError, match=r"unknown node type 'PythonCodNode'; did you mean PythonCodeNode"):
        Workflow().add_node("x", "PythonCodNode")


def test_add_node_with_something_that_is_not_a_node():
    with pytest.raises(NodeConfigurationError, match=r"add_node\('x', ...\) expects a Node instance, a Node class or a registered type name, got int"):
        Workflow().add_node("x", 42)
    with pytest.raises(NodeConfigurationError, match=r"add_node\('x', dict\): dict is not a Node subclass"):
        Workflow().add_node("x", dict)
    with pytest.raises(WorkflowValidationError, match=r"node id must be a non-empty string, got ''"):
        Workflow().add_node("", PythonCodeNode(code="result = 1"))


def test_connect_default_rule_offers_outputs_by_name_and_primary_to_primary():
    wf = Workflow()
    wf.add_node("make", PythonCodeNode(code="result = 5"))
    wf.add_node("use", PythonCodeNode(code="result = (data, result)"))
    wf.connect("make", "use")
    assert run(wf)["use"] == {"result": (5, 5)}


def test_connect_with_a_port_feeds_the_primary_input():
    wf = Workflow()
    wf.add_node("add", AddNode(a=5, b=2))
    wf.add_node("show", PythonCodeNode(code="result = data"))
    wf.connect("add", "show", "diff")
    assert run(wf)["show"] == {"result": 3}


def test_connect_with_mapping_keyword_or_positional_dict():
    for positional in (True, False):
        wf = Workflow()
        wf.add_node("add", AddNode(a=5, b=2))
        wf.add_node("add2", AddNode())
        if positional:
            wf.connect("add", "add2", {"sum": "a", "diff": "b"})
        else:
            wf.connect("add", "add2", mapping={"sum": "a", "diff": "b"})
        assert run(wf)["add2"] == {"sum": 10, "diff": 4}


def test_mapping_can_reach_into_a_dict_output():
    wf = Workflow()
    wf.add_node("make", PythonCodeNode(code="result = {'user': {'name': 'ada'}}"))
    wf.add_node("greet", PythonCodeNode(code="result = 'hi ' + who"))
    wf.connect("make", "greet", mapping={"result.user.name": "who"})
    assert run(wf)["greet"] == {"result": "hi ada"}


def test_mapping_of_a_missing_nested_output_names_both_ends():
    from kailash.errors import NodeExecutionError

    wf = Workflow()
    wf.add_node("make", PythonCodeNode(code="result = {'user': {}}"))
    wf.add_node("greet", PythonCodeNode(code="result = who"))
    wf.connect("make", "greet", mapping={"result.user.name": "who"})
    with pytest.raises(NodeExecutionError, match=r"node 'make' produced no output 'result.user.name' for input 'who' of node 'greet' \(it produced: result\)"):
        run(wf)


def test_connect_accepts_node_objects():
    wf = Workflow()
    a = wf.add_node("a", PythonCodeNode(code="result = 1"))
    b = wf.add_node("b", PythonCodeNode(code="result = data + 1"))
    wf.connect(a, b)
    assert wf.connections == [Connection(source="a", target="b")]
    assert run(wf)["b"] == {"result": 2}


def test_connect_argument_errors():
    wf = Workflow()
    with pytest.raises(WorkflowValidationError, match=r"give the mapping once, positionally or as mapping="):
        wf.connect("a", "b", {"x": "y"}, mapping={"x": "y"})
    with pytest.raises(WorkflowValidationError, match=r"give either a port or a mapping, not both"):
        wf.connect("a", "b", "port", mapping={"x": "y"})
    with pytest.raises(WorkflowValidationError, match=r"mapping must be a dict of output -> input names, got list"):
        wf.connect("a", "b", mapping=[("x", "y")])


def test_connection_to_dict():
    assert Connection(source="a", target="b").to_dict() == {"from": "a", "to": "b"}
    assert Connection(source="a", target="b", port="p").to_dict() == {"from": "a", "to": "b", "output_key": "p"}
    assert Connection(source="a", target="b", mapping=(("x", "y"),)).to_dict() == {
        "from": "a", "to": "b", "mapping": {"x": "y"}
    }


def test_successors_predecessors_and_remove_node():
    wf = Workflow()
    for n in "abc":
        wf.add_node(n, PythonCodeNode(code="result = 1"))
    wf.connect("a", "b")
    wf.connect("a", "c")
    wf.connect("b", "c", mapping={"result": "other"})
    assert wf.successors("a") == ["b", "c"]
    assert wf.predecessors("c") == ["a", "b"]
    wf.remove_node("b")
    assert list(wf.nodes) == ["a", "c"]
    assert wf.connections == [Connection(source="a", target="c")]
    with pytest.raises(WorkflowValidationError, match="no node 'b' to remove"):
        wf.remove_node("b")
    with pytest.raises(WorkflowValidationError, match="no node 'zz' in workflow 'workflow'"):
        wf.get_node("zz")


def test_plan_is_cached_until_the_graph_changes():
    wf = Workflow()
    wf.add_node("a", PythonCodeNode(code="result = 1"))
    plan = wf.compile()
    assert wf.compile() is plan
    wf.add_node("b", PythonCodeNode(code="result = data"))
    assert wf.compile() is not plan
    plan2 = wf.compile()
    wf.connect("a", "b")
    assert wf.compile() is not plan2
    assert [s.id for s in wf.compile().steps] == ["a", "b"]


def test_topological_order_follows_connections_not_insertion():
    wf = Workflow()
    wf.add_node("last", PythonCodeNode(code="result = data + '3'"))
    wf.add_node("middle", PythonCodeNode(code="result = data + '2'"))
    wf.add_node("first", PythonCodeNode(code="result = '1'"))
    wf.connect("first", "middle")
    wf.connect("middle", "last")
    assert [s.id for s in wf.compile().steps] == ["first", "middle", "last"]
    assert run(wf)["last"] == {"result": "123"}


def test_builder_fluent_form():
    wf = (WorkflowBuilder("built", "from the builder")
          .add_node("PythonCodeNode", "make", code="result = [3, 4]")
          .add_node(PythonCodeNode, "total", {"code": "result = sum(data)"})
          .add_node(PythonCodeNode(code="result = data * k"), "scale", k=10)
          .connect("make", "total")
          .add_connection("total", "result", "scale", "data")
          .build())
    assert wf.name == "built" and wf.description == "from the builder"
    assert run(wf)["scale"] == {"result": 70}


def test_builder_build_validates():
    builder = WorkflowBuilder("broken").add_node("PythonCodeNode", "a", code="result = 1").connect("a", "missing")
    with pytest.raises(WorkflowValidationError, match=r"connection a -> missing: no node 'missing' in the workflow"):
        builder.build()
