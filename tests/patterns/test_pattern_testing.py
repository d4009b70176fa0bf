"""Best Practices "6. Testing Patterns", as written: the two sample functions are real
pytest tests here. ``DataProcessorNode`` and ``workflow`` are defined as a user would;
the sample's ``[...]`` is a real list of customers."""

from __future__ import annotations

from kailash.nodes.base import Node, NodeParameter
from kailash.nodes.code.python import PythonCodeNode
from kailash.workflow import Workflow


class DataProcessorNode(Node):
    """Checks a record's value against a threshold."""

    def get_parameters(self):
        return {
            "data": NodeParameter(type=dict, required=True, description="a record with a 'value'"),
            "threshold": NodeParameter(type=(int, float), default=0, description="minimum value"),
        }

    def run(self, data, threshold):
        return {"passed": data["value"] >= threshold, "value": data["value"]}


workflow = Workflow("customer_processing")
workflow.add_node("processed_customers", PythonCodeNode(code="""
result = [
    {"name": c["name"].title(), "segment": "vip" if c["spend"] >= 1000 else "standard"}
    for c in customers
    if c.get("active")
]
"""))
workflow.add_node("segment_counts", PythonCodeNode(code="""
result = {}
for c in data:
    result[c["segment"]] = result.get(c["segment"], 0) + 1
"""))
workflow.connect("processed_customers", "segment_counts")

CUSTOMERS = [
    {"name": "ada lovelace", "spend": 1200, "active": True},
    {"name": "alan turing", "spend": 300, "active": True},
    {"name": "charles babbage", "spend": 5000, "active": False},
]

# --- the sample, as written ----------------------------------------------------------------------
from kailash.runtime.testing import TestRuntime  # noqa: E402, I001

# Unit test individual nodes
def test_data_processor():
    node = DataProcessorNode(config={"threshold": 10})
    test_data = {"value": 15}
    result = node.execute(data=test_data)
    assert result["passed"] == True  # noqa: E712

# Integration test workflows
def test_workflow():
    runtime = TestRuntime()
    test_input = {"customers": CUSTOMERS}
    result = runtime.execute(workflow, parameters=test_input)
    assert len(result["processed_customers"]) > 0
# --- end of sample -------------------------------------------------------------------------------


def test_the_integration_test_checks_real_outputs():
    result = TestRuntime().execute(workflow, parameters={"customers": CUSTOMERS})
    assert result["processed_customers"]["result"] == [
        {"name": "Ada Lovelace", "segment": "vip"},
        {"name": "Alan Turing", "segment": "standard"},
    ]
    assert result["segment_counts"] == {"result": {"vip": 1, "standard": 1}}


def test_the_unit_test_fails_below_the_threshold():
    assert DataProcessorNode(config={"threshold": 10}).execute(data={"value": 5})["passed"] is False


def test_fixed_outputs_replace_a_node_for_an_integration_test():
    result = TestRuntime(mock_outputs={"processed_customers": {"result": [{"segment": "vip"}] * 3}}).execute(workflow)
    assert result["segment_counts"] == {"result": {"vip": 3}}
