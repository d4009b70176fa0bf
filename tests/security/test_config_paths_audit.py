"""SecurityConfig validation, safe_open (traversal, symlinks, size), audit JSON lines."""

from __future__ import annotations

import json
import logging
import os

import pytest

from kailash.errors import SecurityError
from kailash.security import Secret, SecurityConfig, get_security_config, safe_open, set_security_config, validate_path
from kailash.security.audit import audit_event, security_event


def test_a_missing_allowed_directory_is_rejected(tmp_path):
    with pytest.raises(SecurityError, match="allowed directory '.*nope' does not exist") as info:
        SecurityConfig(allowed_directories=[str(tmp_path / "nope")])
    assert info.value.parameter == "allowed_directories"


def test_a_file_as_allowed_directory_is_rejected(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(SecurityError, match="is not a directory"):
        SecurityConfig(allowed_directories=[str(tmp_path / "f")])


@pytest.mark.parametrize("field, value", [("max_file_size", -1), ("execution_timeout", -0.5),
                                          ("memory_limit", 0), ("execution_timeout", 0)])
def test_negative_or_zero_limits_are_rejected(field, value):
    with pytest.raises(SecurityError, match=f"{field} must be (a )?positive"):
        SecurityConfig(**{field: value})


def test_all_problems_are_reported_together():
    with pytest.raises(SecurityError) as info:
        SecurityConfig(max_file_size=-1, memory_limit=-1, isolation="vm")
    text = str(info.value)
    assert "max_file_size" in text and "memory_limit" in text and "isolation" in text


def test_a_single_string_is_not_a_directory_list(tmp_path):
    with pytest.raises(SecurityError, match="not a single string"):
        SecurityConfig(allowed_directories=str(tmp_path))


def test_set_and_get_the_global_policy(tmp_path):
    cfg = SecurityConfig(allowed_directories=[str(tmp_path)])
    set_security_config(cfg)
    assert get_security_config() is cfg
    with pytest.raises(SecurityError, match="expects a SecurityConfig"):
        set_security_config({"allowed_directories": []})
    set_security_config(None)
    assert get_security_config() is None


@pytest.fixture
def policy(tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (tmp_path / "outside.txt").write_text("outside")
    log = tmp_path / "audit.jsonl"
    cfg = SecurityConfig(allowed_directories=[str(allowed)], max_file_size=100, enable_audit_logging=True,
                         audit_log_path=str(log))
    return cfg, allowed, log


def _events(log):
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_safe_open_inside_the_allowed_directory(policy):
    cfg, allowed, log = policy
    with safe_open(allowed / "a.txt", "w", config=cfg) as f:
        f.write("hello")
    with safe_open(str(allowed / "a.txt"), config=cfg) as f:
        assert f.read() == "hello"
    assert _events(log) == []


def test_dot_dot_traversal_is_refused_and_audited(policy):
    cfg, allowed, log = policy
    with pytest.raises(SecurityError, match="outside the allowed directories") as info:
        safe_open(f"{allowed}/../outside.txt", config=cfg, node_id="reader")
    assert info.value.node_id == "reader" and info.value.parameter == "file_path"
    (event,) = _events(log)
    assert event["event"] == "file_access_refused" and event["node_id"] == "reader"


def test_symlink_escape_is_refused(policy, tmp_path):
    cfg, allowed, _ = policy
    os.symlink(tmp_path / "outside.txt", allowed / "link.txt")
    with pytest.raises(SecurityError, match="resolves to"):
        safe_open(allowed / "link.txt", config=cfg)


def test_oversized_files_are_refused_before_reading(policy):
    cfg, allowed, log = policy
    (allowed / "big.txt").write_text("x" * 101)
    with pytest.raises(SecurityError, match="101 bytes, over the 100-byte limit"):
        safe_open(allowed / "big.txt", config=cfg)
    assert _events(log)[-1]["event"] == "file_too_large"


def test_the_global_policy_applies_when_none_is_given(policy, tmp_path):
    cfg, _, _ = policy
    set_security_config(cfg)
    with pytest.raises(SecurityError):
        validate_path(tmp_path / "outside.txt")


def test_audit_events_are_json_lines_without_secret_values(tmp_path):
    log = tmp_path / "a.jsonl"
    cfg = SecurityConfig(enable_audit_logging=True, audit_log_path=str(log))
    key = Secret("api-key-0123456789")
    audit_event("auth_failure", config=cfg, node_id="auth", credential=key,
                detail="server rejected api-key-0123456789")
    (event,) = _events(log)
    assert event["event"] == "auth_failure" and event["level"] == "WARNING" and event["node_id"] == "auth"
    assert "api-key-0123456789" not in log.read_text()


def test_security_event_is_silent_unless_audit_logging_is_enabled(tmp_path, caplog):
    log = tmp_path / "a.jsonl"
    quiet = SecurityConfig(enable_audit_logging=False, audit_log_path=str(log))
    with caplog.at_level(logging.INFO, logger="kailash.audit"):
        assert security_event("auth_failure", config=quiet) is None
        assert not log.exists()
        set_security_config(SecurityConfig(enable_audit_logging=True))
        record = security_event("auth_failure", node_id="n")
    assert record["event"] == "auth_failure"
    assert json.loads(caplog.records[-1].getMessage())["node_id"] == "n"
