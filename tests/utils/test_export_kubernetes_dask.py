"""Exported Kubernetes manifests with a Dask cluster (``dask_workers``): valid, wired, same image."""

from __future__ import annotations

import pytest
import yaml

from kailash.errors import SerializationError
from kailash.nodes.code.python import PythonCodeNode
from kailash.utils.export import WorkflowExporter, validate_kubernetes_manifests
from kailash.workflow import Workflow


def _workflow() -> Workflow:
    wf = Workflow("fan-out")
    wf.add_node("double", PythonCodeNode(code="result = 2"))
    return wf


def test_dask_workers_add_a_scheduler_service_and_workers_on_the_same_image(tmp_path):
    out = tmp_path / "k8s"
    written = WorkflowExporter(_workflow()).to_kubernetes(out, config={"dask_workers": 3, "version": "2.0"},
                                                          serve=True)
    names = {p.name for p in written}
    assert {"dask-scheduler.yaml", "dask-scheduler-service.yaml", "dask-workers.yaml"} <= names
    assert validate_kubernetes_manifests(out) == {}
    load = lambda name: yaml.safe_load((out / name).read_text())  # noqa: E731
    scheduler, service, workers = load("dask-scheduler.yaml"), load("dask-scheduler-service.yaml"), load(
        "dask-workers.yaml")
    server = load("deployment.yaml")
    assert workers["spec"]["replicas"] == 3 and scheduler["spec"]["replicas"] == 1
    (sc,), (wc,), (gc,) = (m["spec"]["template"]["spec"]["containers"] for m in (scheduler, workers, server))
    assert sc["image"] == wc["image"] == gc["image"] == "fan-out:2.0"  # what runs a node is what the gateway has
    assert sc["command"] == wc["command"] == ["dask"]
    assert wc["args"][:2] == ["worker", "tcp://fan-out-dask-scheduler:8786"]
    assert service["metadata"]["name"] == "fan-out-dask-scheduler" and service["spec"]["ports"][0]["port"] == 8786
    assert service["spec"]["selector"] == scheduler["spec"]["selector"]["matchLabels"]
    assert {"name": "DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL", "value": "30s"} in sc["env"]
    assert {"name": "KAILASH_DASK_ADDRESS", "value": "tcp://fan-out-dask-scheduler:8786"} in gc["env"]
    assert wc["securityContext"]["readOnlyRootFilesystem"] and "/tmp/dask-worker" in wc["args"]
    assert set(load("kustomization.yaml")["resources"]) >= {"dask-scheduler.yaml", "dask-workers.yaml",
                                                            "dask-scheduler-service.yaml"}


def test_the_image_of_a_dask_export_installs_the_dask_extra(tmp_path):
    WorkflowExporter(_workflow()).to_docker(tmp_path / "ctx", config={"dask_workers": 2})
    wheel_line = [ln for ln in (tmp_path / "ctx" / "requirements.txt").read_text().splitlines()
                  if ln.startswith("./wheels/")]
    assert wheel_line and wheel_line[0].endswith("[dask]"), wheel_line
    WorkflowExporter(_workflow()).to_docker(tmp_path / "plain")
    assert "dask" not in (tmp_path / "plain" / "requirements.txt").read_text()


def test_a_negative_worker_count_is_refused(tmp_path):
    with pytest.raises(SerializationError, match="dask_workers"):
        WorkflowExporter(_workflow()).to_kubernetes(tmp_path, config={"dask_workers": -1})


def test_the_command_line_takes_dask_workers(tmp_path):
    from kailash.cli.main import main

    src = tmp_path / "flow.yaml"
    WorkflowExporter(_workflow()).to_yaml(src)
    assert main(["export", str(src), "--to", "kubernetes", "--out", str(tmp_path / "k8s"), "--serve",
                 "--dask-workers", "2"]) in (0, None)
    workers = yaml.safe_load((tmp_path / "k8s" / "dask-workers.yaml").read_text())
    assert workers["spec"]["replicas"] == 2
