"""``kailash export FILE --to yaml|json|docker|kubernetes --out DIR``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from kailash.cli.main import main
from kailash.nodes.code.python import PythonCodeNode
from kailash.workflow import Workflow

ROOT = Path(__file__).resolve().parents[2]


def saved_workflow(tmp_path: Path) -> Path:
    wf = Workflow("cli flow")
    wf.add_node("make", PythonCodeNode(code="result = [1, 2, 3]"))
    wf.add_node("total", PythonCodeNode(code="result = sum(data) * k"))
    wf.connect("make", "total")
    return wf.save(tmp_path / "flow.yaml")


def test_export_command_as_a_user_runs_it(tmp_path):
    src = saved_workflow(tmp_path)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kailash.cli",
            "export",
            str(src),
            "--to",
            "json",
            "--out",
            str(tmp_path / "out"),
            "--set-version",
            "3.0.0",
            "--metadata",
            "author=ops@example.com",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out" / "flow.json"
    assert proc.stdout.strip() == str(out)
    doc = json.loads(out.read_text())
    assert doc["version"] == "3.0.0" and doc["metadata"] == {"author": "ops@example.com"}
    assert Workflow.load(out).nodes["total"].config["code"] == "result = sum(data) * k"


def test_yaml_to_a_file_path_with_dependencies(tmp_path, capsys):
    src = saved_workflow(tmp_path)
    target = tmp_path / "exported.yml"
    assert main(["export", str(src), "--to", "yaml", "--out", str(target), "--include-dependencies"]) == 0
    assert capsys.readouterr().out.strip() == str(target)
    assert yaml.safe_load(target.read_text())["dependencies"]["node_types"] == ["PythonCodeNode"]


def test_docker_and_kubernetes_targets(tmp_path, capsys, run_entrypoint):
    src = saved_workflow(tmp_path)
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"total": {"k": 10}}))
    assert main(["export", str(src), "--to", "docker", "--out", str(tmp_path / "d"), "--params-file", str(params)]) == 0
    said = capsys.readouterr()
    assert "Dockerfile" in said.out
    assert said.err.startswith("Kailash is bundled as wheels/kailash-0.1.0-py3-none-any.whl, built from the source")
    proc = run_entrypoint(tmp_path / "d")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"]["total"] == {"result": 60}

    assert (
        main(
            [
                "export",
                str(src),
                "--to",
                "kubernetes",
                "--out",
                str(tmp_path / "k"),
                "--serve",
                "--namespace",
                "jobs",
                "--replicas",
                "2",
                "--database-url-secret",
                "flow-db",
                "--image",
                "reg.local/flow:1",
                "--validate",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "deployment.yaml" in out and "manifests valid against the Kubernetes API schemas" in out
    dep = yaml.safe_load((tmp_path / "k" / "deployment.yaml").read_text())
    assert dep["spec"]["replicas"] == 2 and dep["metadata"]["namespace"] == "jobs"
    assert json.loads(yaml.safe_load((tmp_path / "k" / "configmap.yaml").read_text())["data"]["params.json"]) == {}


def test_docker_sdk_option(tmp_path, capsys):
    src = saved_workflow(tmp_path)
    assert main(["export", str(src), "--to", "docker", "--out", str(tmp_path / "d"), "--sdk", "kailash-sdk>=0.9"]) == 0
    assert "from the index as given by the export's sdk option: kailash-sdk>=0.9" in capsys.readouterr().err
    assert (tmp_path / "d" / "requirements.txt").read_text().splitlines()[1] == "kailash-sdk>=0.9"
    assert main(["export", str(src), "--to", "docker", "--out", str(tmp_path / "e"), "--sdk", "nope.whl"]) == 2
    assert "wheel 'nope.whl' does not exist" in capsys.readouterr().err


def test_bad_input_exits_2_with_a_message(tmp_path, capsys):
    src = saved_workflow(tmp_path)
    assert main(["export", str(tmp_path / "missing.yaml"), "--to", "yaml", "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err

    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "schema_version: 1\nnodes:\n  - {id: a, type: PythonCodeNode, config: {code: 'result = 1'}}\n"
        "connections:\n  - {from: a, to: ghost}\n"
    )
    assert main(["export", str(broken), "--to", "docker", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "cannot export workflow" in err and "no node 'ghost'" in err
    assert not (tmp_path / "d").exists()

    blocker = tmp_path / "blocker"
    blocker.write_text("")
    assert main(["export", str(src), "--to", "kubernetes", "--out", str(blocker)]) == 2
    assert "not a directory" in capsys.readouterr().err

    assert main(["export", str(src), "--to", "json", "--out", str(tmp_path), "--metadata", "novalue"]) == 2
    assert "--metadata expects KEY=VALUE" in capsys.readouterr().err


def test_export_is_listed_in_help():
    proc = subprocess.run(
        [sys.executable, "-m", "kailash.cli", "export", "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == 0
    assert "--to {yaml,json,docker,kubernetes}" in proc.stdout
