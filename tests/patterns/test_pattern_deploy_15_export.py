"""Seed deployment pattern 15 (Export), run as written in a scratch directory.

The exported YAML/JSON load back and run identically; the Docker export's entrypoint is
run directly (there is no Docker engine here) against data mounted where the image's
working directory would be; the Kubernetes manifests are checked against the official
client's API models.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kailash.nodes.code.python import PythonCodeNode
from kailash.nodes.data.readers import CSVReaderNode
from kailash.nodes.data.writers import JSONWriterNode
from kailash.runtime import LocalRuntime
from kailash.workflow import Workflow

SALES = "region,amount\nnorth,120\nsouth,80\nnorth,30\neast,55\n"


def data_processing_workflow() -> Workflow:
    workflow = Workflow("sales_summary", description="Sum sales by region")
    workflow.add_node("reader", CSVReaderNode(), file_path="data/sales.csv")
    workflow.add_node(
        "summarise",
        PythonCodeNode(
            code="""
totals = {}
for row in data:
    totals[row["region"]] = totals.get(row["region"], 0) + row["amount"]
result = [{"region": r, "total": t} for r, t in sorted(totals.items())]
"""
        ),
    )
    workflow.add_node("writer", JSONWriterNode(), file_path="output/summary.json")
    workflow.connect("reader", "summarise")
    workflow.connect("summarise", "writer")
    return workflow


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "sales.csv").write_text(SALES)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_export_pattern(scratch):
    workflow = data_processing_workflow()

    # --- the sample, as written ---------------------------------------------------------------
    from kailash.utils.export import WorkflowExporter

    exporter = WorkflowExporter(workflow)

    # Export to different formats
    exporter.to_yaml("workflow.yaml")
    exporter.to_json("workflow.json")
    exporter.to_docker("./docker-export")
    exporter.to_kubernetes("./k8s-manifests")

    # With custom configuration
    export_config = {
        "include_dependencies": True,
        "version": "1.0.0",
        "metadata": {"author": "team@example.com", "description": "Data processing pipeline"},
    }

    exporter.to_yaml("workflow.yaml", config=export_config)
    # ------------------------------------------------------------------------------------------

    expected, _ = LocalRuntime(store=None).execute(workflow)
    assert expected["summarise"]["result"] == [
        {"region": "east", "total": 55},
        {"region": "north", "total": 150},
        {"region": "south", "total": 80},
    ]

    doc = yaml.safe_load((scratch / "workflow.yaml").read_text())
    assert doc["version"] == "1.0.0"
    assert doc["metadata"] == {"author": "team@example.com", "description": "Data processing pipeline"}
    assert doc["dependencies"]["kailash"] == "kailash==0.1.0"
    assert doc["dependencies"]["node_types"] == ["CSVReaderNode", "JSONWriterNode", "PythonCodeNode"]
    for name in ("workflow.yaml", "workflow.json"):
        loaded = Workflow.load(scratch / name)
        assert loaded.nodes["summarise"].config["code"] == workflow.nodes["summarise"].config["code"]
        (scratch / "output" / "summary.json").unlink()
        results, _ = LocalRuntime(store=None).execute(loaded)
        assert results == expected
        assert json.loads((scratch / "output" / "summary.json").read_text()) == expected["summarise"]["result"]
    assert json.loads((scratch / "workflow.json").read_text())["version"] == workflow.version

    from kailash.utils.export import validate_kubernetes_manifests

    k8s = scratch / "k8s-manifests"
    assert {p.name for p in k8s.iterdir()} == {"configmap.yaml", "job.yaml", "kustomization.yaml", "README.md"}
    assert validate_kubernetes_manifests(k8s) == {}

    # The Docker image's entrypoint, run as the container would, with the data "mounted" in its
    # working directory and the default parameters (none needed).
    docker = scratch / "docker-export"
    assert {"Dockerfile", "entrypoint.sh", "requirements.txt", "workflow.yaml"} <= {p.name for p in docker.iterdir()}
    run_dir = scratch / "container-work"
    (run_dir / "data").mkdir(parents=True)
    (run_dir / "data" / "sales.csv").write_text(SALES)
    home = scratch / "container-home"
    home.mkdir()
    proc = subprocess.run(
        ["sh", str(docker / "entrypoint.sh"), "run"],
        env={
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "KAILASH_HOME": str(home),
            "KAILASH_WORKFLOW": str(docker / "workflow.yaml"),
            "TMPDIR": str(scratch),
        },
        cwd=run_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "completed"
    assert out["results"]["summarise"] == expected["summarise"]
    assert json.loads((run_dir / "output" / "summary.json").read_text()) == expected["summarise"]["result"]
    assert os.listdir(home)  # the run was recorded in the container's KAILASH_HOME
