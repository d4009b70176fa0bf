"""Seed pattern 18 (Secure Node Development): a SecurityMixin node, run directly and in a workflow.

The sample raises ``SecurityError`` without importing it; the import is the only addition.
"""

from __future__ import annotations

import json

import pytest

from kailash.errors import SecurityError
from kailash.nodes.base import Node, NodeParameter
from kailash.nodes.mixins import SecurityMixin
from kailash.runtime import LocalRuntime
from kailash.security import SecurityConfig, set_security_config
from kailash.workflow import Workflow


# --- the sample, as written --------------------------------------------------------------------
class SecureDataProcessorNode(SecurityMixin, Node):
    """Custom node with integrated security."""

    def get_parameters(self):
        return {
            "input_data": NodeParameter(
                type=list,
                description="Data to process",
                required=True
            )
        }

    def run(self, **kwargs):
        # Automatic input validation and sanitization
        safe_params = self.validate_and_sanitize_inputs(kwargs)

        # Log security event
        self.log_security_event("Processing data", level="INFO")

        # Process data safely
        processed_data = self.secure_process(safe_params["input_data"])

        return {"processed": processed_data}

    def secure_process(self, data):
        """Process data with security considerations."""
        # Validate data size
        if len(data) > 10000:
            raise SecurityError("Data too large for processing")

        # Process with size limits
        return [item for item in data if self.is_safe_item(item)]

    def is_safe_item(self, item):
        """Check if item is safe to process."""
        return not any(dangerous in str(item) for dangerous in ['<script>', 'eval(', 'exec('])
# --- end of sample ------------------------------------------------------------------------------


def test_direct_execution_sanitises_and_filters():
    node = SecureDataProcessorNode(name="secure")
    out = node.execute(input_data=["plain", "<script>alert(1)</script>", "eval(payload)", {"n": 1}])
    # markup was escaped into inert text by the mixin; the sample's own filter drops eval(...)
    assert out == {"processed": ["plain", "&lt;script&gt;alert(1)&lt;/script&gt;", {"n": 1}]}


def test_in_a_workflow_with_audit_logging(tmp_path):
    log = tmp_path / "audit.jsonl"
    set_security_config(SecurityConfig(enable_audit_logging=True, audit_log_path=str(log)))
    workflow = Workflow("secure_node")
    workflow.add_node("secure", SecureDataProcessorNode())
    results, _ = LocalRuntime().execute(workflow, parameters={"secure": {"input_data": ["a", "exec(x)", "b"]}})
    assert results["secure"]["processed"] == ["a", "b"]
    (event,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert event["event"] == "node_security_event" and event["message"] == "Processing data"
    assert event["node_id"] == "secure" and event["node_type"] == "SecureDataProcessorNode"


def test_too_much_data_is_refused():
    with pytest.raises(SecurityError, match="Data too large for processing"):
        SecureDataProcessorNode().execute(input_data=list(range(10001)))


def test_injection_attempts_are_refused_naming_the_node_and_parameter():
    workflow = Workflow("secure_node")
    workflow.add_node("secure", SecureDataProcessorNode())
    with pytest.raises(SecurityError, match="node 'secure'.*input 'input_data' looks like an SQL injection") as info:
        LocalRuntime().execute(workflow, parameters={"secure": {"input_data": ["x'; DROP TABLE users; --"]}})
    assert info.value.node_id == "secure" and info.value.run_id


def test_the_declared_type_is_enforced():
    with pytest.raises(SecurityError, match="input 'input_data' expects list, got str"):
        SecureDataProcessorNode().validate_and_sanitize_inputs({"input_data": "not a list"})
