"""Seed pattern 16 (Secure File Processing): reader -> SecurityMixin node -> writer under a policy.

The sample's ``/app/data`` and ``/tmp/kailash`` are real temporary directories, and
``SecureProcessorNode`` (which the sample uses without defining) is the obvious
SecurityMixin node: it sanitises the rows and logs a security event.
"""

from __future__ import annotations

import json
import os

import pytest

from kailash.errors import SecurityError
from kailash.nodes.base import Node, NodeParameter
from kailash.nodes.data.readers import CSVReaderNode
from kailash.nodes.data.writers import CSVWriterNode
from kailash.nodes.mixins import SecurityMixin
from kailash.runtime import LocalRuntime
from kailash.security import SecurityConfig, safe_open, set_security_config
from kailash.workflow import Workflow


class SecureProcessorNode(SecurityMixin, Node):
    """Sanitise incoming rows; markup becomes inert text, injections are refused."""

    def get_parameters(self):
        return {"data": NodeParameter(type=list, required=True, description="rows to process")}

    def run(self, **kwargs):
        safe = self.validate_and_sanitize_inputs(kwargs)
        self.log_security_event(f"processing {len(safe['data'])} rows", level="INFO")
        return {"data": safe["data"]}


@pytest.fixture
def dirs(tmp_path):
    app_data = tmp_path / "app" / "data"
    kailash_tmp = tmp_path / "kailash"
    outside = tmp_path / "outside"
    for d in (app_data, kailash_tmp, outside):
        d.mkdir(parents=True)
    (app_data / "input.csv").write_text("id,name,comment\n1,Ada,<script>alert(1)</script>\n2,Grace,all good\n")
    (outside / "private.csv").write_text("id,secret\n1,host-only\n")
    return app_data, kailash_tmp, outside, tmp_path / "audit.jsonl"


def build(app_data, kailash_tmp, audit, *, reader_path=None, writer_path=None, max_file_size=50 * 1024 * 1024):
    # --- the sample, as written (placeholders filled) ---------------------------------------
    # Configure security policy
    security_config = SecurityConfig(
        allowed_directories=[str(app_data), str(kailash_tmp)],
        max_file_size=max_file_size,  # 50MB
        execution_timeout=300.0,  # 5 minutes
        enable_audit_logging=True,
        audit_log_path=str(audit),
    )
    set_security_config(security_config)

    # Create secure workflow
    workflow = Workflow("secure_data_processing")

    # File operations automatically use security validation
    workflow.add_node("reader", CSVReaderNode(), file_path=reader_path or str(app_data / "input.csv"))
    workflow.add_node("processor", SecureProcessorNode())
    workflow.add_node("writer", CSVWriterNode(), file_path=writer_path or str(app_data / "output.csv"))

    workflow.connect("reader", "processor")
    workflow.connect("processor", "writer")
    # --- end of sample ----------------------------------------------------------------------------
    return workflow


def _events(audit):
    return [json.loads(line) for line in audit.read_text().splitlines()] if audit.exists() else []


def test_sample_processes_files_inside_the_allowed_directories(dirs):
    app_data, kailash_tmp, _, audit = dirs
    results, run_id = LocalRuntime().execute(build(app_data, kailash_tmp, audit))
    assert run_id
    assert results["processor"]["data"][0]["comment"] == "&lt;script&gt;alert(1)&lt;/script&gt;"
    written = (app_data / "output.csv").read_text()
    assert "&lt;script&gt;" in written and "<script>" not in written
    assert [e["event"] for e in _events(audit)] == ["node_security_event"]
    assert _events(audit)[0]["node_id"] == "processor"


def test_reading_outside_the_allowed_directories_is_refused(dirs):
    app_data, kailash_tmp, outside, audit = dirs
    workflow = build(app_data, kailash_tmp, audit, reader_path=str(app_data / ".." / ".." / "outside" / "private.csv"))
    with pytest.raises(SecurityError, match="refused") as info:
        LocalRuntime().execute(workflow)
    assert info.value.node_id == "reader"
    assert "host-only" not in str(info.value)
    assert not (app_data / "output.csv").exists()
    refused = [e for e in _events(audit) if e["event"] == "file_access_refused"]
    assert refused and refused[0]["node_id"] == "reader"


def test_a_symlink_out_of_the_allowed_directory_is_refused(dirs):
    app_data, kailash_tmp, outside, audit = dirs
    os.symlink(outside / "private.csv", app_data / "innocent.csv")
    with pytest.raises(SecurityError, match="resolves to"):
        LocalRuntime().execute(build(app_data, kailash_tmp, audit, reader_path=str(app_data / "innocent.csv")))


def test_writing_outside_the_allowed_directories_is_refused_and_leaves_nothing(dirs):
    app_data, kailash_tmp, outside, audit = dirs
    target = outside / "new_dir" / "stolen.csv"
    with pytest.raises(SecurityError) as info:
        LocalRuntime().execute(build(app_data, kailash_tmp, audit, writer_path=str(target)))
    assert info.value.node_id == "writer"
    assert not target.exists()
    assert not target.parent.exists(), "a refused write must not create directories outside the policy"


def test_files_over_max_file_size_are_refused_before_reading(dirs):
    app_data, kailash_tmp, _, audit = dirs
    with pytest.raises(SecurityError, match="over the 20-byte limit"):
        LocalRuntime().execute(build(app_data, kailash_tmp, audit, max_file_size=20))
    assert any(e["event"] == "file_too_large" for e in _events(audit))


def test_the_second_allowed_directory_works_too(dirs):
    app_data, kailash_tmp, _, audit = dirs
    build(app_data, kailash_tmp, audit)
    with safe_open(kailash_tmp / "scratch.txt", "w") as f:
        f.write("ok")
    assert (kailash_tmp / "scratch.txt").read_text() == "ok"
