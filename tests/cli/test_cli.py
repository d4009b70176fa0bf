"""The `kailash` command line, run as a subprocess: run, validate, nodes, runs; exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kailash.nodes.code.python import PythonCodeNode
from kailash.nodes.data.readers import CSVReaderNode
from kailash.workflow import Workflow

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = shutil.which("kailash", path=str(Path(sys.executable).parent))
COMMAND = [SCRIPT] if SCRIPT else [sys.executable, "-m", "kailash.cli"]


def kailash(*args: str, home: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAILASH_HOME": str(home)}
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=60, env=env, cwd=cwd or ROOT)


@pytest.fixture
def files(tmp_path):
    """A workflow reading a CSV, scaling the amounts by a parameter and writing JSON."""
    (tmp_path / "orders.csv").write_text("id,amount\n1,10\n2,20\n3,30\n")
    wf = Workflow("scale_orders", "multiply amounts")
    wf.add_node("read", CSVReaderNode(file_path=str(tmp_path / "orders.csv")))
    wf.add_node("scale", PythonCodeNode(code="result = [{'id': r['id'], 'amount': r['amount'] * factor} for r in data]"))
    wf.add_node("total", PythonCodeNode(code="result = sum(r['amount'] for r in data)"))
    wf.add_node("write", "JSONWriterNode", file_path=str(tmp_path / "out.json"))
    wf.connect("read", "scale")
    wf.connect("scale", "total")
    wf.connect("scale", "write")
    wf.save(tmp_path / "scale.yaml")
    wf.save(tmp_path / "scale.json")
    return tmp_path


def test_run_with_parameter_flags_prints_a_summary(files, _isolated_home):
    proc = kailash("run", str(files / "scale.yaml"), "-p", "scale.factor=2", home=_isolated_home)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("workflow 'scale_orders' completed in ") and "(run " in lines[0]
    assert "  total: {\"result\": 120}" in lines
    assert json.loads((files / "out.json").read_text())[2] == {"id": 3, "amount": 60}


def test_run_json_output_and_json_workflow(files, _isolated_home):
    proc = kailash("run", str(files / "scale.json"), "-p", "scale.factor=0.5", "--json", home=_isolated_home)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "completed" and len(out["run_id"]) == 32
    assert out["results"]["total"] == {"result": 30.0}
    assert out["results"]["write"]["records_written"] == 3


def test_parameter_values_are_json_when_they_parse_else_text(files, _isolated_home):
    wf = Workflow("echo")
    wf.add_node("echo", PythonCodeNode(code="result = [type(v).__name__ for v in (a, b, c, d)]"))
    wf.save(files / "echo.yaml")
    proc = kailash("run", str(files / "echo.yaml"), "-p", "echo.a=3", "-p", 'echo.b=["x"]', "-p", "echo.c=hello",
                   "-p", "echo.d=true", "--json", home=_isolated_home)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"]["echo"]["result"] == ["int", "list", "str", "bool"]


def test_workflow_level_parameter_without_a_node_id(files, _isolated_home):
    wf = Workflow("greet")
    wf.add_node("greet", PythonCodeNode(code="result = 'hi ' + who"))
    wf.save(files / "greet.yaml")
    proc = kailash("run", str(files / "greet.yaml"), "-p", "who=ada", "--json", home=_isolated_home)
    assert json.loads(proc.stdout)["results"]["greet"] == {"result": "hi ada"}


@pytest.mark.parametrize("suffix", ["yaml", "json"])
def test_params_file_and_flags_override_it(files, _isolated_home, suffix):
    params = {"scale": {"factor": 10}}
    text = json.dumps(params) if suffix == "json" else "scale:\n  factor: 10\n"
    (files / f"params.{suffix}").write_text(text)
    proc = kailash("run", str(files / "scale.yaml"), "--params-file", str(files / f"params.{suffix}"), "--json",
                   home=_isolated_home)
    assert json.loads(proc.stdout)["results"]["total"] == {"result": 600}
    proc = kailash("run", str(files / "scale.yaml"), "--params-file", str(files / f"params.{suffix}"),
                   "-p", "scale.factor=1", "--json", home=_isolated_home)
    assert json.loads(proc.stdout)["results"]["total"] == {"result": 60}


def test_progress_display_per_node(files, _isolated_home):
    proc = kailash("run", str(files / "scale.yaml"), "-p", "scale.factor=1", "--progress", home=_isolated_home)
    assert proc.returncode == 0
    for i, node in enumerate(["read", "scale", "total", "write"], 1):
        assert f"  ▶ {node} ..." in proc.stderr
        assert f"✔ [{i}/4] {node}" in proc.stderr


def test_failing_node_exits_1_and_points_at_the_recorded_run(files, _isolated_home):
    proc = kailash("run", str(files / "scale.yaml"), "-p", 'scale.factor=null', home=_isolated_home)
    assert proc.returncode == 1
    assert "error: node 'scale' (PythonCodeNode) failed at line 1 of its code: TypeError" in proc.stderr
    run_id = proc.stderr.split("recorded as failed")[0].split("run ")[-1].strip()
    shown = kailash("runs", run_id, home=_isolated_home)
    assert shown.returncode == 0
    assert f"run {run_id}  workflow 'scale_orders'  failed" in shown.stdout
    assert "error at node 'scale'" in shown.stdout
    assert "completed read" in " ".join(shown.stdout.split())
    assert "failed scale" in " ".join(shown.stdout.split())


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["run", "{d}/missing.yaml"], 2, r"error: workflow file '.*missing.yaml' does not exist"),
        (["run", "{d}/scale.yaml", "-p", "scale"], 2, r"error: -p expects node.param=value or name=value, got 'scale'"),
        (["run", "{d}/scale.yaml", "-p", "read.file_pth=x"], 2,
         r"node 'read': unknown parameter 'file_pth' .*did you mean 'file_path'"),
        (["run", "{d}/scale.yaml", "-p", "read.delimiter=5"], 2, r"node 'read': parameter 'delimiter' expects str, got int"),
        (["run", "{d}/scale.yaml", "--params-file", "{d}/nope.yaml"], 2, r"error: .*nope.yaml"),
        (["run", "{d}/scale.yaml", "--params-file", "{d}/list.yaml"], 2, r"error: parameters file '.*list.yaml' must hold a mapping"),
        (["run", "{d}/hostile.yaml"], 2, r"error: malformed or unsafe YAML: could not determine a constructor"),
        (["run", "{d}/scale.yaml", "--params-file", "{d}/hostile.yaml"], 2, r"error: malformed or unsafe YAML"),
        (["run", "{d}/list.yaml"], 2, r"error: a workflow document must be a mapping, got list"),
        (["run", "{d}/scale.yaml"], 1, r"node 'scale' \(PythonCodeNode\) failed at line 1 of its code: NameError: name 'factor'"),
    ],
)
def test_bad_input_exits_with_a_clear_message(files, _isolated_home, args, code, message):
    import re

    marker = files / "pwned"
    (files / "hostile.yaml").write_text(f"!!python/object/apply:os.system ['touch {marker}']\n")
    (files / "list.yaml").write_text("- a\n")
    proc = kailash(*[a.format(d=files) for a in args], home=_isolated_home)
    assert proc.returncode == code, proc.stderr
    assert re.search(message, proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists()


def test_missing_runtime_parameter_is_bad_input_not_a_failed_run(files, _isolated_home):
    wf = Workflow("needs")
    wf.add_node("write", "JSONWriterNode", data=[1])  # file_path missing
    wf.save(files / "needs.yaml")
    proc = kailash("run", str(files / "needs.yaml"), home=_isolated_home)
    assert proc.returncode == 2
    assert "node 'write' (JSONWriterNode) requires parameter 'file_path' (str)" in proc.stderr
    assert "recorded as failed" not in proc.stderr


def test_validate(files, _isolated_home):
    proc = kailash("validate", str(files / "scale.yaml"), home=_isolated_home)
    assert proc.returncode == 0
    assert proc.stdout.startswith("valid: workflow 'scale_orders' (4 nodes, 3 connections)")
    wf = Workflow("needs")
    wf.add_node("write", "JSONWriterNode", data=[1])
    wf.save(files / "needs.yaml")
    proc = kailash("validate", str(files / "needs.yaml"), home=_isolated_home)
    assert proc.returncode == 0
    assert "note: node 'write' needs parameter 'file_path' at run time (-p write.file_path=...)" in proc.stdout
    (files / "broken.yaml").write_text(
        "name: broken\nnodes:\n  - {id: a, type: PythonCodeNode, config: {code: 'result = 1'}}\n"
        "  - {id: b, type: PythonCodeNode, config: {code: 'result = data'}}\n"
        "connections:\n  - {from: a, to: b}\n  - {from: b, to: a}\n  - {from: a, to: c}\n")
    proc = kailash("validate", str(files / "broken.yaml"), home=_isolated_home)
    assert proc.returncode == 1
    assert "invalid: workflow 'broken' is invalid (2 problems)" in proc.stderr
    assert "no node 'c'" in proc.stderr and "the workflow has a cycle: a -> b -> a" in proc.stderr
    (files / "unknown.yaml").write_text("name: u\nnodes:\n  - {id: a, type: CSVReadNode, config: {}}\n")
    proc = kailash("validate", str(files / "unknown.yaml"), home=_isolated_home)
    assert proc.returncode == 1
    assert "unknown node type 'CSVReadNode'; did you mean CSVReaderNode" in proc.stderr


def test_nodes_catalog_and_one_node(_isolated_home):
    proc = kailash("nodes", home=_isolated_home)
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    for entry in ("CSVReaderNode", "PythonCodeNode", "SwitchNode", "MergeNode", "WorkflowNode", "JSONWriterNode"):
        assert any(line.split()[:1] == [entry] for line in lines), entry
    assert any(line.startswith("  CSVReaderNode") and "file_path*" in line for line in lines)
    assert "node types (* = required)" in proc.stdout
    one = kailash("nodes", "CSVReaderNode", home=_isolated_home)
    assert one.returncode == 0
    assert one.stdout.startswith("CSVReaderNode  (data)")
    assert "  file_path: str (required) path of the file to read" in one.stdout
    assert "  delimiter: str (default ',') field delimiter" in one.stdout
    as_json = json.loads(kailash("nodes", "SwitchNode", "--json", home=_isolated_home).stdout)
    assert as_json["name"] == "SwitchNode" and {p["name"] for p in as_json["parameters"]} == {"data", "condition", "outputs"}
    catalog = json.loads(kailash("nodes", "--json", home=_isolated_home).stdout)
    assert {"CSVReaderNode", "PythonCodeNode", "WorkflowNode"} <= {n["name"] for n in catalog}


def test_nodes_unknown_name_suggests(_isolated_home):
    proc = kailash("nodes", "SwitchNod", home=_isolated_home)
    assert proc.returncode == 2
    assert "error: unknown node type 'SwitchNod'; did you mean SwitchNode" in proc.stderr


def test_runs_history_filters_and_json(files, _isolated_home):
    empty = kailash("runs", home=_isolated_home)
    assert empty.returncode == 0 and empty.stdout.startswith("no runs recorded in ")
    ok = kailash("run", str(files / "scale.yaml"), "-p", "scale.factor=1", "--json", home=_isolated_home)
    run_id = json.loads(ok.stdout)["run_id"]
    kailash("run", str(files / "scale.yaml"), "-p", 'scale.factor=null', home=_isolated_home)
    listing = kailash("runs", home=_isolated_home)
    assert listing.returncode == 0
    rows = listing.stdout.splitlines()
    assert rows[0].split() == ["run", "id", "workflow", "status", "nodes", "ms", "started"]
    assert len(rows) == 3 and rows[1].split()[2] == "failed" and rows[2].split()[0] == run_id
    failed_only = kailash("runs", "--status", "failed", "--json", home=_isolated_home)
    assert [r["status"] for r in json.loads(failed_only.stdout)] == ["failed"]
    assert json.loads(kailash("runs", "--workflow", "other", "--json", home=_isolated_home).stdout) == []
    detail = json.loads(kailash("runs", run_id[:8], "--json", home=_isolated_home).stdout)
    assert detail["run_id"] == run_id and detail["status"] == "completed"
    assert [n["node_id"] for n in detail["nodes"]] == ["read", "scale", "total", "write"]
    assert detail["parameters"] == {"scale": {"factor": 1}}
    missing = kailash("runs", "0000nope", home=_isolated_home)
    assert missing.returncode == 2 and "error: no run '0000nope'" in missing.stderr


def test_usage_errors_exit_2(_isolated_home):
    proc = kailash(home=_isolated_home)
    assert proc.returncode == 2 and "usage: kailash" in proc.stderr
    proc = kailash("frobnicate", home=_isolated_home)
    assert proc.returncode == 2 and "invalid choice: 'frobnicate'" in proc.stderr


def test_a_killed_run_reads_interrupted_and_kailash_resume_finishes_it(tmp_path):
    """`kailash run` killed with SIGKILL mid-run: `kailash runs --status interrupted` shows it
    with the node that finished; `kailash resume RUN_ID FILE` runs only the rest."""
    import signal
    import time

    from kailash.runtime.store import SQLiteRunStore

    wf = Workflow("slow_pair")
    wf.add_node("a", PythonCodeNode(code="result = 20"))
    wf.add_node("b", PythonCodeNode(code="import time\ntime.sleep(pause)\nresult = data + 1"), pause=60)
    wf.connect("a", "b")
    wf.save(tmp_path / "slow.yaml")
    home = tmp_path / "home"
    env = {**os.environ, "KAILASH_HOME": str(home)}
    child = subprocess.Popen([*COMMAND, "run", str(tmp_path / "slow.yaml")], env=env, cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        run_id = None
        while run_id is None and time.monotonic() < deadline:  # until node a's completion is in the store
            time.sleep(0.05)
            if (home / "runs.db").exists():
                store = SQLiteRunStore(home / "runs.db")
                runs = store.list_runs(status="running")
                store.close()
                if runs and [n.node_id for n in runs[0].nodes] == ["a"]:
                    run_id = runs[0].run_id
        assert run_id is not None, "the running run never showed node a as completed"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    listed = kailash("runs", "--status", "interrupted", "--json", home=home)
    assert listed.returncode == 0, listed.stderr
    [run] = json.loads(listed.stdout)
    assert run["run_id"] == run_id and run["status"] == "interrupted"
    assert [n["node_id"] for n in run["nodes"]] == ["a"]
    assert kailash("runs", "--status", "running", "--json", home=home).stdout.strip() == "[]"
    done = kailash("resume", run_id[:12], str(tmp_path / "slow.yaml"), "-p", "b.pause=0", "--json", home=home)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["results"] == {"a": {"result": 20}, "b": {"result": 21}}
    new = json.loads(kailash("runs", out["run_id"], "--json", home=home).stdout)
    assert new["parent_run_id"] == run_id and new["nodes"][0]["duration"] == 0.0  # a: reused, not run


def test_kailash_resume_explains_an_unknown_run(tmp_path, files):
    done = kailash("resume", "nope", str(files / "scale.yaml"), home=tmp_path / "home")
    assert done.returncode == 2
    assert "cannot resume run 'nope': no such run" in done.stderr
