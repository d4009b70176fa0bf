"""The node registry: decorator, implicit registration, lookup with close matches, catalog."""

from __future__ import annotations

import jsonschema
import pytest

from kailash.errors import UnknownNodeTypeError
from kailash.nodes.base import Node, NodeParameter, register_node
from kailash.nodes.registry import describe_node, get_node_class, list_node_types

CORE_TYPES = {
    "CSVReaderNode", "JSONReaderNode", "TextReaderNode", "CSVWriterNode", "JSONWriterNode", "TextWriterNode",
    "PythonCodeNode", "SwitchNode", "MergeNode", "AsyncMergeNode", "WorkflowNode",
}


@register_node("RegistryTestGreeter", aliases=("Greeter2",), category="testing")
class GreeterNode(Node):
    """Greets someone.

    Longer text that is not part of the one-line description.
    """

    def get_parameters(self):
        return {"who": NodeParameter(type=str, required=True, description="whom to greet")}

    def run(self, who):
        return {"result": f"hi {who}"}


def test_every_core_node_type_is_in_the_catalog():
    assert CORE_TYPES <= set(list_node_types(include_custom=False))


def test_decorator_registers_under_name_and_aliases():
    assert get_node_class("RegistryTestGreeter") is GreeterNode
    assert get_node_class("Greeter2") is GreeterNode


def test_any_concrete_node_subclass_registers_itself_by_class_name():
    class RegistryTestImplicitNode(Node):
        def run(self, **kw):
            return {}

    assert get_node_class("RegistryTestImplicitNode") is RegistryTestImplicitNode
    assert "RegistryTestImplicitNode" in list_node_types()
    assert "RegistryTestImplicitNode" not in list_node_types(include_custom=False)


def test_abstract_classes_are_not_node_types():
    with pytest.raises(UnknownNodeTypeError, match="unknown node type 'AsyncNode'"):
        get_node_class("AsyncNode")
    with pytest.raises(UnknownNodeTypeError):
        get_node_class("Node")


def test_unknown_type_lists_close_matches():
    with pytest.raises(UnknownNodeTypeError, match=r"unknown node type 'CSVReadrNode'; did you mean CSVReaderNode") as info:
        get_node_class("CSVReadrNode")
    assert info.value.suggestions[0] == "CSVReaderNode"
    assert info.value.got == "CSVReadrNode"
    assert isinstance(info.value, LookupError)


def test_unknown_type_without_close_match_points_at_the_catalog():
    with pytest.raises(UnknownNodeTypeError, match=r"unknown node type 'Zzzzqqq'; run `kailash nodes` for the catalog"):
        get_node_class("Zzzzqqq")


def test_describe_node_gives_the_parameter_schema():
    info = describe_node(GreeterNode, "RegistryTestGreeter")
    assert info["name"] == "RegistryTestGreeter"
    assert info["category"] == "testing"
    assert info["description"] == "Greets someone."
    assert info["parameters"] == [
        {"name": "who", "type": "str", "required": True, "default": None, "description": "whom to greet", "secret": False,
         "schema": {"type": "string", "description": "whom to greet"}}
    ]


def test_describe_core_nodes():
    reader = describe_node(get_node_class("CSVReaderNode"))
    assert reader["category"] == "data"
    assert reader["primary_output"] == "data"
    names = [p["name"] for p in reader["parameters"]]
    assert names[0] == "file_path" and "delimiter" in names
    code = describe_node(get_node_class("PythonCodeNode"))
    assert code["category"] == "code" and code["extra_inputs"] is True
    assert describe_node(get_node_class("AsyncMergeNode"))["is_async"] is True


def test_every_registered_node_can_be_described():
    for name, cls in list_node_types(include_custom=False).items():
        info = describe_node(cls, name)
        assert info["name"] == name
        for p in info["parameters"]:
            assert {"name", "type", "required", "default", "description", "secret", "schema"} <= set(p)
            assert set(p) - {"name", "type", "required", "default", "description", "secret", "schema"} <= {
                "choices", "minimum", "maximum", "format"}
            jsonschema.Draft202012Validator.check_schema(p["schema"])
            if p["default"] is not None and "default" in p["schema"]:  # a default fits its own schema
                assert not list(jsonschema.Draft202012Validator(p["schema"]).iter_errors(p["default"])), (name, p)
