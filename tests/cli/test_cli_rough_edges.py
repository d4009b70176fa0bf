"""First-hour rough edges (issue #15): errors name the file, one duration and node count,
'showing N of M', serve's port in use, validate reports a missing extra."""

from __future__ import annotations

import json
import re
import socket

import pytest
from test_cli_first_hour import kailash

from kailash.errors import WorkflowValidationError
from kailash.workflow import Workflow


@pytest.fixture
def files(tmp_path):
    (tmp_path / "bad.yaml").write_text("name: x\nnodes:\n  a: [1\n")
    (tmp_path / "ok.yaml").write_text(
        "name: ok\nnodes:\n  - {id: a, type: PythonCodeNode, config: {code: 'result = 41 + 1'}}\n"
        "  - {id: b, type: PythonCodeNode, config: {code: 'result = 2'}}\nconnections: []\n")
    (tmp_path / "fails.yaml").write_text(
        "name: fails\nnodes:\n  - {id: a, type: PythonCodeNode, config: {code: 'result = 1'}}\n"
        "  - {id: boom, type: PythonCodeNode, config: {code: 'result = 1 / 0'}}\n"
        "  - {id: after, type: PythonCodeNode, config: {code: 'result = 2'}}\n"
        "connections: [{from: a, to: boom}, {from: boom, to: after}]\n")
    (tmp_path / "params.yaml").write_text("a: {b: 1\n")
    (tmp_path / "params.json").write_text('{"a": ')
    return tmp_path


def test_yaml_errors_name_the_file(files):
    for args in (["validate", "bad.yaml"], ["run", "bad.yaml"], ["run", "ok.yaml", "--params-file", "params.yaml"]):
        proc = kailash(*args, home=files / "home", cwd=files)
        assert proc.returncode in (1, 2), proc.stderr
        assert "<unicode string>" not in proc.stderr
        name = args[-1]
        assert f'in "{name}", line' in proc.stderr, proc.stderr
    proc = kailash("run", "ok.yaml", "--params-file", "params.json", home=files / "home", cwd=files)
    assert proc.returncode == 2 and "parameters file 'params.json' is not valid JSON" in proc.stderr
    (files / "bad.json").write_text('{"name": "x", "nodes": [}')
    proc = kailash("validate", "bad.json", home=files / "home", cwd=files)
    assert proc.returncode == 1 and "malformed JSON: " in proc.stderr and "in 'bad.json'" in proc.stderr


def _run_line(text):
    m = re.search(r"in ([\d.]+) (ms|s), (\d+) nodes \(run (\w+)\)", text)
    assert m, text
    seconds = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
    return seconds, int(m.group(3)), m.group(4)


def test_run_and_runs_agree_on_duration_and_node_count(files):
    home = files / "home"
    ok = kailash("run", "ok.yaml", home=home, cwd=files)
    assert ok.returncode == 0, ok.stderr
    seconds, nodes, run_id = _run_line(ok.stdout)
    fails = kailash("run", "fails.yaml", home=home, cwd=files)
    assert fails.returncode == 1
    m = re.search(r"run (\w+) recorded as failed after ([\d.]+) (ms|s) \((\d+) nodes\)", fails.stderr)
    assert m, fails.stderr
    records = {r["run_id"]: r for r in json.loads(kailash("runs", "--json", home=home).stdout)}
    assert nodes == len(records[run_id]["nodes"]) == 2
    assert round(records[run_id]["duration"] * 1000, 1) == pytest.approx(seconds * 1000, abs=0.051)
    failed = records[m.group(1)]
    assert int(m.group(4)) == len(failed["nodes"]) == 2  # the nodes that ran: a and boom, as `kailash runs` counts
    table = kailash("runs", home=home).stdout
    row = next(line for line in table.splitlines() if line.startswith(run_id))
    assert row.split()[3:5] == [str(nodes), f"{records[run_id]['duration'] * 1000:.1f}"]
    detail = kailash("runs", run_id, home=home).stdout
    assert f", {nodes} nodes" in detail.splitlines()[0]


def test_resume_reports_duration_and_node_count_as_run_does(files):
    """`kailash resume` prints the resumed run's recorded duration and node count, failed or completed."""
    home = files / "home"
    (files / "div.yaml").write_text(
        "name: div\nnodes:\n  - {id: a, type: PythonCodeNode, config: {code: 'result = 6'}}\n"
        "  - {id: b, type: PythonCodeNode, config: {code: 'result = data / d'}}\n"
        "connections: [{from: a, to: b}]\n")
    first = kailash("run", "div.yaml", "-p", "b.d=0", home=home, cwd=files)
    assert first.returncode == 1, first.stderr
    run_id = re.search(r"run (\w+) recorded as failed", first.stderr).group(1)
    again = kailash("resume", run_id, "div.yaml", "-p", "b.d=0", home=home, cwd=files)
    assert again.returncode == 1, again.stderr
    m = re.search(r"run (\w+) recorded as failed after ([\d.]+) (ms|s) \((\d+) nodes\)", again.stderr)
    assert m and m.group(1) != run_id, again.stderr
    done = kailash("resume", run_id, "div.yaml", "-p", "b.d=2", home=home, cwd=files)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"workflow 'div' resumed from run {run_id} and completed in "), done.stdout
    seconds, nodes, resumed_id = _run_line(done.stdout)
    assert "  b: {\"result\": 3.0}" in done.stdout
    records = {r["run_id"]: r for r in json.loads(kailash("runs", "--json", home=home).stdout)}
    assert int(m.group(4)) == len(records[m.group(1)]["nodes"]) == 2  # a (reused) and b, as `kailash runs` counts
    assert nodes == len(records[resumed_id]["nodes"]) == 2
    assert round(records[resumed_id]["duration"] * 1000, 1) == pytest.approx(seconds * 1000, abs=0.051)


def test_runs_says_how_many_it_does_not_show(files):
    home = files / "home"
    for _ in range(3):
        assert kailash("run", "ok.yaml", home=home, cwd=files).returncode == 0
    out = kailash("runs", "--limit", "2", home=home).stdout
    assert "showing the newest 2 of 3 runs; `--limit N` shows more" in out
    assert "showing" not in kailash("runs", home=home).stdout


def test_serve_on_a_port_in_use_fails_before_any_banner(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = kailash("serve", "--port", str(port), home=tmp_path)
    assert proc.returncode == 3
    assert proc.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}: ") and "in use" in proc.stderr
    assert "Kailash gateway" not in proc.stderr and "Studio" not in proc.stderr


BLOCK_HTTPX = "import sys; sys.modules['httpx'] = None"


def test_validate_reports_a_node_whose_extra_is_missing(tmp_path):
    (tmp_path / "fetch.yaml").write_text(
        "name: fetch\nnodes:\n  - {id: get_page, type: HTTPRequestNode, config: {url: 'http://127.0.0.1:9/'}}\n"
        "connections: []\n")
    assert kailash("validate", "fetch.yaml", home=tmp_path, cwd=tmp_path).returncode == 0  # httpx is installed
    proc = kailash("validate", "fetch.yaml", home=tmp_path, cwd=tmp_path, pre=BLOCK_HTTPX)
    assert proc.returncode == 1
    assert "node 'get_page' (HTTPRequestNode) needs httpx, which is not installed: pip install 'kailash[http]'" \
        in proc.stderr


def test_workflow_validate_names_node_and_extra(monkeypatch):
    from kailash.nodes.ai.llm_agent import LLMAgentNode
    from kailash.nodes.code.python import PythonCodeNode

    wf = Workflow("agents")
    wf.add_node("offline", LLMAgentNode())
    wf.add_node("remote", LLMAgentNode(provider="openai"))
    wf.add_node("code", PythonCodeNode(code="result = 1"))
    wf.validate()
    monkeypatch.setitem(__import__("sys").modules, "httpx", None)
    with pytest.raises(WorkflowValidationError) as info:
        wf.validate()
    assert [(p.node_id, p.expected) for p in info.value.problems] == [("remote", "kailash[ai]")]
    assert "pip install 'kailash[ai]'" in str(info.value)


def test_offline_answers_say_no_model_was_called():
    from kailash.nodes.ai.a2a import A2AAgentNode
    from kailash.nodes.ai.llm_agent import LLMAgentNode
    from kailash.runtime import LocalRuntime

    wf = Workflow("ask")
    wf.add_node("agent", LLMAgentNode(prompt="Summarise: sales rose 5% in Q3."))
    rt = LocalRuntime(record_outputs="always")
    results, run_id = rt.execute(wf)
    expected = {"model_called": False, "decided_by": "heuristic", "provider": "offline", "model": "kailash-offline-1"}
    assert results["agent"]["metadata"] == expected
    assert rt.store.get_run(run_id).outputs["agent"]["metadata"] == expected  # in the run record too
    assert A2AAgentNode(name="a2a").execute(task="hello")["metadata"]["model_called"] is False
